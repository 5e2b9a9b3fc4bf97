"""Typed loops behind latentstore's quantization and batch reads.

Only loops live here. Shapes, dtypes, index ranges and error wording are the
job of the Python wrappers in ``latentstore.quantization`` and
``latentstore.store``; bounds checks are off because those wrappers (and the
tests that feed them bad input) guarantee every index is in range.
``latentstore._reference`` holds the same math in numpy, and the tests
compare the two byte for byte.

This file is included by two extension modules built with different
compiler flags: ``_kernels`` (the baseline instruction set) and
``_kernels_avx2`` (x86-64 with AVX2, picked at import time on CPUs that have
it: see ``latentstore._native``). The C code is the same; only the
vectorised loops are wider.
"""

from cython.parallel cimport prange
from libc.stdint cimport int8_t, int64_t, uint8_t, uint16_t, uint32_t, uintptr_t
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memcpy, memset

from _half cimport float_to_half, half_to_float

cdef extern from *:
    """
    #ifdef _OPENMP
    #define LATENTSTORE_OPENMP 1
    #else
    #define LATENTSTORE_OPENMP 0
    #endif
    """
    int LATENTSTORE_OPENMP

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define LATENTSTORE_PREFETCH(address) __builtin_prefetch((address), 0, 0)
    #else
    #define LATENTSTORE_PREFETCH(address) ((void)(address))
    #endif
    """
    void prefetch "LATENTSTORE_PREFETCH"(const void* address) noexcept nogil

# Rows are scattered at random over the mapped files, so the hardware
# prefetcher cannot guess the next one: the gathers ask for the row this many
# places ahead while working on the current one.
cdef enum:
    PREFETCH_ROWS = 4
    CACHE_LINE = 64


cdef inline void _prefetch_row(
    const uintptr_t* chunk_addresses, Py_ssize_t chunk_rows, Py_ssize_t row, Py_ssize_t row_bytes
) noexcept nogil:
    cdef const char* src = <const char*>chunk_addresses[row // chunk_rows] + (row % chunk_rows) * row_bytes
    cdef Py_ssize_t line
    for line in range((row_bytes + CACHE_LINE - 1) // CACHE_LINE):
        prefetch(src + line * CACHE_LINE)


#: Whether the kernels were compiled with OpenMP (multi-threaded loops).
OPENMP = bool(LATENTSTORE_OPENMP)

# Sample status codes written by quantize_absmax.
cdef enum:
    OK = 0
    NONFINITE = 1
    OVERFLOW = 2

STATUS_OK = OK
STATUS_NONFINITE = NONFINITE
STATUS_OVERFLOW = OVERFLOW

# Adding then subtracting 1.5 * 2**23 rounds a float32 of magnitude below
# 2**22 to the nearest integer, ties to even, in the default rounding mode:
# the same as numpy's rint, without a libm call the compiler cannot vectorise.
cdef float ROUND_MAGIC = 12582912.0

ctypedef fused out_t:
    float
    uint16_t


cdef union _Bits:
    float f
    uint32_t u


cdef inline uint8_t _quantize_group(
    const float* x, int8_t* q, uint16_t* scale, Py_ssize_t size
) noexcept nogil:
    cdef Py_ssize_t k
    cdef uint32_t absbits = 0, bits
    cdef _Bits amax
    cdef float s, r
    cdef uint16_t h
    # |x| compared as integers: for non-negative floats the bit patterns sort
    # like the values, and every NaN and inf sorts above the largest finite.
    for k in range(size):
        bits = (<const uint32_t*>x)[k] & 0x7fffffffu
        absbits = bits if bits > absbits else absbits
    if absbits >= 0x7f800000u:
        return NONFINITE
    amax.u = absbits
    h = float_to_half(amax.f / <float>127.0)
    if (h & 0x7c00u) == 0x7c00u:
        return OVERFLOW
    scale[0] = h
    s = half_to_float(h)
    if s == 0:
        memset(q, 0, size)
        return OK
    for k in range(size):
        r = x[k] / s
        r = r if r < <float>127.0 else <float>127.0
        r = r if r > <float>-127.0 else <float>-127.0
        r = (r + ROUND_MAGIC) - ROUND_MAGIC
        q[k] = <int8_t>r
    return OK


def quantize_absmax(
    const float[:, :, ::1] x,
    int8_t[:, :, ::1] q,
    uint16_t[:, ::1] scales,
    uint8_t[::1] status,
    int num_threads=1,
):
    """Quantize x (N, G, K) group by group; status[n] flags bad samples."""
    cdef Py_ssize_t n, g
    cdef Py_ssize_t num_groups = x.shape[1], group_size = x.shape[2]
    cdef uint8_t result
    for n in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        status[n] = OK
        for g in range(num_groups):
            result = _quantize_group(&x[n, g, 0], &q[n, g, 0], &scales[n, g], group_size)
            if result != OK:
                status[n] = result
                break


cdef inline void _dequantize_row(
    const void* codes,
    const uint16_t* scales,
    Py_ssize_t num_scales,
    const float* lut,
    out_t* out,
    Py_ssize_t channels,
    Py_ssize_t pixels,
    Py_ssize_t source_pixels,
    bint normalize,
    float scaling_factor,
    const float* mean,
    const float* std,
    float multiplier,
) noexcept nogil:
    # Branches stay outside the pixel loops so that the compiler vectorises them.
    cdef Py_ssize_t c, p, pixels_here
    cdef const int8_t* src
    cdef const uint8_t* usrc
    cdef out_t* dst
    cdef float s = 0, m = 0, d = 1, v
    # Padded rows (a bucketed store's (C, source_pixels)) of, say, 60 or 63 tokens would leave
    # every channel a scalar remainder: each channel but the last is computed to a multiple of 8
    # (never past its stored codes), the surplus landing on the next channel's first outputs,
    # which that channel then overwrites. The last stays exact, and no surplus reaches past this
    # sample's output (at most 2 * pixels from the second-to-last channel's start).
    cdef Py_ssize_t rounded = min((pixels + 7) // 8 * 8, source_pixels, 2 * pixels)
    for c in range(channels):
        pixels_here = rounded if c + 1 < channels else pixels
        src = <const int8_t*>codes + c * source_pixels
        usrc = <const uint8_t*>codes + c * source_pixels
        dst = out + c * pixels
        if normalize:
            m = mean[c]
            d = std[c]
        if lut == NULL:
            s = half_to_float(scales[c if num_scales > 1 else 0])
            if out_t is float:
                if normalize:
                    for p in range(pixels_here):
                        dst[p] = (<float>src[p] * s * scaling_factor - m) / d * multiplier
                else:
                    for p in range(pixels_here):
                        dst[p] = <float>src[p] * s
            else:
                for p in range(pixels_here):
                    v = <float>src[p] * s
                    if normalize:
                        v = (v * scaling_factor - m) / d * multiplier
                    dst[p] = float_to_half(v)
        else:
            for p in range(pixels_here):
                v = lut[usrc[p]]
                if normalize:
                    v = (v * scaling_factor - m) / d * multiplier
                if out_t is float:
                    dst[p] = v
                else:
                    dst[p] = float_to_half(v)


def gather_dequantize(
    const uintptr_t[::1] chunk_addresses,
    Py_ssize_t chunk_rows,
    const int64_t[::1] rows,
    const uint16_t[:, ::1] scales,
    const float[::1] lut,
    out_t[:, :, ::1] out,
    bint normalize=False,
    float scaling_factor=1.0,
    const float[::1] mean=None,
    const float[::1] std=None,
    float multiplier=1.0,
    int num_threads=1,
    Py_ssize_t source_pixels=0,
):
    """out[i] = dequantize(row rows[i]) for rows spread over equal chunks.

    Row r lives at ``chunk_addresses[r // chunk_rows] + (r % chunk_rows) *
    row_bytes``; its scales are ``scales[r]`` (absmax) unless ``lut`` is
    given (affine: value = lut[code]). A stored row holds ``source_pixels``
    codes per channel (default: the output's pixels); the first ``pixels`` of
    each channel are read (a bucketed store's rows are padded to the largest
    bucket).
    """
    cdef Py_ssize_t i, row
    cdef Py_ssize_t channels = out.shape[1], pixels = out.shape[2]
    if source_pixels == 0:
        source_pixels = pixels
    cdef Py_ssize_t row_bytes = channels * source_pixels
    cdef Py_ssize_t num_scales = scales.shape[1] if lut is None else 0
    cdef const float* lut_ptr = NULL if lut is None else &lut[0]
    cdef const float* mean_ptr = NULL
    cdef const float* std_ptr = NULL
    cdef const uint16_t* scale_ptr
    cdef const char* src
    if normalize:
        mean_ptr = &mean[0]
        std_ptr = &std[0]
    cdef Py_ssize_t num_rows = rows.shape[0]
    for i in prange(num_rows, nogil=True, schedule="static", num_threads=num_threads):
        if i + PREFETCH_ROWS < num_rows:
            _prefetch_row(&chunk_addresses[0], chunk_rows, rows[i + PREFETCH_ROWS], row_bytes)
        row = rows[i]
        src = <const char*>chunk_addresses[row // chunk_rows] + (row % chunk_rows) * row_bytes
        scale_ptr = NULL if lut_ptr != NULL else &scales[row, 0]
        _dequantize_row(
            src, scale_ptr, num_scales, lut_ptr, &out[i, 0, 0],
            channels, pixels, source_pixels, normalize, scaling_factor, mean_ptr, std_ptr, multiplier,
        )


def gather_rows(
    const uintptr_t[::1] chunk_addresses,
    Py_ssize_t chunk_rows,
    const int64_t[::1] rows,
    uint8_t[:, ::1] out,
    int num_threads=1,
):
    """out[i] = raw bytes of row rows[i] (see gather_dequantize for layout)."""
    cdef Py_ssize_t i, row, row_bytes = out.shape[1], num_rows = rows.shape[0]
    for i in prange(num_rows, nogil=True, schedule="static", num_threads=num_threads):
        if i + PREFETCH_ROWS < num_rows:
            _prefetch_row(&chunk_addresses[0], chunk_rows, rows[i + PREFETCH_ROWS], row_bytes)
        row = rows[i]
        memcpy(
            &out[i, 0],
            <const char*>chunk_addresses[row // chunk_rows] + (row % chunk_rows) * row_bytes,
            row_bytes,
        )


def half_to_float_array(const uint16_t[::1] h, float[::1] out):
    """Widen float16 bit patterns (exposed so tests can check every one)."""
    cdef Py_ssize_t i
    for i in range(h.shape[0]):
        out[i] = half_to_float(h[i])


def float_to_half_array(const float[::1] f, uint16_t[::1] out):
    """Narrow float32 values to float16 bit patterns, ties to even."""
    cdef Py_ssize_t i
    for i in range(f.shape[0]):
        out[i] = float_to_half(f[i])


def resolve_rows(const int64_t[::1] indices, int64_t num_rows, const uint8_t[::1] valid, int64_t[::1] rows):
    """rows[i] = indices[i], negatives counted from the end.

    Returns -1, or 2 * i for the first index out of range, 2 * i + 1 for the
    first that lands on a sample whose ``valid`` flag is 0 (``valid`` may be
    None to skip that check).
    """
    cdef Py_ssize_t i
    cdef int64_t row, problem = -1
    cdef bint check_valid = valid is not None
    with nogil:
        for i in range(indices.shape[0]):
            row = indices[i]
            if row < 0:
                row = row + num_rows
            if row < 0 or row >= num_rows:
                problem = 2 * i
                break
            if check_valid and not valid[row]:
                problem = 2 * i + 1
                break
            rows[i] = row
    return problem


# -- variable-length items (text and bytes columns) ------------------------------

cdef int64_t _vlen_spans(
    const uint8_t* chunk, Py_ssize_t size, int64_t count, int64_t* starts, int64_t* lengths
) noexcept nogil:
    cdef Py_ssize_t i
    cdef int64_t position = 4
    cdef uint32_t word  # the layout is little-endian, as is every host the wheels are built for
    if size < 4:
        return count
    memcpy(&word, chunk, 4)
    if word != count:
        return count
    for i in range(count):
        if position + 4 > size:
            return i
        memcpy(&word, chunk + position, 4)
        position += 4
        if position + word > size:
            return i
        starts[i] = position
        lengths[i] = word
        position += word
    return -1 if position == size else count


def vlen_spans(const uint8_t[::1] chunk, int64_t count, int64_t[::1] starts, int64_t[::1] lengths):
    """Where each item of one vlen-utf8 / vlen-bytes chunk lies.

    The layout is numcodecs' (and Zarr v3's ``vlen-utf8``/``vlen-bytes``): a
    little-endian uint32 item count, then per item a uint32 length and that
    many bytes. Fills ``starts[i]`` (offset of item i's bytes in ``chunk``) and
    ``lengths[i]`` (both hold ``count`` entries). Returns -1 when the chunk
    holds exactly ``count`` items and nothing after them; else the first item
    that runs past the end, or ``count`` when the header disagrees or bytes
    trail the last item.
    """
    cdef int64_t problem
    with nogil:
        problem = _vlen_spans(&chunk[0], chunk.shape[0], count, &starts[0], &lengths[0])
    return problem


def gather_vlen(const uintptr_t[::1] addresses, const int64_t[::1] lengths, const int64_t[::1] rows, bint text):
    """[item rows[i]], item r being ``lengths[r]`` bytes at ``addresses[r]``, as str (strict UTF-8) or bytes.

    The items lie scattered over mapped files, so the loop asks for the item
    a few places ahead while building the current one. A text item that is
    not valid UTF-8 raises UnicodeDecodeError; the caller names the chunk.
    """
    cdef Py_ssize_t i, row, n = rows.shape[0]
    cdef list items = [None] * n
    for i in range(n):
        if i + PREFETCH_ROWS < n:
            prefetch(<const char*>addresses[rows[i + PREFETCH_ROWS]])
        row = rows[i]
        if text:
            items[i] = PyUnicode_DecodeUTF8(<const char*>addresses[row], lengths[row], "strict")
        else:
            items[i] = PyBytes_FromStringAndSize(<const char*>addresses[row], lengths[row])
    return items
