"""CUDA backends (issue 10): the choice of FASTRAND_CUDA_BACKEND, finding NVRTC, the cubin cache,
the warmup CLI and the capture rule run without a GPU; the draws of both backends (aot, nvrtc)
are checked against the CPU on a GPU (skipped without one)."""

import collections
import ctypes
import hashlib
import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest
import torch
from conftest import TORCH_DTYPES, bits, child_env, draw, ref_bits

import fastrand
from fastrand import _C, _cuda
from fastrand._cuda import _backend, _cache, _common, _nvrtc  # noqa: F401 (monkeypatch targets)

GPU = torch.cuda.is_available()
NV = _cuda.nvrtc_version()
needs_nvrtc = pytest.mark.skipif(
    NV is None and os.environ.get("FASTRAND_REQUIRE_NVRTC") != "1",
    reason="NVRTC not installed (pip install nvidia-cuda-nvrtc)",
)
needs_gpu = pytest.mark.skipif(not GPU, reason="no CUDA device")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVS = (_cuda.ENV_BACKEND, _cuda.ENV_NVRTC, _cuda.ENV_CACHE)
# a small two-file program: the cache logic without the seconds of the real kernels
TINY = {
    "k.cu": '#include "h.h"\nextern "C" __global__ void k(float* o) { o[threadIdx.x] = f(3); }\n',
    "h.h": "__device__ float f(unsigned i) { return i * 2.0f; }\n",
}


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """Every test starts with no decision made, its own cache directory and none of the
    variables set; everything is forgotten again afterwards."""
    for name in ENVS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(_cuda.ENV_CACHE, str(tmp_path / "cache"))
    _cuda.reset()
    yield tmp_path / "cache"
    _cuda.reset()


def env(**extra):
    """The environment of a child process: this test's cache directory, no other variable."""
    return child_env({k: v for k, v in os.environ.items() if k not in ENVS[:2]}, **extra)


def cli(*args, timeout=120, **extra):
    return subprocess.run(
        [sys.executable, "-m", "fastrand", *args],
        capture_output=True,
        text=True,
        env=env(**extra),
        timeout=timeout,
    )


def entries(d):
    return sorted(p for p in os.listdir(d) if p.endswith(".cubin")) if os.path.isdir(d) else []


# ---- backend choice ---------------------------------------------------------------------------
def test_unknown_backend_value_is_named(monkeypatch):
    monkeypatch.setenv(_cuda.ENV_BACKEND, "fast")
    with pytest.raises(ValueError, match="FASTRAND_CUDA_BACKEND='fast'.*auto, aot, nvrtc, copy"):
        _cuda.backend()
    with pytest.raises(ValueError, match="FASTRAND_CUDA_BACKEND"):
        fastrand.build_info()
    out = cli("info", **{_cuda.ENV_BACKEND: "fast"})
    assert out.returncode != 0 and "FASTRAND_CUDA_BACKEND" in out.stderr


@pytest.mark.parametrize("value", ["", "auto", " AUTO ", "aot", "nvrtc", "copy", "Copy"])
def test_backend_values(monkeypatch, value):
    monkeypatch.setenv(_cuda.ENV_BACKEND, value)
    assert _cuda.requested() == (value.strip().lower() or "auto")


def test_auto_rule(monkeypatch):
    monkeypatch.setattr(_C, "CUDA", True)
    assert _cuda.backend() == "aot"
    _cuda.reset()
    monkeypatch.setattr(_C, "CUDA", False)
    monkeypatch.setattr(_cuda._nvrtc, "nvrtc", lambda: object())
    assert _cuda.backend() == "nvrtc"
    _cuda.reset()

    def missing():
        raise _cuda.NvrtcNotFoundError("NVRTC was not found; tried /x/libnvrtc.so.13")

    monkeypatch.setattr(_cuda._nvrtc, "nvrtc", missing)
    monkeypatch.setattr(_cuda._nvrtc, "_hint", lambda: None)
    assert _cuda.backend() == "copy"
    monkeypatch.setenv(_cuda.ENV_BACKEND, "copy")
    _cuda.reset()
    monkeypatch.setattr(_C, "CUDA", True)
    assert _cuda.backend() == "copy"


def test_aot_forced_without_the_kernel(monkeypatch):
    monkeypatch.setattr(_C, "CUDA", False)
    monkeypatch.setenv(_cuda.ENV_BACKEND, "aot")
    with pytest.raises(RuntimeError, match="FASTRAND_CUDA_BACKEND=aot.*no nvcc-compiled"):
        _cuda.backend()


@pytest.fixture
def no_pathfinder(monkeypatch):
    """cuda-pathfinder (tried last when installed) out of reach, so "not found" stays so."""
    monkeypatch.setitem(sys.modules, "cuda", None)


def test_nvrtc_forced_where_it_is_missing(monkeypatch, tmp_path, no_pathfinder):
    missing = str(tmp_path / "nowhere" / "libnvrtc.so.13")
    monkeypatch.setattr(_cuda._nvrtc, "nvrtc_candidates", lambda: [(missing, "pip wheel")])
    monkeypatch.setenv(_cuda.ENV_BACKEND, "nvrtc")
    with pytest.raises(_cuda.NvrtcNotFoundError, match="NVRTC was not found") as e:
        _cuda.backend()
    assert missing in str(e.value) and "pip install" in str(e.value)
    assert _cuda.nvrtc_version() is None


def test_nvrtc_forced_missing_cli(tmp_path):
    bad = str(tmp_path / "libnvrtc.so.13")
    out = cli("warmup", "--arch", "90", **{_cuda.ENV_BACKEND: "nvrtc", _cuda.ENV_NVRTC: bad})
    assert out.returncode == 1
    assert bad in out.stderr and "no such file" in out.stderr


def test_fastrand_nvrtc_path_missing_or_not_nvrtc(monkeypatch, tmp_path):
    missing = str(tmp_path / "missing.so")
    monkeypatch.setenv(_cuda.ENV_NVRTC, missing)
    with pytest.raises(_cuda.NvrtcNotFoundError, match=f"FASTRAND_NVRTC={missing}: no such file"):
        _cuda.nvrtc()
    junk = tmp_path / "libnvrtc.so.13"
    junk.write_bytes(b"not a library")
    monkeypatch.setenv(_cuda.ENV_NVRTC, str(junk))
    _cuda.reset()
    with pytest.raises(_cuda.NvrtcNotFoundError, match="cannot be loaded"):
        _cuda.nvrtc()
    libm = next(
        p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib64/libm.so.6") if os.path.exists(p)
    )
    monkeypatch.setenv(_cuda.ENV_NVRTC, libm)
    _cuda.reset()
    with pytest.raises(_cuda.NvrtcNotFoundError, match="is not NVRTC"):
        _cuda.nvrtc()
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(_cuda.ENV_NVRTC, str(empty))
    _cuda.reset()
    with pytest.raises(_cuda.NvrtcNotFoundError, match="no libnvrtc.so"):
        _cuda.nvrtc()


@needs_nvrtc
def test_fastrand_nvrtc_file_or_directory(monkeypatch):
    real = _cuda.nvrtc().path
    for value in (real, os.path.dirname(real)):
        monkeypatch.setenv(_cuda.ENV_NVRTC, value)
        _cuda.reset()
        nv = _cuda.nvrtc()
        assert nv.where == "FASTRAND_NVRTC" and os.path.samefile(nv.path, real)
        assert os.path.dirname(nv.builtins_path) == os.path.dirname(nv.path)


def _fake_tree(root, files):
    for rel in files:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    return root


def test_discovery_order(monkeypatch, tmp_path, no_pathfinder):
    site = _fake_tree(
        tmp_path / "site",
        ["nvidia/cu13/lib/libnvrtc.so.13", "nvidia/cuda_nvrtc/lib/libnvrtc.so.12"],
    )
    kit = _fake_tree(tmp_path / "kit", ["lib64/libnvrtc.so.12", "lib64/libnvrtc.so.13"])
    monkeypatch.setattr(_cuda._nvrtc, "_loaded_nvrtc", lambda: [])
    monkeypatch.setattr(_cuda._nvrtc, "_site_dirs", lambda: [str(site)])
    monkeypatch.setenv("CUDA_HOME", str(kit))
    monkeypatch.delenv("CUDA_PATH", raising=False)
    w13 = str(site / "nvidia/cu13/lib/libnvrtc.so.13")
    w12 = str(site / "nvidia/cuda_nvrtc/lib/libnvrtc.so.12")
    k13, k12 = str(kit / "lib64/libnvrtc.so.13"), str(kit / "lib64/libnvrtc.so.12")

    def order(cuda):
        monkeypatch.setattr(torch.version, "cuda", cuda)
        return [p for p, _ in _cuda.nvrtc_candidates() if p in (w13, w12, k13, k12)]

    # the major of torch's CUDA first; within one major: wheels before the toolkit
    assert order("12.8") == [w12, k12, w13, k13]
    assert order("13.0") == [w13, k13, w12, k12]
    assert order(None)[:2] == [w13, w12]
    cands = _cuda.nvrtc_candidates()
    assert ("libnvrtc.so.12", "system loader") in cands
    # none of the fakes load: the error names every path tried, and why
    monkeypatch.setattr(
        _cuda._nvrtc, "nvrtc_candidates", lambda: [(w12, "pip wheel"), (k12, "toolkit")]
    )
    with pytest.raises(_cuda.NvrtcNotFoundError) as e:
        _cuda.nvrtc()
    assert w12 in str(e.value) and k12 in str(e.value) and "cannot be loaded" in str(e.value)


@needs_nvrtc
def test_builtins_must_sit_beside_libnvrtc(monkeypatch, tmp_path):
    real = _cuda.nvrtc().path
    lone = tmp_path / "lone" / os.path.basename(real)
    lone.parent.mkdir()
    try:
        os.link(real, lone)
    except OSError:
        shutil.copyfile(real, lone)
    monkeypatch.setenv(_cuda.ENV_NVRTC, str(lone))
    _cuda.reset()
    with pytest.raises(_cuda.NvrtcNotFoundError, match="has no libnvrtc-builtins.so"):
        _cuda.nvrtc()


@needs_nvrtc
def test_hint_names_the_version_without_loading():
    hint = _nvrtc._hint()
    nv = _cuda.nvrtc()
    assert hint == (os.path.realpath(nv.path), nv.build_id)
    assert nv.build_id.startswith(nv.version_string + "+")  # with the files' fingerprint


def test_aot_coverage():
    assert _cuda.aot_covers(90, "sm_75,sm_80,sm_90")
    assert _cuda.aot_covers(89, "sm_80")  # a cubin runs on later minors of its major
    assert not _cuda.aot_covers(90, "sm_75,sm_80")
    assert not _cuda.aot_covers(120, "sm_90")
    assert _cuda.aot_covers(120, "sm_90,compute_90")  # PTX JIT
    assert not _cuda.aot_covers(86, "sm_90,compute_90")
    assert not _cuda.aot_covers(90, "")


def _mock_gpu(monkeypatch, capability=90, drv=""):
    """A GPU of `capability` whose kernels load and pass the known-answer check (stubbed at the
    compiled core's boundary), and a driver API whose status is `drv`."""
    monkeypatch.setattr(_cuda._common, "capability", lambda index: capability)
    monkeypatch.setattr(_C, "drv_status", lambda: drv, raising=False)
    monkeypatch.setattr(_C, "cuda_prepare", lambda index: None, raising=False)
    monkeypatch.setattr(_backend, "_load_group", lambda index, cap, group: None)
    monkeypatch.setattr(_cuda._probe, "check", lambda index, backend, groups: 0)


@needs_nvrtc
def test_auto_per_device(monkeypatch):
    _mock_gpu(monkeypatch, 120)
    monkeypatch.setattr(_C, "CUDA", True)
    monkeypatch.setattr(_C, "CUDA_ARCHS", "sm_90")
    assert _cuda.backend() == "aot"
    assert _cuda.device_backend(0) == "nvrtc"  # the build holds nothing for sm_120
    _cuda.reset()
    monkeypatch.setattr(_C, "CUDA_ARCHS", "sm_90,sm_120")
    assert _cuda.device_backend(0) == "aot"
    monkeypatch.setenv(_cuda.ENV_BACKEND, "aot")  # forced: no second guess
    _cuda.reset()
    monkeypatch.setattr(_C, "CUDA_ARCHS", "sm_90")
    assert _cuda.device_backend(0) == "aot"


def test_auto_ending_at_copy_warns_once(monkeypatch):
    _mock_gpu(monkeypatch, 90)
    monkeypatch.setattr(_C, "CUDA", False)

    def missing():
        raise _cuda.NvrtcNotFoundError("NVRTC was not found; tried /x/libnvrtc.so.13")

    monkeypatch.setattr(_cuda._nvrtc, "nvrtc", missing)
    monkeypatch.setattr(_cuda._nvrtc, "_hint", lambda: None)
    with pytest.warns(RuntimeWarning) as rec:
        assert _cuda.device_backend(0) == "copy"
        assert _cuda.device_backend(1) == "copy"
        assert not _cuda.native(0)
    msgs = [str(w.message) for w in rec if "fastrand" in str(w.message)]
    assert len(msgs) == 1
    assert (
        "/x/libnvrtc.so.13" in msgs[0] and "pip install" in msgs[0] and "FASTRAND_NVRTC" in msgs[0]
    )
    assert "no nvcc-compiled" in _cuda.copy_reason(0)


@needs_nvrtc
def test_auto_copy_when_the_driver_is_missing(monkeypatch):
    _mock_gpu(monkeypatch, 90, drv="libcuda.so.1: cannot open shared object file")
    monkeypatch.setattr(_C, "CUDA", False)
    with pytest.warns(RuntimeWarning, match="libcuda.so.1"):
        assert _cuda.device_backend(0) == "copy"


def test_copy_forced_is_silent(monkeypatch, recwarn):
    _mock_gpu(monkeypatch, 90)
    monkeypatch.setenv(_cuda.ENV_BACKEND, "copy")
    assert _cuda.device_backend(0) == "copy"
    assert not [w for w in recwarn if "fastrand" in str(w.message)]


# ---- compiling and the cache ------------------------------------------------------------------
def test_parse_archs():
    assert _cuda.parse_archs(["90"]) == [90]
    assert _cuda.parse_archs(["sm_90,100", "SM_120", "9.0", 86]) == [90, 100, 120, 86]
    for bad in ("sm90x", "", "compute_90", "9"):
        with pytest.raises(ValueError, match="archs"):
            _cuda.parse_archs([bad])


@needs_nvrtc
def test_supported_archs():
    nv = _cuda.nvrtc()
    assert 90 in nv.archs and all(isinstance(a, int) for a in nv.archs)
    assert _cuda.target_arch(90) == _cuda.Target(90, False)
    with pytest.raises(ValueError, match="sm_70 is older"):
        _cuda.check_arch(70)
    with pytest.raises(ValueError, match="cannot compile for sm_91; it supports"):
        _cuda.check_arch(91)


def test_target_arch():
    nv = types.SimpleNamespace(archs=[70, 75, 80, 86, 90, 120], version_string="12.9", path="/x")
    T = _cuda.Target
    assert _cuda.target_arch(86, nv) == T(86, False)
    assert _cuda.target_arch(89, nv) == T(86, False)  # a cubin runs on later minors of its major
    assert _cuda.target_arch(121, nv) == T(120, False)
    for cap in (100, 72):  # no arch of that major (sm_70 is below fastrand's floor)
        with pytest.raises(RuntimeError, match=f"cannot compile for sm_{cap}"):
            _cuda.target_arch(cap, nv)
    # a GPU newer than every arch NVRTC knows: PTX of the newest, JIT-compiled by the driver
    assert _cuda.target_arch(130, nv) == T(120, True)
    assert T(120, True).name == "compute_120"
    # NVRTC 12.8 (sm_100, sm_101, sm_120): an sm_103 device takes sm_100, not sm_101 (CUDA
    # 12.8's name for the GPU CUDA 13 calls sm_110)
    nv128 = types.SimpleNamespace(
        archs=[75, 80, 90, 100, 101, 120], version_string="12.8", path="/x"
    )
    assert _cuda.target_arch(103, nv128) == T(100, False)
    assert _cuda.target_arch(101, nv128) == T(101, False)
    assert _cuda.compatible_archs(103) == [103, 102, 100]
    assert _cuda.compatible_archs(121) == [121, 120]
    assert _cuda.compatible_archs(75) == [75]


def test_cache_key_covers_every_input(monkeypatch):
    base = _cuda.cache_key(90, TINY, "k.cu", "13.0", _cuda.options(90))
    assert len(base) == 64 and base == _cuda.cache_key(
        90, dict(TINY), "k.cu", "13.0", _cuda.options(90)
    )
    changed = [
        _cuda.cache_key(90, {**TINY, "h.h": TINY["h.h"] + " "}, "k.cu", "13.0", _cuda.options(90)),
        _cuda.cache_key(90, {**TINY, "g.h": ""}, "k.cu", "13.0", _cuda.options(90)),
        _cuda.cache_key(
            90, {"k.cu": TINY["k.cu"], "H.h": TINY["h.h"]}, "k.cu", "13.0", _cuda.options(90)
        ),
        _cuda.cache_key(90, TINY, "k.cu", "13.1", _cuda.options(90)),
        _cuda.cache_key(90, TINY, "k.cu", "13.0", _cuda.options(90) + ["-G"]),
        _cuda.cache_key(90, TINY, "k.cu", "13.0", _cuda.options(90)[::-1]),
        _cuda.cache_key(100, TINY, "k.cu", "13.0", _cuda.options(90)),
        _cuda.cache_key(90, TINY, "k.cu", "13.0", _cuda.options(100)),
    ]
    monkeypatch.setattr(fastrand, "__version__", "9.9.9")
    changed.append(_cuda.cache_key(90, TINY, "k.cu", "13.0", _cuda.options(90)))
    assert len(set(changed)) == len(changed) and base not in changed
    assert _cuda.options(90, "12.2") == ["-arch=sm_90", "--fmad=false", "-std=c++17"]
    assert _cuda.options(90, "13.0")[-1] == "--split-compile=0"


def _valid_entry(path):
    data = open(path, "rb").read()
    head = len(_cuda._cache._CACHE_MAGIC) + 32
    assert data[: len(_cuda._cache._CACHE_MAGIC)] == _cuda._cache._CACHE_MAGIC
    assert hashlib.sha256(data[head:]).digest() == data[len(_cuda._cache._CACHE_MAGIC) : head]
    assert data[head : head + 4] == b"\x7fELF"  # a cubin is an ELF image
    return data[head:]


@needs_nvrtc
def test_cache_write_read_and_modes(fresh):
    c = _cuda.cubin(90, sources=TINY, main="k.cu")
    assert c.origin == "compiled" and c.path and os.path.dirname(c.path) == str(fresh)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(c.path).st_mode) & 0o077 == 0
    assert _valid_entry(c.path) == c.image
    assert _cuda.cubin(90, sources=TINY, main="k.cu").origin == "memory"
    _cuda.reset()  # a new process: from the disk
    d = _cuda.cubin(90, sources=TINY, main="k.cu")
    assert d.origin == "disk" and d.image == c.image and d.path == c.path
    assert not [p for p in os.listdir(fresh) if p.startswith(".tmp-")]


@needs_nvrtc
@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "magic"])
def test_corrupt_entry_is_deleted_and_recompiled(fresh, damage, recwarn):
    c = _cuda.cubin(90, sources=TINY, main="k.cu")
    data = bytearray(open(c.path, "rb").read())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-100] ^= 0x40
    elif damage == "empty":
        data = bytearray()
    else:
        data[0] ^= 1
    open(c.path, "wb").write(bytes(data))
    _cuda.reset()
    d = _cuda.cubin(90, sources=TINY, main="k.cu")
    assert d.origin == "compiled" and d.image == c.image
    assert _valid_entry(d.path) == c.image
    assert not [w for w in recwarn if "fastrand" in str(w.message)]


def _stub_loader(monkeypatch, refuse=lambda image: False):
    """drv_load_module at the compiled core's boundary: records the images, refuses some."""
    loads = []

    def load(device, image):
        loads.append(image)
        if refuse(image):
            raise RuntimeError("CUDA_ERROR_NO_BINARY_FOR_GPU: no kernel image for this device")
        return ["fr_probe"]

    monkeypatch.setattr(_C, "drv_load_module", load, raising=False)
    monkeypatch.setattr(_C, "drv_status", lambda: "", raising=False)
    monkeypatch.setattr(_cuda._common, "capability", lambda index: 90)
    monkeypatch.setattr(_cuda._probe, "check", lambda index, backend, groups: 7)
    monkeypatch.setattr(_cuda._cache, "program", lambda group: (dict(TINY), "k.cu"))
    return loads


@needs_nvrtc
def test_unloadable_entry_is_deleted_and_recompiled(monkeypatch, fresh):
    monkeypatch.setenv(_cuda.ENV_BACKEND, "nvrtc")
    monkeypatch.setattr(_C, "CUDA", False)
    good = _cuda.cubin(90, sources=TINY, main="k.cu")
    other = _cuda.cubin(75, sources=TINY, main="k.cu")  # valid, but does not load on this device
    with open(good.path, "r+b") as f:  # a whole entry, header and all, of the wrong image
        image = other.image
        f.write(_cuda._cache._CACHE_MAGIC + hashlib.sha256(image).digest() + image)
        f.truncate()
    _cuda.reset()
    loads = _stub_loader(monkeypatch, refuse=lambda image: image != good.image)
    assert _cuda.device_backend(0) == "nvrtc"
    assert loads == [other.image, good.image]
    assert _valid_entry(good.path) == good.image
    assert _cuda.device_backend(0) == "nvrtc" and len(loads) == 2  # loaded once per device
    assert _cuda.devices_info()["cuda:0"]["probe"] == {"probe": "passed (7 cases, sm_90)"}


@needs_nvrtc
@pytest.mark.parametrize("forced", [False, True])
def test_refused_image_is_compiled_once_then_falls_back(monkeypatch, fresh, forced):
    """An image the driver refuses: a cached one is compiled again once; a compiled one that is
    refused too is remembered: under auto the device moves to copy with one warning, under a
    forced backend every draw raises, and nothing is compiled per draw."""
    monkeypatch.setattr(_C, "CUDA", False)
    if forced:
        monkeypatch.setenv(_cuda.ENV_BACKEND, "nvrtc")
    _cuda.cubin(90, sources=TINY, main="k.cu")  # on disk: the first load takes it from there
    _cuda.reset()
    loads = _stub_loader(monkeypatch, refuse=lambda image: True)
    compiles = []
    real = _cuda._nvrtc.Nvrtc.compile
    monkeypatch.setattr(
        _cuda._nvrtc.Nvrtc, "compile", lambda *a, **k: compiles.append(1) or real(*a, **k)
    )
    if forced:
        for _ in range(3):
            with pytest.raises(RuntimeError, match="FASTRAND_CUDA_BACKEND=nvrtc.*NO_BINARY"):
                _cuda.device_backend(0)
    else:
        with pytest.warns(RuntimeWarning, match=r"cuda:0 \(sm_90\).*CPU.*NO_BINARY") as rec:
            for _ in range(3):
                assert _cuda.device_backend(0) == "copy"
                assert _cuda.prepare(0, _C.KIND_NORMAL, _C.DT_FLOAT32) == "copy"
        assert len([w for w in rec if "fastrand" in str(w.message)]) == 1
        assert "NO_BINARY" in _cuda.copy_reason(0)
    assert len(compiles) == 1  # the disk entry, then one compile; never one per draw
    assert len(loads) == 2


def test_known_answer_mismatch_falls_back(monkeypatch):
    """AOT kernels that load but disagree with the CPU: under auto the device takes the next
    backend with one warning naming the device, the arch, the backend and the value; forced,
    the draw raises with the same."""
    _mock_gpu(monkeypatch, 90)
    monkeypatch.setattr(_C, "CUDA", True)
    monkeypatch.setattr(_C, "CUDA_ARCHS", "sm_90")

    def check(index, backend, groups):
        if backend == "aot":
            raise _cuda.Unusable(
                "known-answer check failed: normal/float32 variant 0 ...: "
                "value 5 is 3f800000, the CPU gives 3f800001"
            )
        return 3

    monkeypatch.setattr(_cuda._probe, "check", check)
    with pytest.warns(
        RuntimeWarning,
        match=r"cuda:0 \(sm_90\) uses the nvrtc backend because "
        r"the aot kernels.*value 5 is 3f800000",
    ):
        assert _cuda.device_backend(0) == "nvrtc"
    monkeypatch.setenv(_cuda.ENV_BACKEND, "aot")
    _cuda.reset()
    with pytest.raises(RuntimeError, match="FASTRAND_CUDA_BACKEND=aot.*sm_90.*3f800000"):
        _cuda.device_backend(0)


def test_aot_on_an_old_driver_falls_back(monkeypatch):
    """The AOT runtime newer than the driver (cuda_prepare says so): NVRTC, or copy."""
    _mock_gpu(monkeypatch, 90)
    monkeypatch.setattr(_C, "CUDA", True)
    monkeypatch.setattr(_C, "CUDA_ARCHS", "sm_90")

    def old(index):
        raise RuntimeError(
            "fastrand CUDA (AOT kernels): the NVIDIA driver supports CUDA 12.4, "
            "older than the CUDA 13.0 runtime this build of fastrand was compiled with"
        )

    monkeypatch.setattr(_C, "cuda_prepare", old, raising=False)
    with pytest.warns(RuntimeWarning, match="driver supports CUDA 12.4"):
        assert _cuda.device_backend(0) == "nvrtc"


def test_failed_aot_setup_is_retried(monkeypatch):
    """A failed AOT preparation is not remembered as done: the next first use tries again."""
    _mock_gpu(monkeypatch, 90)
    monkeypatch.setattr(_C, "CUDA", True)
    monkeypatch.setattr(_C, "CUDA_ARCHS", "sm_90")
    monkeypatch.setenv(_cuda.ENV_BACKEND, "aot")
    calls = []

    def flaky(index):
        calls.append(index)
        if len(calls) == 1:
            raise RuntimeError("could not load kernel fr_probe: cudaErrorMemoryAllocation")

    monkeypatch.setattr(_C, "cuda_prepare", flaky, raising=False)
    with pytest.raises(RuntimeError, match="cudaErrorMemoryAllocation"):
        _cuda.device_backend(0)
    assert _cuda.device_backend(0) == "aot" and len(calls) == 2


@needs_nvrtc
def test_compile_error_shows_the_log():
    with pytest.raises(_cuda.NvrtcCompileError, match="(?s)could not compile k.cu.*undefined"):
        _cuda.cubin(90, sources={"k.cu": "__global__ void k() { undefined_name(); }"}, main="k.cu")
    with pytest.raises(_cuda.NvrtcCompileError, match="h.h"):  # a missing header: no -I
        _cuda.cubin(90, sources={"k.cu": '#include "h.h"\n'}, main="k.cu")


@needs_nvrtc
def test_unwritable_directory_falls_back_to_memory(monkeypatch, fresh):
    fresh.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes anyway: make the write fail as it would for a user

        def refuse(*a, **k):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(_cuda._cache.tempfile, "mkstemp", refuse)
    with pytest.warns(RuntimeWarning, match="not using the cubin cache.*cannot write") as rec:
        a = _cuda.cubin(90, sources=TINY, main="k.cu")
        b = _cuda.cubin(75, sources=TINY, main="k.cu")
    assert len([w for w in rec if "fastrand" in str(w.message)]) == 1
    assert a.path is None and b.path is None and a.image[:4] == b"\x7fELF"
    assert entries(fresh) == [] and not os.listdir(fresh)
    assert _cuda.cubin(90, sources=TINY, main="k.cu").origin == "memory"
    assert "cannot write" in _cuda.cache_error()


@needs_nvrtc
def test_uncreatable_directory_falls_back_to_memory(monkeypatch, tmp_path):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(_cuda.ENV_CACHE, str(tmp_path / "file" / "cache"))
    _cuda.reset()
    with pytest.warns(RuntimeWarning, match="cannot create"):
        assert _cuda.cubin(90, sources=TINY, main="k.cu").path is None


@needs_nvrtc
@pytest.mark.parametrize("case", ["group-writable", "other-writable", "foreign"])
def test_unsafe_directory_is_refused(monkeypatch, fresh, case):
    fresh.mkdir(mode=0o700)
    os.chmod(fresh, {"group-writable": 0o770, "other-writable": 0o703, "foreign": 0o700}[case])
    if case == "foreign":  # the directory is someone else's when we are someone else
        uid = os.getuid()
        monkeypatch.setattr(_cuda._cache.os, "getuid", lambda: uid + 4242)
    with pytest.warns(RuntimeWarning, match="not using the cubin cache") as rec:
        c = _cuda.cubin(90, sources=TINY, main="k.cu")
    msg = str(rec[0].message)
    assert ("owned by uid" in msg) if case == "foreign" else ("writable by group or others" in msg)
    assert c.path is None and entries(fresh) == []


@needs_nvrtc
def test_unsafe_entry_is_refused(fresh):
    c = _cuda.cubin(90, sources=TINY, main="k.cu")
    os.chmod(c.path, 0o666)
    _cuda.reset()
    with pytest.warns(RuntimeWarning, match="writable by group or others"):
        d = _cuda.cubin(90, sources=TINY, main="k.cu")
    assert d.origin == "compiled" and d.path is None and d.image == c.image


@needs_nvrtc
def test_two_processes_warming_at_once(fresh, tmp_path):
    go = tmp_path / "go"
    script = textwrap.dedent(
        f"""
        import os, time
        from fastrand import _cuda
        while not os.path.exists({str(go)!r}):
            time.sleep(0.005)
        for _ in range(3):
            _cuda.reset()
            _cuda._common.MEMORY.clear()
            c = _cuda.cubin(90, sources={TINY!r}, main="k.cu", fresh=True)
            assert c.path, c
        print(c.path)
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=env(**{_cuda.ENV_CACHE: str(fresh)}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    time.sleep(0.5)
    go.write_text("")
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    assert len(entries(fresh)) == 1 and not [p for p in os.listdir(fresh) if p.startswith(".tmp")]
    assert (
        _valid_entry(os.path.join(fresh, entries(fresh)[0]))
        == _cuda.cubin(90, sources=TINY, main="k.cu").image
    )


# ---- the capture rule -------------------------------------------------------------------------
def test_no_compile_or_load_during_capture(monkeypatch):
    _mock_gpu(monkeypatch, 90)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        _cuda._cache, "cubin", lambda *a, **k: pytest.fail("compiled during capture")
    )
    monkeypatch.setattr(_backend, "_load_group", lambda *a: pytest.fail("loaded"))
    monkeypatch.setattr(_C, "cuda_prepare", lambda *a: pytest.fail("AOT set up"), raising=False)
    for backend in ("nvrtc", "aot"):
        monkeypatch.setenv(_cuda.ENV_BACKEND, backend)
        monkeypatch.setattr(_C, "CUDA", backend == "aot")
        monkeypatch.setattr(_cuda._nvrtc, "nvrtc", lambda: object())
        _cuda.reset()
        calls = (lambda: _cuda.device_backend(0), lambda: _cuda.prepare(0), _cuda.warmup)
        for call in calls:
            with pytest.raises(
                RuntimeError, match=r"captured.*fastrand\.warmup\(\).*python -m fastrand warmup"
            ):
                call()
        assert _cuda._common.DEVICE_BACKEND == {}
    # ready before the capture: the draw may go ahead; a group not loaded yet is refused
    _cuda._common.DEVICE_BACKEND[0] = "nvrtc"
    _cuda._common.GROUPS[0] = {"probe", "normal/float32"}
    _cuda._common.READY[0, _C.KIND_NORMAL, _C.DT_FLOAT32] = True
    assert _cuda.prepare(0, _C.KIND_NORMAL, _C.DT_FLOAT32) == "nvrtc"
    with pytest.raises(RuntimeError, match=r"uniform/float32.*captured"):
        _cuda.prepare(0, _C.KIND_UNIFORM, _C.DT_FLOAT32)


def test_copy_refused_during_capture(monkeypatch):
    _mock_gpu(monkeypatch, 90)
    monkeypatch.setenv(_cuda.ENV_BACKEND, "copy")
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    with pytest.raises(RuntimeError, match="cannot be captured"):
        _cuda.prepare(0)


def test_copy_box_matches_the_full_draw():
    """The copy backend's box (rows of plain requests) equals the slice of the full draw."""
    for dtype, code in ((torch.float32, _C.DT_FLOAT32), (torch.float64, _C.DT_FLOAT64)):
        full = fastrand.randn(4, 5, 6, generator=fastrand.Generator(3, offset=7), dtype=dtype)
        box = torch.empty(2, 3, 4, dtype=dtype)
        _cuda._backend._cpu_box(
            box, _C.KIND_NORMAL, code, 3, 0, 7, 1 * 30 + 2 * 6 + 1, [2, 3, 4], [30, 6, 1]
        )
        assert np.array_equal(bits(box), bits(full[1:3, 2:5, 1:5]))


# ---- warmup CLI -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def warm90(tmp_path_factory):
    """`python -m fastrand warmup --arch 90` once, into its own cache directory."""
    d = tmp_path_factory.mktemp("warm90") / "cache"
    t0 = time.perf_counter()
    out = cli("warmup", "--arch", "90", timeout=300, **{_cuda.ENV_CACHE: str(d)})
    return d, out, time.perf_counter() - t0


@needs_nvrtc
def test_warmup_cli_writes_a_cubin(warm90):
    d, out, _ = warm90
    assert out.returncode == 0, out.stderr
    names = entries(d)
    assert len(names) == len(_cuda.groups())  # one program per kernel group
    c = None
    for name in names:
        path = os.path.join(d, name)
        assert name.startswith("sm_90-") and path in out.stdout
        image = _valid_entry(path)
        assert image[18:20] == (190).to_bytes(2, "little")  # e_machine EM_CUDA
    for g in _cuda.groups():
        assert f"sm_90 {g}: compiled" in out.stdout
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    # the same key in this process: read back, not compiled again
    os.environ[_cuda.ENV_CACHE] = str(d)
    try:
        _cuda.reset()
        c = _cuda.cubin(90, "normal/float32")
        assert c.origin == "disk" and c.path and os.path.basename(c.path) in names
    finally:
        os.environ.pop(_cuda.ENV_CACHE)
    again = cli("warmup", "--arch", "sm_90", "--op", "normal/float32", **{_cuda.ENV_CACHE: str(d)})
    assert again.returncode == 0 and "sm_90 normal/float32: cached" in again.stdout
    assert entries(d) == names


@needs_nvrtc
def test_warmup_cli_kernels_are_named(warm90):
    d, out, _ = warm90
    images = b"".join(_valid_entry(os.path.join(d, n)) for n in entries(d))
    for name in _C.KERNEL_NAMES:
        assert name.encode() in images, name


@needs_nvrtc
def test_group_programs_hold_their_kernels(warm90):
    """Each group's program holds exactly its kernels (the groups together: every kernel)."""
    d, out, _ = warm90
    os.environ[_cuda.ENV_CACHE] = str(d)
    try:
        _cuda.reset()
        held = {}
        for g in _cuda.groups():
            image = _cuda.cubin(90, g).image
            held[g] = {k for k in _C.KERNEL_NAMES if (k.encode() + b"\0") in image}
    finally:
        os.environ.pop(_cuda.ENV_CACHE)
    assert held["probe"] == {"fr_probe"}
    assert held["normal/float32"] == {
        k for k in _C.KERNEL_NAMES if k.startswith("fr_fill_normal_f32_")
    }
    assert len(held["normal/float32"]) == 6
    assert held["state"] == {k for k in _C.KERNEL_NAMES if k.startswith("fr_fill_state_")} | {
        "fr_advance_state"
    }
    assert held["box"] == {k for k in _C.KERNEL_NAMES if k.startswith("fr_fill_box_")}
    assert set().union(*held.values()) == set(_C.KERNEL_NAMES)


def test_group_names():
    assert _cuda.group_names("normal/float32,words") == ["normal/float32", "words/uint32"]
    assert _cuda.group_names(["all"]) == _cuda.groups()
    with pytest.raises(ValueError, match="ops: unknown kernel group 'normal/int8'"):
        _cuda.group_names(["normal/int8"])
    with pytest.raises(TypeError, match="ops"):
        _cuda.group_names([3])


def _sass_mix(cuobjdump, image, tmp_path):
    """kernel name -> Counter of SASS opcodes of a cubin."""
    path = tmp_path / "k.cubin"
    path.write_bytes(image)
    text = subprocess.run(
        [cuobjdump, "-sass", str(path)], capture_output=True, text=True, check=True
    ).stdout
    mix, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            cur = mix[m.group(1)] = collections.Counter()
            continue
        m = re.search(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)", line)
        if cur is not None and m:
            cur[m.group(1)] += 1
    return mix


@needs_nvrtc
def test_warmup_cubin_machine_code(warm90, tmp_path):
    """The warmup cubin (fastrand's options) has every kernel, the same instruction mix per
    kernel as the plain NVRTC compile of the tests' helper (which nvcore's tests compare with
    the nvcc build), and no hardware log/sin/cos/exp."""
    import nvrtc_util

    cuobjdump = nvrtc_util.find_tool("cuobjdump")
    if cuobjdump is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump)")
    d, out, _ = warm90
    ours = {}
    for n in entries(d):
        ours.update(_sass_mix(cuobjdump, _valid_entry(os.path.join(d, n)), tmp_path))
    assert sorted(ours) == sorted(_C.KERNEL_NAMES)
    for name, mix in ours.items():
        hw = [op for op in mix if re.match(r"MUFU\.(LG2|SIN|COS|EX2)", op)]
        assert not hw, (name, hw)
    sources, main = _cuda.kernel_sources(), _C.KERNEL_MAIN  # every kernel in one program
    plain, _ = nvrtc_util.Nvrtc(_cuda.nvrtc().path).compile(sources, main, "sm_90")
    theirs = _sass_mix(cuobjdump, plain, tmp_path)
    assert ours == theirs


@needs_nvrtc
@pytest.mark.parametrize(
    "args,message",
    [
        (["--arch", "42"], "sm_42 is older than sm_75"),
        (["--arch", "91"], "cannot compile for sm_91; it supports"),
        (["--arch", "90,sm_nine"], "cannot read 'sm_nine'"),
        (["--arch", "90", "--arch", "91"], "sm_91"),
    ],
)
def test_warmup_cli_bad_arch(fresh, args, message):
    out = cli("warmup", *args)
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert entries(fresh) == []  # refused before compiling anything


def test_warmup_cli_without_gpu_or_arch(fresh):
    if GPU:
        pytest.skip("a GPU is visible")
    out = cli("warmup")
    assert out.returncode == 1 and "--arch" in out.stderr


def test_warmup_cli_usage():
    assert cli("warmup", "--bogus").returncode == 2


@needs_nvrtc
def test_warmup_cli_unwritable_cache(monkeypatch, tmp_path, capsys):
    from fastrand.__main__ import main

    monkeypatch.setattr(_cuda._cache, "program", lambda group: (dict(TINY), "k.cu"))
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(_cuda.ENV_CACHE, str(tmp_path / "file" / "c"))
    _cuda.reset()
    with pytest.warns(RuntimeWarning, match="cannot create"):
        assert main(["warmup", "--arch", "75"]) == 1
    err = capsys.readouterr().err
    assert "nothing written for sm_75" in err and "not usable" in err


@needs_nvrtc
def test_cached_cubin_needs_no_nvrtc(warm90):
    """A process whose cubin is cached reads it without loading NVRTC (tens of ms)."""
    d, out, _ = warm90
    assert out.returncode == 0, out.stderr
    script = (
        "from fastrand import _cuda\n"
        "c = _cuda._cache.cached_without_nvrtc(90, 'normal/float32')\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(c.origin, 'nvrtc' in _cuda._common.STATE, 'libnvrtc.so' in maps)\n"
    )
    got = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True,
        env=env(**{_cuda.ENV_CACHE: str(d)}), timeout=120,
    )  # fmt: skip
    assert got.stdout.split() == ["disk", "False", "False"], got.stderr


def test_info_prints_the_new_keys():
    out = cli("info")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["cuda_backend"] in ("aot", "nvrtc", "copy")
    assert info["nvrtc"] == NV or info["nvrtc"] is None
    assert info["cache_dir"] and os.path.isabs(info["cache_dir"])
    assert fastrand.build_info()["cache_dir"] == _cuda.cache_dir()


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv(_cuda.ENV_CACHE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _cuda.cache_dir() == str(tmp_path / "fastrand")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert _cuda.cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "fastrand")


def test_warmup_is_exported():
    assert fastrand.warmup is _cuda.warmup and "warmup" in fastrand.__all__


# ---- on a GPU: both backends ------------------------------------------------------------------
KINDS = (
    [("normal", d) for d in TORCH_DTYPES]
    + [("uniform", d) for d in TORCH_DTYPES]
    + [("words", "float32")]
)
U64 = 1 << 64


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """One cubin cache for the GPU tests: NVRTC compiles once per session."""
    return str(tmp_path_factory.mktemp("nvrtc-session") / "cache")


@pytest.fixture(params=["aot", "nvrtc"])
def backend(request, monkeypatch, session_cache):
    if not GPU:
        pytest.skip("no CUDA device")
    if request.param == "aot" and not _C.CUDA:
        pytest.skip("built without the nvcc kernel")
    if request.param == "nvrtc" and NV is None and os.environ.get("FASTRAND_REQUIRE_NVRTC") != "1":
        pytest.skip("NVRTC not installed")
    monkeypatch.setenv(_cuda.ENV_BACKEND, request.param)
    monkeypatch.setenv(_cuda.ENV_CACHE, session_cache)
    _cuda.reset()
    assert _cuda.device_backend(torch.cuda.current_device()) == request.param
    return request.param


@needs_gpu
@pytest.mark.parametrize("kind,dtype", KINDS)
def test_backend_equals_cpu_and_reference(backend, kind, dtype):
    rng = random.Random(hash((kind, dtype, backend)) & 0xFFFF)
    for n in [0, 1, 2, 3, 5, 7, 64, 1023, 4097, (1 << 20) + 3, 3_000_001]:
        for _ in range(2):
            seed, stream = rng.randrange(U64), rng.choice([0, 1, rng.randrange(U64)])
            offset = rng.choice([0, 1, 3, rng.randrange(U64), U64 - 3])
            gpu = draw(kind, n, seed, stream, offset, dtype, device="cuda")
            cpu = draw(kind, n, seed, stream, offset, dtype)
            assert np.array_equal(bits(gpu), bits(cpu)), (backend, kind, dtype, n, offset)
            if n <= 5000:
                assert np.array_equal(bits(gpu), ref_bits(kind, seed, stream, offset, n, dtype))


@needs_gpu
def test_backend_every_launch_shape(backend):
    cases = [(n, off) for n in (1, 5, 4099, 4114, 1_000_003) for off in (0, 1, 7)]
    cases += [(8, (1 << 34) - 16), (4101, (1 << 34) - 13)]  # the counter's low word carries
    try:
        for v in range(_C.cuda_variant_count()):
            _C.cuda_set_variant(v)
            for kind, dtype in KINDS:
                for n, off in cases:
                    gpu = draw(kind, n, 99, 5, off, dtype, device="cuda")
                    cpu = draw(kind, n, 99, 5, off, dtype)
                    assert np.array_equal(bits(gpu), bits(cpu)), (backend, v, kind, dtype, n, off)
    finally:
        _C.cuda_set_variant(0)


@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_backend_large_draws(backend, dtype):
    for n, off in (((1 << 26) + 3, 0), ((1 << 26) + 1, 1)):
        gpu = draw("normal", n, 1234, 2, off, dtype, device="cuda")
        cpu = draw("normal", n, 1234, 2, off, dtype)
        assert np.array_equal(bits(gpu), bits(cpu)), (backend, dtype, n, off)
        del gpu, cpu


@needs_gpu
def test_backend_fast_path_and_streams(backend):
    from fastrand import _api

    g, cpu = fastrand.Generator(4242, offset=3), fastrand.Generator(4242, offset=3)
    for device in ("cuda", "cuda:0", torch.device("cuda")):
        for dtype in (torch.float32, torch.float16, torch.float64):
            a = fastrand.randn_tensor((2, 4, 9, 9), generator=g, device=device, dtype=dtype)
            b = fastrand.randn_tensor((2, 4, 9, 9), generator=cpu, dtype=dtype)
            assert np.array_equal(bits(a), bits(b)), (backend, device, dtype)
    codes = {e[-1] for k, e in _api._FAST_NORMAL.items() if str(k[1]).startswith("cuda")}
    assert codes == {1 if backend == "aot" else 3}
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        a = draw("normal", 100_003, 9, 0, 1, device="cuda")
    s.synchronize()
    assert np.array_equal(bits(a), bits(draw("normal", 100_003, 9, 0, 1)))


@needs_gpu
def test_backend_box(backend):
    for dtype, code in (
        (torch.float32, _C.DT_FLOAT32),
        (torch.bfloat16, _C.DT_BFLOAT16),
        (torch.float64, _C.DT_FLOAT64),
    ):
        full = fastrand.randn(6, 70, 33, generator=fastrand.Generator(5, offset=11), dtype=dtype)
        out = torch.empty(3, 40, 20, dtype=dtype, device="cuda")
        base = 2 * 70 * 33 + 10 * 33 + 7
        _cuda.fill_box(out, _C.KIND_NORMAL, code, 5, 0, 11, base, [3, 40, 20], [70 * 33, 33, 1])
        assert np.array_equal(bits(out), bits(full[2:5, 10:50, 7:27])), (backend, dtype)


@needs_gpu
def test_backend_cuda_graphs(backend):
    shape = (1, 4, 64, 64)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up outside capture
        fastrand.randn_tensor(shape, generator=fastrand.Generator(1), device="cuda")
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fastrand.randn_tensor(
            shape, generator=fastrand.Generator(3, offset=8), device="cuda", dtype=torch.bfloat16
        )
    out.zero_()
    graph.replay()
    torch.cuda.synchronize()
    want = fastrand.randn_tensor(
        shape, generator=fastrand.Generator(3, offset=8), dtype=torch.bfloat16
    )
    assert np.array_equal(bits(out), bits(want))
    # the graph generator: every replay draws the next noise of the stream
    g = fastrand.CudaGraphGenerator(7, device="cuda")
    static = torch.empty(shape, device="cuda")
    fastrand.randn_tensor(shape, generator=g, device="cuda")  # warm-up
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static.copy_(fastrand.randn_tensor(shape, generator=g, device="cuda"))
    n = static.numel()
    for k in (1, 2):  # offsets: the warm-up drew [0, n); capture itself draws nothing
        graph.replay()
        torch.cuda.synchronize()
        want = fastrand.randn_tensor(shape, generator=fastrand.Generator(7, offset=k * n))
        assert np.array_equal(bits(static), bits(want)), k


@needs_gpu
def test_backend_capture_without_a_loaded_module(backend, monkeypatch):
    """A capture that would need a compile/load is refused, names warmup, and costs no
    position; after fastrand.warmup() the same capture works."""
    if backend != "nvrtc":
        pytest.skip("only the NVRTC backend loads modules")
    _cuda.reset()
    fastrand.randn(1)  # CPU: nothing CUDA
    g = fastrand.Generator(2)
    s = torch.cuda.Stream()
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="warmup"):
        with torch.cuda.graph(graph, stream=s):
            fastrand.randn_tensor((64,), generator=g, device="cuda")
    assert g.get_offset() == 0
    records = fastrand.warmup()
    assert records and records[0]["backend"] == "nvrtc"
    assert _cuda._common.GROUPS[0] == set(_cuda.groups())  # warmup readies every group
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=s):
        out = fastrand.randn_tensor((64,), generator=g, device="cuda")
    graph.replay()
    torch.cuda.synchronize()
    assert np.array_equal(bits(out), bits(fastrand.randn(64, generator=fastrand.Generator(2))))


@needs_gpu
def test_backend_unloadable_cache_entry(backend, tmp_path, monkeypatch):
    """A valid-looking entry for the wrong arch fails to load: deleted, recompiled, drawn."""
    if backend != "nvrtc":
        pytest.skip("only the NVRTC backend reads the cache")
    monkeypatch.setenv(_cuda.ENV_CACHE, str(tmp_path / "c"))
    _cuda.reset()
    arch = _cuda.target_arch(_cuda._common.capability(0)).arch
    wrong = _cuda.cubin(75 if arch // 10 != 7 else 90, "normal/float32")
    right_key = _cuda.cubin(arch, "normal/float32").key
    path = os.path.join(str(tmp_path / "c"), f"sm_{arch}-{right_key}.cubin")
    with open(path, "wb") as f:
        f.write(_cuda._cache._CACHE_MAGIC + hashlib.sha256(wrong.image).digest() + wrong.image)
    _cuda.reset()
    a = draw("normal", 1000, 3, device="cuda:0")
    assert np.array_equal(bits(a), bits(draw("normal", 1000, 3)))
    assert _valid_entry(path) != wrong.image


@needs_gpu
def test_backend_torch_compile(backend):
    import fastrand.functional as F

    @torch.compile(fullgraph=True)
    def f(x, seed: int, offset: int):
        return x + F.randn(x.shape, seed=seed, offset=offset, dtype=x.dtype, device=x.device)

    x = torch.zeros(3, 257, device="cuda")
    got = f(x, 5, 9)
    want = fastrand.randn(3, 257, generator=fastrand.Generator(5, offset=9))
    assert np.array_equal(bits(got), bits(want))
    g = fastrand.CudaGraphGenerator(8, device="cuda")

    @torch.compile(mode="reduce-overhead")
    def h(state):
        return F.randn_from_state(state, (4, 100)) * 1.0

    outs = [h(g.state).clone() for _ in range(4)]
    torch.cuda.synchronize()
    for k, out in enumerate(outs):
        assert np.array_equal(bits(out).ravel(), ref_bits("normal", 8, 0, k * 400, 400)), k


# ---- hardening: odd cache entries, warmup arguments, fork, devices ----------------------------
@needs_nvrtc
@pytest.mark.parametrize("odd", ["fifo", "directory", "symlink"])
def test_odd_cache_entry_never_blocks_or_fails(fresh, odd, tmp_path):
    """A FIFO, a directory or a link at an entry's name is not a cubin: it is never opened as
    one (a FIFO would block forever), one warning, and the image is compiled; nothing fails."""
    key_entry = _cuda.cubin(90, sources=TINY, main="k.cu")
    os.unlink(key_entry.path)
    if odd == "fifo":
        os.mkfifo(key_entry.path)
    elif odd == "directory":
        os.mkdir(key_entry.path)
    else:
        target = tmp_path / "elsewhere.cubin"
        target.write_bytes(open(__file__, "rb").read())
        os.symlink(target, key_entry.path)
    _cuda.reset()
    code = textwrap.dedent(f"""
        import warnings
        from fastrand import _cuda
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            c = _cuda.cubin(90, sources={TINY!r}, main="k.cu")
        print(c.origin, len(c.image) > 0, sum("fastrand" in str(x.message) for x in w))
    """)
    got = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env=env(**{_cuda.ENV_CACHE: str(fresh)}),
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["compiled", "True", "1"], got.stdout + got.stderr


@pytest.mark.parametrize(
    "archs,error,message",
    [
        (b"90", TypeError, "archs: expected .* got bytes"),
        (90.0, TypeError, "archs: expected .* got float"),
        (True, TypeError, "archs: expected .* got bool"),
        ([90, None], TypeError, "archs: expected archs as ints or strings"),
        (object(), TypeError, "archs: expected .* got object"),
        ([], ValueError, "archs: no architecture named"),
    ],
)
def test_warmup_argument_errors_name_the_argument(archs, error, message):
    with pytest.raises(error, match=message):
        fastrand.warmup(archs)


def test_warmup_devices_and_ops_errors(monkeypatch):
    with pytest.raises(ValueError, match="ops: unknown kernel group"):
        fastrand.warmup([90], ops=["normal/int8"])
    with pytest.raises(ValueError, match="devices: name archs .* or devices, not both"):
        fastrand.warmup([90], devices=[0])
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"devices: cuda:5 is not a visible device \(2 visible\)"):
        _backend._devices_arg([5])
    with pytest.raises(ValueError, match="devices: 'cpu' is not a CUDA device"):
        _backend._devices_arg(["cpu"])
    with pytest.raises(TypeError, match="devices"):
        _backend._devices_arg([True])
    assert _backend._devices_arg(["cuda:1", 1, torch.device("cuda", 0)]) == [1, 0]


def test_warmup_prepares_only_the_current_device(monkeypatch):
    """warmup() with no arguments readies the current device and devices that already have a
    context, never another GPU (one process per GPU: no context on every GPU)."""
    _mock_gpu(monkeypatch, 90)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    monkeypatch.setattr(_backend, "_has_context", lambda i: i == 3)
    monkeypatch.setenv(_cuda.ENV_BACKEND, "copy")
    records = fastrand.warmup()
    assert [r["device"] for r in records] == [2, 3]
    assert sorted(_cuda._common.DEVICE_BACKEND) == [2, 3]
    assert [r["device"] for r in fastrand.warmup(devices=[0])] == [0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_fork_child_forgets_the_parents_devices():
    """A forked child drops the parent's device decisions and loaded kernels (its first CUDA
    call meets torch's own fork check, or sets the device up afresh)."""
    _cuda._common.DEVICE_BACKEND[0] = "nvrtc"
    _cuda._common.GROUPS[0] = {"probe"}
    _cuda._common.READY[0, _C.KIND_NORMAL, _C.DT_FLOAT32] = True
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        ok = not (_cuda._common.DEVICE_BACKEND or _cuda._common.GROUPS or _cuda._common.READY)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert _cuda._common.DEVICE_BACKEND == {0: "nvrtc"}  # the parent keeps its own


def test_slice_refused_on_a_device_advances_nothing(monkeypatch):
    """randn_slice on CUDA readies the kernels before it reserves positions: a refusal (here a
    capture that would need a load) leaves the generator where it was."""
    _mock_gpu(monkeypatch, 90)
    monkeypatch.setenv(_cuda.ENV_BACKEND, "nvrtc")
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    calls = []
    monkeypatch.setattr(
        _backend, "prepare", lambda *a: calls.append(a) or _cuda._common.refuse_in_capture("x")
    )
    from fastrand import _slice

    monkeypatch.setattr(_slice._cuda, "prepare", _backend.prepare)
    g = fastrand.Generator(4)
    out = torch.empty(0)
    monkeypatch.setattr(
        torch,
        "empty",
        lambda *a, **k: types.SimpleNamespace(is_cuda=True, numel=lambda: 6, get_device=lambda: 0),
    )
    with pytest.raises(RuntimeError, match="captured"):
        _slice._draw_box(
            (4, 3),
            [1, 0],
            [2, 3],
            [2, 3],
            g,
            torch.device("cuda", 0),
            out.dtype,
            _C.KIND_NORMAL,
            _C.DT_FLOAT32,
        )
    assert g.get_offset() == 0 and calls == [(0, _C.KIND_NORMAL, _C.DT_FLOAT32, "box")]


# ---- on a GPU: the known-answer check, lazy groups, PTX, fork -------------------------------
@needs_gpu
def test_backend_known_answer_check_passed_and_reported(backend):
    info = _cuda.devices_info()[f"cuda:{torch.cuda.current_device()}"]
    assert info["backend"] == backend and info["reason"] == ""
    results = info["probe"]
    if backend == "aot":
        assert results["aot"].startswith("passed (") and "cases" in results["aot"]
    else:
        assert results["probe"].startswith("passed (")
    assert fastrand.build_info()["cuda_devices"][f"cuda:{torch.cuda.current_device()}"] == info


@needs_gpu
def test_backend_known_answer_check_catches_a_wrong_kernel(backend, monkeypatch):
    """The check compares bits: a launcher that writes other values is caught and named."""
    index = torch.cuda.current_device()
    launcher = "fill_cuda" if backend == "aot" else "drv_fill"
    real = getattr(_C, launcher)

    def off_by_one_seed(ptr, n, kind, code, seed, *rest):
        return real(ptr, n, kind, code, seed + 1, *rest)

    monkeypatch.setattr(_C, launcher, off_by_one_seed)
    groups = _cuda.groups() if backend == "aot" else ["normal/float32"]
    with pytest.raises(
        _cuda.Unusable, match=r"known-answer check failed: normal/float32 .*value 0"
    ):
        _cuda._probe.check(index, backend, groups)


@needs_gpu
def test_backend_nvrtc_loads_only_the_groups_a_draw_needs(backend):
    if backend != "nvrtc":
        pytest.skip("NVRTC groups")
    index = torch.cuda.current_device()
    assert _cuda._common.GROUPS[index] == {"probe"}
    fastrand.randn(10, generator=fastrand.Generator(1), device="cuda")
    assert _cuda._common.GROUPS[index] == {"probe", "normal/float32"}
    fastrand.randn_slice((4, 8), (slice(1, 3), slice(2, 5)), generator=fastrand.Generator(1),
                         dtype=torch.float16, device="cuda")  # fmt: skip
    assert _cuda._common.GROUPS[index] == {"probe", "normal/float32", "normal/float16", "box"}


@needs_gpu
def test_backend_ptx_for_a_gpu_newer_than_nvrtc(backend, monkeypatch, tmp_path):
    """The PTX path (a GPU newer than every arch NVRTC knows): PTX of an older arch, JIT-compiled
    by the driver, checked, and drawing the same bits."""
    if backend != "nvrtc":
        pytest.skip("NVRTC only")
    cap = _cuda._common.capability(torch.cuda.current_device())
    monkeypatch.setenv(_cuda.ENV_CACHE, str(tmp_path / "c"))
    monkeypatch.setattr(_cuda._nvrtc, "target_arch", lambda c, nv=None: _cuda.Target(75, True))
    monkeypatch.setattr(_cuda._cache, "cached_without_nvrtc", lambda c, g: None)
    _cuda.reset()
    assert cap >= 75 and _cuda.device_backend(torch.cuda.current_device()) == "nvrtc"
    got = draw("normal", 5000, 8, 1, 3, "bfloat16", device="cuda")
    assert np.array_equal(bits(got), bits(draw("normal", 5000, 8, 1, 3, "bfloat16")))
    assert all(c.ptx for c in _cuda._common.LOADED.values())


FORK_CHILD = r"""
import os, sys, torch, fastrand
from fastrand import _cuda
fastrand.randn(10, device="cuda")  # the parent readies the device
pid = os.fork()
if pid == 0:
    try:
        assert not _cuda._common.DEVICE_BACKEND
        fastrand.randn(10, device="cuda")
        os._exit(3)  # torch let the child use CUDA: not expected after the parent's init
    except RuntimeError as e:
        os._exit(0 if "fork" in str(e).lower() or "CUDA" in str(e) else 4)
_, status = os.waitpid(pid, 0)
print("CHILD", os.WEXITSTATUS(status))
"""


@needs_gpu
def test_backend_fork_child_gets_torchs_error(backend):
    got = subprocess.run(
        [sys.executable, "-c", FORK_CHILD], capture_output=True, text=True, timeout=120,
        env=env(**{_cuda.ENV_BACKEND: backend}),
    )  # fmt: skip
    assert got.returncode == 0 and "CHILD 0" in got.stdout, got.stdout + got.stderr


class _CpuLaunchers:
    """The known-answer check's launcher interface served by the CPU path: the check's own
    bookkeeping (cases, expectations, state offsets, bit comparison) runs without a GPU. `wrong`
    names a launcher that writes something else."""

    device = torch.device("cpu")
    index = 0

    def __init__(self, wrong=None):
        self.wrong = wrong

    def fill(self, p, n, k, c, o, v):
        seed = _cuda._probe.SEED + (self.wrong == "fill" and v == 8)  # one shape off
        _C.fill_cpu(p, n, k, c, seed, _cuda._probe.STREAM, o, 1)

    def state(self, p, n, k, c, st):
        t = (ctypes.c_int64 * 3).from_address(st)
        seed, stream, offset = (int(x) % U64 for x in t)
        _C.fill_cpu(p, n, k, c, seed, stream, offset, 1)
        end = fastrand._generator.next_offset(offset, n, c == _C.DT_FLOAT64)
        end += self.wrong == "advance"
        t[2] = end - U64 if end >= 1 << 63 else end

    def box(self, p, k, c, o, b, sz, gs):
        o += self.wrong == "box"
        _C.fill_box_cpu(p, k, c, _cuda._probe.SEED, _cuda._probe.STREAM, o, b, sz, gs, 1)

    def probe(self, w, p, f, n):
        _C.probe_cpu(w, p, f + (self.wrong == "probe"), n, 1)


def test_known_answer_check_bookkeeping_on_the_cpu():
    """Every group's cases, through CPU launchers: all pass; each kind of wrong launcher is
    caught, with the case and the first differing value named."""
    n = _cuda._probe.check(0, "test", _cuda.groups(), _CpuLaunchers())
    assert n == 345  # the cases named in _probe.py
    for wrong, where in [
        ("fill", "variant 8"),
        ("advance", "(new offset)"),
        ("box", "box normal/float32"),
        ("probe", "probe 0"),
    ]:
        with pytest.raises(_cuda.Unusable, match=re.escape(where)) as e:
            _cuda._probe.check(0, "test", _cuda.groups(), _CpuLaunchers(wrong))
        assert re.search(r"value \d+ is [0-9a-f]+, the CPU gives [0-9a-f]+", str(e.value))


def test_auto_copy_reason_names_the_builds_archs(monkeypatch):
    """A GPU the AOT build holds nothing for and no NVRTC: the copy warning says both."""
    _mock_gpu(monkeypatch, 120)
    monkeypatch.setattr(_C, "CUDA", True)
    monkeypatch.setattr(_C, "CUDA_ARCHS", "sm_90")

    def missing():
        raise _cuda.NvrtcNotFoundError("NVRTC was not found; tried /x/libnvrtc.so.13")

    monkeypatch.setattr(_cuda._nvrtc, "nvrtc", missing)
    monkeypatch.setattr(_cuda._nvrtc, "_hint", lambda: None)
    monkeypatch.setattr(_backend, "_load_group", lambda index, cap, group: _nvrtc.nvrtc())
    with pytest.warns(RuntimeWarning, match=r"hold sm_90, nothing for sm_120.*/x/libnvrtc"):
        assert _cuda.device_backend(0) == "copy"
