"""fastrand.patch_torch(): torch's Gaussian and uniform draws answered by fastrand.

Expected values come from the NumPy reference (fastrand.reference): a torch generator right
after manual_seed(s) stands at (s, stream 2^63, offset 0) (docs/torch-generators.md), and the
affine formulas are the ones fastrand._torch_patch documents, evaluated here in NumPy.
"""

import importlib
import importlib.util
import math
import sys
import threading
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TORCH_DTYPES, bits, ref_bits

import fastrand
from fastrand import reference as ref

STREAM = 2**63  # a torch generator's stream right after manual_seed(s)
CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _no_patch_left():
    # torch.set_default_device("cpu") (how other tests restore the default) leaves a DeviceContext
    # mode on the stack; None removes it, so the counts below start from an empty stack
    if torch.get_default_device().type == "cpu":
        torch.set_default_device(None)
    assert torch._C._len_torch_function_stack() == 0
    yield
    fastrand.unpatch_torch()
    assert torch._C._len_torch_function_stack() == 0


# --------------------------------------------------------------------------------------------
# the reference
def _compute(dtype):
    return np.float64 if dtype == "float64" else np.float32


def _rounded(v, dtype):
    """Bits of the float32 / float64 values ``v`` rounded to ``dtype`` (to nearest even)."""
    if dtype == "bfloat16":
        return ref._bf16_bits(v.astype(np.float32))
    return bits(v.astype(dtype))


def _as_float(u, dtype):
    if dtype == "bfloat16":  # uint16 bit patterns
        return (u.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return u


def _in_dtype(x, dtype):
    """The Python float ``x`` rounded to ``dtype``, as a float of the compute type."""
    if dtype == "bfloat16":
        return _as_float(ref._bf16_bits(np.float32(x)), dtype)[()]
    return _compute(dtype)(np.dtype(dtype).type(x))


def expected_normal(seed, offset, n, dtype, mean=0.0, std=1.0):
    """z * std + mean in float32 (float64 for float64), then rounded; the product is skipped
    for std == 1 and the sum for mean == 0."""
    if mean == 0 and std == 1:
        return ref_bits("normal", seed, STREAM, offset, n, dtype)
    c = _compute(dtype)
    v = ref.normal(seed, STREAM, offset, n, "float64" if c is np.float64 else "float32")
    if std != 1:
        v = v * c(std)
    if mean != 0:
        v = v + c(mean)
    return _rounded(v, dtype)


def expected_uniform(seed, offset, n, dtype, low=0.0, high=1.0):
    """low_D + (high_D - low_D) * u, with u in ``dtype``, in float32 (float64 for float64)."""
    u = _as_float(ref.uniform(seed, STREAM, offset, n, dtype), dtype)
    if low == 0 and high == 1:
        return _rounded(u, dtype)
    c = _compute(dtype)
    lo, hi = _in_dtype(low, dtype), _in_dtype(high, dtype)
    return _rounded(u.astype(c) * (c(hi) - c(lo)) + c(lo), dtype)


def positions(dtype):
    return "float64" if dtype == "float64" else "float32"


# --------------------------------------------------------------------------------------------
# the covered calls
@pytest.mark.parametrize("dtype", list(TORCH_DTYPES))
def test_covered_calls_equal_the_reference(dtype):
    dt = TORCH_DTYPES[dtype]
    seed = 11
    like = torch.zeros(3, 4, dtype=dt)
    t = torch.empty(5, 4, dtype=dt).t()  # not contiguous: values in row-major logical order
    returned = []

    def in_place(out):
        returned.append(out)
        return out.clone()

    torch.manual_seed(seed)
    with fastrand.patch_torch():
        draws = [
            ("normal", 0, 1, torch.randn(2, 3, 5, dtype=dt)),
            ("normal", 0, 1, torch.randn((2, 3), dtype=dt)),
            ("normal", 0, 1, torch.randn(size=[7], dtype=dt)),
            ("uniform", 0, 1, torch.rand(4, 2, dtype=dt)),
            ("uniform", 0, 1, torch.rand(torch.Size([3]), dtype=dt)),
            ("normal", 0, 1, torch.randn_like(like)),
            ("uniform", 0, 1, torch.rand_like(like)),
            ("normal", 1.5, 2.0, torch.normal(1.5, 2.0, (4, 5), dtype=dt)),
            ("normal", -3, 0.5, torch.normal(mean=-3, std=0.5, size=(6,), dtype=dt)),
            ("normal", 0, 1, torch.normal(0.0, 1.0, [3], dtype=dt)),
            ("normal", 0, 1, in_place(t.normal_())),
            ("normal", 1.5, 2.0, in_place(t.normal_(1.5, 2.0))),
            ("normal", 0.25, 3.0, in_place(t.normal_(std=3.0, mean=0.25))),
            ("uniform", 0, 1, in_place(t.uniform_())),
            ("uniform", -1.5, 2.25, in_place(t.uniform_(-1.5, 2.25))),
            ("uniform", 2, 6, in_place(t.uniform_(**{"from": 2, "to": 6}))),
        ]
    offset = 0
    for kind, p, q, out in draws:
        assert out.dtype == dt and out.device.type == "cpu"
        n = out.numel()
        if kind == "normal":
            expected = expected_normal(seed, offset, n, dtype, p, q)
        else:
            expected = expected_uniform(seed, offset, n, dtype, p, q)
        assert np.array_equal(bits(out).ravel(), expected), (kind, p, q, tuple(out.shape))
        offset = ref.next_offset(offset, n, positions(dtype))
    assert len(returned) == 6 and all(out is t for out in returned)  # in place: self


def test_generators_and_default_dtype():
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(6)
    x = torch.zeros(2, 2, dtype=torch.float16)
    with fastrand.patch_torch():
        a = torch.randn(3, generator=g)
        b = torch.rand(3, generator=g)
        c = torch.randn_like(x, generator=g)
        d = torch.empty(4).normal_(generator=g)
        e = torch.empty(4).uniform_(-1, 1, generator=g)
        f = torch.normal(2.0, 3.0, (2,), generator=g)
        before = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            h = torch.randn(3)  # the default generator, the default dtype
        finally:
            torch.set_default_dtype(before)
    assert np.array_equal(bits(a), expected_normal(5, 0, 3, "float32"))
    assert np.array_equal(bits(b), expected_uniform(5, 3, 3, "float32"))
    assert np.array_equal(bits(c).ravel(), expected_normal(5, 6, 4, "float16"))
    assert np.array_equal(bits(d), expected_normal(5, 10, 4, "float32"))
    assert np.array_equal(bits(e), expected_uniform(5, 14, 4, "float32", -1, 1))
    assert np.array_equal(bits(f), expected_normal(5, 18, 2, "float32", 2.0, 3.0))
    assert h.dtype == torch.float64
    assert np.array_equal(bits(h), expected_normal(6, 0, 3, "float64"))


def test_bounds_are_rounded_to_the_tensor_dtype():
    torch.manual_seed(2)
    with fastrand.patch_torch():
        a = torch.empty(64, dtype=torch.float16).uniform_(0.1, 0.3)
        b = torch.empty(64, dtype=torch.bfloat16).normal_(0.1, 0.7)
        c = torch.empty(64, dtype=torch.float16).uniform_(3.0, 3.0)
    assert np.array_equal(bits(a), expected_uniform(2, 0, 64, "float16", 0.1, 0.3))
    assert np.array_equal(bits(b), expected_normal(2, 64, 64, "bfloat16", 0.1, 0.7))
    assert (c == 3).all()
    assert np.array_equal(bits(c), expected_uniform(2, 128, 64, "float16", 3.0, 3.0))


def test_factory_keywords():
    torch.manual_seed(3)
    x = torch.zeros(2, 3, 4, 5).to(memory_format=torch.channels_last)
    with fastrand.patch_torch():
        a = torch.randn(2, 3, requires_grad=True)
        b = torch.randn_like(x)  # preserve_format: channels_last, values in logical order
        c = torch.rand_like(x, memory_format=torch.contiguous_format, requires_grad=True)
        d = torch.normal(0.0, 2.0, (3,), requires_grad=True, layout=torch.strided)
        with torch.device("meta"):  # the default device; meta draws nothing
            m = torch.randn(4)
            m2 = torch.empty(3, device="meta").normal_()  # torch's no-op on meta
        e = torch.randn(3, device=None, dtype=None, layout=None, out=None, generator=None)
    assert a.requires_grad and a.is_leaf and c.requires_grad and d.requires_grad
    assert b.is_contiguous(memory_format=torch.channels_last) and c.is_contiguous()
    assert m.device.type == "meta" and m2.device.type == "meta"
    offset = 0
    for out, kind, p, q in [
        (a, "normal", 0, 1),
        (b, "normal", 0, 1),
        (c, "uniform", 0, 1),
        (d, "normal", 0.0, 2.0),
        (e, "normal", 0, 1),
    ]:
        n = out.numel()
        exp = (expected_normal if kind == "normal" else expected_uniform)(
            3, offset, n, "float32", p, q
        )
        assert np.array_equal(bits(out).ravel(), exp)
        offset += n


def test_pin_memory_is_pinned_or_refused_before_drawing():
    torch.manual_seed(4)
    state = torch.get_rng_state()
    try:
        torch.randn(2, pin_memory=True)
    except RuntimeError as e:
        unpatched = e
    else:
        unpatched = None
    torch.set_rng_state(state)
    with fastrand.patch_torch():
        if unpatched is not None:  # no accelerator: torch's own error, nothing drawn
            with pytest.raises(RuntimeError, match=str(unpatched)[:40]):
                torch.randn(2, pin_memory=True)
            assert torch.equal(torch.get_rng_state(), state)
        else:
            p = torch.randn(2, pin_memory=True)
            assert p.is_pinned()
            assert np.array_equal(bits(p), expected_normal(4, 0, 2, "float32"))


# --------------------------------------------------------------------------------------------
# everything else is torch's
PASSTHROUGH = {
    "complex randn": lambda: torch.randn(3, dtype=torch.complex64),
    "complex rand_like": lambda: torch.rand_like(torch.zeros(3), dtype=torch.complex64),
    "complex normal_": lambda: torch.zeros(3, dtype=torch.complex64).normal_(),
    "out=": lambda: torch.randn(3, out=torch.empty(3)),
    "normal(tensor, float)": lambda: torch.normal(torch.zeros(3), 1.0),
    "normal(float, tensor)": lambda: torch.normal(0.0, torch.ones(3)),
    "normal(tensor, tensor)": lambda: torch.normal(torch.zeros(3), torch.ones(3)),
    "normal_(tensor mean)": lambda: torch.empty(3).normal_(torch.tensor(1.0)),
    "randint": lambda: torch.randint(0, 100, (5,)),
    "bernoulli": lambda: torch.bernoulli(torch.full((6,), 0.5)),
    "multinomial": lambda: torch.multinomial(torch.ones(5), 3),
    "exponential_": lambda: torch.empty(4).exponential_(),
    "dropout": lambda: F.dropout(torch.ones(8), 0.5),
    "randperm": lambda: torch.randperm(6),
}


@pytest.mark.parametrize("name", list(PASSTHROUGH))
def test_calls_not_covered_are_torchs(name):
    call = PASSTHROUGH[name]
    torch.manual_seed(8)
    expected = call()
    state = torch.get_rng_state()
    torch.manual_seed(8)
    with fastrand.patch_torch():
        got = call()
    assert got.dtype == expected.dtype and torch.equal(got, expected)
    assert torch.equal(torch.get_rng_state(), state)  # torch drew exactly what it draws


ERRORS = {
    "int dtype": lambda: torch.randn(3, dtype=torch.int32),
    "int normal_": lambda: torch.empty(3, dtype=torch.int64).normal_(),
    "negative std": lambda: torch.empty(3).normal_(0, -1),
    "NaN std": lambda: torch.normal(0.0, float("nan"), (3,)),
    "from > to": lambda: torch.empty(3).uniform_(2, 1),
    "to out of range": lambda: torch.empty(3, dtype=torch.float16).uniform_(0, 70000),
    "leaf requiring grad": lambda: torch.zeros(3, requires_grad=True).normal_(),
    "overlapping": lambda: torch.empty(1).expand(3).uniform_(),
    "sparse like": lambda: torch.randn_like(torch.zeros(3).to_sparse()),
    "unknown device": lambda: torch.randn(3, device="cuda:63"),
    "unknown device like": lambda: torch.rand_like(torch.zeros(2), device="cuda:63"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_calls_torch_refuses_are_refused_by_torch(name):
    call = ERRORS[name]
    with pytest.raises(Exception) as unpatched:
        call()
    state = torch.get_rng_state()
    with fastrand.patch_torch():
        with pytest.raises(type(unpatched.value)) as patched:
            call()
    assert str(patched.value) == str(unpatched.value)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn


def test_outside_the_patch_torch_is_untouched():
    def draws():
        torch.manual_seed(3)
        t = torch.empty(4)
        return [
            torch.randn(4),
            torch.rand(4),
            torch.randn_like(t),
            torch.normal(1.0, 2.0, (4,)),
            t.normal_(),
            t.clone().uniform_(-1, 1),
        ]

    before = draws()
    with fastrand.patch_torch():
        patched = draws()
    fastrand.patch_torch().undo()
    after = draws()
    for b, p, a in zip(before, patched, after):
        assert torch.equal(b, a)
        assert not torch.equal(b, p)
    assert torch._C._len_torch_function_stack() == 0


def test_nn_init_and_modules_draw_through_fastrand():
    w = torch.empty(4, 5)
    torch.manual_seed(9)
    with fastrand.patch_torch():
        a = torch.nn.init.normal_(w, 0.5, 2.0).clone()  # dispatches as a whole, then normal_
        b = torch.nn.init.uniform_(w, -1.5, 2.25).clone()
        lin = torch.nn.Linear(5, 4)  # kaiming_uniform_ (dispatches as a whole), then uniform_
    assert np.array_equal(bits(a).ravel(), expected_normal(9, 0, 20, "float32", 0.5, 2.0))
    assert np.array_equal(bits(b).ravel(), expected_uniform(9, 20, 20, "float32", -1.5, 2.25))
    # nn.Linear: kaiming_uniform_(weight, a=sqrt(5)), then the bias uniform in 1/sqrt(fan_in)
    gain = math.sqrt(2.0 / (1 + math.sqrt(5) ** 2))
    bound = math.sqrt(3.0) * (gain / math.sqrt(5))
    exp_w = expected_uniform(9, 40, 20, "float32", -bound, bound)
    exp_b = expected_uniform(9, 60, 4, "float32", -1 / math.sqrt(5), 1 / math.sqrt(5))
    assert np.array_equal(bits(lin.weight).ravel(), exp_w)
    assert np.array_equal(bits(lin.bias), exp_b)


def test_fractional_max_pool_samples_are_fastrands():
    x = torch.from_numpy(ref.normal(1, 0, 0, 2 * 3 * 8 * 8, "float32")).view(2, 3, 8, 8)
    torch.manual_seed(9)
    with fastrand.patch_torch():
        out, idx = F.fractional_max_pool2d(x, 2, output_size=(4, 4), return_indices=True)
    samples = torch.from_numpy(ref.uniform(9, STREAM, 0, 2 * 3 * 2, "float32")).view(2, 3, 2)
    exp, exp_idx = F.fractional_max_pool2d(
        x, 2, output_size=(4, 4), return_indices=True, _random_samples=samples
    )
    assert torch.equal(idx, exp_idx) and np.array_equal(bits(out), bits(exp))


def test_dtensor_factories_stay_torchs(monkeypatch):
    """torch.distributed.tensor.randn draws each rank's local shard with torch.randn inside
    DTensor's offset-based RNG region; answered by fastrand, every rank would draw the same
    values, so those calls stay torch's. (DTensor's tracker needs a CUDA mesh: on a CPU mesh a
    tracker that keeps the generator as it is stands in for it, so the real factory reaches its
    torch.randn call.)"""
    import contextlib
    import socket

    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, _random
    from torch.distributed.tensor import randn as dtensor_randn

    class KeepState:
        def _distribute_region(self, spec, generator=None):
            return contextlib.nullcontext()

    monkeypatch.setattr(_random, "_rng_tracker", KeepState())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        torch.manual_seed(0)
        torchs = dtensor_randn(4, 3, device_mesh=mesh, placements=[Shard(0)]).to_local()
        torch.manual_seed(0)
        with fastrand.patch_torch():
            got = dtensor_randn(4, 3, device_mesh=mesh, placements=[Shard(0)]).to_local()
            assert _fastrand_draws()  # the patch is still in force for other calls
    finally:
        dist.destroy_process_group()
    assert torch.equal(got, torchs)


# --------------------------------------------------------------------------------------------
# handles: nesting, undo, threads, other modes
def _fastrand_draws():
    """Whether torch.randn in this thread is fastrand's now (draws from its own generator)."""
    out = torch.randn(8, generator=torch.Generator("cpu").manual_seed(0), device="cpu")
    return np.array_equal(bits(out), expected_normal(0, 0, 8, "float32"))


def test_context_manager_restores_on_exit_and_exception():
    with fastrand.patch_torch() as h:
        assert h.active and _fastrand_draws()
    assert not h.active and not _fastrand_draws()
    with pytest.raises(KeyError):
        with fastrand.patch_torch():
            raise KeyError("boom")
    assert not _fastrand_draws()
    assert "undone" in repr(h)


def test_nested_and_repeated_use():
    with fastrand.patch_torch():
        with fastrand.patch_torch():
            assert _fastrand_draws()
        assert _fastrand_draws()  # the outer block still holds it
        assert torch._C._len_torch_function_stack() == 1  # one mode, however many patches
    assert not _fastrand_draws()

    a, b = fastrand.patch_torch(), fastrand.patch_torch()
    a.undo()
    a.undo()  # a second undo does nothing
    assert _fastrand_draws()  # b still in force
    b.undo()
    assert not _fastrand_draws()

    fastrand.patch_torch()
    with fastrand.patch_torch():  # a block inside a standing patch leaves it in force
        pass
    assert _fastrand_draws()
    fastrand.unpatch_torch()
    assert not _fastrand_draws()
    fastrand.unpatch_torch()  # nothing patched: no-op

    with fastrand.patch_torch() as h:  # unpatch inside a block: the block's exit is a no-op
        fastrand.unpatch_torch()
        assert not h.active and not _fastrand_draws()
    with h:  # an undone handle can be re-entered
        with h:  # and nested
            assert _fastrand_draws()
        assert _fastrand_draws()
    assert not _fastrand_draws()


def test_undo_under_another_mode_leaves_it_in_place():
    h = fastrand.patch_torch()
    with torch.device("meta"):  # a mode above the patch's
        assert torch.randn(2).device.type == "meta"
        h.undo()
        assert torch.randn(2).device.type == "meta"  # still in force
        assert not _fastrand_draws()
    assert torch.randn(2).device.type == "cpu"


def test_patch_is_per_thread():
    seen = {}

    def worker():
        seen["draws"] = _fastrand_draws()

    with fastrand.patch_torch():
        th = threading.Thread(target=worker)  # torch function modes are thread-local
        th.start()
        th.join()
        assert _fastrand_draws()
    assert seen["draws"] is False


def test_threads_patch_and_undo_concurrently():
    errors = []
    start = threading.Barrier(6)

    def worker(k):
        try:
            start.wait()
            for _ in range(10):
                with fastrand.patch_torch():
                    g = torch.Generator().manual_seed(k)
                    assert np.array_equal(bits(torch.randn(16, generator=g)), expected[k])
                assert not _fastrand_draws()
            assert torch._C._len_torch_function_stack() == 0
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    expected = {k: expected_normal(k, 0, 16, "float32") for k in range(6)}
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_undo_from_another_thread():
    h = fastrand.patch_torch()
    th = threading.Thread(target=h.undo)
    th.start()
    th.join()
    assert not h.active and not _fastrand_draws()  # off at once in this thread
    fastrand.unpatch_torch()  # this thread's next patch call takes the spent mode off its stack
    assert torch._C._len_torch_function_stack() == 0


# --------------------------------------------------------------------------------------------
# torch.compile: covered calls run as in eager mode, at a graph break
def _noisy(x):
    return (
        x * 2 + torch.randn(x.shape),
        torch.rand(x.shape, dtype=torch.float64),
        torch.empty(3).normal_(1.0, 2.0),
        torch.empty(2, dtype=torch.bfloat16).uniform_(-1, 1),
    )


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_region_draws_as_eager(backend):
    from torch._dynamo.utils import counters

    x = torch.zeros(3, 4)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(_noisy, backend=backend)
    with fastrand.patch_torch():
        torch.manual_seed(2)
        eager = _noisy(x) + (torch.randn(2),)
        torch.manual_seed(2)
        first = compiled(x) + (torch.randn(2),)  # the generator advanced as in eager mode
        torch.manual_seed(2)
        second = compiled(x) + (torch.randn(2),)  # the cached compiled code
    for e, a, b in zip(eager, first, second):
        assert np.array_equal(bits(a), bits(e)) and np.array_equal(bits(b), bits(e))
    assert np.array_equal(bits(eager[0]).ravel(), expected_normal(2, 0, 12, "float32"))
    assert np.array_equal(bits(eager[3]), expected_uniform(2, 39, 2, "bfloat16", -1, 1))
    # one graph break per covered call, at the call: torch.compile never traces fastrand's code
    breaks = counters["graph_break"]
    assert breaks and all("_intercept" in reason for reason in breaks), list(breaks)


def test_compiled_code_follows_the_patch_state():
    x = torch.zeros(5)
    torch._dynamo.reset()
    compiled = torch.compile(_noisy, backend="aot_eager")
    torch.manual_seed(1)
    plain = compiled(x)  # compiled outside the patch: torch's draws
    torch.manual_seed(1)
    with fastrand.patch_torch():
        patched = compiled(x)  # recompiled for the mode: fastrand's
    torch.manual_seed(1)
    again = compiled(x)
    torch.manual_seed(1)
    eager = _noisy(x)
    for p, a, e in zip(plain, again, eager):
        assert torch.equal(p, e) and torch.equal(a, e)
    assert np.array_equal(bits(patched[0]), expected_normal(1, 0, 5, "float32"))


def _like_draws(x):
    return torch.randn_like(x), torch.rand_like(x), torch.normal(0.0, 2.0, (3,))


def test_compiled_like_and_normal_factory_draws_stay_torchs():
    """The documented limit: torch.compile (Dynamo) does not pass randn_like, rand_like and
    torch.normal(mean, std, size) to torch function modes, so in a compiled region they are
    compiled as torch's draws. (If this fails, torch now dispatches them: update the README.)"""
    x = torch.zeros(4)
    torch._dynamo.reset()
    compiled = torch.compile(_like_draws, backend="aot_eager")
    torch.manual_seed(5)
    torchs = _like_draws(x)
    with fastrand.patch_torch():
        torch.manual_seed(5)
        got = compiled(x)
        torch.manual_seed(5)
        eager = _like_draws(x)
    for g, t, e in zip(got, torchs, eager):
        assert torch.equal(g, t) and not torch.equal(g, e)


def test_fullgraph_refuses_a_covered_call():
    torch._dynamo.reset()
    with fastrand.patch_torch():
        with pytest.raises(torch._dynamo.exc.Unsupported, match="torch.compiler.disable"):
            torch.compile(_noisy, fullgraph=True, backend="eager")(torch.ones(2))


# --------------------------------------------------------------------------------------------
# clients that call torch directly: diffusers schedulers, k-diffusion samplers
def test_diffusers_amused_scheduler_draws_are_fastrands():
    from diffusers import AmusedScheduler
    from diffusers.schedulers.scheduling_amused import gumbel_noise

    sched = AmusedScheduler(mask_token_id=1023)
    sched.set_timesteps(12)
    sample = torch.arange(64).reshape(1, 64)
    t = sched.timesteps[5]
    probs = torch.full((2, 16), 0.25)
    with fastrand.patch_torch():
        masked = sched.add_noise(sample, t, generator=torch.Generator().manual_seed(3))
        gumbel = gumbel_noise(probs, generator=torch.Generator().manual_seed(4))
    # add_noise: torch.rand(sample.shape, generator=...) < mask_ratio masks a token
    ratio = ((sched.timesteps == t).nonzero() + 1) / len(sched.timesteps)
    u = torch.from_numpy(ref.uniform(3, STREAM, 0, 64, "float32")).view(1, 64)
    expected = torch.where(u < torch.cos(ratio * math.pi / 2), 1023, sample)
    assert torch.equal(masked, expected) and 0 < int((masked == 1023).sum()) < 64
    # gumbel_noise (the step's sampling): zeros_like(t).uniform_(0, 1, generator=...)
    u = torch.from_numpy(ref.uniform(4, STREAM, 0, 32, "float32")).view(2, 16)
    assert np.array_equal(bits(gumbel), bits(-torch.log((-torch.log(u.clamp(1e-20))).clamp(1e-20))))


def test_diffusers_sde_ve_add_noise_draws_are_fastrands():
    from diffusers import ScoreSdeVeScheduler

    sched = ScoreSdeVeScheduler()
    sched.set_sigmas(10)
    x = torch.ones(2, 3, 4, 4)
    steps = torch.tensor([1, 7])
    torch.manual_seed(12)
    with fastrand.patch_torch():
        noisy = sched.add_noise(x, None, steps)  # torch.randn_like(x), the default generator
    noise = torch.from_numpy(ref.normal(12, STREAM, 0, x.numel(), "float32")).view(x.shape)
    assert np.array_equal(bits(noisy), bits(sched.add_noise(x, noise, steps)))


@pytest.fixture(scope="module")
def k_sampling():
    """k-diffusion's real k_diffusion/sampling.py (and utils.py). Its package __init__ imports its
    training modules (skimage, clip, wandb, ...), none of which the samplers use; when those are
    missing, the two modules are loaded from the installed package without its __init__, and
    torchvision (imported by utils.py for image conversions the samplers never call) is given an
    empty placeholder if it is missing too."""
    try:
        from k_diffusion import sampling

        return sampling
    except ImportError:
        pass
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or spec.submodule_search_locations is None:
        pytest.skip("k-diffusion is not installed (pip install --no-deps k-diffusion)")
    for dep in ("scipy", "torchdiffeq", "torchsde", "tqdm", "PIL", "safetensors"):
        pytest.importorskip(dep)
    names = ["k_diffusion", "k_diffusion.utils", "k_diffusion.sampling"]
    placeholders = []
    if importlib.util.find_spec("torchvision") is None:
        placeholders = [
            "torchvision",
            "torchvision.transforms",
            "torchvision.transforms.functional",
        ]
    saved = {n: sys.modules.get(n) for n in names + placeholders}
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = package
    for n in placeholders:
        sys.modules[n] = types.ModuleType(n)
    if placeholders:
        sys.modules["torchvision.transforms"].functional = sys.modules[placeholders[-1]]
    try:
        return importlib.import_module("k_diffusion.sampling")
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def test_k_diffusion_euler_ancestral_default_noise_is_fastrands(k_sampling):
    sigmas = k_sampling.get_sigmas_karras(6, 0.1, 10.0)
    x0 = torch.from_numpy(ref.normal(0, 0, 0, 2 * 4 * 8 * 8, "float32")).view(2, 4, 8, 8) * 10

    def model(x, sigma):
        return x / (1 + sigma[:, None, None, None] ** 2)

    torch.manual_seed(21)
    with fastrand.patch_torch():  # default_noise_sampler: torch.randn_like(x) each step
        patched = k_sampling.sample_euler_ancestral(model, x0, sigmas, disable=True)
    n = x0.numel()
    noises = iter(
        torch.from_numpy(ref.normal(21, STREAM, i * n, n, "float32")).view(x0.shape)
        for i in range(len(sigmas) - 1)
    )
    expected = k_sampling.sample_euler_ancestral(
        model, x0, sigmas, disable=True, noise_sampler=lambda s, s_next: next(noises)
    )
    assert np.array_equal(bits(patched), bits(expected))
    torch.manual_seed(21)
    assert not torch.equal(
        k_sampling.sample_euler_ancestral(model, x0, sigmas, disable=True), patched
    )


# --------------------------------------------------------------------------------------------
# on a GPU: the same bits as on the CPU
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", list(TORCH_DTYPES))
def test_cuda_draws_equal_cpu_draws(dtype):
    dt = TORCH_DTYPES[dtype]

    def draws(device):
        torch.manual_seed(13)
        t = torch.empty(5, 4, dtype=dt, device=device).t()
        with fastrand.patch_torch():
            return [
                torch.randn(3, 5, dtype=dt, device=device),
                torch.rand(7, dtype=dt, device=device),
                torch.randn_like(torch.zeros(2, 3, dtype=dt, device=device)),
                torch.normal(1.5, 2.0, (9,), dtype=dt, device=device),
                t.normal_(0.5, 3.0).clone(),
                t.uniform_(-1.5, 2.25).clone(),
            ]

    for c, g in zip(draws("cpu"), draws("cuda")):
        assert g.is_cuda and np.array_equal(bits(g), bits(c))


def test_k_diffusion_brownian_tree_normals_go_through_the_patch(k_sampling):
    """torchsde's BrownianInterval (behind k-diffusion's default BrownianTreeNoiseSampler) draws
    its normals with torch.randn and a seeded torch.Generator: the patch answers them."""
    x = torch.zeros(1, 2, 4, 4)

    def noise(patched):
        sampler = k_sampling.BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=5)
        if patched:
            with fastrand.patch_torch():
                return sampler(torch.tensor(5.0), torch.tensor(3.0))
        return sampler(torch.tensor(5.0), torch.tensor(3.0))

    patched, again, torchs = noise(True), noise(True), noise(False)
    assert torch.equal(patched, again) and not torch.equal(patched, torchs)
    assert torch.equal(noise(False), torchs)  # and leaves torch's draws alone afterwards
