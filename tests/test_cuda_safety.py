"""Safety of the compiled and CUDA-graph paths (issue 16 items 1, 4-9, 11; issue 14's compiled
arguments): state checks in the custom ops, trace-time argument checks, the device-argument
cache, CudaGraphGenerator copies, host-side synchronisation, state lifetime, failed draws."""

import copy
import gc
import pickle
import weakref

import numpy as np
import pytest
import torch
from conftest import bits, ref_bits

import fastrand
import fastrand.functional as F
from fastrand import _C, _api
from fastrand._graph import CudaGraphGenerator

CUDA = torch.cuda.is_available() and bool(_C.CUDA)
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device and the CUDA kernel")


def _start(offset, two_words):
    """Where a request starts (spec: float64 values start at an even position)."""
    return offset + (offset & 1) if two_words else offset


def _end(offset, n, two_words):
    return _start(offset, two_words) + (2 * n if two_words else n)


# ---- item 1: draw_state checks its state in every path ----------------------------------------
def _bad_states():
    big = torch.arange(6, dtype=torch.int64)
    return big, [
        ("int32", torch.zeros(3, dtype=torch.int32)),
        ("strided view", big[::2]),
        ("float64", torch.zeros(3, dtype=torch.float64)),
        ("shape (4,)", torch.zeros(4, dtype=torch.int64)),
        ("shape (3, 1)", torch.zeros(3, 1, dtype=torch.int64)),
    ]


def test_draw_state_op_checks_the_state_when_called_directly():
    big, states = _bad_states()
    for what, st in states:
        before = st.clone()
        with pytest.raises(ValueError, match="state"):
            torch.ops.fastrand.draw_state(st, [4], _C.KIND_NORMAL, torch.float32)
        assert torch.equal(st, before), what
    assert big.tolist() == [0, 1, 2, 3, 4, 5]


def test_draw_state_op_checks_its_other_arguments():
    st = torch.tensor([1, 0, 0])
    for args, name in [
        (([-1], _C.KIND_NORMAL, torch.float32), "shape"),
        (([2], 7, torch.float32), "kind"),
        (([2], _C.KIND_WORDS, torch.float32), "kind"),
        (([2], _C.KIND_NORMAL, torch.int32), "dtype"),
    ]:
        with pytest.raises(ValueError, match=name):
            torch.ops.fastrand.draw_state(st, *args)
    with pytest.raises(ValueError, match="shape"):
        torch.ops.fastrand.draw_state(st, [2**62, 4], _C.KIND_NORMAL, torch.float32)
    assert st.tolist() == [1, 0, 0]  # nothing refused advanced it
    cpu = torch.device("cpu")
    for args, name in [
        (([-2], 0, 0, 0, 0, torch.float32, cpu), "shape"),
        (([2], 9, 0, 0, 0, torch.float32, cpu), "kind"),
        (([2], 0, 0, 0, 0, torch.int64, cpu), "dtype"),
    ]:
        with pytest.raises(ValueError, match=name):
            torch.ops.fastrand.draw(*args)


@pytest.mark.parametrize("fullgraph", [True, False])
@pytest.mark.parametrize("direct", [True, False])
def test_draw_state_checks_the_state_under_compile(fullgraph, direct):
    if direct:

        def f(state):
            return torch.ops.fastrand.draw_state(state, [4], _C.KIND_NORMAL, torch.float32)
    else:

        def f(state):
            return F.randn_from_state(state, (4,))

    big, states = _bad_states()
    for what, st in states[:2]:  # int32, and a strided view of a larger int64 tensor
        torch._dynamo.reset()
        cf = torch.compile(f, fullgraph=fullgraph, backend="aot_eager")
        before = st.clone()
        # under torch.compile the refusal may come wrapped in torch's own exception types
        # (Unsupported / TorchRuntimeError) that quote the ValueError
        with pytest.raises(Exception, match="state: expected a contiguous int64") as err:
            cf(st)
        if not fullgraph and not direct:
            assert err.type is ValueError
        assert torch.equal(st, before), what
    assert big.tolist() == [0, 1, 2, 3, 4, 5]


def test_draw_state_under_compile_still_draws_the_stream():
    def f(state):
        return F.rand_from_state(state, [3], dtype=torch.float64)

    st = torch.tensor([6, 2, 1], dtype=torch.int64)
    torch._dynamo.reset()
    out = torch.compile(f, fullgraph=True, backend="aot_eager")(st)
    assert np.array_equal(bits(out), ref_bits("uniform", 6, 2, 2, 3, "float64"))
    assert st.tolist() == [6, 2, 8]


# ---- issue 14: compiled arguments are checked at trace time -----------------------------------
_BAD_ARGS = [
    (dict(offset=-1), ValueError, "offset"),
    (dict(seed=2**70), ValueError, "seed"),
    (dict(stream=-5), ValueError, "stream"),
    (dict(seed=True), TypeError, "seed"),
    (dict(offset=1.5), TypeError, "offset"),
    (dict(stream=2**64), ValueError, "stream"),
    (dict(dtype=torch.int32), ValueError, "dtype"),
    (dict(shape=(2, -1)), ValueError, "shape"),
    (dict(device=False), TypeError, "device"),
]


@pytest.mark.parametrize("kwargs,exc,name", _BAD_ARGS)
def test_compiled_functional_refuses_what_eager_refuses(kwargs, exc, name):
    args = dict(shape=(2, 3), seed=0, offset=0, stream=0, dtype=torch.float32, device="cpu")
    args.update(kwargs)

    def f(x):
        return x + F.randn(**args).sum()

    with pytest.raises(exc, match=name):  # eager
        f(torch.zeros(()))
    torch._dynamo.reset()
    cf = torch.compile(f, fullgraph=True, backend="eager")
    # fullgraph=True: torch reports an exception raised while tracing as Unsupported, quoting it
    with pytest.raises(Exception, match=rf"{exc.__name__}\('{name}:"):
        cf(torch.zeros(()))
    torch._dynamo.reset()
    with pytest.raises(exc, match=name):  # without fullgraph: the error itself
        torch.compile(f, backend="eager")(torch.zeros(()))


def test_compiled_functional_checks_dynamic_ints():
    """Ints that torch.compile makes dynamic are checked through guards: a value eager refuses
    recompiles and is refused; accepted values give eager's bits."""

    def f(x, step, seed):
        return x + F.rand(x.shape, seed=seed, offset=step * x.numel(), stream=step, dtype=x.dtype)

    torch._dynamo.reset()
    cf = torch.compile(f, fullgraph=True, dynamic=True, backend="aot_eager")
    x = torch.zeros(3, 4)
    for step, seed in [(2, 5), (3, -7), (4, 2**62)]:
        assert np.array_equal(bits(cf(x, step, seed)), bits(f(x, step, seed)))
    with pytest.raises(Exception, match=r"ValueError\('stream:"):
        cf(x, -3, 5)


# ---- item 4: the device-argument cache keeps type checks ---------------------------------------
def test_device_cache_is_keyed_by_type(monkeypatch):
    """After device=0 is cached, device=False and device=0.0 (equal to 0, same hash) must still
    be refused. Without CUDA, device=0 cannot be validated, so the cache holds cuda:0 for the
    int 0 under either keying (by value, or by type and value)."""
    cuda0 = torch.device("cuda", 0)
    monkeypatch.setattr(_api, "_DEVICE_CACHE", {0: cuda0, (int, 0): cuda0})
    for bad in (False, 0.0):
        with pytest.raises(TypeError, match="device"):
            _api._device_arg(bad)
    assert _api._device_arg("cpu") == torch.device("cpu")


@needs_cuda
def test_device_cache_is_keyed_by_type_on_cuda(monkeypatch):
    monkeypatch.setattr(_api, "_DEVICE_CACHE", {})
    g = fastrand.Generator(0)
    fastrand.randn(2, generator=g, device=0)
    fastrand.randn(2, generator=g, device=0)  # from the cache
    for bad in (False, 0.0):
        with pytest.raises(TypeError, match="device"):
            fastrand.randn(2, generator=g, device=bad)
    assert g.get_offset() == 4


def test_device_cache_keeps_type_checks_in_public_calls():
    g = fastrand.Generator(0)
    fastrand.randn(2, generator=g, device="cpu")
    for bad in (False, 0.0, True):
        with pytest.raises(TypeError, match="device"):
            fastrand.randn(2, generator=g, device=bad)
    assert g.get_offset() == 2


# ---- item 5: CudaGraphGenerator copies (class logic on a CPU state) ---------------------------
def _cpu_graph_generator(seed, stream, offset):
    """The class's logic around a CPU state tensor (a real one needs CUDA)."""
    st = torch.tensor([seed, stream, offset], dtype=torch.int64)
    return CudaGraphGenerator._wrap(st, torch.device("cpu"))


@pytest.mark.parametrize("how", ["clone", "copy", "deepcopy"])
def test_graph_generator_copy_is_independent(how):
    g = _cpu_graph_generator(3, 2, 10)
    c = {"clone": g.clone, "copy": lambda: copy.copy(g), "deepcopy": lambda: copy.deepcopy(g)}[
        how
    ]()
    assert type(c) is CudaGraphGenerator and c is not g
    assert c.state.data_ptr() != g.state.data_ptr()
    assert (c.initial_seed(), c.stream, c.get_offset()) == (3, 2, 10)
    a = F.randn_from_state(c.state, (5,))
    assert c.get_offset() == 15 and g.get_offset() == 10  # the original did not move
    b = F.randn_from_state(g.state, (5,))
    assert np.array_equal(bits(a), bits(b))
    assert np.array_equal(bits(a), ref_bits("normal", 3, 2, 10, 5))
    assert getattr(c.state, "_dynamo_static_input_type", None) is not None


def test_graph_generator_pickles_its_position():
    g = _cpu_graph_generator(2**64 - 3 - 2**64, 4, 2**63 + 5 - 2**64)  # uint64 as int64 bits
    fn, args = g.__reduce__()
    assert args == (2**64 - 3, 4, 2**63 + 5, "cpu")
    pickle.dumps(g)  # the lock does not get in the way


def test_graph_generator_state_ops_on_a_cpu_state():
    g = _cpu_graph_generator(1, 7, 0)
    assert getattr(g.state, "_dynamo_static_input_type", None) is not None
    g.set_offset(2**64 - 1)
    assert g.get_offset() == 2**64 - 1 and g.state.tolist()[2] == -1
    g.manual_seed(2**63)
    assert (g.initial_seed(), g.stream, g.get_offset()) == (2**63, 7, 0)
    s = g.get_state()
    assert s.data_ptr() != g.state.data_ptr()
    F.randn_from_state(g.state, (4,))
    g.set_state(s)
    assert g.get_offset() == 0
    with pytest.raises(TypeError, match="state"):
        g.set_state([1, 2, 3])
    with pytest.raises(ValueError, match="state"):
        g.set_state(torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="offset"):
        g.set_offset(-1)
    with pytest.raises(TypeError, match="seed"):
        g.manual_seed(1.0)
    assert g.get_offset() == 0


def test_graph_generator_refuses_a_missing_device():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            CudaGraphGenerator(0)
    with pytest.raises(ValueError, match="device"):
        CudaGraphGenerator(0, device="cpu")


# ---- item 7: a capturing graph keeps the state (logic checked with a stand-in graph) -----------
class _StandInGraph:
    pass


def test_keep_for_capture_ties_the_state_to_the_capturing_graph(monkeypatch):
    from fastrand import _graph

    st = torch.zeros(3, dtype=torch.int64)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    _graph.keep_for_capture(st)  # not capturing: nothing is kept
    assert not any(s is st for s in _graph._KEEP_FOREVER)
    box = [_StandInGraph()]
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    monkeypatch.setattr(
        torch.cuda.CUDAGraph, "get_currently_capturing_graph", lambda: box[0], raising=False
    )
    _graph.keep_for_capture(st)
    _graph.keep_for_capture(st)  # once per graph
    assert len(box[0]._fastrand_states) == 1 and box[0]._fastrand_states[0] is st
    alive = weakref.ref(st)
    del st
    box.clear()
    gc.collect()
    assert alive() is None  # released with the graph

    def unknown():
        raise RuntimeError("The current stream is not currently capturing.")

    monkeypatch.setattr(torch.cuda.CUDAGraph, "get_currently_capturing_graph", unknown)
    st = torch.zeros(3, dtype=torch.int64)
    monkeypatch.setattr(_graph, "_KEEP_FOREVER", [])
    _graph.keep_for_capture(st)
    assert _graph._KEEP_FOREVER == [st]  # an unknown graph: kept for the process


# ---- item 11: a failed draw skips its positions, never reuses them ----------------------------
def test_failed_fill_skips_its_positions(monkeypatch):
    """Documented policy: a draw that fails after its arguments were accepted has reserved its
    positions, so the generator stands where it would after a successful draw; later draws
    never repeat them. A state-tensor draw on the host writes the state only after the fill."""
    g = fastrand.Generator(4)

    def boom(*args):
        raise RuntimeError("simulated failed launch")

    with monkeypatch.context() as m:
        m.setattr(_C, "fill_cpu", boom)
        with pytest.raises(RuntimeError, match="simulated"):
            fastrand.randn(6, generator=g, dtype=torch.float32)
        with pytest.raises(RuntimeError, match="simulated"):
            fastrand.randn_tensor((2,), generator=g, dtype=torch.float32)
        st = torch.tensor([4, 0, 0])
        with pytest.raises(RuntimeError, match="simulated"):
            F.randn_from_state(st, (3,))
        assert st.tolist() == [4, 0, 0]
    assert g.get_offset() == 8
    nxt = fastrand.randn(3, generator=g, dtype=torch.float32)
    assert np.array_equal(bits(nxt), ref_bits("normal", 4, 0, 8, 3))


# ---- GPU: items 6-9 and 11 ------------------------------------------------------------------
@needs_cuda
def test_reduce_overhead_records_a_cuda_graph_and_replays_fresh_noise():
    from torch._dynamo.utils import counters
    from torch._inductor import cudagraph_trees

    g = CudaGraphGenerator(8, device="cuda", offset=3)
    assert getattr(g.state, "_dynamo_static_input_type", None) is not None
    n = 4 * 32

    def f(x):
        return x + F.randn_from_state(g.state, (4, 32))

    torch._dynamo.reset()
    counters.clear()
    cf = torch.compile(f, mode="reduce-overhead", fullgraph=True)
    x = torch.zeros(4, 32, device="cuda")
    outs = [cf(x).clone() for _ in range(6)]
    torch.cuda.synchronize()
    assert counters["inductor"]["cudagraph_skips"] == 0, dict(counters["inductor"])
    mgr = cudagraph_trees.get_manager(g.device.index, create_if_none_exists=False)
    assert mgr is not None  # cudagraph trees ran
    recorded = [node for nodes in mgr.roots.values() for node in nodes]
    assert any(isinstance(node, cudagraph_trees.CUDAGraphNode) for node in recorded)
    for k, out in enumerate(outs):
        assert np.array_equal(bits(out).ravel(), ref_bits("normal", 8, 0, 3 + k * n, n)), k
    assert g.get_offset() == 3 + 6 * n


_CAPTURED = [  # every kind and dtype a CudaGraphGenerator draws
    ("normal", torch.float32),
    ("normal", torch.float16),
    ("normal", torch.bfloat16),
    ("normal", torch.float64),
    ("uniform", torch.float32),
    ("uniform", torch.float16),
    ("uniform", torch.bfloat16),
    ("uniform", torch.float64),
    ("words", torch.int32),
]


def _graph_draw(kind, dtype, n, g):
    if kind == "normal":
        return fastrand.randn(n, generator=g, device=g.device, dtype=dtype)
    if kind == "uniform":
        return fastrand.rand(n, generator=g, device=g.device, dtype=dtype)
    return fastrand.random_words(n, generator=g, device=g.device)


@needs_cuda
def test_capture_of_every_kind_and_dtype_after_warm_up():
    n = 37  # odd: the float64 draws that follow start at a rounded-up even position
    warm = CudaGraphGenerator(0, device="cuda")
    for kind, dtype in _CAPTURED:  # the warm-up loads every kernel variant before capture
        _graph_draw(kind, dtype, n, warm)
    g = CudaGraphGenerator(11, device="cuda", offset=1)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = [_graph_draw(kind, dtype, n, g) for kind, dtype in _CAPTURED]
    offset = 1
    for _ in range(2):
        graph.replay()
        torch.cuda.synchronize()
        for (kind, dtype), out in zip(outs, _CAPTURED):
            two = dtype == torch.float64
            name = "float32" if kind == "words" else str(dtype).replace("torch.", "")
            want = ref_bits(kind, 11, 0, _start(offset, two), n, name)
            assert np.array_equal(bits(out), want), (kind, dtype)
            offset = _end(offset, n, two)
    assert g.get_offset() == offset


@needs_cuda
def test_graph_keeps_the_state_alive_after_the_generator_is_gone():
    n = 1024
    g = CudaGraphGenerator(5, device="cuda")
    fastrand.randn(n, generator=g, device="cuda")  # warm-up: offset n
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fastrand.randn(n, generator=g, device="cuda")
    alive = weakref.ref(g.state)
    del g
    gc.collect()
    assert alive() is not None  # held for the graph
    # blocks of the state's size class, allocated after the generator died
    sentinels = [torch.full((3,), 7, dtype=torch.int64, device="cuda") for _ in range(256)]
    for k in range(2):
        graph.replay()
        torch.cuda.synchronize()
        assert np.array_equal(bits(out), ref_bits("normal", 5, 0, (k + 1) * n, n)), k
    assert all(s.tolist() == [7, 7, 7] for s in sentinels)
    if hasattr(torch.cuda.CUDAGraph, "get_currently_capturing_graph"):
        del graph
        gc.collect()
        assert alive() is None  # released with the graph
    other = CudaGraphGenerator(6, device="cuda")  # eager use keeps nothing alive
    fastrand.randn(4, generator=other, device="cuda")
    gone = weakref.ref(other.state)
    del other
    gc.collect()
    assert gone() is None


@needs_cuda
def test_host_side_state_access_orders_against_side_streams():
    n = 1 << 20
    g = CudaGraphGenerator(9, device="cuda")
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)  # keeps the side stream busy for a while
        a = fastrand.randn(n, generator=g, device="cuda")
    assert g.get_offset() == n  # saw the side stream's draw without a user sync
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)
        b = fastrand.randn(n, generator=g, device="cuda")  # reads offset n when it runs
    g.set_offset(5)  # after the pending draw, not before it
    assert g.get_offset() == 5
    other = torch.cuda.Stream()
    with torch.cuda.stream(other):  # no wait_stream: the write is complete already
        c = fastrand.randn(n, generator=g, device="cuda")
    torch.cuda.synchronize()
    assert np.array_equal(bits(a), ref_bits("normal", 9, 0, 0, n))
    assert np.array_equal(bits(b), ref_bits("normal", 9, 0, n, n))
    assert np.array_equal(bits(c), ref_bits("normal", 9, 0, 5, n))
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)
        fastrand.randn(n, generator=g, device="cuda")
    g.manual_seed(3)
    assert (g.initial_seed(), g.get_offset()) == (3, 0)
    s = g.get_state()
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)
        fastrand.randn(n, generator=g, device="cuda")
    g.set_state(s)
    assert g.get_offset() == 0
    # replays queued on a side stream
    fastrand.randn(8, generator=g, device="cuda")  # warm-up
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fastrand.randn(n, generator=g, device="cuda")
        with pytest.raises(RuntimeError, match="capture"):
            g.get_offset()  # refused during capture, the capture goes on
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)
        graph.replay()
        graph.replay()
    assert g.get_offset() == 8 + 2 * n
    c2 = copy.deepcopy(g)
    assert c2.get_offset() == 8 + 2 * n and c2.state.data_ptr() != g.state.data_ptr()


@needs_cuda
def test_graph_generator_pickle_and_copy_round_trip_on_cuda():
    g = CudaGraphGenerator(2**64 - 1, device="cuda", stream=3, offset=2**63)
    fastrand.randn(5, generator=g, device="cuda")
    for c in (pickle.loads(pickle.dumps(g)), copy.copy(g), copy.deepcopy(g), g.clone()):
        assert c.device == g.device and c.state.data_ptr() != g.state.data_ptr()
        assert (c.initial_seed(), c.stream, c.get_offset()) == (2**64 - 1, 3, 2**63 + 5)
        x = fastrand.randn(4, generator=c, device="cuda")
        assert np.array_equal(bits(x), ref_bits("normal", 2**64 - 1, 3, 2**63 + 5, 4))
    assert g.get_offset() == 2**63 + 5


@needs_cuda
def test_failed_cuda_launch_policy(monkeypatch):
    def boom(*args):
        raise RuntimeError("fastrand CUDA kernel: simulated failed launch")

    g = fastrand.Generator(2)
    cg = CudaGraphGenerator(2, device="cuda")
    with monkeypatch.context() as m:
        m.setattr(_C, "fill_cuda", boom)
        m.setattr(_C, "fill_cuda_state", boom)
        with pytest.raises(RuntimeError, match="simulated"):
            fastrand.randn(6, generator=g, device="cuda")
        with pytest.raises(RuntimeError, match="simulated"):
            fastrand.randn(6, generator=cg, device="cuda")
    assert g.get_offset() == 6  # positions reserved before the launch are skipped
    assert cg.get_offset() == 0  # nothing was queued
    nxt = fastrand.randn(3, generator=g, device="cuda")
    assert np.array_equal(bits(nxt), ref_bits("normal", 2, 0, 6, 3))
