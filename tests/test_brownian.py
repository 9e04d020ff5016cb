"""fastrand.BrownianTree and the SDE noise samplers (docs/brownian-tree.md, "Brownian tree v1").

Known answers come from `reference_w` below: an independent NumPy implementation of the
frozen layout (each grid point computed recursively from its own parent interval, node normals
from `fastrand.reference.normal`), never from the code under test. Statistical tests use 10^5
paths (one tree of size (100000,)), fixed seeds, and thresholds of about 5 standard errors.
"""

from __future__ import annotations

import copy
import gc
import math
import pickle
import random
import threading
import types
import warnings

import numpy as np
import pytest
import torch

import fastrand
from fastrand import reference
from fastrand._brownian import ANCESTRAL_STREAM, MAX_DEPTH, SAMPLER_STREAM

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
NP = {torch.float32: np.float32, torch.float64: np.float64}
UINT = {torch.float32: np.uint32, torch.float64: np.uint64}


# --------------------------------------------------------------------------------------------
# the NumPy reference of Brownian tree v1
def reference_depth(t0, t1, tol):
    width = t1 - t0
    d = 0
    while d < MAX_DEPTH and width / 2.0**d > tol:
        d += 1
    return d


def reference_index(t, t0, t1, depth):
    cells = 2**depth
    x = (float(t) - t0) / (t1 - t0) * cells
    return int(min(max(np.rint(x), 0), cells))


def reference_w(t0, t1, size, seed, stream, dtype, tol, times):
    """W(t) for each t of `times` (NumPy arrays of `size`), straight from the definition."""
    t0, t1 = float(t0), float(t1)
    ft = NP[dtype]
    name = "float64" if dtype == torch.float64 else "float32"
    depth = reference_depth(t0, t1, tol)
    cells = 2**depth
    width = t1 - t0
    numel = math.prod(size)
    words = 2 if dtype == torch.float64 else 1
    stride = ((words * numel + 3) // 4) * 4

    def z(node):
        return np.asarray(reference.normal(seed, stream, node * stride % 2**64, numel, name), ft)

    def scale(level):
        return ft(math.sqrt(width / 2.0 ** (level + 1))) if level else ft(math.sqrt(width))

    memo = {}

    def w(m):
        if m in memo:
            return memo[m]
        if m == 0:
            out = np.zeros(numel, ft)
        elif m == cells:
            out = scale(0) * z(0)
        else:
            v = 0
            while not (m >> v) & 1:
                v += 1
            level = depth - v
            node = 2 ** (level - 1) + ((m >> v) - 1) // 2
            out = (w(m - 2**v) + w(m + 2**v)) * ft(0.5) + scale(level) * z(node)
        memo[m] = out
        return out

    return [w(reference_index(t, t0, t1, depth)).reshape(size) for t in times]


def bits(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().contiguous().numpy()
    return np.ascontiguousarray(t).view(
        UINT[torch.float64 if t.dtype == np.float64 else torch.float32]
    )


# (t0, t1, size, seed, stream, dtype, tol, times)
KNOWN_CASES = [
    (0.0, 1.0, (4,), 0x9ABCDEF012345678, 0, torch.float32, 0.125, [k / 8 for k in range(9)]),
    (0.0, 1.0, (4,), 0x9ABCDEF012345678, 0, torch.float64, 0.125, [0.375, 1.0]),
    (-2.5, 3.0, (3,), 5, 11, torch.float32, 1e-6, [-2.5, -1.0, 0.123456, 2.9999999, 3.0]),
    (0.0292, 14.6146, (2, 5), 2**64 - 1, 2**63, torch.float64, 1e-6, [0.03, 1.7, 14.0]),
    (1e-3, 2e-3, (7,), 0, 0, torch.float32, 1e-9, [1.00001e-3, 1.5e-3, 1.99e-3]),
    (0.0, 1e6, (1,), 123, 0, torch.float32, 1e-6, [0.5, 333333.3]),  # depth capped at 40
]


@pytest.mark.parametrize("case", KNOWN_CASES, ids=lambda c: f"{c[5]}-{c[2]}-tol{c[6]}")
def test_known_answers_equal_numpy_reference(case):
    t0, t1, size, seed, stream, dtype, tol, times = case
    tree = fastrand.BrownianTree(t0, t1, size, seed=seed, stream=stream, dtype=dtype, tol=tol)
    assert tree.depth == reference_depth(t0, t1, tol)
    expected = reference_w(t0, t1, size, seed, stream, dtype, tol, times)
    for t, e in zip(times, expected):
        got = tree(t)
        assert got.dtype == dtype and tuple(got.shape) == size
        assert np.array_equal(bits(got), bits(e)), (t, got, e)
    # the GPU's way (normals of up to 8 nodes drawn into one buffer, one multiplication)
    batched = fastrand.BrownianTree(t0, t1, size, seed=seed, stream=stream, dtype=dtype, tol=tol)
    batched._batch = 8
    for t, e in zip(times, expected):
        assert np.array_equal(bits(batched(t)), bits(e)), t
    # increments are W(tb) - W(ta), one rounding
    for (ta, ea), (tb, eb) in zip(zip(times, expected), zip(times[1:], expected[1:])):
        assert np.array_equal(bits(tree(ta, tb)), bits(eb - ea))
        assert np.array_equal(bits(tree(tb, ta)), bits(ea - eb))


# Brownian tree v1 known answers as printed in docs/brownian-tree.md (from reference_w)
DOC_SEED = 0x9ABCDEF012345678
DOC_W32 = {  # t0=0, t1=1, size=(4,), stream 0, float32, tol=0.125 (depth 3)
    0.125: ["be976f2b", "beca695c", "3e932c4d", "3eea445c"],
    0.5: ["bf0166b8", "3fa39d1b", "3e88c525", "bde693d6"],
    0.875: ["bfa0984e", "4011bbd1", "be8cd5bc", "3d926f83"],
    1.0: ["bfb1c488", "402d7ebd", "3eeae647", "bd64490d"],  # = stream v1 golden block 0
}
DOC_W64 = {  # the same tree in float64
    0.5: ["bfd326904489b793", "3f9364b8565db746", "3fda780751cef8b5", "3fed934e9dbabe1c"],
    1.0: ["bfb535bc3e7abed0", "3fbcb34728c1f788", "bfcec68dd93b3193", "4001e151d33ed4a6"],
}
DOC_SAMPLER = ["bef4ce5f", "3f9d4bb4"]  # x (2,) float32, sigmas [0.5, 2], seed 7: (2.0, 1.25)


def test_doc_known_answers():
    for dtype, table, width in [(torch.float32, DOC_W32, 8), (torch.float64, DOC_W64, 16)]:
        ref = reference_w(0.0, 1.0, (4,), DOC_SEED, 0, dtype, 0.125, list(table))
        tree = fastrand.BrownianTree(0.0, 1.0, (4,), seed=DOC_SEED, dtype=dtype, tol=0.125)
        for (t, hexes), r in zip(table.items(), ref):
            expected = np.array([int(h, 16) for h in hexes], UINT[dtype])
            assert np.array_equal(bits(r), expected), (t, [f"{b:0{width}x}" for b in bits(r)])
            assert np.array_equal(bits(tree(t)), expected), t
    sampler = fastrand.BrownianTreeNoiseSampler(torch.zeros(2), 0.5, 2.0, seed=7)
    out = sampler(torch.tensor(2.0), torch.tensor(1.25))
    assert np.array_equal(bits(out), np.array([int(h, 16) for h in DOC_SAMPLER], np.uint32))


def test_layout_rules():
    # depth: smallest D with a cell <= tol; nodes are heap-numbered and independent of D
    tree = fastrand.BrownianTree(0.0, 1.0, (3,), seed=1, tol=1e-6)
    assert tree.depth == 20 and fastrand.BrownianTree(0, 1, (3,), seed=1, tol=1.0).depth == 0
    assert fastrand.BrownianTree(0, 1e6, (3,), seed=1, tol=1e-9).depth == MAX_DEPTH
    coarse = fastrand.BrownianTree(0.0, 1.0, (3,), seed=1, tol=0.125)
    for k in range(9):  # dyadic points of the coarse grid: the same values at any depth
        assert np.array_equal(bits(tree(k / 8)), bits(coarse(k / 8)))
    # the root is stream v1 at offset 0 scaled by sqrt(t1 - t0); node 1 sits at one stride
    root = np.float32(math.sqrt(2.0)) * reference.normal(3, 4, 0, 5, "float32")
    t2 = fastrand.BrownianTree(1.0, 3.0, (5,), seed=3, stream=4, dtype=torch.float32)
    assert np.array_equal(bits(t2(3.0)), bits(root))
    z1 = reference.normal(3, 4, 8, 5, "float32")  # stride: 5 rounded up to 8 positions
    mid = (root * np.float32(0.5)) + np.float32(math.sqrt(0.5)) * z1
    assert np.array_equal(bits(t2(2.0)), bits(mid))


# --------------------------------------------------------------------------------------------
# exactness
def test_reversal_repeat_fresh_object_and_clamping():
    tree = fastrand.BrownianTree(0.1, 2.0, (6, 7), seed=42, dtype=torch.float32)
    a, b = tree(0.3, 1.7), tree(1.7, 0.3)
    assert np.array_equal(bits(b), bits(-a))
    assert np.array_equal(bits(tree(0.3, 1.7)), bits(a))
    fresh = fastrand.BrownianTree(0.1, 2.0, (6, 7), seed=42, dtype=torch.float32)
    assert np.array_equal(bits(fresh(0.3, 1.7)), bits(a))
    assert np.array_equal(bits(tree(0.5, 0.5)), np.zeros((6, 7), np.uint32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(bits(tree(-5.0, 99.0)), bits(tree(0.1, 2.0)))
        assert np.array_equal(bits(tree(-5.0)), np.zeros((6, 7), np.uint32))
        assert np.array_equal(bits(tree(1e300)), bits(tree(2.0)))
    # tensors and NumPy scalars are accepted as times
    assert np.array_equal(bits(tree(torch.tensor(0.3), np.float64(1.7))), bits(a))


def test_query_order_and_cache_independence():
    rng = random.Random(0)
    points = [rng.uniform(0.0, 1.0) for _ in range(40)] + [0.0, 1.0, 0.5]
    big = fastrand.BrownianTree(0.0, 1.0, (33,), seed=9, stream=2)
    expected = {p: bits(big(p)) for p in points}
    for _ in range(3):
        order = points[:]
        rng.shuffle(order)
        small = fastrand.BrownianTree(0.0, 1.0, (33,), seed=9, stream=2, cache_bytes=0)
        for p in order:
            assert np.array_equal(bits(small(p)), expected[p])
        small.clear_cache()
        assert np.array_equal(bits(small(order[0])), expected[order[0]])
    # results are never cached storage: later queries (which reuse evicted nodes) leave them be
    small = fastrand.BrownianTree(0.0, 1.0, (33,), seed=9, stream=2, cache_bytes=0)
    kept = [(p, small(p), small(0.0, p)) for p in points]
    for p, w, inc in kept:
        assert np.array_equal(bits(w), expected[p]) and np.array_equal(bits(inc), expected[p])


def test_additivity_within_rounding():
    tree = fastrand.BrownianTree(0.0, 1.0, (100000,), seed=7, dtype=torch.float32)
    a, b, c = 0.13, 0.52, 0.91
    lhs = tree(a, b).double() + tree(b, c).double()
    rhs = tree(a, c).double()
    wa, wb, wc = (tree(t).double().abs() for t in (a, b, c))
    eps = torch.finfo(torch.float32).eps
    assert torch.all((lhs - rhs).abs() <= 2 * eps * (wa + wb + wc))


def test_threads_share_a_tree():
    points = [i / 37 for i in range(37)]
    expected = [bits(fastrand.BrownianTree(0, 1, (257,), seed=4)(p)) for p in points]
    tree = fastrand.BrownianTree(0, 1, (257,), seed=4, cache_bytes=0)
    errors = []

    def worker(k):
        try:
            for i in list(range(37))[k::3] * 2:
                assert np.array_equal(bits(tree(points[i])), expected[i])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_thread_count_does_not_change_bits():
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = bits(fastrand.BrownianTree(0, 3, (70000,), seed=5)(0.7, 2.2))
        torch.set_num_threads(max(2, n))
        many = bits(fastrand.BrownianTree(0, 3, (70000,), seed=5)(0.7, 2.2))
    finally:
        torch.set_num_threads(n)
    assert np.array_equal(one, many)


def test_dtypes_and_empty():
    t64 = fastrand.BrownianTree(0, 1, (5,), seed=1, dtype=torch.float64)
    assert t64(0.2, 0.9).dtype == torch.float64
    with torch.random.fork_rng():
        prev = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            assert fastrand.BrownianTree(0, 1, (5,), seed=1)(0.5).dtype == torch.float64
        finally:
            torch.set_default_dtype(prev)
    empty = fastrand.BrownianTree(0, 1, (0, 3), seed=1)
    assert empty(0.2, 0.4).shape == (0, 3)
    scalar = fastrand.BrownianTree(0, 1, (), seed=1)
    assert scalar(0.5).shape == ()


# --------------------------------------------------------------------------------------------
# statistics: 10^5 independent paths (the elements of one tree)
N = 100_000
SE = 1 / math.sqrt(N)


@pytest.fixture(scope="module")
def paths():
    return fastrand.BrownianTree(0.0, 1.0, (N,), seed=2024, dtype=torch.float64)


def grid_time(tree, t):
    return tree.grid_index(t) / 2**tree.depth * (tree.t1 - tree.t0) + tree.t0


@pytest.mark.parametrize(
    "ta,tb", [(0.3, 0.3 + 3e-6), (0.3, 0.30003), (0.25, 0.6), (0.0, 1.0), (0.97, 0.01)]
)
def test_increment_mean_variance_kurtosis(paths, ta, tb):
    dt = abs(grid_time(paths, tb) - grid_time(paths, ta))
    x = (paths(ta, tb) / math.sqrt(dt)).numpy()
    assert abs(x.mean()) < 5 * SE
    assert abs(x.var() - 1) < 5 * math.sqrt(2) * SE
    assert abs((x**4).mean() - 3) < 5 * math.sqrt(96) * SE


def test_disjoint_increments_uncorrelated(paths):
    cuts = [0.0, 0.1, 0.35, 0.350003, 0.8, 1.0]
    incs = [paths(a, b).numpy() for a, b in zip(cuts, cuts[1:])]
    for i in range(len(incs)):
        for j in range(i + 1, len(incs)):
            assert abs(np.corrcoef(incs[i], incs[j])[0, 1]) < 5 * SE, (i, j)


def test_covariance_is_min_s_t_minus_t0():
    tree = fastrand.BrownianTree(-0.5, 1.5, (N,), seed=77, dtype=torch.float64)
    for s, t in [(0.2, 0.9), (-0.4, 1.5), (0.77, 0.78)]:
        ws, wt = tree(s).numpy(), tree(t).numpy()
        expected = min(s, t) + 0.5
        sd = math.sqrt(((s + 0.5) * (t + 0.5) + expected**2) / N)
        assert abs((ws * wt).mean() - expected) < 5 * sd, (s, t)


def test_bridge_law(paths):
    a, b, c = 0.1, 0.37, 0.83
    wa, wb, wc = paths(a).numpy(), paths(b).numpy(), paths(c).numpy()
    lam = (b - a) / (c - a)
    r = wb - wa - lam * (wc - wa)
    var = (b - a) * (c - b) / (c - a)
    assert abs(r.mean()) < 5 * math.sqrt(var) * SE
    assert abs(r.var() / var - 1) < 5 * math.sqrt(2) * SE
    assert abs(np.corrcoef(r, wa)[0, 1]) < 5 * SE
    assert abs(np.corrcoef(r, wc - wa)[0, 1]) < 5 * SE


def test_nested_dpm_sde_correlation():
    # DPM-Solver SDE asks for (sigma, sigma_mid) and then (sigma, sigma_next)
    sampler = fastrand.BrownianTreeNoiseSampler(torch.zeros(N), 0.03, 14.6, seed=31)
    for a, b, c in [(14.6, 9.0, 5.0), (0.8, 0.55, 0.2), (0.05, 0.04, 0.03)]:
        x, y = sampler(a, b).double().numpy(), sampler(a, c).double().numpy()
        rho = math.sqrt((b - a) / (c - a))
        assert abs(np.corrcoef(x, y)[0, 1] - rho) < 5 * (1 - rho**2) * SE + 1e-3
        for v in (x, y):
            assert abs(v.mean()) < 5 * SE and abs(v.var() - 1) < 5 * math.sqrt(2) * SE


# --------------------------------------------------------------------------------------------
# noise samplers
def test_sampler_is_the_tree_increment_times_one_rounding():
    x = torch.zeros(3, 5)
    sampler = fastrand.BrownianTreeNoiseSampler(x, 0.5, 2.0, seed=7)
    tree = fastrand.BrownianTree(
        0.5, 2.0, (3, 5), seed=7, stream=SAMPLER_STREAM, dtype=torch.float32
    )
    s, sn = torch.tensor(2.0), torch.tensor(1.25)
    out = sampler(s, sn)
    factor = np.float32(1 / math.sqrt(0.75))
    assert np.array_equal(bits(out), bits(tree(2.0, 1.25).numpy() * factor))
    # a decreasing transform negates the noise, as in diffusers and k-diffusion
    neg = fastrand.BrownianTreeNoiseSampler(x, 0.5, 2.0, seed=7, transform=lambda v: -v)
    tneg = fastrand.BrownianTree(
        -2.0, -0.5, (3, 5), seed=7, stream=SAMPLER_STREAM, dtype=torch.float32
    )
    assert np.array_equal(bits(neg(s, sn)), bits(-(tneg(-2.0, -1.25).numpy() * factor)))
    # against the NumPy reference
    (wa, wb) = reference_w(0.5, 2.0, (3, 5), 7, SAMPLER_STREAM, torch.float32, 1e-6, [2.0, 1.25])
    assert np.array_equal(bits(out), bits((wb - wa) * factor))


def test_sampler_batch_size_independence_and_dtypes():
    x3 = torch.zeros(3, 2, 5)
    a = fastrand.BrownianTreeNoiseSampler(x3, 0.1, 10.0, seed=[3, 4, 5])(7.0, 3.0)
    b = fastrand.BrownianTreeNoiseSampler(torch.zeros(1, 2, 5), 0.1, 10.0, seed=[4])(7.0, 3.0)
    c = fastrand.BrownianTreeNoiseSampler(torch.zeros(2, 5), 0.1, 10.0, seed=4)(7.0, 3.0)
    assert np.array_equal(bits(a[1]), bits(b[0])) and np.array_equal(bits(b[0]), bits(c))
    assert not np.array_equal(bits(a[0]), bits(a[1]))
    half = fastrand.BrownianTreeNoiseSampler(x3.half(), 0.1, 10.0, seed=[3, 4, 5])(7.0, 3.0)
    assert half.dtype == torch.float16 and torch.equal(half, a.half())
    bf16 = fastrand.BrownianTreeNoiseSampler(x3.bfloat16(), 0.1, 10.0, seed=[3, 4, 5])(7.0, 3.0)
    assert bf16.dtype == torch.bfloat16 and torch.equal(bf16, a.bfloat16())
    f64 = fastrand.BrownianTreeNoiseSampler(x3.double(), 0.1, 10.0, seed=[3, 4, 5])(7.0, 3.0)
    assert f64.dtype == torch.float64
    # (as the README says: float64 x has a float64 tree, not the float32 noise widened)
    assert not torch.equal(f64.float(), a)
    cpu = fastrand.BrownianTreeNoiseSampler(x3, 0.1, 10.0, seed=[3, 4, 5], cpu=True)(7.0, 3.0)
    assert np.array_equal(bits(cpu), bits(a))


def test_sampler_seed_none_uses_torch_default_generator():
    x = torch.zeros(4)
    torch.manual_seed(123)
    first = fastrand.BrownianTreeNoiseSampler(x, 0.1, 1.0)(1.0, 0.5)
    after = torch.rand(1)
    torch.manual_seed(123)
    seed = torch.randint(0, 2**63 - 1, []).item()  # what diffusers and k-diffusion draw
    assert torch.equal(torch.rand(1), after)
    again = fastrand.BrownianTreeNoiseSampler(x, 0.1, 1.0, seed=seed)(1.0, 0.5)
    assert np.array_equal(bits(first), bits(again))


def test_default_noise_sampler():
    x = torch.zeros(2, 3, 4)
    ns = fastrand.default_noise_sampler(x, seed=5)
    a, b = ns(1.0, 0.5), ns(0.5, 0.2)
    g = fastrand.Generator(5, stream=ANCESTRAL_STREAM)
    assert torch.equal(a, fastrand.randn(2, 3, 4, generator=g))
    assert torch.equal(b, fastrand.randn(2, 3, 4, generator=g))
    rows = fastrand.default_noise_sampler(x, seed=[8, 9])()
    one = fastrand.default_noise_sampler(torch.zeros(1, 3, 4), seed=[9])()
    assert torch.equal(rows[1], one[0])
    assert fastrand.default_noise_sampler(x.double(), seed=1)().dtype == torch.float64


def test_sampler_degenerate_interval_gives_zero_increments():
    # a 1-step schedule (sigmas [s, 0]) gives sigma_min == sigma_max: diffusers' and
    # k-diffusion's samplers accept it (every time clamps to the one point: zero increments)
    x = torch.zeros(2, 3)
    for seed in (5, [5, 6]):
        sampler = fastrand.BrownianTreeNoiseSampler(x, 0.0292, 0.0292, seed)
        for a, b in [(0.0292, 0.01), (14.6, 0.0292), (0.5, 2.0)]:
            out = sampler(torch.tensor(a), torch.tensor(b))
            assert out.shape == (2, 3) and out.dtype == torch.float32
            assert np.array_equal(bits(out), np.zeros((2, 3), np.uint32))
        with pytest.raises(ValueError, match="sigma"):
            sampler(0.0292, 0.0292)
    half = fastrand.BrownianTreeNoiseSampler(x.half(), 1.0, 1.0, 1, transform=lambda s: -s.log())
    assert half(2.0, 0.5).dtype == torch.float16
    # seed=None still takes its one draw from torch's default generator, as diffusers does
    torch.manual_seed(3)
    fastrand.BrownianTreeNoiseSampler(x, 0.5, 0.5)
    after = torch.rand(1)
    torch.manual_seed(3)
    torch.randint(0, 2**63 - 1, [])
    assert torch.equal(torch.rand(1), after)
    with pytest.raises(ValueError, match="seed"):
        fastrand.BrownianTreeNoiseSampler(x, 0.5, 0.5, seed=[1])
    with pytest.raises(ValueError, match="sigma_min"):
        fastrand.BrownianTreeNoiseSampler(x, float("nan"), float("nan"), seed=1)


def test_sampler_empty_batch_and_empty_seed_list():
    x = torch.zeros(0, 4, 8, 8, dtype=torch.float16)
    expected = fastrand.default_noise_sampler(x, seed=[])(1.0, 0.5)
    assert expected.shape == (0, 4, 8, 8) and expected.dtype == torch.float16
    for lo, hi in [(0.1, 10.0), (0.1, 0.1)]:
        out = fastrand.BrownianTreeNoiseSampler(x, lo, hi, seed=[])(7.0, 3.0)
        assert out.shape == expected.shape and out.dtype == expected.dtype
        assert out.device == expected.device


@pytest.mark.parametrize(
    "seeds",
    [
        np.array([3, 4, 5]),
        np.array([3, 4, 5], dtype=np.uint64),
        np.array([3, 4, 5], dtype=np.int32),
        range(3, 6),
        (3, 4, 5),
        [np.int64(3), 4, np.uint8(5)],
        torch.tensor([3, 4, 5]),
    ],
    ids=lambda s: type(s).__name__ + str(getattr(s, "dtype", "")),
)
def test_per_row_seeds_as_any_integer_sequence(seeds):
    x = torch.zeros(3, 2, 5)
    ref_tree = fastrand.BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=[3, 4, 5])(7.0, 3.0)
    got = fastrand.BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=seeds)(7.0, 3.0)
    assert np.array_equal(bits(got), bits(ref_tree))
    ref_anc = fastrand.default_noise_sampler(x, seed=[3, 4, 5])()
    assert np.array_equal(bits(fastrand.default_noise_sampler(x, seed=seeds)()), bits(ref_anc))


@pytest.mark.parametrize(
    "seeds,exc,match",
    [
        (np.array([1.0, 2.0]), TypeError, r"seed\[0\].*float"),
        ([1, 2.5], TypeError, r"seed\[1\].*float"),
        ([True, False], TypeError, r"seed\[0\].*bool"),
        (np.array([True, False]), TypeError, r"seed\[0\].*bool"),
        (torch.tensor([1.0, 2.0]), TypeError, r"seed\[0\]"),
        (np.array([[1, 2], [3, 4]]), TypeError, r"seed\[0\]"),
        (range(3), ValueError, "seed: a sequence of 3 seeds"),
        ("ab", TypeError, "seed"),
        (b"ab", TypeError, "seed"),
        (1.0, TypeError, "seed"),
        (np.float64(1.0), TypeError, "seed"),
    ],
    ids=repr,
)
def test_per_row_seeds_refused(seeds, exc, match):
    x = torch.zeros(2, 5)
    with pytest.raises(exc, match=match):
        fastrand.BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=seeds)
    with pytest.raises(exc, match=match):
        fastrand.default_noise_sampler(x, seed=seeds)


# --------------------------------------------------------------------------------------------
# pickling and copying
def test_tree_pickles_and_deep_copies_and_continues_exactly():
    tree = fastrand.BrownianTree(0.0, 2.0, (100_000,), seed=12, stream=3, dtype=torch.float64)
    fresh = fastrand.BrownianTree(0.0, 2.0, (100_000,), seed=12, stream=3, dtype=torch.float64)
    tree(0.3, 1.1)  # fills the cache and the pool
    data = pickle.dumps(tree)
    assert len(data) < 10_000  # node values are not pickled (the caches are recreated)
    copies = [pickle.loads(data), copy.deepcopy(tree)]
    for c in copies:
        assert c is not tree and c._lock is not tree._lock
        assert repr(c) == repr(tree)
    for args in [(0.3, 1.1), (0.7, 1.9), (1.9, 0.01), (0.5,)]:
        expected = bits(fresh(*args))
        for obj in [tree, *copies]:
            assert np.array_equal(bits(obj(*args)), expected)
    # a copy is a tree of its own: queries from threads on copy and original at once
    c = copies[1]
    errors = []

    def worker(obj):
        try:
            for p in (0.25, 1.5, 0.75):
                assert np.array_equal(bits(obj(p)), bits(fresh(p)))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(o,)) for o in (tree, c, c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("seed", [7, [7, 8]])
@pytest.mark.parametrize("sigma_max", [14.6, 0.03])
def test_sampler_pickles_and_deep_copies_and_continues_exactly(seed, sigma_max):
    x = torch.zeros(2, 3, 5)
    sampler = fastrand.BrownianTreeNoiseSampler(x, 0.03, sigma_max, seed=seed)
    fresh = fastrand.BrownianTreeNoiseSampler(x, 0.03, sigma_max, seed=seed)
    sampler(14.6, 9.0)
    copies = [pickle.loads(pickle.dumps(sampler)), copy.deepcopy(sampler)]
    for a, b in [(14.6, 9.0), (9.0, 5.0), (0.5, 0.03)]:
        expected = bits(fresh(a, b))
        for obj in [sampler, *copies]:
            assert np.array_equal(bits(obj(a, b)), expected)


# --------------------------------------------------------------------------------------------
# memory: cache_bytes bounds what a tree keeps
def retained_tensor_bytes(obj):
    """Bytes of the distinct tensor storages reachable from obj through containers and
    instance attributes (what the object keeps alive)."""
    seen, storages, stack = set(), {}, [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, torch.Tensor):
            st = o.untyped_storage()
            storages[st.data_ptr()] = max(storages.get(st.data_ptr(), 0), st.nbytes())
            continue
        if isinstance(o, (type, types.ModuleType, types.FunctionType, threading.Thread)):
            continue
        stack.extend(gc.get_referents(o))
    return sum(storages.values())


@pytest.mark.parametrize("cache_bytes", [0, 1, 6 * 4000, 10 * 4000 + 1, 1 << 30])
@pytest.mark.parametrize("batch", [1, 8])
def test_cache_bytes_bounds_what_a_tree_keeps(cache_bytes, batch):
    node = 4000  # (1000,) float32
    tree = fastrand.BrownianTree(0.0, 6.2, (1000,), seed=0, cache_bytes=cache_bytes)
    tree._batch = batch  # the GPU's batched path on the CPU
    assert tree.depth == 23
    expected = fastrand.BrownianTree(0.0, 6.2, (1000,), seed=0)
    bound = max(cache_bytes, 4 * node)
    high = 0
    rng = random.Random(1)
    for p in [rng.uniform(0, 6.2) for _ in range(12)] + [0.0, 6.2, 3.1]:
        assert np.array_equal(bits(tree(p, 6.2 - p)), bits(expected(p, 6.2 - p)))
        kept = retained_tensor_bytes(tree)
        high = max(high, kept)
        # (+ on the batched path, the column of depth + 1 scale factors)
        assert kept <= bound + (tree.depth + 1) * 4 * (batch > 1), (p, kept, bound)
    # up to 2 * (depth + 2) cached nodes, and the cache is used
    assert high >= min(bound, 2 * (23 + 2) * node) - 4 * node


# --------------------------------------------------------------------------------------------
# bad input
@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(t0=1.0, t1=1.0), ValueError, "t0"),
        (dict(t0=2.0, t1=1.0), ValueError, "t0"),
        (dict(t0=float("nan")), ValueError, "t0"),
        (dict(t1=float("inf")), ValueError, "t1"),
        (dict(t0=-1e308, t1=1e308), ValueError, "t0"),
        (dict(t0="0"), TypeError, "t0"),
        (dict(t1=None), TypeError, "t1"),
        (dict(t0=torch.zeros(2)), ValueError, "t0"),
        (dict(size=(-1, 2)), ValueError, "size"),
        (dict(size=(2.5,)), TypeError, "size"),
        (dict(size="abc"), TypeError, "size"),
        (dict(size=(2**40,), tol=1e-12), ValueError, "size"),
        (dict(dtype=torch.float16), ValueError, "dtype"),
        (dict(dtype=torch.int32), ValueError, "dtype"),
        (dict(dtype="float32"), TypeError, "dtype"),
        (dict(tol=0.0), ValueError, "tol"),
        (dict(tol=float("nan")), ValueError, "tol"),
        (dict(tol="1"), TypeError, "tol"),
        (dict(seed=2**64), ValueError, "seed"),
        (dict(seed=True), TypeError, "seed"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(stream=-1), ValueError, "stream"),
        (dict(device="nope"), ValueError, "device"),
        (dict(cache_bytes=-1), ValueError, "cache_bytes"),
    ],
)
def test_tree_bad_input(kwargs, exc, name):
    args = dict(t0=0.0, t1=1.0, size=(3,), seed=1)
    args.update(kwargs)
    t0, t1, size = args.pop("t0"), args.pop("t1"), args.pop("size")
    with pytest.raises(exc, match=name):
        fastrand.BrownianTree(t0, t1, size, **args)


def test_query_and_sampler_bad_input():
    tree = fastrand.BrownianTree(0, 1, (3,), seed=1)
    with pytest.raises(ValueError, match="ta"):
        tree(float("nan"), 0.5)
    with pytest.raises(ValueError, match="tb"):
        tree(0.5, float("-inf"))
    with pytest.raises(TypeError, match="tb"):
        tree(0.5, "x")
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="seed"):
        fastrand.BrownianTreeNoiseSampler(x, 0.1, 1.0, seed=[1, 2, 3])
    with pytest.raises(ValueError, match="seed"):
        fastrand.BrownianTreeNoiseSampler(torch.zeros(()), 0.1, 1.0, seed=[1])
    with pytest.raises(ValueError, match="seed"):
        fastrand.default_noise_sampler(x, seed=[1])
    with pytest.raises(TypeError, match=r"seed\[1\]"):
        fastrand.BrownianTreeNoiseSampler(x, 0.1, 1.0, seed=[1, "a"])
    with pytest.raises(TypeError, match="x"):
        fastrand.BrownianTreeNoiseSampler([0.0], 0.1, 1.0, seed=1)
    with pytest.raises(ValueError, match="x"):
        fastrand.BrownianTreeNoiseSampler(torch.zeros(3, dtype=torch.int64), 0.1, 1.0, seed=1)
    with pytest.raises(ValueError, match="sigma_max"):
        fastrand.BrownianTreeNoiseSampler(x, 0.1, float("nan"), seed=1)
    with pytest.raises(TypeError, match="transform"):
        fastrand.BrownianTreeNoiseSampler(x, 0.1, 1.0, seed=1, transform=3)
    # a refused sampler advances no generator (seed=None draws from torch's default generator)
    state = torch.get_rng_state()
    with pytest.raises(ValueError, match="size"):
        fastrand.BrownianTreeNoiseSampler(torch.empty(2**41, device="meta"), 0.03, 14.6)
    with pytest.raises(ValueError, match="sigma_min"):
        fastrand.BrownianTreeNoiseSampler(x, float("nan"), 14.6)
    assert torch.equal(torch.get_rng_state(), state)
    sampler = fastrand.BrownianTreeNoiseSampler(x, 0.1, 1.0, seed=1)
    with pytest.raises(ValueError, match="sigma"):
        sampler(0.5, 0.5)
    with pytest.raises(ValueError, match="sigma_next"):
        sampler(0.5, float("nan"))


# --------------------------------------------------------------------------------------------
# devices
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_equals_cuda(dtype):
    rng = random.Random(1)
    points = [rng.uniform(0.0292, 14.6146) for _ in range(30)]
    cpu = fastrand.BrownianTree(0.0292, 14.6146, (4, 33, 17), seed=8, dtype=dtype)
    gpu = fastrand.BrownianTree(0.0292, 14.6146, (4, 33, 17), seed=8, dtype=dtype, device="cuda")
    for a, b in zip(points, points[1:]):
        g = gpu(a, b)
        assert g.device.type == "cuda"
        assert np.array_equal(bits(cpu(a, b)), bits(g))
    x = torch.zeros(2, 4, 16, 16, dtype=dtype)
    s_cpu = fastrand.BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=[1, 2])
    s_gpu = fastrand.BrownianTreeNoiseSampler(x.cuda(), 0.03, 14.6, seed=[1, 2])
    s_via = fastrand.BrownianTreeNoiseSampler(x.cuda(), 0.03, 14.6, seed=[1, 2], cpu=True)
    for a, b in [(14.6, 10.0), (14.6, 7.0), (0.5, 0.03)]:
        ref = bits(s_cpu(a, b))
        assert np.array_equal(ref, bits(s_gpu(a, b))) and np.array_equal(ref, bits(s_via(a, b)))


def test_random_trees_equal_numpy_reference():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
    @hypothesis.given(
        seed=st.integers(0, 2**64 - 1),
        stream=st.integers(0, 2**64 - 1),
        t0=st.floats(-100, 100),
        width=st.floats(1e-3, 1e3),
        n=st.integers(0, 9),
        f64=st.booleans(),
        log_tol=st.integers(-9, 1),
        u=st.lists(st.floats(-0.2, 1.2), min_size=1, max_size=4),
    )
    def check(seed, stream, t0, width, n, f64, log_tol, u):
        t1 = t0 + width
        hypothesis.assume(t0 < t1)
        dtype = torch.float64 if f64 else torch.float32
        tol = 10.0**log_tol
        times = [t0 + v * (t1 - t0) for v in u]
        tree = fastrand.BrownianTree(t0, t1, (n,), seed=seed, stream=stream, dtype=dtype, tol=tol)
        for t, e in zip(times, reference_w(t0, t1, (n,), seed, stream, dtype, tol, times)):
            assert np.array_equal(bits(tree(t)), bits(e)), (t, tree.depth)

    check()
