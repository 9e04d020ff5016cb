"""Pure-NumPy reference implementation of the fastrand noise stream, version 1.

This module is the *oracle* that every other backend (CPU scalar, CPU SIMD, CUDA) is checked
against, and it doubles as a slow, dependency-free fallback.  It follows the normative stream
specification in ``docs/noise-stream.md`` operation by operation:

* Philox4x32-10 counter-based words (section 1), addressed by 32-bit word positions that wrap
  modulo 2^64 (section 2);
* float32 Box-Muller normals ``N32`` with the Cephes-style ``logC`` and the integer-reduced
  sine/cosine polynomials (section 3), and their float16/bfloat16 roundings (section 4);
* float64 normals ``N64`` with the fdlibm-style ``logD`` and the fdlibm sine/cosine kernels in
  the fixed Horner/fma order of section 5;
* uniforms and raw words (section 6).

Every float32 operation is carried out in ``np.float32`` (NumPy's float32 ``+ - * sqrt`` are
correctly rounded IEEE binary32), every float64 operation in ``np.float64``.  The fused
multiply-adds of the spec are emulated exactly: ``fma32`` forms the product exactly in
float64 and adds with round-to-odd before the final rounding to float32; ``fma64`` uses the
Dekker/Veltkamp exact product, TwoSum and round-to-odd (Boldo & Melquiond).  Only NumPy and
the standard library are used; all work is vectorised.

Seeds, streams and offsets are Python ints taken modulo 2^64.  bfloat16 results are returned
as ``np.uint16`` arrays holding the bfloat16 bit patterns (NumPy has no bfloat16 type).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = [
    "philox4x32_10",
    "words",
    "normal",
    "uniform",
    "next_offset",
    "fma32",
    "fma64",
    "log_c",
    "radius32",
    "angle32",
    "log_d",
    "radius64",
    "angle64",
]

_MASK64 = (1 << 64) - 1
_MASK32 = 0xFFFFFFFF
_DTYPES = ("float32", "float16", "bfloat16", "float64")


def _f32(bits):
    return np.array(bits, dtype=np.uint32).view(np.float32)[()]


def _f64(bits):
    return np.array(bits, dtype=np.uint64).view(np.float64)[()]


# --------------------------------------------------------------------------------------------
# Section 1: Philox4x32-10
# --------------------------------------------------------------------------------------------

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_LO32 = np.uint64(_MASK32)
_SH32 = np.uint64(32)


def philox4x32_10(ctr: ArrayLike, key: ArrayLike) -> np.ndarray:
    """Philox4x32-10 of counters ``ctr`` (uint32, shape (..., 4)) under keys ``key``
    (uint32, shape (..., 2)); the leading dimensions broadcast.  Returns uint32 (..., 4)."""
    ctr = np.asarray(ctr, dtype=np.uint32)
    key = np.asarray(key, dtype=np.uint32)
    if ctr.shape[-1:] != (4,) or key.shape[-1:] != (2,):
        raise ValueError("ctr must have shape (..., 4) and key shape (..., 2)")
    shape = np.broadcast_shapes(ctr.shape[:-1], key.shape[:-1])
    ctr = np.broadcast_to(ctr, shape + (4,)).astype(np.uint64)
    key = np.broadcast_to(key, shape + (2,)).astype(np.uint64)
    c0, c1, c2, c3 = ctr[..., 0], ctr[..., 1], ctr[..., 2], ctr[..., 3]
    k0, k1 = key[..., 0], key[..., 1]
    # All products are 32x32 -> 64 bits in uint64: nothing overflows.
    for rnd in range(10):
        if rnd:
            k0 = (k0 + _W0) & _LO32
            k1 = (k1 + _W1) & _LO32
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = ((p1 >> _SH32) ^ c1 ^ k0, p1 & _LO32, (p0 >> _SH32) ^ c3 ^ k1, p0 & _LO32)
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


# --------------------------------------------------------------------------------------------
# Section 2: layout
# --------------------------------------------------------------------------------------------


def _block_words(seed, stream, first_block, nblocks):
    """Words of blocks first_block .. first_block + nblocks - 1 (block index modulo 2^62,
    i.e. positions modulo 2^64), flattened in position order."""
    seed &= _MASK64
    stream &= _MASK64
    b = np.arange(nblocks, dtype=np.uint64)
    b += np.uint64(first_block)  # first_block < 2^62, nblocks < 2^62: no overflow
    b &= np.uint64((1 << 62) - 1)
    ctr = np.empty(b.shape + (4,), dtype=np.uint32)
    ctr[:, 0] = (b & _LO32).astype(np.uint32)
    ctr[:, 1] = (b >> _SH32).astype(np.uint32)
    ctr[:, 2] = stream & _MASK32
    ctr[:, 3] = stream >> 32
    key = np.array([seed & _MASK32, seed >> 32], dtype=np.uint32)
    return philox4x32_10(ctr, key).reshape(-1)


def _check_n(n):
    n = int(n)
    if n < 0:
        raise ValueError("n must be non-negative")
    return n


def words(seed: int, stream: int, offset: int, n: int) -> np.ndarray:
    """Raw words ``word(offset) .. word(offset + n - 1)`` (positions modulo 2^64), uint32."""
    n = _check_n(n)
    o = int(offset) & _MASK64
    skip = o & 3
    nblocks = (skip + n + 3) // 4
    w = _block_words(int(seed), int(stream), o >> 2, nblocks)
    return w[skip : skip + n].copy()


def _dtype_name(dtype):
    if isinstance(dtype, str):
        name = dtype
    else:
        name = np.dtype(dtype).name
    if name not in _DTYPES:
        raise ValueError("dtype must be one of %r, got %r" % (_DTYPES, dtype))
    return name


def next_offset(offset: int, n: int, dtype: DTypeLike) -> int:
    """The generator offset after a request of ``n`` values of ``dtype`` at ``offset``
    (normals and uniforms advance alike; ``'uint32'`` raw words advance by ``n``)."""
    n = _check_n(n)
    o = int(offset) & _MASK64
    name = dtype if dtype == "uint32" else _dtype_name(dtype)
    if name == "float64":
        start = (o + (o & 1)) & _MASK64
        return (start + 2 * n) & _MASK64
    return (o + n) & _MASK64


# --------------------------------------------------------------------------------------------
# Exact fused multiply-add emulation
# --------------------------------------------------------------------------------------------


def _two_sum(a, b):
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    return s, err


def _round_odd_fix(s, err):
    """Given s = RN(x) and err = x - s exactly (float64), return RO(x) (round to odd)."""
    fix = (err != 0) & ((s.view(np.uint64) & np.uint64(1)) == 0)
    if np.any(fix):
        toward = np.where(err > 0, np.inf, -np.inf)
        s = np.where(fix, np.nextafter(s, toward), s)
    return s


def _as(x, dtype, fname):
    x = np.asarray(x)
    if x.dtype != dtype:
        raise TypeError("%s expects %s inputs, got %s" % (fname, np.dtype(dtype).name, x.dtype))
    return x


def fma32(a: ArrayLike, b: ArrayLike, c: ArrayLike) -> Any:
    """Exactly rounded binary32 fused multiply-add a * b + c (float32 arrays)."""
    a = _as(a, np.float32, "fma32").astype(np.float64)
    b = _as(b, np.float32, "fma32").astype(np.float64)
    c = _as(c, np.float32, "fma32").astype(np.float64)
    a, b, c = np.broadcast_arrays(a, b, c)
    p = a * b  # 24 x 24 bits: exact in binary64, far from under/overflow
    s, err = _two_sum(p, c)  # exact error (no overflow for float32-sized operands)
    s = _round_odd_fix(s, err)  # round to odd at 53 bits, then a single RN to 24 bits
    return s.astype(np.float32)


_SPLITTER = np.float64(134217729.0)  # 2^27 + 1 (Veltkamp)


def _split(a):
    t = _SPLITTER * a
    hi = t - (t - a)
    return hi, a - hi


def _two_prod(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    err = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, err


def fma64(a: ArrayLike, b: ArrayLike, c: ArrayLike) -> Any:
    """Exactly rounded binary64 fused multiply-add a * b + c (float64 arrays).

    Boldo & Melquiond: exact product (Dekker/Veltkamp), then the correctly rounded sum of three
    terms via TwoSum and round-to-odd.  Exact for operands whose product neither overflows
    (``|a|, |b| < 2^996``) nor loses bits to underflow (``|a * b| >= 2^-969`` or ``a * b == 0``), which
    covers every operation of the stream."""
    a = _as(a, np.float64, "fma64")
    b = _as(b, np.float64, "fma64")
    c = _as(c, np.float64, "fma64")
    a, b, c = np.broadcast_arrays(a, b, c)
    uh, ul = _two_prod(a, b)
    th, tl = _two_sum(c, ul)
    vh, vl = _two_sum(uh, th)
    s, err = _two_sum(tl, vl)
    v = _round_odd_fix(s, err)
    z = vh + v
    # Zero operands: the IEEE result (with its sign of zero) is that of the separate ops.
    # An exact zero sum of non-zero terms is +0 under round-to-nearest; with a zero operand
    # the IEEE result (including the sign of a zero) is that of the separate operations.
    pzero = (a == 0) | (b == 0)
    czero = (c == 0) & ~pzero
    z = np.where((z == 0) & ~(pzero | czero), np.float64(0.0), z)
    if np.any(pzero) or np.any(czero):
        z = np.where(pzero, a * b + c, z)
        z = np.where(czero, a * b, z)
    return z


# --------------------------------------------------------------------------------------------
# Section 3: float32 normals
# --------------------------------------------------------------------------------------------

_SQRTHF = _f32(0x3F3504F3)
_P = [
    _f32(h)
    for h in (
        0x3D9021BB,
        0xBDEBD1B8,
        0x3DEF251A,
        0xBDFE5D4F,
        0x3E11E9BF,
        0xBE2AAE50,
        0x3E4CCEAC,
        0xBE7FFFFC,
        0x3EAAAAAA,
    )
]
_Q1 = _f32(0xB95E8083)
_Q2 = _f32(0x3F318000)
_ONE32 = np.float32(1.0)
_MHALF32 = _f32(0xBF000000)  # -0.5f
_MTWO32 = _f32(0xC0000000)  # -2.0f
_TWO_M32 = _f32(0x2F800000)  # 0x1p-32f
_TWO_M33 = _f32(0x2F000000)  # 0x1p-33f
_HALF_PI_2M24 = _f32(0x33C90FDB)
_S32 = [_f32(h) for h in (0xB94CA1F9, 0x3C08839E, 0xBE2AAAA3)]
_C32 = [_f32(h) for h in (0x37CCF5CE, 0xBAB6061A, 0x3D2AAAA5)]


def log_c(v: ArrayLike) -> np.ndarray:
    """logC(v) of section 3 (float32 in, float32 out); v positive normal."""
    v = np.asarray(v, dtype=np.float32)
    bits = v.view(np.uint32)
    e = ((bits >> np.uint32(23)) & np.uint32(0xFF)).astype(np.int32) - np.int32(126)
    m = ((bits & np.uint32(0x807FFFFF)) | np.uint32(0x3F000000)).view(np.float32)
    small = m < _SQRTHF
    e = np.where(small, e - np.int32(1), e)
    x = np.where(small, (m + m) - _ONE32, m - _ONE32).astype(np.float32)
    y = np.broadcast_to(_P[0], x.shape).astype(np.float32)
    for coef in _P[1:]:
        y = fma32(y, x, coef)
    z = x * x
    y = (y * x) * z
    fe = e.astype(np.float32)  # |e| < 2^24: exact
    y = fma32(fe, _Q1, y)
    y = fma32(z, _MHALF32, y)
    t = x + y
    return fma32(fe, _Q2, t)


def _u32_to_f32(w):
    # float(w) of an unsigned 32-bit integer, correctly rounded: exact in binary64, then a
    # single round-to-nearest-even to binary32.
    return np.asarray(w, dtype=np.uint32).astype(np.float64).astype(np.float32)


def radius32(w0: ArrayLike) -> np.ndarray:
    """r = sqrt(-2 logC(u)), u = float(w0) * 2^-32 + 2^-33, all in float32."""
    u = _u32_to_f32(w0) * _TWO_M32 + _TWO_M33
    L = log_c(u)
    return np.sqrt(_MTWO32 * L)


def _quadrant(q, s, c):
    q = q.astype(np.intp)
    sin = np.choose(q, [s, c, -s, -c])
    cos = np.choose(q, [c, -s, -c, s])
    return sin, cos


def angle32(w1: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(sin, cos) float32 of the angle encoded in word w1 (section 3)."""
    w1 = np.asarray(w1, dtype=np.uint32)
    q = w1 >> np.uint32(30)
    t = (w1 >> np.uint32(6)) & np.uint32(0xFFFFFF)
    mirror = t > np.uint32(0x800000)
    t = np.where(mirror, np.uint32(0x1000000) - t, t).astype(np.uint32)
    a = t.astype(np.float32) * _HALF_PI_2M24  # t <= 2^23: conversion exact
    z = a * a
    s = fma32(fma32(fma32(_S32[0], z, _S32[1]), z, _S32[2]) * z, a, a)
    c = fma32(z, _MHALF32, ((fma32(fma32(_C32[0], z, _C32[1]), z, _C32[2]) * z) * z)) + _ONE32
    s, c = np.where(mirror, c, s), np.where(mirror, s, c)
    return _quadrant(q, s, c)


def _pairs32(w0, w1):
    r = radius32(w0)
    s, c = angle32(w1)
    return r * s, r * c


def _normal32(seed, stream, offset, n):
    o = int(offset) & _MASK64
    skip = o & 1
    m = skip + n
    m += m & 1
    w = words(seed, stream, o - skip, m).reshape(-1, 2)
    out = np.empty(w.shape, dtype=np.float32)
    out[:, 0], out[:, 1] = _pairs32(w[:, 0], w[:, 1])
    return out.reshape(-1)[skip : skip + n].copy()


# --------------------------------------------------------------------------------------------
# Section 4: float16 / bfloat16
# --------------------------------------------------------------------------------------------


def _bf16_bits(x):
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even, integer arithmetic.
    (Finite inputs; overflow correctly rounds to infinity.)"""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = (b + np.uint64(0x7FFF) + ((b >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    return b.astype(np.uint16)


# --------------------------------------------------------------------------------------------
# Section 5: float64 normals
# --------------------------------------------------------------------------------------------

_LN2_HI = _f64(0x3FE62E42FEE00000)
_LN2_LO = _f64(0x3DEA39EF35793C76)
_LG = [None] + [
    _f64(h)
    for h in (
        0x3FE5555555555593,
        0x3FD999999997FA04,
        0x3FD2492494229359,
        0x3FCC71C51D8E78AF,
        0x3FC7466496CB03DE,
        0x3FC39A09D078C69F,
        0x3FC2F112DF3E5244,
    )
]
_HALF_PI_2M53 = _f64(0x3CA921FB54442D18)
_S64 = [None] + [
    _f64(h)
    for h in (
        0xBFC5555555555549,
        0x3F8111111110F8A6,
        0xBF2A01A019C161D5,
        0x3EC71DE357B1FE7D,
        0xBE5AE5E68A2B9CEB,
        0x3DE5D93A5ACFD57C,
    )
]
_C64 = [None] + [
    _f64(h)
    for h in (
        0x3FA555555555554C,
        0xBF56C16C16C15177,
        0x3EFA01A019CB1590,
        0xBE927E4F809C52AD,
        0x3E21EE9EBDB4B1C4,
        0xBDA8FAE9BE8838D4,
    )
]
_ONE64 = np.float64(1.0)
_TWO64 = np.float64(2.0)
_HALF64 = np.float64(0.5)
_MTWO64 = np.float64(-2.0)
_TWO_M53 = np.float64(2.0**-53)


def log_d(v: ArrayLike) -> np.ndarray:
    """logD(v) of section 5 (float64 in, float64 out); v positive normal."""
    v = np.asarray(v, dtype=np.float64)
    bits = v.view(np.uint64)
    hx = ((bits >> np.uint64(32)) + np.uint64(0x3FF00000 - 0x3FE6A09E)) & np.uint64(_MASK32)
    k = (hx >> np.uint64(20)).astype(np.int64) - np.int64(0x3FF)
    hx = (hx & np.uint64(0x000FFFFF)) + np.uint64(0x3FE6A09E)
    x = ((hx << np.uint64(32)) | (bits & np.uint64(_MASK32))).view(np.float64)
    f = x - _ONE64
    hfsq = (_HALF64 * f) * f
    s = f / (_TWO64 + f)
    z = s * s
    w = z * z
    t1 = w * fma64(w, fma64(w, _LG[6], _LG[4]), _LG[2])
    t2 = z * fma64(w, fma64(w, fma64(w, _LG[7], _LG[5]), _LG[3]), _LG[1])
    R = t2 + t1
    dk = k.astype(np.float64)
    return fma64(dk, _LN2_HI, ((fma64(s, hfsq + R, dk * _LN2_LO) - hfsq) + f))


def radius64(w0: ArrayLike, w1: ArrayLike) -> np.ndarray:
    """r = sqrt(-2 logD(u)), u = (2^53 - m) * 2^-53, m = (w0 << 21) | (w1 >> 11)."""
    w0 = np.asarray(w0, dtype=np.uint32).astype(np.uint64)
    w1 = np.asarray(w1, dtype=np.uint32).astype(np.uint64)
    m = (w0 << np.uint64(21)) | (w1 >> np.uint64(11))
    u = (np.uint64(1 << 53) - m).astype(np.float64) * _TWO_M53
    L = log_d(u)
    return np.sqrt(_MTWO64 * L)


def angle64(w2: ArrayLike, w3: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(sin, cos) float64 of the angle encoded in words w2, w3 (section 5)."""
    w2 = np.asarray(w2, dtype=np.uint32).astype(np.uint64)
    w3 = np.asarray(w3, dtype=np.uint32).astype(np.uint64)
    q = w2 >> np.uint64(30)
    t = ((w2 & np.uint64(0x3FFFFFFF)) << np.uint64(23)) | (w3 >> np.uint64(9))
    mirror = t > np.uint64(1 << 52)
    t = np.where(mirror, np.uint64(1 << 53) - t, t).astype(np.uint64)
    a = t.astype(np.float64) * _HALF_PI_2M53  # t <= 2^52: conversion exact
    z = a * a
    v = z * a
    S, C = _S64, _C64
    s = fma64(
        v, fma64(z, fma64(z, fma64(z, fma64(z, fma64(z, S[6], S[5]), S[4]), S[3]), S[2]), S[1]), a
    )
    rc = z * fma64(z, fma64(z, fma64(z, fma64(z, fma64(z, C[6], C[5]), C[4]), C[3]), C[2]), C[1])
    hz = _HALF64 * z
    w = _ONE64 - hz
    c = w + fma64(z, rc, (_ONE64 - w) - hz)
    s, c = np.where(mirror, c, s), np.where(mirror, s, c)
    return _quadrant(q, s, c)


def _normal64(seed, stream, offset, n):
    o = int(offset) & _MASK64
    start = (o + (o & 1)) & _MASK64
    skip = (start & 3) >> 1  # 0: starts on a sine, 1: on a cosine
    nblocks = (skip + n + 1) // 2
    w = words(seed, stream, start - 2 * skip, 4 * nblocks).reshape(-1, 4)
    r = radius64(w[:, 0], w[:, 1])
    s, c = angle64(w[:, 2], w[:, 3])
    out = np.empty((w.shape[0], 2), dtype=np.float64)
    out[:, 0] = r * s
    out[:, 1] = r * c
    return out.reshape(-1)[skip : skip + n].copy()


# --------------------------------------------------------------------------------------------
# Public draws
# --------------------------------------------------------------------------------------------


def normal(seed: int, stream: int, offset: int, n: int, dtype: DTypeLike) -> np.ndarray:
    """n standard normals of ``dtype`` ('float32', 'float16', 'bfloat16' -> uint16 bits,
    'float64') starting at ``offset``."""
    n = _check_n(n)
    name = _dtype_name(dtype)
    if name == "float64":
        return _normal64(seed, stream, offset, n)
    x = _normal32(seed, stream, offset, n)
    if name == "float32":
        return x
    if name == "float16":
        return x.astype(np.float16)
    return _bf16_bits(x)


def uniform(seed: int, stream: int, offset: int, n: int, dtype: DTypeLike) -> np.ndarray:
    """n uniforms in [0, 1) of ``dtype`` (section 6); bfloat16 as uint16 bit patterns."""
    n = _check_n(n)
    name = _dtype_name(dtype)
    if name == "float64":
        o = int(offset) & _MASK64
        start = (o + (o & 1)) & _MASK64
        w = words(seed, stream, start, 2 * n).reshape(-1, 2).astype(np.uint64)
        m = (w[:, 0] << np.uint64(21)) | (w[:, 1] >> np.uint64(11))
        return m.astype(np.float64) * _TWO_M53  # < 2^53: exact
    w = words(seed, stream, offset, n)
    if name == "float32":
        return (w >> np.uint32(8)).astype(np.float32) * _f32(0x33800000)  # 2^-24
    if name == "float16":
        return ((w >> np.uint32(21)).astype(np.float32) * _f32(0x3A000000)).astype(np.float16)
    x = (w >> np.uint32(24)).astype(np.float32) * _f32(0x3B800000)  # 2^-8
    return (x.view(np.uint32) >> np.uint32(16)).astype(np.uint16)  # exact
