"""The run-time CUDA backend end to end without a GPU: a stand-in CUDA driver
(tests/native/fake_libcuda.cpp, loaded as libcuda.so.1) runs fastrand's kernels on the CPU on host
memory, so the real path runs: NVRTC compiles each kernel group into the image cache, the driver
backend (csrc/cuda/driver.cpp) loads the images into its per-device kernel table, the
known-answer check launches every case through the launch plan, and draws come back. What this
cannot check is the device arithmetic (the emulated kernels use the stream header's host branch)
and a real driver's behaviour; benchmarks/device_check.sh does that on a GPU.

Each case runs in a child process (the driver is opened once per process, from
LD_LIBRARY_PATH). Skipped without a C++ compiler or NVRTC."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import CSRC_INCLUDES, child_env

from fastrand import _C, _cuda

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "tests", "native", "fake_libcuda.cpp")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    if _cuda.nvrtc_version() is None:
        pytest.skip("NVRTC not installed")
    d = tmp_path_factory.mktemp("fake_cuda")
    flags = ["-std=c++17", "-O1", "-ffp-contract=off", "-fno-math-errno", "-Wno-unknown-pragmas"]
    subprocess.run(
        [cxx, *flags, "-fPIC", "-shared", "-fvisibility=hidden", *CSRC_INCLUDES, SRC,
         "-o", str(d / "libcuda.so.1")],
        check=True, capture_output=True,
    )  # fmt: skip
    return d


# the child: a GPU of compute capability 9.0 as torch would report it, and the known-answer
# check's launches on host buffers (the stand-in driver runs kernels on host memory)
PRELUDE = r"""
import os, sys, warnings
import torch
torch.cuda.get_device_capability = lambda index=None: (9, 0)
import fastrand
from fastrand import _C, _cuda

class HostLaunchers:
    device = torch.device("cpu")
    index = 0
    def fill(self, p, n, k, c, o, v):
        _C.drv_fill(p, n, k, c, _cuda._probe.SEED, _cuda._probe.STREAM, o, 0, 0, v)
    def state(self, p, n, k, c, st):
        _C.drv_fill_state(p, n, k, c, st, 0, 0)
    def box(self, p, k, c, o, b, sz, gs):
        _C.drv_fill_box(p, k, c, _cuda._probe.SEED, _cuda._probe.STREAM, o, b, sz, gs, 0, 0)
    def probe(self, w, p, f, n):
        _C.drv_probe(w, p, f, n, 0, 0)

_cuda._probe._Launchers = lambda backend, index: HostLaunchers()
warnings.simplefilter("always")
if not os.environ.get("KEEP_AOT"):
    _C.CUDA = False  # as a build without the AOT kernels (they need the real CUDA runtime path)
"""


def child(fake, cache, code, **env):
    script = PRELUDE + code
    extra = {"LD_LIBRARY_PATH": str(fake), _cuda.ENV_CACHE: str(cache), **env}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
        env=child_env(**extra),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.split("\n")


@pytest.fixture(scope="module")
def cache(tmp_path_factory, fake):
    """The image cache, filled for sm_90 by `python -m fastrand warmup --arch 90` in a process
    without the stand-in driver (NVRTC opens libcuda.so.1 itself when it compiles, and crashes
    on the stand-in); the children read the images from it, as a process with a warm cache."""
    d = tmp_path_factory.mktemp("fake_cache")
    out = subprocess.run(
        [sys.executable, "-m", "fastrand", "warmup", "--arch", "90"], capture_output=True,
        text=True, timeout=600, env=child_env(**{_cuda.ENV_CACHE: str(d)}),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return d


def test_nvrtc_backend_end_to_end(fake, cache):
    """Device setup, lazy groups, every group's known-answer check, and draws equal to the CPU,
    all through the real NVRTC images and the driver backend's kernel table."""
    lines = child(
        fake,
        cache,
        r"""
assert _C.drv_status() == "", _C.drv_status()
assert _cuda.device_backend(0) == "nvrtc"
assert _cuda._common.GROUPS[0] == {"probe"}
N, U, W = _C.KIND_NORMAL, _C.KIND_UNIFORM, _C.KIND_WORDS
assert _cuda.prepare(0, N, _C.DT_FLOAT32) == "nvrtc"
assert _cuda.prepare(0, U, _C.DT_BFLOAT16, "box") == "nvrtc"
assert _cuda.prepare(0, N, _C.DT_FLOAT64, "state") == "nvrtc"
print("GROUPS", sorted(_cuda._common.GROUPS[0]))
probes = _cuda.devices_info()["cuda:0"]["probe"]
print("PROBES", all(v.startswith("passed (") for v in probes.values()), len(probes))
# a draw through the driver backend equals the CPU path, bit for bit
for kind, code, dtype in [(N, _C.DT_FLOAT32, torch.float32), (U, _C.DT_BFLOAT16, torch.bfloat16)]:
    got = torch.empty(1001, dtype=dtype); want = torch.empty(1001, dtype=dtype)
    _C.drv_fill(got.data_ptr(), 1001, kind, code, 7, 8, 3, 0, 0)
    _C.fill_cpu(want.data_ptr(), 1001, kind, code, 7, 8, 3, 1)
    print("EQUAL", torch.equal(got.view(torch.int16 if dtype != torch.float32 else torch.int32),
                               want.view(torch.int16 if dtype != torch.float32 else torch.int32)))
# a kernel whose group was never loaded is a clear error, not a launch of something else
try:
    _C.drv_fill(got.data_ptr(), 10, W, _C.DT_UINT32, 1, 2, 3, 0, 0)
except RuntimeError as e:
    print("UNLOADED", "fr_fill_words_u32" in str(e) and "not loaded" in str(e))
# a forked child forgets the parent's kernels (the core's tables and the Python state)
pid = os.fork()
if pid == 0:
    try:
        _C.drv_fill(got.data_ptr(), 10, N, _C.DT_FLOAT32, 1, 2, 3, 0, 0)
        os._exit(1)
    except RuntimeError as e:
        os._exit(0 if "no fastrand kernels" in str(e) and not _cuda._common.GROUPS else 2)
print("FORK", os.waitpid(pid, 0)[1] >> 8)
""",
    )
    # a state fill needs only the state group; a box draw its op's plain fills and the box group
    assert "GROUPS ['box', 'normal/float32', 'probe', 'state', 'uniform/bfloat16']" in lines
    assert "PROBES True 5" in lines
    assert lines.count("EQUAL True") == 2
    assert "UNLOADED True" in lines and "FORK 0" in lines


def test_a_wrong_kernel_is_caught_and_the_device_falls_back(fake, cache):
    """Kernels that load but write a wrong value: the known-answer check of the group catches
    it, under auto the device moves to the CPU copy with one warning naming the case and the
    value, and draws are right; forced, the draw raises."""
    lines = child(
        fake,
        cache,
        r"""
with warnings.catch_warnings(record=True) as w:
    assert _cuda.device_backend(0) == "nvrtc"  # the probe group has no plain fill: it passes
    for _ in range(3):  # (no CUDA tensors here: the backend's decision is what counts)
        b = _cuda.prepare(0, _C.KIND_NORMAL, _C.DT_FLOAT32)
msgs = [str(x.message) for x in w if "fastrand" in str(x.message)]
print("BACKEND", b, len(msgs))
print("MSG", msgs[0].replace("\n", " ") if msgs else "")
""",
        FAKE_CUDA_CORRUPT="1",
        FASTRAND_CUDA_BACKEND="auto",
    )
    assert "BACKEND copy 1" in lines
    msg = next(line for line in lines if line.startswith("MSG"))
    assert "cuda:0 (sm_90)" in msg and "known-answer check failed: normal/float32" in msg
    assert "value 0 is" in msg and "the CPU gives" in msg
    lines = child(
        fake,
        cache,
        r"""
_cuda.device_backend(0)
try:
    _cuda.prepare(0, _C.KIND_NORMAL, _C.DT_FLOAT32)
    print("RAISED no")
except RuntimeError as e:
    print("RAISED", "FASTRAND_CUDA_BACKEND=nvrtc" in str(e) and "known-answer" in str(e))
""",
        FAKE_CUDA_CORRUPT="1",
        FASTRAND_CUDA_BACKEND="nvrtc",
    )
    assert "RAISED True" in lines


def test_a_refused_image_falls_back_once(fake, cache, tmp_path):
    """An image the driver refuses: the cached one is dropped and compiled again once (the
    compile is stood in for here: NVRTC cannot compile beside the stand-in driver), the second is
    refused too, and the device moves to the copy path with one warning; nothing more is tried."""
    own = tmp_path / "cache"
    shutil.copytree(cache, own)  # entries are deleted here
    lines = child(
        fake,
        own,
        r"""
pre = _cuda._cache.cubin(_cuda.Target(90, False), "probe")  # read from the cache on disk
compiled = []
def cubin(target, group="probe", fresh=False, **kw):  # a fresh compile stood in for
    compiled.append(fresh)
    return pre._replace(origin="compiled" if fresh else "disk")
_cuda._cache.cubin = cubin
loads = []
real_load = _C.drv_load_module
def load(device, image):
    loads.append(len(image))
    return real_load(device, image)
_C.drv_load_module = load
with warnings.catch_warnings(record=True) as w:
    for _ in range(3):
        b = _cuda.device_backend(0)
msgs = [str(x.message) for x in w if "fastrand" in str(x.message)]
print("BACKEND", b, len(msgs), "NO_BINARY" in msgs[0], len(loads), sum(compiled))
""",
        FAKE_CUDA_REFUSE="1",
        FASTRAND_CUDA_BACKEND="auto",
    )
    assert "BACKEND copy 1 True 2 1" in lines


@pytest.mark.skipif(not _C.CUDA, reason="a build without the AOT kernels")
def test_aot_on_a_driver_it_cannot_use_falls_to_nvrtc(fake, cache):
    """The AOT kernels' first use asks the driver's version (through the CUDA runtime linked into
    the build, which opens the same libcuda.so.1): the stand-in answers none, older than the
    runtime, so under auto the device takes the NVRTC backend with one warning saying so."""
    lines = child(
        fake,
        cache,
        r"""
with warnings.catch_warnings(record=True) as w:
    b = _cuda.device_backend(0)
msgs = [str(x.message) for x in w if "fastrand" in str(x.message)]
print("BACKEND", b, len(msgs), "older than the CUDA" in msgs[0])
""",
        KEEP_AOT="1",
        FASTRAND_CUDA_BACKEND="auto",
    )
    assert "BACKEND nvrtc 1 True" in lines
