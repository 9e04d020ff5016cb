"""Reproducers of the faults of issue 14, item 4 ("other faults found in the same try"): each
test failed on the code before the fix. Golden values come from the NumPy reference or from a
draw in an ordinary setting, never from the faulty path itself."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import bits, child_env, ref_bits

import fastrand
import fastrand.numpy as frnp
from fastrand import _C


def _env(**extra):
    return child_env(**extra)


def _run(code, timeout=120, **env):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --------------------------------------------------------------------------------------------
# Default device: the copy path's CPU staging buffer must not follow torch.set_default_device
@pytest.fixture
def default_device_meta():
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


def test_copy_path_ignores_default_device(default_device_meta):
    # the copy path (devices without a native kernel) stages the draw in a CPU buffer; with the
    # buffer on the default device (meta) the CPU fill got a null pointer and refused
    from fastrand import _api

    out = torch.empty(6, device="cpu")
    _api._fill(
        out, 6, torch.device("meta"), _api._NORMAL, _api._FLOAT_CODES[torch.float32], 3, 0, 0
    )
    assert np.array_equal(bits(out), ref_bits("normal", 3, 0, 0, 6))
    # a meta target itself draws nothing (torch's factory rule), in the full and the cached path
    g = fastrand.Generator(5)
    for _ in range(2):  # the second call would take randn_tensor's cached fast path
        out = fastrand.randn_tensor((4,), generator=g, device="meta", dtype=torch.float32)
        assert out.device.type == "meta" and out.shape == (4,)
    assert g.get_offset() == 0


def test_cpu_draw_under_meta_default_device(default_device_meta):
    out = fastrand.randn_tensor((6,), generator=fastrand.Generator(3))  # None: the CPU
    assert out.device.type == "cpu"
    assert np.array_equal(bits(out), ref_bits("normal", 3, 0, 0, 6))


# --------------------------------------------------------------------------------------------
# Settings restore: enable_full_determinism sets torch's fp32_precision keys and its legacy flags
# alike, so every legacy getter and setter works inside (issue 21 item 14: reading
# torch.backends.cudnn.allow_tf32 raised there), and puts back exactly what was there (checked
# against a process that never called it)
_TRACE = """
import json, sys
import torch
import fastrand

G = torch._C._get_fp32_precision_getter
KEYS = [("generic", "all"), ("cuda", "all"), ("mkldnn", "all")] + [
    (b, o) for b in ("cuda", "mkldnn") for o in ("matmul", "conv", "rnn")
]

def read(f):
    try:
        return f()
    except RuntimeError:
        return "raises"

LEGACY = [  # every legacy getter of the float32 precision
    lambda: torch.get_float32_matmul_precision(),
    lambda: torch.backends.cuda.matmul.allow_tf32,
    lambda: torch.backends.cudnn.allow_tf32,
    lambda: torch.backends.mkldnn.allow_tf32,
]

def observe():
    return [G(*k) for k in KEYS] + [read(f) for f in LEGACY]

def inside_block():
    w = observe()
    # TF32 off for every CUDA op, in both APIs; every legacy getter reads
    got = [w[KEYS.index(("cuda", op))] for op in ("matmul", "conv", "rnn")] + w[len(KEYS):-1]
    got.append(w[-1] != "raises")
    with torch.backends.cudnn.flags(enabled=True):  # reads and sets the legacy cuDNN flag
        pass
    got.append(torch.backends.cudnn.allow_tf32)
    # the legacy setters work and leave the getters readable
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    got.append(observe() == w)
    return got

# torch's initial cuDNN conv/rnn state has no setter (_determinism.py): leave it first, alike in
# both arms (test_full_determinism_from_torch_initial_state covers that state)
torch.backends.cudnn.allow_tf32 = True
# each starting point builds on the state the previous one left; the follow-ups change the
# parents a key may follow, so a key restored to a value of its own instead of following its
# parent (or the reverse) shows in the trace
SETUPS = [
    "pass",
    "torch.set_float32_matmul_precision('high')",
    "torch.backends.cudnn.conv.fp32_precision = 'tf32'",
    "torch.backends.cudnn.fp32_precision = 'tf32'",
    "torch.backends.fp32_precision = 'tf32'",
    "torch.backends.cudnn.allow_tf32 = False",
    "torch.backends.cuda.matmul.allow_tf32 = True",
    "torch.backends.mkldnn.matmul.fp32_precision = 'bf16'",
    "torch.set_float32_matmul_precision('medium')",
    "torch.backends.cuda.matmul.fp32_precision = 'none'",
    "torch.backends.cudnn.rnn.fp32_precision = 'ieee'",
]
FOLLOW = [
    "torch.backends.cudnn.fp32_precision = 'ieee'",
    "torch.backends.cudnn.fp32_precision = 'none'",
    "torch.backends.fp32_precision = 'tf32'",
    "torch.backends.fp32_precision = 'none'",
]
treat = sys.argv[1] == "1"
trace, inside = [], []
for setup in SETUPS:
    exec(setup)
    if treat:
        with fastrand.enable_full_determinism():
            inside.append(inside_block())
    trace.append(observe())
    for f in FOLLOW:
        exec(f)
        trace.append(observe())
print(json.dumps({"trace": trace, "inside": inside}))
"""
_INSIDE = ["ieee", "ieee", "ieee", "highest", False, False, True, False, True]


def _run_arms(script, *args):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, arm, *args],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arm in ("0", "1")
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out))
    return results


_NEW_API = pytest.mark.skipif(
    not hasattr(torch._C, "_get_fp32_precision_getter"), reason="torch without fp32_precision"
)


@_NEW_API
def test_full_determinism_restores_fp32_precision_exactly():
    control, treated = _run_arms(_TRACE)
    assert treated["inside"] == [_INSIDE] * len(treated["inside"])
    assert treated["trace"] == control["trace"]


_INITIAL = """
import json, sys
import torch
import fastrand

G = torch._C._get_fp32_precision_getter
KEYS = [(b, o) for b in ("generic", "cuda", "mkldnn") for o in ("all", "matmul", "conv", "rnn")]
KEYS = [k for k in KEYS if k[0] != "generic" or k[1] == "all"]
exec(sys.argv[2])  # nothing, or a parent key set (cuDNN conv and rnn then follow it)

def read(f):
    try:
        return f()
    except RuntimeError:
        return "raises"

def observe():
    return [G(*k) for k in KEYS] + [
        read(torch.get_float32_matmul_precision),
        read(lambda: torch.backends.cuda.matmul.allow_tf32),
        read(lambda: torch.backends.cudnn.allow_tf32),
    ]

before = observe()
inside = None
if sys.argv[1] == "1":
    with fastrand.enable_full_determinism():
        inside = observe()
print(json.dumps({"before": before, "after": observe(), "inside": inside}))
"""


@_NEW_API
@pytest.mark.parametrize("setup", ["pass", "torch.backends.fp32_precision = 'ieee'"])
def test_full_determinism_from_torch_initial_state(setup):
    """In torch's initial state (cuDNN conv and rnn follow their parents, and read tf32 where
    every parent holds "none") the legacy getters read inside the block
    (torch.backends.cudnn.allow_tf32 raised), and every getter reads as before after it."""
    control, treated = _run_arms(_INITIAL, setup)
    assert treated["before"] == control["before"]
    assert treated["after"] == control["before"] == control["after"]
    assert treated["inside"][-3:] == ["highest", False, False]


# --------------------------------------------------------------------------------------------
# Thread failure: a worker thread that cannot be created must not abort the process
_THREADS = """
import json, resource
import numpy as np
import torch
import fastrand, fastrand.numpy as frnp
from fastrand import _C, reference

N = 64 << 16  # enough values for 64 threads of the CPU fill
soft, hard = resource.getrlimit(resource.RLIMIT_AS)

def vm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

def limited(extra_mib, fn):
    # address space for a few thread stacks (8 MiB each) at most: most workers fail to start
    limit = vm() + (extra_mib << 20)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        return fn()
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

res = {}
want = frnp.randn((N,), 11, offset=3, threads=1).view(np.uint32)
# the values at the thread pieces' edges, from the independent reference
for first in (0, N // 64 - 1, N // 2, N - 2):
    r = reference.normal(11, 0, 3 + first, 2, "float32").view(np.uint32)
    assert np.array_equal(want[first : first + 2], r), first

out = np.empty(N, np.float32)
limited(4, lambda: _C.fill_cpu(out.ctypes.data, N, _C.KIND_NORMAL, _C.DT_FLOAT32, 11, 0, 3, 64))
res["no_thread_starts"] = bool(np.array_equal(out.view(np.uint32), want))

got = limited(N * 4 // 2**20 + 24, lambda: frnp.randn((N,), 11, offset=3, threads=64))
res["numpy_threads_64"] = bool(np.array_equal(got.view(np.uint32), want))

torch.set_num_threads(64)
g = fastrand.Generator(11, offset=3)
t = limited(N * 4 // 2**20 + 24, lambda: fastrand.randn(N, generator=g))
res["torch_threads_64"] = bool(np.array_equal(t.numpy().view(np.uint32), want))

count = 64 * 1000
p1 = np.empty(count, np.float32)
_C.probe_cpu(_C.PROBE_RADIUS32, p1.ctypes.data, 12345, count, 1)
p64 = np.empty(count, np.float32)
limited(4, lambda: _C.probe_cpu(_C.PROBE_RADIUS32, p64.ctypes.data, 12345, count, 64))
res["probe_threads_64"] = bool(np.array_equal(p1.view(np.uint32), p64.view(np.uint32)))
print(json.dumps(res))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_thread_creation_failure_falls_back():
    r = _run(_THREADS)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert json.loads(r.stdout) == {
        "no_thread_starts": True,
        "numpy_threads_64": True,
        "torch_threads_64": True,
        "probe_threads_64": True,
    }


# --------------------------------------------------------------------------------------------
# FASTRAND_CPU_ISA: a name that is no CPU path warns (and still selects scalar)
_ISA = """
import json, warnings
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    from fastrand import _C
print(json.dumps({"selected": _C.cpu_isa_selected(), "flag": _C.cpu_isa_env_warning(),
                  "warnings": [f"{x.category.__name__}: {x.message}" for x in w]}))
"""


def test_cpu_isa_typo_warns():
    r = _run(_ISA, FASTRAND_CPU_ISA="avx3")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["selected"] == "scalar"
    assert len(got["warnings"]) == 1
    msg = got["warnings"][0]
    assert msg.startswith("RuntimeWarning") and "FASTRAND_CPU_ISA" in msg and "avx3" in msg
    assert "avx2" in msg and "scalar" in msg  # says what is expected and what is used
    assert got["flag"] in msg


def test_cpu_isa_typo_is_an_error_where_warnings_are():
    r = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", "import fastrand._C"],
        env=_env(FASTRAND_CPU_ISA="AVX2"),  # names are lower case
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and "FASTRAND_CPU_ISA=AVX2" in r.stderr


def test_cpu_isa_valid_name_does_not_warn():
    r = _run(_ISA, FASTRAND_CPU_ISA="scalar")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got == {"selected": "scalar", "flag": "", "warnings": []}


# --------------------------------------------------------------------------------------------
# Edge arguments
@pytest.mark.parametrize("fn", [frnp.randn, frnp.rand, frnp.random_words])
@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        ({"seed": 1 << 64}, ValueError, "seed"),
        ({"seed": "7"}, TypeError, "seed"),
        ({"seed": True}, TypeError, "seed"),
        ({"offset": -1}, ValueError, "offset"),
        ({"offset": 1 << 64}, ValueError, "offset"),
        ({"stream": -5}, ValueError, "stream"),
        ({"stream": 1.0}, TypeError, "stream"),
    ],
)
@pytest.mark.parametrize("shape", [(0,), (2, 0), 0])
def test_numpy_empty_draw_checks_arguments(fn, kwargs, exc, name, shape):
    args = {"seed": 7, **kwargs}
    with pytest.raises(exc, match=name):
        fn(shape, **args)


@pytest.mark.parametrize("fn", [frnp.randn, frnp.rand, frnp.random_words])
@pytest.mark.parametrize(
    "threads,exc",
    [
        (2**31, ValueError),
        (2**64, ValueError),
        (0, ValueError),
        (-1, ValueError),
        (True, TypeError),
        (False, TypeError),
        (1.0, TypeError),
        ("2", TypeError),
        (torch.tensor(True), TypeError),
    ],
)
@pytest.mark.parametrize("n", [0, 4])
def test_numpy_threads_argument(fn, threads, exc, n):
    with pytest.raises(exc, match="threads"):
        fn((n,), 7, threads=threads)


def test_numpy_threads_accepted_values_agree():
    want = frnp.randn((1 << 17) + 3, 9, threads=1)
    for t in (2, np.int64(3), 2**31 - 1):
        assert np.array_equal(
            frnp.randn((1 << 17) + 3, 9, threads=t).view(np.uint32), want.view(np.uint32)
        )


def test_next_offset_refuses_bool_count():
    with pytest.raises(TypeError, match="n"):
        frnp.next_offset(0, True)


@pytest.mark.parametrize("device", ["hpu", "hpu:0", "privateuseone", torch.device("hpu")])
def test_device_without_module_is_a_value_error(device):
    g = fastrand.Generator(1)
    with pytest.raises(ValueError, match="device"):
        fastrand.randn(2, generator=g, device=device)
    with pytest.raises(ValueError, match="device"):
        fastrand.randn_tensor((2,), generator=g, device=device, dtype=torch.float32)
    assert g.get_offset() == 0


def test_bool_tensor_is_no_size():
    g = fastrand.Generator(1)
    with pytest.raises(TypeError, match="size"):
        fastrand.randn(torch.tensor(True), generator=g)
    with pytest.raises(TypeError, match="size"):
        fastrand.rand(2, torch.tensor(True), generator=g)
    with pytest.raises(TypeError, match="shape"):
        fastrand.randn_tensor((torch.tensor(True), 2), generator=g)
    with pytest.raises(TypeError, match="shape"):
        frnp.randn((torch.tensor(True),), 0)
    assert g.get_offset() == 0
    # 0-d integer tensors stay sizes
    assert fastrand.randn(torch.tensor(3), generator=g).shape == (3,)


def test_bool_tensor_is_no_seed():
    with pytest.raises(TypeError, match="seed"):
        fastrand.Generator(torch.tensor(True))
    with pytest.raises(TypeError, match="seed"):
        fastrand.Generator(0).manual_seed(torch.tensor(False))
    with pytest.raises(TypeError, match="seed"):
        frnp.randn((2,), torch.tensor(True))
    with pytest.raises(TypeError, match="offset"):
        fastrand.Generator(0, offset=torch.tensor(True))
    with pytest.raises(TypeError, match="stream"):
        fastrand.Generator(0, stream=torch.tensor(True))
    # 0-d integer tensors stay seeds
    assert fastrand.Generator(torch.tensor(3)).initial_seed() == 3


@pytest.mark.parametrize("like", [fastrand.randn_like, fastrand.rand_like])
def test_like_keeps_channels_last(like):
    kind = "normal" if like is fastrand.randn_like else "uniform"
    x = torch.zeros(2, 3, 4, 5).to(memory_format=torch.channels_last)
    y = like(x, generator=fastrand.Generator(4))
    assert y.stride() == x.stride() == torch.randn_like(x).stride()
    assert y.is_contiguous(memory_format=torch.channels_last)
    # the values per logical index are the row-major draw of the shape
    assert np.array_equal(bits(y).ravel(), ref_bits(kind, 4, 0, 0, 120))
    y = like(x, generator=fastrand.Generator(4), memory_format=torch.contiguous_format)
    assert y.is_contiguous() and np.array_equal(bits(y).ravel(), ref_bits(kind, 4, 0, 0, 120))
    z = torch.zeros(2, 3, 4, 5, 6).to(memory_format=torch.channels_last_3d)
    y = like(z, generator=fastrand.Generator(4), dtype=torch.float64)
    assert y.stride() == z.stride() and y.dtype == torch.float64
    assert np.array_equal(bits(y).ravel(), ref_bits(kind, 4, 0, 0, 720, "float64"))


def test_like_preserves_other_dense_layouts():
    x = torch.zeros(3, 4, 5).permute(2, 0, 1)  # dense, neither contiguous nor channels_last
    y = fastrand.randn_like(x, generator=fastrand.Generator(2))
    assert y.stride() == torch.randn_like(x).stride() == x.stride()
    assert np.array_equal(bits(y).ravel(), ref_bits("normal", 2, 0, 0, 60))
    s = torch.zeros(4, 6)[:, ::2]  # not dense: torch gives a contiguous result
    y = fastrand.randn_like(s, generator=fastrand.Generator(2))
    assert y.stride() == torch.randn_like(s).stride() and y.is_contiguous()


def test_like_memory_format_refused():
    g = fastrand.Generator(2)
    with pytest.raises(TypeError, match="memory_format"):
        fastrand.randn_like(torch.zeros(2), generator=g, memory_format="channels_last")
    with pytest.raises(ValueError, match="memory_format"):
        fastrand.randn_like(torch.zeros(2, 3, 4), generator=g, memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="memory_format"):
        fastrand.rand_like(torch.zeros(2, 3), generator=g, memory_format=torch.channels_last_3d)
    assert g.get_offset() == 0


# --------------------------------------------------------------------------------------------
# Graph generators in lists
def _fake_graph_generator(device):
    """A CudaGraphGenerator object without CUDA (its constructor needs a GPU): enough for the
    refusals, which must come before any kernel or state access."""
    from fastrand._graph import CudaGraphGenerator

    g = object.__new__(CudaGraphGenerator)
    g.device = torch.device(device)
    g.state = None
    return g


def test_graph_generator_list_of_one_is_unwrapped():
    fake = _fake_graph_generator("cuda:0")
    # the same refusal as the generator given alone (a device mismatch), not a type error
    for gen in (fake, [fake], (fake,)):
        with pytest.raises(ValueError, match="device"):
            fastrand.randn_tensor((2, 3), generator=gen, device="cpu")


def test_mixed_list_refused_before_any_row_advances():
    fake = _fake_graph_generator("cuda:0")
    g0, g2 = fastrand.Generator(1), fastrand.Generator(2)
    tg = torch.Generator().manual_seed(3)
    tg_state = tg.get_state()
    with pytest.raises(ValueError, match="element 2"):
        fastrand.randn_tensor((3, 4), generator=[g0, tg, fake], device="cpu")
    assert g0.get_offset() == 0 and g2.get_offset() == 0
    assert torch.equal(tg.get_state(), tg_state)
    with pytest.raises(TypeError, match="element 1"):
        fastrand.randn_tensor((2, 4), generator=[g0, "x"])
    assert g0.get_offset() == 0


def test_mixed_list_without_graph_generators_still_works():
    rows = fastrand.randn_tensor(
        (2, 5), generator=[fastrand.Generator(1), fastrand.Generator(2)], dtype=torch.float32
    )
    assert np.array_equal(bits(rows[0]), ref_bits("normal", 1, 0, 0, 5))
    assert np.array_equal(bits(rows[1]), ref_bits("normal", 2, 0, 0, 5))


needs_cuda_kernel = pytest.mark.skipif(
    not (torch.cuda.is_available() and _C.CUDA), reason="needs CUDA and the CUDA kernel"
)


@needs_cuda_kernel
def test_graph_generator_in_list_of_one_draws_like_alone():
    from fastrand import CudaGraphGenerator

    g = CudaGraphGenerator(6, device="cuda")
    out = fastrand.randn_tensor((2, 3), generator=[g], device="cuda", dtype=torch.float32)
    assert np.array_equal(bits(out), ref_bits("normal", 6, 0, 0, 6))
    assert g.get_offset() == 6


@needs_cuda_kernel
def test_graph_generator_mixed_with_others():
    from fastrand import CudaGraphGenerator

    g = CudaGraphGenerator(6, device="cuda", offset=10)
    h = fastrand.Generator(7)
    out = fastrand.randn_tensor((2, 3), generator=[h, g], device="cuda", dtype=torch.float32)
    assert np.array_equal(bits(out[0]), ref_bits("normal", 7, 0, 0, 3))
    assert np.array_equal(bits(out[1]), ref_bits("normal", 6, 0, 10, 3))
    assert g.get_offset() == 13 and h.get_offset() == 3
    # on another device than the output: refused before h advances
    with pytest.raises(ValueError, match="element 1"):
        fastrand.randn_tensor((2, 3), generator=[h, g], device="cpu")
    assert h.get_offset() == 3 and g.get_offset() == 13
