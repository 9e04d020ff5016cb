"""float64 normals and uniforms on every CPU path (scalar, avx2, avx512) against the independent
NumPy reference, bit for bit: stream draws across thread splits, odd offsets, every SIMD tail and
the wraps of the block index; and the float64 transform at chosen words (through
``_C.transform_cpu``, which runs the selected path's lanes on given Philox words) at the regime
edges of the logarithm, the angle reduction and the exact integer-to-double conversions."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import bits, draw, ref_bits

from fastrand import _C
from fastrand import reference as ref

ISAS = _C.cpu_isa_available()
KINDS = ["normal", "uniform"]
KIND_CODE = {"normal": _C.KIND_NORMAL, "uniform": _C.KIND_UNIFORM}
U64 = 1 << 64
SEED = 0x0DDB1A5E5BAD5EED
TWO53 = 1 << 53


@functools.cache
def _want(kind, seed, stream, offset, n):
    return ref_bits(kind, seed, stream, offset, n, "float64")


# --------------------------------------------------------------------------------------------
# Stream draws


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_thread_splits(isa, threads, kind, cpu_isa, num_threads):
    """Sizes where a request splits across 2 and 3 threads (pieces of 2^16 values and more,
    rounded to 64), from even and odd offsets (an odd offset starts on the next even position,
    so offset 1 starts on a block's cosine half)."""
    assert cpu_isa(isa)
    num_threads(threads)
    sizes = [(1 << 17) - 1, 1 << 17, (1 << 17) + 1, 3 * (1 << 16) + 65]
    for offset in (0, 1, 3):
        want = _want(kind, SEED, 5, offset, max(sizes))
        for n in sizes:
            got = bits(draw(kind, n, SEED, 5, offset, "float64"))
            assert np.array_equal(got, want[:n]), (kind, offset, n)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", KINDS)
def test_simd_tails(isa, kind, cpu_isa):
    """Every size up to past two of the widest float64 SIMD steps (64 blocks, 128 values), then
    sizes through several steps, from offsets 0..7: the blocks a vector step does not fill fall
    to the narrower step and the scalar loop at the right positions."""
    assert cpu_isa(isa)
    sizes = list(range(0, 300)) + list(range(300, 1400, 7)) + [1024, 1025, 1087, 1151]
    for offset in range(8):
        want = _want(kind, SEED, 9, offset, 1400)
        for n in sizes:
            got = bits(draw(kind, n, SEED, 9, offset, "float64"))
            assert np.array_equal(got, want[:n]), (kind, offset, n)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", KINDS)
def test_wraps(isa, kind, cpu_isa):
    """Requests that cross the wrap of positions past 2^64 (block indices past 2^62), from even
    and odd offsets, and SIMD groups whose block index carries from the low into the high
    counter word (positions around 2^34)."""
    assert cpu_isa(isa)
    offsets = [U64 - k for k in range(1, 10)] + [U64 - 2 * 64 * 2 - 1, U64 - 4 * 33]
    offsets += [(1 << 34) - 4 * k - j for k in (1, 5, 40) for j in (0, 1, 2)]
    for offset in offsets:
        for n in (1, 2, 37, 300):
            got = bits(draw(kind, n, SEED, 3, offset, "float64"))
            want = _want(kind, SEED, 3, offset, n)
            assert np.array_equal(got, want), (kind, hex(offset), n)


# --------------------------------------------------------------------------------------------
# The transform at chosen words


def _transform(kind, words):
    """The selected path's values of the blocks with the given words ((n, 4) uint32)."""
    w = np.ascontiguousarray(words, dtype=np.uint32)
    out = np.empty(2 * w.shape[0], np.float64)
    _C.transform_cpu(KIND_CODE[kind], _C.DT_FLOAT64, w.ctypes.data, out.ctypes.data, w.shape[0])
    return out


def _ref_normals(w):
    r = ref.radius64(w[:, 0], w[:, 1])
    s, c = ref.angle64(w[:, 2], w[:, 3])
    return np.stack([r * s, r * c], axis=1).reshape(-1)


def _ref_uniforms(w):
    """Spec section 6: ((w0 << 21) | (w1 >> 11)) * 2^-53 (exact), for both word pairs."""
    w = w.astype(np.uint64)
    m01 = (w[:, 0] << np.uint64(21)) | (w[:, 1] >> np.uint64(11))
    m23 = (w[:, 2] << np.uint64(21)) | (w[:, 3] >> np.uint64(11))
    return np.stack([m01, m23], axis=1).reshape(-1).astype(np.float64) * 2.0**-53


def _pad(words, rng):
    """Padded with random blocks to whole groups of 64 (the widest SIMD step), so that every
    chosen block goes through the SIMD lanes on SIMD paths."""
    extra = (-len(words)) % 64
    pad = rng.integers(0, 1 << 32, size=(extra, 4), dtype=np.uint64).astype(np.uint32)
    return np.concatenate([words, pad])


def _pair_words(m, rng):
    """(w0, w1) whose 53-bit value (w0 << 21) | (w1 >> 11) is m, with random ignored bits."""
    m = np.asarray(m, dtype=np.uint64)
    junk = rng.integers(0, 1 << 11, size=m.shape, dtype=np.uint64)
    w0 = (m >> np.uint64(21)).astype(np.uint32)
    w1 = (((m & np.uint64((1 << 21) - 1)) << np.uint64(11)) | junk).astype(np.uint32)
    return w0, w1


def _angle_words(q, t, rng):
    """(w2, w3) of quadrant q and 53-bit angle t, with random ignored bits."""
    t = np.asarray(t, dtype=np.uint64)
    junk = rng.integers(0, 1 << 9, size=t.shape, dtype=np.uint64)
    w2 = ((np.uint64(q) << np.uint64(30)) | (t >> np.uint64(23))).astype(np.uint32)
    w3 = (((t & np.uint64((1 << 23) - 1)) << np.uint64(9)) | junk).astype(np.uint32)
    return w2, w3


def _windows(centres, half, lo, hi):
    vals = set()
    for c in centres:
        vals.update(range(max(lo, c - half), min(hi, c + half)))
    return np.array(sorted(vals), dtype=np.uint64)


def _radius_ns():
    """n = 2^53 - m, u = n 2^-53. Every n below 2^16 (u's exponents -53 .. -38 in full); n at
    each power of two (u's exponent, logD's k, steps); n where u's significand crosses
    logD's reduction threshold (its top 20 fraction bits reach 0x6a09e: k steps again); n
    around multiples of 2^32 (where a two-piece conversion splits) up to 2^53 itself (m = 0:
    u = 1, r = -0); every m below 2^16 (u next to 1)."""
    centres = [1 << j for j in range(16, 54)]
    for e in range(0, 53):
        step = 0x6A09E << e  # the threshold's fraction at exponent e, times 2^20
        centres.append((1 << e) + -(-step >> 20))
    centres += [k << 32 for k in (1, 2, 3, 0x100000, 0x1FFFFF, 0x200000)]
    ns = _windows(centres, 256, 1, TWO53 + 1)
    ns = np.union1d(ns, np.arange(1, 1 << 16, dtype=np.uint64))
    return np.union1d(ns, TWO53 - np.arange(0, 1 << 16, dtype=np.uint64))


def _angle_ts():
    """t at 0, the mirror point 2^52 (t = 2^52 is not mirrored, 2^52 + 1 is), the top 2^53 - 1
    (mirrored to 1), each power of two (a's exponent steps), and around multiples of 2^32 on
    both sides of the mirror (the conversion's split, after mirroring)."""
    centres = [0, 1 << 52, TWO53] + [1 << j for j in range(0, 53)]
    for k in (1, 2, 0xFFFFF, 0x100000):
        centres += [k << 32, TWO53 - (k << 32)]
    return _windows(centres, 96, 0, TWO53)


@functools.cache
def _unit_radius_m():
    """A radius value m with r = 1.0 exactly (by the reference), so that a block's normals are
    its sine and cosine themselves."""
    m0 = int((1 - np.exp(-0.5)) * TWO53)
    m = np.arange(m0 - 4096, m0 + 4096, dtype=np.uint64)
    w0, w1 = _pair_words(m, np.random.default_rng(0))
    hits = np.nonzero(ref.radius64(w0, w1) == 1.0)[0]
    assert len(hits) > 0
    return int(m[hits[0]])


@functools.cache
def _radius_case():
    rng = np.random.default_rng(11)
    ns = _radius_ns()
    m = np.concatenate([TWO53 - ns, rng.integers(0, TWO53, size=1 << 14, dtype=np.uint64)]).astype(
        np.uint64
    )
    w0, w1 = _pair_words(m, rng)
    zeros = np.zeros_like(w0)  # t = 0 in quadrant 0: sin +0, cos 1, so the cosine half is r
    words = _pad(np.stack([w0, w1, zeros, zeros], axis=1), rng)
    return words, bits(_ref_normals(words)), len(m)


@functools.cache
def _angle_case():
    rng = np.random.default_rng(12)
    ts = _angle_ts()
    rows = []
    for q in range(4):
        t = np.concatenate([ts, rng.integers(0, TWO53, size=1 << 12, dtype=np.uint64)])
        w2, w3 = _angle_words(q, t, rng)
        rows.append(np.stack([w2, w3], axis=1))
    # a sweep over the top 18 bits of (quadrant, t), the rest random
    top = np.arange(1 << 18, dtype=np.uint32) << np.uint32(14)
    low = rng.integers(0, 1 << 14, size=top.shape, dtype=np.uint64).astype(np.uint32)
    w3 = rng.integers(0, 1 << 32, size=top.shape, dtype=np.uint64).astype(np.uint32)
    rows.append(np.stack([top | low, w3], axis=1))
    w23 = np.concatenate(rows)
    w0, w1 = _pair_words(np.full(len(w23), _unit_radius_m(), dtype=np.uint64), rng)
    words = _pad(np.column_stack([w0, w1, w23]), rng)
    return words, bits(_ref_normals(words)), len(w23)


@functools.cache
def _uniform_case():
    rng = np.random.default_rng(13)
    centres = [0, TWO53] + [k << 32 for k in (1, 2, 0x1FFFFF)] + [1 << j for j in range(53)]
    m = np.concatenate(
        [_windows(centres, 128, 0, TWO53), rng.integers(0, TWO53, size=1 << 12, dtype=np.uint64)]
    )
    w0, w1 = _pair_words(m, rng)
    w2, w3 = _pair_words(m[::-1].copy(), rng)
    words = _pad(np.stack([w0, w1, w2, w3], axis=1), rng)
    return words, bits(_ref_uniforms(words))


@pytest.mark.parametrize("isa", ISAS)
def test_transform_is_the_stream(isa, cpu_isa):
    """The transform entry on the stream's own words gives the stream's values (so the edge
    tests below test what the fill loops compute)."""
    assert cpu_isa(isa)
    nblocks = 64 * 3 + 17
    w = ref.words(SEED, 2, 0, 4 * nblocks).reshape(-1, 4)
    for kind in KINDS:
        got = bits(_transform(kind, w))
        assert np.array_equal(got, bits(draw(kind, 2 * nblocks, SEED, 2, 0, "float64"))), kind
        assert np.array_equal(got, _want(kind, SEED, 2, 0, 2 * nblocks)), kind


@pytest.mark.parametrize("isa", ISAS)
def test_radius_regimes(isa, cpu_isa):
    """The radius (logD, sqrt) at every edge of _radius_ns, bit for bit, with the cosine half
    of each block equal to the radius itself (angle 0)."""
    assert cpu_isa(isa)
    words, want, n = _radius_case()
    got = bits(_transform("normal", words))
    bad = np.nonzero(got != want)[0]
    assert len(bad) == 0, [[hex(int(x)) for x in words[i // 2]] for i in bad[:4]]
    r = ref.radius64(words[:n, 0], words[:n, 1])
    assert np.array_equal(got[1 : 2 * n : 2], bits(r))  # the test means what it says


@pytest.mark.parametrize("isa", ISAS)
def test_angle_regimes(isa, cpu_isa):
    """sin/cos at the angle's edges (_angle_ts) in all four quadrants plus a sweep of the top 18
    bits of (quadrant, t), with a radius of exactly 1 so the values are sin and cos themselves."""
    assert cpu_isa(isa)
    words, want, n = _angle_case()
    got = bits(_transform("normal", words))
    bad = np.nonzero(got != want)[0]
    assert len(bad) == 0, [[hex(int(x)) for x in words[i // 2]] for i in bad[:4]]
    s, c = ref.angle64(words[:n, 2], words[:n, 3])
    assert np.array_equal(got[0 : 2 * n : 2], bits(s))  # the values are sin and cos themselves
    assert np.array_equal(got[1 : 2 * n : 2], bits(c))


@pytest.mark.parametrize("isa", ISAS)
def test_uniform_conversion_edges(isa, cpu_isa):
    """float64 uniforms at 53-bit values 0, 2^53 - 1, each power of two and multiples of 2^32."""
    assert cpu_isa(isa)
    words, want = _uniform_case()
    got = bits(_transform("uniform", words))
    bad = np.nonzero(got != want)[0]
    assert len(bad) == 0, [[hex(int(x)) for x in words[i // 2]] for i in bad[:4]]


def test_edge_sets_reach_the_regimes():
    """The edge sets hold what their docstrings say (checked with the reference's own steps)."""
    ns = _radius_ns()
    u = ns.astype(np.float64) * 2.0**-53
    assert len(np.unique(np.frexp(u)[1])) == 54  # every exponent of u in [2^-53, 1]
    hi = (u.view(np.uint64) >> np.uint64(32)) & np.uint64(0xFFFFF)
    # both sides of logD's reduction threshold at every exponent where u has 20 fraction bits
    for e in range(-33, 0):
        sel = np.frexp(u)[1] == e + 1
        assert (hi[sel] >= 0x6A09E).any() and (hi[sel] < 0x6A09E).any(), e
    assert TWO53 in set(ns.tolist()) and 1 in set(ns.tolist())
    ts = _angle_ts()
    assert {0, 1 << 52, (1 << 52) + 1, TWO53 - 1} <= set(ts.tolist())
    assert ts.max() < TWO53
    assert ref.radius64(*_pair_words([_unit_radius_m()], np.random.default_rng(1)))[0] == 1.0


def test_transform_entry_checks_arguments():
    w = np.zeros((1, 4), np.uint32)
    out = np.empty(2, np.float64)
    with pytest.raises(ValueError):
        _C.transform_cpu(_C.KIND_WORDS, _C.DT_FLOAT64, w.ctypes.data, out.ctypes.data, 1)
    with pytest.raises(ValueError):
        _C.transform_cpu(_C.KIND_NORMAL, _C.DT_FLOAT64, 0, out.ctypes.data, 1)
    with pytest.raises(ValueError):
        _C.transform_cpu(_C.KIND_NORMAL, _C.DT_FLOAT64, w.ctypes.data, 0, 1)


def test_random_words_every_path():
    """Random blocks (fixed seed) through the SIMD steps and a scalar tail on every path."""
    rng = np.random.default_rng(21)
    w = rng.integers(0, 1 << 32, size=(64 * 40 + 13, 4), dtype=np.uint64).astype(np.uint32)
    before = _C.cpu_isa_selected()
    try:
        for kind in KINDS:
            want = bits(_ref_normals(w) if kind == "normal" else _ref_uniforms(w))
            for isa in ISAS:
                assert _C.cpu_isa_select(isa)
                assert np.array_equal(bits(_transform(kind, w)), want), (isa, kind)
    finally:
        _C.cpu_isa_select(before)
