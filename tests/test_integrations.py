"""NumPy front end, torch.compile custom ops, CUDA-graph generator, selftest, determinism."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import TORCH_DTYPES, bits, ref_bits

import fastrand
import fastrand.functional as F
import fastrand.numpy as frnp

CUDA = torch.cuda.is_available()


# ---- NumPy front end -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_numpy_front_end_equals_torch_api(dtype):
    a = frnp.randn((3, 5), seed=11, offset=3, stream=2, dtype=getattr(np, dtype))
    t = fastrand.randn(
        3, 5, generator=fastrand.Generator(11, offset=3, stream=2), dtype=TORCH_DTYPES[dtype]
    )
    assert a.shape == (3, 5) and a.dtype == np.dtype(dtype)
    assert np.array_equal(bits(a), bits(t))
    u = frnp.rand(7, seed=11, offset=1, dtype=dtype)
    assert np.array_equal(bits(u), ref_bits("uniform", 11, 0, 1, 7, dtype))
    w = frnp.random_words([2, 2], seed=4)
    assert w.dtype == np.uint32 and np.array_equal(w.ravel(), ref_bits("words", 4, 0, 0, 4))


def test_numpy_next_offset_continues_the_stream():
    o = frnp.next_offset(1, 3, np.float64)  # starts at 2, two positions each
    assert o == 8
    a = frnp.randn(3, seed=2, offset=1, dtype=np.float64)
    b = frnp.randn(2, seed=2, offset=o, dtype=np.float64)
    whole = frnp.randn(5, seed=2, offset=1, dtype=np.float64)
    assert np.array_equal(bits(np.concatenate([a, b])), bits(whole))
    assert frnp.next_offset(5, 4) == 9 and frnp.next_offset(2**64 - 1, 1) == 0


def test_numpy_dtype_none_is_float32():
    """dtype=None is the documented default, float32 (np.dtype(None) is float64)."""
    for draw, kind in ((frnp.randn, "normal"), (frnp.rand, "uniform")):
        a = draw((2, 3), seed=5, offset=1, dtype=None)
        assert a.dtype == np.float32, (kind, a.dtype)
        assert np.array_equal(bits(a).ravel(), ref_bits(kind, 5, 0, 1, 6))
    assert frnp.next_offset(1, 3, None) == frnp.next_offset(1, 3) == 4  # float64 would give 8
    with pytest.raises(TypeError, match="dtype"):
        frnp.next_offset(1, 3, "nope")


def test_numpy_front_end_does_not_import_torch():
    code = (
        "import sys, fastrand.numpy as f; a = f.randn((2, 2), seed=0); "
        "import fastrand; g = fastrand.Generator(1); "
        "print('torch' in sys.modules, a.dtype)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "float32"]


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(shape=(-1,)), ValueError, "shape"),
        (dict(shape="x"), TypeError, "shape"),
        (dict(dtype=np.int32), ValueError, "dtype"),
        (dict(dtype="nope"), TypeError, "dtype"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(offset=-1), ValueError, "offset"),
        (dict(stream=2**64), ValueError, "stream"),
        (dict(threads=0), ValueError, "threads"),
    ],
)
def test_numpy_front_end_refuses(kwargs, exc, name):
    args = dict(shape=(2,), seed=0)
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        frnp.randn(**args)


# ---- torch.compile / custom ops --------------------------------------------------------------
def test_functional_equals_generator_draws():
    for dt in TORCH_DTYPES.values():
        a = F.randn((4, 3), seed=2**64 - 2, offset=2**63 + 1, stream=5, dtype=dt)
        b = fastrand.randn(
            4, 3, generator=fastrand.Generator(2**64 - 2, offset=2**63 + 1, stream=5), dtype=dt
        )
        assert np.array_equal(bits(a), bits(b))
    u = F.rand([6], seed=1)
    assert np.array_equal(bits(u), ref_bits("uniform", 1, 0, 0, 6))


def _noisy(x):
    return x + F.randn(x.shape, seed=3, offset=2**63 + 11, dtype=x.dtype, device=x.device)


def test_torch_compile_fullgraph_matches_eager():
    x = torch.zeros(4, 5)
    eager = _noisy(x)
    torch._dynamo.reset()
    compiled = torch.compile(_noisy, fullgraph=True, backend="aot_eager")(x)
    assert np.array_equal(bits(compiled), bits(eager))


def test_torch_compile_inductor_matches_eager():
    x = torch.zeros(3, 4, dtype=torch.bfloat16)
    torch._dynamo.reset()
    compiled = torch.compile(_noisy, fullgraph=True)(x)
    assert np.array_equal(bits(compiled), bits(_noisy(x)))


# ---- issue 21 item 1: dynamic seeds, offsets and streams are not specialised -----------------
def _fresh_dynamo():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # (reset() keeps the counters)


def _graphs():
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def test_readme_compile_example_does_not_recompile_per_step():
    """The README's example: the step used to be specialised (a guard step == k per graph), so
    every step recompiled and fullgraph=True failed at the 9th (recompile limit 8)."""

    @torch.compile(fullgraph=True)
    def add_noise(x, step: int):
        return x + F.randn(x.shape, seed=0, offset=step * x.numel(), dtype=x.dtype, device=x.device)

    _fresh_dynamo()
    x = torch.zeros(1, 4, 8, 8)
    for step in range(24):
        out = add_noise(x, step)
        assert np.array_equal(bits(out).ravel(), ref_bits("normal", 0, 0, step * 256, 256))
    assert _graphs() <= 2  # the first call's static int, then one dynamic graph


@pytest.mark.parametrize(
    "fullgraph,dynamic", [(True, None), (True, True), (False, None), (False, True)]
)
def test_compiled_dynamic_ints_share_one_graph(fullgraph, dynamic):
    """Dynamic seeds (negative too), streams and offsets: one graph for every int64 value, the
    values of eager. Without fullgraph, specialising fell back to eager after 8 graphs."""

    def f(x, step, seed):
        return x + F.randn(x.shape, seed=seed, offset=step * x.numel(), stream=step, dtype=x.dtype)

    _fresh_dynamo()
    cf = torch.compile(f, fullgraph=fullgraph, dynamic=dynamic, backend="aot_eager")
    x = torch.zeros(3, 4)
    for step in range(2, 24):
        seed = (-1) ** step * step * 2**58  # both signs, as large as int64 allows
        out = cf(x, step, seed)
        assert np.array_equal(bits(out), bits(f(x, step, seed)))
        assert np.array_equal(bits(out).ravel(), ref_bits("normal", seed, step, step * 12, 12))
    assert _graphs() <= 2
    # seeds and offsets in [2^63, 2^64) (no int64 holds them) still draw eager's values
    for seed, step in [(2**64 - 3, 2**60), (2**63, 2**60 + 1)]:  # offsets 1.5 * 2^63 and up
        assert np.array_equal(bits(cf(x, step, seed)), bits(f(x, step, seed)))


def test_opcheck():
    torch.library.opcheck(
        torch.ops.fastrand.draw.default, ([2, 3], 0, -5, 0, 3, torch.float32, torch.device("cpu"))
    )
    torch.library.opcheck(
        torch.ops.fastrand.draw_state.default, (torch.tensor([1, 2, 3]), [4], 0, torch.float32)
    )


def test_state_draws_advance_and_match_the_stream():
    st = torch.tensor([9, 0, 1], dtype=torch.int64)
    r1 = F.randn_from_state(st, (5,))
    r2 = F.randn_from_state(st, [3], dtype=torch.float64)  # starts at 6, two positions each
    assert st.tolist() == [9, 0, 12]
    assert np.array_equal(bits(r1), ref_bits("normal", 9, 0, 1, 5))
    assert np.array_equal(bits(r2), ref_bits("normal", 9, 0, 6, 3, "float64"))
    with pytest.raises(ValueError, match="state"):
        F.randn_from_state(torch.zeros(3, dtype=torch.int32), (2,))
    with pytest.raises(TypeError, match="state"):
        F.randn_from_state([1, 2, 3], (2,))


def test_state_draws_compile():
    def f(state):
        return F.randn_from_state(state, (4,)) * 2

    st1 = torch.tensor([4, 0, 0], dtype=torch.int64)
    st2 = st1.clone()
    torch._dynamo.reset()
    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    a, b = cf(st1), cf(st1)
    c, d = f(st2), f(st2)
    assert np.array_equal(bits(torch.cat([a, b])), bits(torch.cat([c, d])))
    assert st1.tolist() == st2.tolist() == [4, 0, 8]


# ---- CUDA-graph generator (GPU) --------------------------------------------------------------
@pytest.mark.skipif(not CUDA, reason="no CUDA device")
def test_cuda_graph_generator_replays_draw_fresh_noise():
    shape = (2, 4, 16, 16)
    n = 2 * 4 * 16 * 16
    g = fastrand.CudaGraphGenerator(21, device="cuda", offset=3)
    warm = fastrand.randn_tensor(shape, generator=g, device="cuda")  # eager: offsets 3 .. 3+n
    static = torch.empty(shape, device="cuda", dtype=torch.bfloat16)
    graph = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        with torch.cuda.graph(graph):
            static.copy_(
                fastrand.randn_tensor(shape, generator=g, device="cuda", dtype=torch.bfloat16)
            )
    torch.cuda.current_stream().wait_stream(s)
    assert np.array_equal(bits(warm).ravel(), ref_bits("normal", 21, 0, 3, n))
    for k in range(3):
        graph.replay()
        torch.cuda.synchronize()
        want = fastrand.randn(
            *shape, generator=fastrand.Generator(21, offset=3 + n * (k + 1)), dtype=torch.bfloat16
        )
        assert np.array_equal(bits(static), bits(want)), k
    assert g.get_offset() == 3 + 4 * n


@pytest.mark.skipif(not CUDA, reason="no CUDA device")
def test_cuda_graph_generator_float64_and_state_ops():
    g = fastrand.CudaGraphGenerator(5, offset=1)
    a = fastrand.randn(3, generator=g, device="cuda", dtype=torch.float64)  # starts at 2
    assert g.get_offset() == 8
    assert np.array_equal(bits(a), ref_bits("normal", 5, 0, 1, 3, "float64"))
    b = F.randn_from_state(g.state, (7,))
    assert np.array_equal(bits(b), ref_bits("normal", 5, 0, 8, 7))
    with pytest.raises(ValueError, match="device"):
        fastrand.randn(3, generator=g, device="cpu")


@pytest.mark.skipif(not CUDA, reason="no CUDA device")
def test_compile_reduce_overhead_draws_fresh_noise_per_call():
    """torch.compile(mode="reduce-overhead") records CUDA graphs; draws from a state tensor
    advance it on the device, so every call (graph replay) continues the stream."""
    g = fastrand.CudaGraphGenerator(8, device="cuda")
    n = 4 * 32

    def f(x):
        return x + F.randn_from_state(g.state, (4, 32))

    torch._dynamo.reset()
    cf = torch.compile(f, mode="reduce-overhead", fullgraph=True)
    x = torch.zeros(4, 32, device="cuda")
    outs = [cf(x).clone() for _ in range(5)]
    torch.cuda.synchronize()
    for k, out in enumerate(outs):
        want = ref_bits("normal", 8, 0, k * n, n)
        assert np.array_equal(bits(out).ravel(), want), k
    assert g.get_offset() == 5 * n


def test_cuda_graph_generator_refused_without_cuda():
    if CUDA:
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="device"):
        fastrand.CudaGraphGenerator(0)


# ---- selftest and determinism ----------------------------------------------------------------
def test_selftest_cli_passes():
    out = subprocess.run(
        [sys.executable, "-m", "fastrand", "selftest"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all checks passed" in out.stdout and "MISMATCH" not in out.stdout


def test_selftest_reports_a_mismatch(monkeypatch):
    from fastrand import _selftest

    monkeypatch.setattr(_selftest, "GOLDEN_F32", [0] * 12)  # a wrong expectation must fail
    import io

    buf = io.StringIO()
    assert _selftest.run(out=buf) == 1
    assert "MISMATCH" in buf.getvalue()


def test_enable_full_determinism_sets_and_restores():
    before = (
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    with fastrand.enable_full_determinism():
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic
        if hasattr(torch._C, "_get_fp32_precision_getter"):  # the new API only (torch >= 2.9)
            assert torch.backends.cuda.matmul.fp32_precision == "ieee"
            assert torch.backends.cudnn.conv.fp32_precision == "ieee"
            assert torch.backends.cudnn.rnn.fp32_precision == "ieee"
        else:
            assert torch.backends.cuda.matmul.allow_tf32 is False
            assert torch.backends.cudnn.allow_tf32 is False
    after = (
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    assert after == before
    handle = fastrand.enable_full_determinism(warn_only=True)
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    handle.restore()
    handle.restore()  # idempotent
    assert torch.are_deterministic_algorithms_enabled() == before[1]
    with pytest.raises(TypeError, match="warn_only"):
        fastrand.enable_full_determinism(warn_only="yes")


def test_info_cli_is_json():
    out = subprocess.run(
        [sys.executable, "-m", "fastrand", "info"], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout)["stream_version"] == 1


def test_lazy_package_attributes_in_a_fresh_process():
    """`import fastrand` alone: submodules and the torch API resolve on attribute access."""
    code = (
        "import sys, fastrand; assert 'torch' not in sys.modules; "
        "assert fastrand._C.STREAM_VERSION == 1; fastrand.reference.words(0, 0, 0, 1); "
        "fastrand.numpy.randn(2, seed=0); assert 'torch' not in sys.modules; "
        "fastrand.functional.randn((2,), seed=0); fastrand.randn(2); "
        "assert sorted(set(fastrand.__all__) - set(dir(fastrand))) == []; "
        "import pytest; pytest.raises(AttributeError, getattr, fastrand, 'nope'); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
