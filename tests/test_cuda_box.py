"""The compiled CUDA entry points on a GPU (skipped without one): the box (region) fill of the
nvcc build (_C.fill_cuda_box) and of the driver-API backend (_C.drv_fill_box, with a cubin that
NVRTC compiles here from _C.kernel_sources()), the driver backend's plain and state fills, its
errors, and the context guards of both backends (issue 16, item 2). Values are checked against
the NumPy reference, bit for bit."""

from __future__ import annotations

import ctypes
import random
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from conftest import TORCH_DTYPES, bits, ref_bits
from nvrtc_util import Nvrtc, find_nvrtc

from fastrand import _C
from fastrand import reference as ref

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
U64 = 1 << 64
KIND = {"normal": _C.KIND_NORMAL, "uniform": _C.KIND_UNIFORM, "words": _C.KIND_WORDS}
DT = {"float32": _C.DT_FLOAT32, "float16": _C.DT_FLOAT16, "bfloat16": _C.DT_BFLOAT16}
DT["float64"] = _C.DT_FLOAT64
OPS = (
    [("normal", d) for d in TORCH_DTYPES]
    + [("uniform", d) for d in TORCH_DTYPES]
    + [("words", "float32")]
)


def _codes(kind, dtype):
    return KIND[kind], (_C.DT_UINT32 if kind == "words" else DT[dtype])


def _empty(kind, dtype, n, device):
    dt = torch.int32 if kind == "words" else TORCH_DTYPES[dtype]
    return torch.empty(n, dtype=dt, device=device)


def _stream(device):
    return torch.cuda.current_stream(device).cuda_stream


@pytest.fixture(scope="module")
def module():
    """A driver-API module of the kernel source, compiled by NVRTC for GPU 0."""
    why = _C.drv_status()
    if why:
        pytest.skip(f"CUDA driver API unavailable: {why}")
    path = find_nvrtc()
    if path is None:
        pytest.skip("NVRTC not found (pip install nvidia-cuda-nvrtc)")
    nv = Nvrtc(path)
    major, minor = torch.cuda.get_device_capability(0)
    arch = major * 10 + minor
    if arch not in nv.supported_archs():
        pytest.skip(f"this NVRTC cannot compile for sm_{arch}")
    cubin, log = nv.compile(_C.kernel_sources(), _C.KERNEL_MAIN, f"sm_{arch}")
    assert log == ""
    return _C.drv_load_module(0, cubin)


def _boxes(rng):
    """(shape, base, sizes, gstrides, index) of random boxes of small global tensors."""
    out = []
    for shape in [(1000,), (33, 17), (4, 9, 31), (2, 3, 4, 5, 7), (3, 1, 1, 64)]:
        for _ in range(3):
            index, sizes, base = [], [], 0
            gstrides = [int(np.prod(shape[d + 1 :])) for d in range(len(shape))]
            for d, dim in enumerate(shape):
                lo = rng.randrange(dim + 1)
                hi = rng.randrange(lo, dim + 1)
                index.append(slice(lo, hi))
                sizes.append(hi - lo)
                base += lo * gstrides[d]
            out.append((shape, base, sizes, gstrides, tuple(index)))
    return out


def _check_boxes(fill, kind, dtype):
    rng = random.Random(f"{kind}{dtype}")
    for shape, base, sizes, gstrides, index in _boxes(rng):
        seed, stream = rng.randrange(U64), rng.randrange(3)
        offset = rng.choice([0, 1, 3, rng.randrange(U64)])
        out = _empty(kind, dtype, int(np.prod(sizes)), "cuda:0")
        fill(out, seed, stream, offset, base, sizes, gstrides)
        full = ref_bits(kind, seed, stream, offset, int(np.prod(shape)), dtype).reshape(shape)
        assert np.array_equal(bits(out), full[index].ravel()), (shape, index, offset)


@pytest.mark.parametrize("kind,dtype", OPS)
def test_aot_box_fill_equals_reference(kind, dtype):
    if not _C.CUDA:
        pytest.skip("built without nvcc: no AOT kernels")
    k, d = _codes(kind, dtype)

    def fill(out, seed, stream, offset, base, sizes, gstrides):
        _C.fill_cuda_box(out.data_ptr(), k, d, seed, stream, offset, base, sizes, gstrides, 0,
                         _stream(0))  # fmt: skip

    _check_boxes(fill, kind, dtype)


@pytest.mark.parametrize("kind,dtype", OPS)
def test_driver_box_fill_equals_reference(module, kind, dtype):
    k, d = _codes(kind, dtype)

    def fill(out, seed, stream, offset, base, sizes, gstrides):
        _C.drv_fill_box(out.data_ptr(), k, d, seed, stream, offset, base, sizes, gstrides,
                        0, _stream(0))  # fmt: skip

    _check_boxes(fill, kind, dtype)


@pytest.mark.parametrize("kind,dtype", OPS)
def test_driver_fill_every_shape_equals_reference(module, kind, dtype):
    k, d = _codes(kind, dtype)
    try:
        for v in range(_C.cuda_variant_count()):
            _C.cuda_set_variant(v)
            for n, offset in ((1, 0), (7, 3), (4109, 0), (4114, 2), (40, (1 << 34) - 16)):
                seed, stream = 99 + v, 5
                out = _empty(kind, dtype, n, "cuda:0")
                _C.drv_fill(out.data_ptr(), n, k, d, seed, stream, offset, 0, _stream(0))
                want = ref_bits(kind, seed, stream, offset, n, dtype)
                assert np.array_equal(bits(out), want), (v, n, offset)
    finally:
        _C.cuda_set_variant(0)
    # large float32/16 normal draws take two blocks per step by default
    if kind == "normal" and dtype in ("float32", "bfloat16"):
        n = (1 << 24) + 3
        out = _empty(kind, dtype, n, "cuda:0")
        _C.drv_fill(out.data_ptr(), n, k, d, 1, 2, 0, 0, _stream(0))
        idx = np.r_[0:1000, n - 1000 : n]
        want = ref_bits(kind, 1, 2, 0, 1000, dtype), ref_bits(kind, 1, 2, n - 1000, 1000, dtype)
        assert np.array_equal(bits(out)[idx], np.concatenate(want))
        if _C.CUDA:
            aot = _empty(kind, dtype, n, "cuda:0")
            _C.fill_cuda(aot.data_ptr(), n, k, d, 1, 2, 0, 0, _stream(0))
            assert torch.equal(aot.view(torch.int16), out.view(torch.int16))


@pytest.mark.parametrize("kind,dtype", OPS)
def test_driver_state_fill(module, kind, dtype):
    k, d = _codes(kind, dtype)
    for n, offset in ((0, 1), (5, 3), (1000, 2)):
        state = torch.tensor([11, 12, offset], dtype=torch.int64, device="cuda:0")
        out = _empty(kind, dtype, n, "cuda:0")
        _C.drv_fill_state(out.data_ptr(), n, k, d, state.data_ptr(), 0, _stream(0))
        assert np.array_equal(bits(out), ref_bits(kind, 11, 12, offset, n, dtype))
        ref_dtype = "float32" if kind == "words" else dtype
        assert int(state[2]) % U64 == ref.next_offset(offset, n, ref_dtype)


def test_driver_errors(module):
    with pytest.raises(RuntimeError, match="CUDA_ERROR_"):
        _C.drv_load_module(0, b"\x7fELF" + b"\0" * 200)  # not a loadable cubin
    out = torch.empty(8, device="cuda:0")
    assert "fr_probe" in module and len(module) == len(_C.KERNEL_NAMES)  # the names loaded
    with pytest.raises(ValueError, match="device"):
        _C.drv_fill(out.data_ptr(), 8, 0, 0, 0, 0, 0, -1, _stream(0))
    with pytest.raises(ValueError, match="variant"):
        _C.drv_fill(out.data_ptr(), 8, 0, 0, 0, 0, 0, 0, _stream(0), 99)
    if torch.cuda.device_count() > 1:  # kernels belong to the device they were loaded on
        with pytest.raises(RuntimeError, match="not loaded|no fastrand kernels"):
            _C.drv_fill(out.data_ptr(), 8, 0, 0, 0, 0, 0, 1, _stream(1))
    with pytest.raises(ValueError, match="gstrides"):
        _C.drv_fill_box(out.data_ptr(), 0, 0, 0, 0, 0, 0, [2, 4], [4, 2], 0, _stream(0))
    with pytest.raises(ValueError, match="sizes"):
        _C.drv_fill_box(out.data_ptr(), 0, 0, 0, 0, 0, 0, [], [], 0, _stream(0))
    # nothing stuck: the next fill works
    _C.drv_fill(out.data_ptr(), 8, 0, 0, 3, 0, 0, 0, _stream(0))
    assert np.array_equal(bits(out), ref_bits("normal", 3, 0, 0, 8))


def _current_context() -> int:
    cuda = ctypes.CDLL("libcuda.so.1")
    ctx = ctypes.c_void_p()
    assert cuda.cuCtxGetCurrent(ctypes.byref(ctx)) == 0
    return ctx.value or 0


@pytest.mark.parametrize("backend", ["aot", "driver"])
def test_guard_leaves_a_fresh_thread_without_a_context(backend, request):
    """A thread with no current context draws: afterwards it still has none (the guard puts
    back exactly what was current, and creates no context for another device)."""
    if backend == "aot" and not _C.CUDA:
        pytest.skip("built without nvcc: no AOT kernels")
    if backend == "driver":
        request.getfixturevalue("module")  # the kernels loaded on cuda:0
    out = torch.empty(1000, device="cuda:0")
    ptr, st = out.data_ptr(), _stream(0)
    torch.cuda.synchronize()
    seen = {}

    def work():
        seen["before"] = _current_context()
        if backend == "aot":
            _C.fill_cuda(ptr, 1000, 0, 0, 4, 0, 0, 0, st)
        else:
            _C.drv_fill(ptr, 1000, 0, 0, 4, 0, 0, 0, st)
        seen["after"] = _current_context()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == {"before": 0, "after": 0}
    torch.cuda.synchronize()
    assert np.array_equal(bits(out), ref_bits("normal", 4, 0, 0, 1000))


CHILD = r"""
import ctypes, sys, threading, torch
from fastrand import _C
backend = sys.argv[1]
out = torch.empty(4096, device="cuda:1")  # torch creates device 1's context only
cuda = ctypes.CDLL("libcuda.so.1")
def active(i):
    dev, flags, act = ctypes.c_int(), ctypes.c_uint(), ctypes.c_int()
    assert cuda.cuDeviceGet(ctypes.byref(dev), i) == 0
    assert cuda.cuDevicePrimaryCtxGetState(dev, ctypes.byref(flags), ctypes.byref(act)) == 0
    return act.value
if active(0):
    print("SKIP device 0 already has a context"); sys.exit(0)
st = torch.cuda.current_stream(1).cuda_stream
if backend == "driver":
    _C.drv_load_module(1, bytes.fromhex(sys.stdin.read()))
def work():
    if backend == "aot":
        _C.fill_cuda(out.data_ptr(), 4096, 0, 0, 1, 0, 0, 1, st)
    else:
        _C.drv_fill(out.data_ptr(), 4096, 0, 0, 1, 0, 0, 1, st)
t = threading.Thread(target=work); t.start(); t.join()
torch.cuda.synchronize(1)
print("ACTIVE0", active(0))
"""


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
@pytest.mark.parametrize("backend", ["aot", "driver"])
def test_no_stray_context_on_device_0(backend):
    """Issue 16, item 2: a new thread drawing on cuda:1 must not create device 0's context."""
    if backend == "aot" and not _C.CUDA:
        pytest.skip("built without nvcc: no AOT kernels")
    cubin = b""
    if backend == "driver":
        path = find_nvrtc()
        if path is None or _C.drv_status():
            pytest.skip("no NVRTC or driver API")
        major, minor = torch.cuda.get_device_capability(1)
        cubin = Nvrtc(path).compile(_C.kernel_sources(), _C.KERNEL_MAIN, f"sm_{major}{minor}")[0]
    res = subprocess.run(
        [sys.executable, "-c", CHILD, backend],
        input=cubin.hex(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    if res.stdout.startswith("SKIP"):
        pytest.skip(res.stdout.strip())
    assert "ACTIVE0 0" in res.stdout, res.stdout
