"""The compiled CPU paths against the spec's own values and the independent NumPy reference."""

import random

import numpy as np
import pytest
import torch
from conftest import TORCH_DTYPES, bits, draw, ref_bits

import fastrand
from fastrand import _C
from fastrand import reference as ref

U64 = 1 << 64
SEED = 0x9ABCDEF012345678
ISAS = _C.cpu_isa_available()

# Spec section 1: Random123 known-answer vectors.
KAT = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (
        [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
        [0xA4093822, 0x299F31D0],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ),
]
# Spec section 3: golden words and float32 values (seed 0x9abcdef012345678, stream 0).
GOLDEN_WORDS = [
    0x0279B337,
    0xECB5BD8D,
    0xE611C4F6,
    0x44ECE875,
    0xEB897A36,
    0x4FCDF6B6,
    0xFBA23D8C,
    0x6EED5B47,
    0x207B164B,
    0x5D52B9CA,
    0xBA2C9175,
    0x19DEE812,
]
GOLDEN_F32 = [
    0xBFB1C488,
    0x402D7EBD,
    0x3EEAE647,
    0xBD64490D,
    0x3EC17742,
    0xBE1E1A1A,
    0x3D9A900D,
    0xBE2D8193,
    0x3FC3981B,
    0xBFAB71EA,
    0x3EF261A8,
    0x3F247EBA,
]


def _golden64_from_doc():
    import pathlib
    import re

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "noise-stream.md"
    text = doc.read_text()
    sec = text[text.index("## 5.") : text.index("## 6.")]
    block = sec[sec.index("Golden values") :]
    return [int(h, 16) for h in re.findall(r"\b([0-9a-f]{16})\b", block)][:6]


@pytest.mark.parametrize("ctr,key,out", KAT)
def test_philox_known_answers(ctr, key, out):
    assert list(_C.philox(ctr, key)) == out


@pytest.mark.parametrize("isa", ISAS)
def test_spec_golden_values(isa, cpu_isa):
    assert cpu_isa(isa)
    assert bits(draw("words", 12, SEED)).tolist() == GOLDEN_WORDS
    assert bits(draw("normal", 12, SEED)).tolist() == GOLDEN_F32
    g64 = _golden64_from_doc()
    assert len(g64) == 6
    assert bits(draw("normal", 6, SEED, dtype="float64")).tolist() == g64
    assert bits(ref.normal(SEED, 0, 0, 6, "float64")).tolist() == g64


def _random_cases(rng, count):
    sizes = [
        0,
        1,
        2,
        3,
        4,
        5,
        7,
        8,
        63,
        64,
        65,
        1000,
        4099,
        (1 << 16) - 1,
        (1 << 16) + 3,
        (1 << 17) + 5,
        3 * (1 << 16) + 7,
    ]
    offsets = lambda: rng.choice(
        [
            0,
            1,
            2,
            3,
            5,
            rng.randrange(1 << 20),
            rng.randrange(U64),
            U64 - rng.randrange(1, 9),
            (1 << 32) - 3,
        ]
    )
    for _ in range(count):
        yield (
            rng.randrange(U64),
            rng.choice([0, 0, 1, rng.randrange(U64)]),
            offsets(),
            rng.choice(sizes),
        )


KINDS = (
    [("normal", d) for d in TORCH_DTYPES]
    + [("uniform", d) for d in TORCH_DTYPES]
    + [("words", "float32")]
)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind,dtype", KINDS)
def test_compiled_equals_reference(isa, kind, dtype, cpu_isa):
    assert cpu_isa(isa)
    rng = random.Random(hash((isa, kind, dtype)) & 0xFFFF)
    for seed, stream, offset, n in _random_cases(rng, 12):
        got = bits(draw(kind, n, seed, stream, offset, dtype))
        want = ref_bits(kind, seed, stream, offset, n, dtype)
        assert np.array_equal(got, want), (isa, kind, dtype, seed, stream, offset, n)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", list(TORCH_DTYPES))
def test_thread_split_boundaries(isa, threads, dtype, cpu_isa, num_threads):
    """Sizes around where requests split across threads; results never depend on threads."""
    assert cpu_isa(isa)
    num_threads(threads)
    for n in [(1 << 16) * 2 - 1, (1 << 16) * 2, (1 << 16) * 2 + 1, (1 << 16) * 3 + 65]:
        for offset in (0, 3):
            got = bits(draw("normal", n, 11, 0, offset, dtype))
            want = ref_bits("normal", 11, 0, offset, n, dtype)
            assert np.array_equal(got, want), (n, offset)


@pytest.mark.parametrize("dtype", list(TORCH_DTYPES))
def test_concatenation_and_slicing(dtype):
    dt = TORCH_DTYPES[dtype]
    g = fastrand.Generator(5, offset=7)
    parts = [fastrand.randn(k, generator=g, dtype=dt) for k in (1, 3, 6, 1000, 5)]
    whole = fastrand.randn(1015, generator=fastrand.Generator(5, offset=7), dtype=dt)
    assert np.array_equal(bits(torch.cat(parts)), bits(whole))
    step = 2 if dtype == "float64" else 1
    start = 8 if dtype == "float64" else 7  # float64 starts at the first even position
    for a, b in [(0, 10), (3, 17), (500, 1015)]:
        sl = fastrand.randn(
            b - a, generator=fastrand.Generator(5, offset=start + step * a), dtype=dt
        )
        assert np.array_equal(bits(whole[a:b]), bits(sl)), (a, b)


def test_offset_advance():
    g = fastrand.Generator(1, offset=5)
    fastrand.randn(10, generator=g)
    assert g.get_offset() == 15
    fastrand.randn(3, generator=g, dtype=torch.float64)  # starts at 16, two positions each
    assert g.get_offset() == 22
    fastrand.rand(2, generator=g, dtype=torch.float64)
    assert g.get_offset() == 26
    fastrand.random_words(4, generator=g)
    assert g.get_offset() == 30
    g.set_offset(U64 - 1)
    fastrand.randn(3, generator=g, dtype=torch.float64)  # start wraps to 0
    assert g.get_offset() == 6


def test_wraparound_past_2_64():
    n = 16
    for kind, dtype in [("words", "float32"), ("normal", "float32"), ("normal", "float64")]:
        got = bits(draw(kind, n, SEED, 3, U64 - 5, dtype))
        assert np.array_equal(got, ref_bits(kind, SEED, 3, U64 - 5, n, dtype))
    # word-level: the positions after 2^64 - 1 are positions 0, 1, ...
    w = bits(draw("words", 8, SEED, 0, U64 - 4))
    assert np.array_equal(w[4:], bits(draw("words", 4, SEED, 0, 0)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_is_float32_rounded(dtype):
    dt = TORCH_DTYPES[dtype]
    n = 1 << 21
    f32 = draw("normal", n, 77, 0, 1)
    low = draw("normal", n, 77, 0, 1, dtype)
    assert np.array_equal(bits(low), bits(f32.to(dt)))
    if dtype == "float16":  # the draw must reach the subnormal halves for this to mean much
        assert int((f32.abs() < 2.0**-14).sum()) > 50


def test_flush_denormal_changes_nothing():
    want = {d: bits(draw("normal", 1 << 17, 9, 0, 3, d)) for d in TORCH_DTYPES}
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        for d in TORCH_DTYPES:
            assert np.array_equal(bits(draw("normal", 1 << 17, 9, 0, 3, d)), want[d])
    finally:
        torch.set_flush_denormal(False)


def test_one_and_two_threads_agree(num_threads):
    out = []
    for t in (1, 2):
        num_threads(t)
        out.append(bits(draw("normal", (1 << 20) + 17, 4, 1, 9)))
    assert np.array_equal(out[0], out[1])


def test_forced_isa_environment():
    """FASTRAND_CPU_ISA=scalar forces the portable path in a fresh process."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, FASTRAND_CPU_ISA="scalar")
    code = "import json, fastrand; print(json.dumps(fastrand.build_info()))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out)["cpu_isa_selected"] == "scalar"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(
    "kind,dtype",
    [
        ("normal", "float32"),
        ("normal", "float16"),
        ("normal", "bfloat16"),
        ("uniform", "float16"),
        ("words", "float32"),
    ],
)
def test_simd_vector_tails(isa, kind, dtype, cpu_isa):
    """Every size up to three 16-block SIMD groups, then sizes through the 2- and 4-group
    steps (up to 4 x 4 x 16 blocks), and every start inside a block: the blocks a vector step
    does not fill fall to the narrower steps and the scalar loop at the right positions."""
    assert cpu_isa(isa)
    seed, stream = 0x1234_5678_9ABC_DEF0, 77
    sizes = list(range(0, 3 * 64 + 36)) + list(range(228, 1300, 11)) + [1023, 1024, 1025, 1280]
    want = ref_bits(kind, seed, stream, 0, 1300 + 8, dtype)
    for offset in range(4):
        for n in sizes:
            got = bits(draw(kind, n, seed, stream, offset, dtype))
            assert np.array_equal(got, want[offset : offset + n]), (offset, n)
    # a group that straddles the 2^32 boundary of the block index (carry into the high word)
    # and the 2^62 wrap of block indices
    for offset in ((1 << 34) - 4 * 5, (1 << 64) - 4 * 7 - 1):
        got = bits(draw(kind, 200, seed, stream, offset, dtype))
        assert np.array_equal(got, ref_bits(kind, seed, stream, offset, 200, dtype)), offset


def _probe(which, first, count):
    out = np.empty(count * (1 if which == _C.PROBE_RADIUS32 else 2), np.float32)
    _C.probe_cpu(which, out.ctypes.data, first, count, 2)
    return out.view(np.uint32)


def _radius_windows():
    """Radius words where the float32 math changes regime: u = float(w0) 2^-32 + 2^-33 crosses
    a power of two (logC's exponent steps) near w0 = 2^k, logC's mantissa crosses SQRTHF near
    w0 = SQRTHF 2^(k+1), u rounds to 1 (radius -0) at the top; plus a random window."""
    wins = [
        (0, 1 << 14),
        ((1 << 32) - (1 << 14), 1 << 14),
        (random.Random(5).randrange(1 << 32 - 18) << 18, 1 << 18),
    ]
    for k in range(1, 32):
        for centre in (1 << k, int(0.70710678 * (1 << (k + 1)))):
            lo = max(0, centre - 512)
            wins.append((lo, min(1024, (1 << 32) - lo)))
    # u's significand exactly at SQRTHF's (0xb504f3) and its neighbours: w0 = M << s gives
    # u = M 2^(s-32) for s >= 1 (the 2^-33 is below half an ulp), w0 = (M - 1) / 2 gives
    # u = M 2^-33 exactly
    for m in range(0xB504F3 - 3, 0xB504F3 + 4):
        wins += [(m << s, 1) for s in range(1, 9)]
    wins.append(((0xB504F3 - 1) // 2 - 8, 16))
    return wins


def test_radius_regimes_equal_reference():
    """The header's radius32 (compiled, scalar) against the reference at every regime edge."""
    for first, count in _radius_windows():
        got = _probe(_C.PROBE_RADIUS32, first, count)
        want = bits(
            ref.radius32(np.arange(first, first + count, dtype=np.uint64).astype(np.uint32))
        )
        assert np.array_equal(got, want), hex(first)


def test_angle_regimes_equal_reference():
    """sin/cos at the angle's edges in every quadrant: t near 0, the mirror point 2^23 and the
    quadrant end, plus a random window (w1 = i << 6, i = quadrant * 2^24 + t)."""
    wins = [(random.Random(6).randrange(1 << 26 - 18) << 18, 1 << 18)]
    for q in range(4):
        base = q << 24
        wins += [(base, 4096), (base + (1 << 23) - 2048, 4096), (base + (1 << 24) - 4096, 4096)]
    for first, count in wins:
        got = _probe(_C.PROBE_ANGLE32, first, count).reshape(-1, 2)
        s, c = ref.angle32(np.arange(first, first + count, dtype=np.uint32) << np.uint32(6))
        assert np.array_equal(got[:, 0], bits(s)), hex(first)
        assert np.array_equal(got[:, 1], bits(c)), hex(first)
