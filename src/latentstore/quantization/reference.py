"""The numpy reference for every compiled kernel: the same math, slowly.

Each function here mirrors one in ``latentstore.quantization._kernels`` (same arguments,
same output buffers) and is the oracle the tests compare against byte for
byte. It follows docs/format.md's quantization contract literally:

- a = max |x| over the group, in float32;
- s = float16(a / 127), the division in float32;
- q = clip(rint(x / float32(s)), -127, 127), and q = 0 where s == 0;
- x̂ = float32(q) * float32(s), then optionally (x̂ * scaling_factor - mean) / std.
"""

import numpy as np

STATUS_OK = 0
STATUS_NONFINITE = 1
STATUS_OVERFLOW = 2


def quantize_absmax(x, q, scales, status, num_threads=1):
    """Quantize x (N, G, K) float32 into q (N, G, K) int8 and scales (N, G) float16 bits."""
    del num_threads
    finite = np.isfinite(x).all(axis=2)
    with np.errstate(all="ignore"):
        amax = np.abs(x).max(axis=2, initial=np.float32(0))
        half = (amax / np.float32(127)).astype(np.float16)
    overflow = np.isinf(half)
    bad_group = ~finite | overflow
    # A sample stops at its first bad group, as the kernel does.
    first_bad = np.where(bad_group.any(axis=1), bad_group.argmax(axis=1), -1)
    n_idx = np.arange(x.shape[0])
    status[:] = np.where(
        first_bad < 0,
        STATUS_OK,
        np.where(~finite[n_idx, first_bad], STATUS_NONFINITE, STATUS_OVERFLOW),
    ).astype(np.uint8)
    good = status == STATUS_OK
    s32 = half.astype(np.float32)
    with np.errstate(all="ignore"):
        ratio = x / s32[..., None]
    codes = np.clip(np.rint(ratio), -127, 127)
    codes[s32 == 0] = 0
    q[good] = codes[good].astype(np.int8)
    scales[good] = half[good].view(np.uint16)


def dequantize_codes(codes, scales, lut, out_dtype, normalize, scaling_factor, mean, std, multiplier=1.0):
    """Dequantize codes (n, C, P) with scales (n, G) float16 bits or a lookup table."""
    if lut is not None:
        values = lut[codes.view(np.uint8)]
    else:
        s = scales.view(np.float16).astype(np.float32)
        if s.shape[1] == 1:
            s = np.broadcast_to(s, (s.shape[0], codes.shape[1]))
        values = codes.view(np.int8).astype(np.float32) * s[:, :, None]
    if normalize:
        values = (values * np.float32(scaling_factor) - mean[None, :, None]) / std[None, :, None] * np.float32(multiplier)
    with np.errstate(over="ignore"):  # beyond float16's range is inf, as in the kernel
        return values.astype(out_dtype, copy=False)


def _gather_codes(chunk_arrays, chunk_rows, rows):
    return np.stack([chunk_arrays[r // chunk_rows][r % chunk_rows] for r in rows]) if len(rows) else None


def gather_dequantize(
    chunk_arrays,
    chunk_rows,
    rows,
    scales,
    lut,
    out,
    normalize=False,
    scaling_factor=1.0,
    mean=None,
    std=None,
    multiplier=1.0,
    num_threads=1,
    source_pixels=0,
):
    """Like the kernel, but with chunks given as arrays of shape (chunk_rows, C, source_pixels)."""
    del num_threads
    if len(rows) == 0:
        return
    codes = _gather_codes(chunk_arrays, chunk_rows, rows)[:, :, : out.shape[2]]
    row_scales = None if lut is not None else scales[rows]
    out[...] = dequantize_codes(codes, row_scales, lut, out.dtype, normalize, scaling_factor, mean, std, multiplier)


def gather_rows(chunk_arrays, chunk_rows, rows, out, num_threads=1):
    """out[i] = bytes of row rows[i], chunks given as (chunk_rows, row_bytes) uint8 arrays."""
    del num_threads
    if len(rows):
        out[...] = _gather_codes(chunk_arrays, chunk_rows, rows)


def resolve_rows(indices, num_rows, valid, rows):
    """rows[:] = indices with negatives counted from the end; -1, or 2*i (out of
    range) / 2*i + 1 (invalid) for the first bad position i."""
    resolved = np.where(indices < 0, indices + num_rows, indices)
    bad = (resolved < 0) | (resolved >= num_rows)
    if valid is not None:
        bad_valid = np.zeros(len(indices), bool)
        in_range = ~bad
        bad_valid[in_range] = valid[resolved[in_range]] == 0
    else:
        bad_valid = np.zeros(len(indices), bool)
    problems = np.flatnonzero(bad | bad_valid)
    if problems.size:
        i = int(problems[0])
        rows[:i] = resolved[:i]
        return 2 * i + int(not bad[i])
    rows[:] = resolved
    return -1


def vlen_spans(chunk, count, starts, lengths):
    """Item offsets of a vlen chunk (uint32 count, then uint32 length + bytes per item);
    -1, or the first item past the end, or ``count`` for a bad header or trailing bytes."""
    data = bytes(chunk)
    if len(data) < 4 or int.from_bytes(data[:4], "little") != count:
        return count
    position = 4
    for i in range(count):
        if position + 4 > len(data):
            return i
        length = int.from_bytes(data[position : position + 4], "little")
        position += 4
        if position + length > len(data):
            return i
        starts[i], lengths[i] = position, length
        position += length
    return -1 if position == len(data) else count


def gather_vlen(chunks, spans, text):
    """[item bytes as str or bytes] for (chunk, start, length) in ``spans``; chunks are bytes objects."""
    items = [bytes(chunks[c][start : start + length]) for c, start, length in spans]
    return [item.decode("utf-8") for item in items] if text else items
