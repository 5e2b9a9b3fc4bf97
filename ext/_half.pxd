# IEEE 754 binary16 <-> binary32 conversions, round-to-nearest-even, bit for
# bit what numpy's astype(np.float16) / astype(np.float32) produce (NaN
# payloads aside). Written out rather than relying on _Float16 so that the
# kernels build with any C99 compiler.

from libc.stdint cimport uint16_t, uint32_t


cdef union _FloatBits:
    float f
    uint32_t u


cdef inline float half_to_float(uint16_t h) noexcept nogil:
    cdef _FloatBits bits
    cdef uint32_t sign = (<uint32_t>(h & 0x8000u)) << 16
    cdef uint32_t exponent = h & 0x7c00u
    cdef uint32_t significand = h & 0x03ffu
    if exponent == 0:
        # Zero or subnormal: significand * 2**-24 is exact in float32.
        bits.f = <float>significand * 5.9604644775390625e-08
        bits.u |= sign
    elif exponent == 0x7c00u:
        bits.u = sign | 0x7f800000u | (significand << 13)
    else:
        bits.u = sign | ((<uint32_t>(h & 0x7fffu) + 0x1c000u) << 13)
    return bits.f


cdef inline uint16_t float_to_half(float value) noexcept nogil:
    # Follows numpy's npy_floatbits_to_halfbits.
    cdef _FloatBits bits
    bits.f = value
    cdef uint32_t f = bits.u
    cdef uint32_t f_exp = f & 0x7f800000u
    cdef uint32_t f_sig
    cdef uint16_t h_sgn = <uint16_t>((f & 0x80000000u) >> 16)
    cdef uint16_t h_sig
    if f_exp >= 0x47800000u:
        if f_exp == 0x7f800000u:
            f_sig = f & 0x007fffffu
            if f_sig != 0:
                h_sig = <uint16_t>(0x7c00u + (f_sig >> 13))
                if h_sig == 0x7c00u:
                    h_sig += 1
                return h_sgn + h_sig
        return h_sgn + 0x7c00u
    if f_exp <= 0x38000000u:
        if f_exp < 0x33000000u:
            return h_sgn
        f_exp >>= 23
        f_sig = 0x00800000u + (f & 0x007fffffu)
        f_sig >>= (113 - f_exp)
        if ((f_sig & 0x00003fffu) != 0x00001000u) or (f & 0x000007ffu):
            f_sig += 0x00001000u
        return h_sgn + <uint16_t>(f_sig >> 13)
    f_sig = f & 0x007fffffu
    if (f_sig & 0x00003fffu) != 0x00001000u:
        f_sig += 0x00001000u
    h_sig = <uint16_t>(f_sig >> 13)
    return h_sgn + <uint16_t>((f_exp - 0x38000000u) >> 13) + h_sig
