"""The device check's small GPU steps (benchmarks/device_check.sh runs each in a fresh process
and prints its result at once). Each prints lines and exits 0 (PASS) or 1 (FAIL).

  versions    driver, AOT runtime and NVRTC versions; fails fast where the driver is too old
              for both the AOT runtime and NVRTC
  probe B     the known-answer check of backend B (aot or nvrtc) on cuda:0, every group
  box64       a box draw on the 64-bit index path (>= 2^32 work items) against CPU slices
              at both ends
  foreign     a non-primary context current on the thread: left current, values right
  capture     a first-ever draw inside torch.cuda.graph in a fresh process: right values or
              the clear error naming warmup()
  fallback    a stubbed load failure under auto: one warning, the copy path, right values,
              and no second load attempt
"""

import ctypes
import sys
import warnings

import numpy as np
import torch

import fastrand
from fastrand import _C, _cuda


def _bits(t):
    t = t.detach().cpu().contiguous()
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]).numpy()


def versions():
    driver, runtime, err = _C.cuda_versions() if _C.CUDA else (None, None, "no AOT build")
    nv = _cuda.nvrtc_version()
    print(
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), GPU {torch.cuda.get_device_name(0)}"
        f" sm_{_cuda._common.capability(0)}"
    )
    print(f"driver CUDA {driver}, AOT runtime {runtime} {err}, NVRTC {nv}")
    ok_aot = driver is not None and runtime is not None and driver >= runtime
    if not ok_aot and nv is None:
        print("FAIL: the driver cannot run the AOT kernels and there is no NVRTC")
        return 1
    print("PASS" + ("" if ok_aot else " (AOT runtime newer than the driver: NVRTC only)"))
    return 0


def probe(backend):
    _cuda.reset()
    import os

    os.environ[_cuda.ENV_BACKEND] = backend
    b = _cuda.device_backend(0)
    if b == "nvrtc":
        fastrand.warmup(devices=[0])  # every group loaded and checked
    print(b, _cuda.devices_info()["cuda:0"])
    return 0 if b == backend else 1


def box64():
    shape = (2**32 + 1, 2)  # float16 rows of 2; [:, 1:] is one value a row: 2^32 + 1 work items
    g = fastrand.Generator(7, offset=3)
    out = fastrand.randn_slice(
        shape, (slice(None), slice(1, 2)), generator=g, dtype=torch.float16, device="cuda"
    )
    torch.cuda.synchronize()
    ok = True
    for rows in (slice(0, 4096), slice(2**32 + 1 - 4096, 2**32 + 1)):
        want = fastrand.randn_slice(
            shape,
            (rows, slice(1, 2)),
            generator=fastrand.Generator(7, offset=3),
            dtype=torch.float16,
        )
        same = np.array_equal(_bits(out[rows]), _bits(want))
        ok &= same
        print(f"rows {rows.start}..{rows.stop}: {'equal' if same else 'DIFFER'}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def foreign():
    torch.empty(1, device="cuda")
    cuda = ctypes.CDLL("libcuda.so.1")
    dev, ctx, cur = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p()
    assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
    create = getattr(cuda, "cuCtxCreate_v2", None) or cuda.cuCtxCreate
    assert create(ctypes.byref(ctx), 0, dev) == 0  # made current by the call
    out = fastrand.randn(100_000, generator=fastrand.Generator(5), device="cuda")
    assert cuda.cuCtxGetCurrent(ctypes.byref(cur)) == 0
    left = cur.value == ctx.value
    popped = ctypes.c_void_p()  # torch's own calls below run with the primary context again
    (getattr(cuda, "cuCtxPopCurrent_v2", None) or cuda.cuCtxPopCurrent)(ctypes.byref(popped))
    torch.cuda.synchronize()
    same = np.array_equal(
        _bits(out), _bits(fastrand.randn(100_000, generator=fastrand.Generator(5)))
    )
    print(f"foreign context left current: {left}; values: {'equal' if same else 'DIFFER'}")
    print("PASS" if left and same else "FAIL")
    return 0 if left and same else 1


def capture():
    s = torch.cuda.Stream()
    torch.empty(1, device="cuda")
    g = fastrand.Generator(2)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph, stream=s):
            out = fastrand.randn_tensor((4096,), generator=g, device="cuda")
    except RuntimeError as e:
        ok = "warmup" in str(e) and g.get_offset() == 0
        print(f"refused: {str(e)[:160]}...; generator untouched: {g.get_offset() == 0}")
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    graph.replay()
    torch.cuda.synchronize()
    same = np.array_equal(_bits(out), _bits(fastrand.randn(4096, generator=fastrand.Generator(2))))
    print(f"captured and replayed: {'equal' if same else 'DIFFER'}")
    print("PASS" if same else "FAIL")
    return 0 if same else 1


def fallback():
    import os

    os.environ[_cuda.ENV_BACKEND] = "auto"
    _C.CUDA = False  # as a build without AOT kernels
    loads = []

    def refuse(device, image):
        loads.append(device)
        raise RuntimeError("CUDA_ERROR_NO_BINARY_FOR_GPU: stubbed refusal")

    _C.drv_load_module = refuse
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        outs = [
            fastrand.randn(1000, generator=fastrand.Generator(9), device="cuda") for _ in range(3)
        ]
    msgs = [str(x.message) for x in w if "fastrand" in str(x.message)]
    same = all(
        np.array_equal(_bits(o), _bits(fastrand.randn(1000, generator=fastrand.Generator(9))))
        for o in outs
    )
    b = _cuda.device_backend(0)
    ok = b == "copy" and len(msgs) == 1 and same and len(loads) <= 2
    print(
        f"backend {b}, warnings {len(msgs)}, loads {len(loads)}, values {'equal' if same else 'DIFFER'}"
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    step, *args = sys.argv[1:]
    sys.exit(globals()[step](*args))
