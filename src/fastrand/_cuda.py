"""CUDA backends: which kernel a CUDA draw runs, NVRTC at run time, and the cubin cache.

Three ways to fill a CUDA tensor, chosen by ``FASTRAND_CUDA_BACKEND=auto|aot|nvrtc|copy``:

- ``aot``: the kernels nvcc compiled into ``fastrand._C`` at install time (``_C.CUDA``);
- ``nvrtc``: the same kernel source (``_C.kernel_sources()``, embedded in the extension)
  compiled at first use by NVRTC for the device's arch (``-arch=sm_XY``: a cubin, so no
  PTX-versus-driver question), cached on disk, loaded and launched through the driver API
  (``_C.drv_*``, libcuda opened at run time);
- ``copy``: the CPU draw copied to the device: the same bits, not the same speed, and never
  inside CUDA-graph capture.

``auto`` (the default) takes ``aot`` when it is compiled in and holds code for the device, else
``nvrtc`` when NVRTC is found, else ``copy``, and then warns once per process with the reason and
the fix. Whatever the backend, the bits are the same: the kernels share one source.

Modules are compiled and loaded outside CUDA-graph capture only: at the first eager draw on a
device or in ``warmup()``. The hot path is one dict lookup (device -> module) and the launch.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import re
import stat
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable
from typing import Any, NamedTuple

import torch

from . import _C
from ._generator import U64, next_offset

ENV_BACKEND = "FASTRAND_CUDA_BACKEND"
ENV_NVRTC = "FASTRAND_NVRTC"
ENV_CACHE = "FASTRAND_CACHE_DIR"
BACKENDS = ("auto", "aot", "nvrtc", "copy")
MIN_ARCH = 75  # the oldest arch fastrand builds for (AOT and NVRTC alike)
# NVRTC options besides -arch: no -I (every header is an in-memory header, so every byte is in
# the cache key), no fused multiply-adds the source did not ask for (as the nvcc build).
NVRTC_OPTIONS = ("--fmad=false", "-std=c++17")
_CACHE_MAGIC = b"fastrand-cubin\x00\x01"  # 16 bytes, then sha256(image), then the image
_KEY_TAG = b"fastrand nvrtc cubin cache v1"

try:  # the raw current-stream handle without building a torch.cuda.Stream object
    _raw_stream = torch._C._cuda_getCurrentRawStream
except AttributeError:  # pragma: no cover - older/newer torch

    def _raw_stream(index):
        return torch.cuda.current_stream(index).cuda_stream


class NvrtcNotFoundError(RuntimeError):
    """No usable NVRTC library; the message names every path tried and why it failed."""


class NvrtcCompileError(RuntimeError):
    """NVRTC rejected the kernel source; the message holds NVRTC's log."""


# --------------------------------------------------------------------------------------------
# state (all of it reset by _reset(), for tests)
_LOCK = threading.RLock()
MODULES: dict[int, int] = {}  # device index -> driver module id of the NVRTC kernels
_DEVICE_BACKEND: dict[int, str] = {}  # device index -> "aot" | "nvrtc" | "copy"
_COPY_REASON: dict[int, str] = {}  # device index -> why it ended at copy
_STATE: dict[str, Any] = {}  # "backend", "nvrtc", "nvrtc_error", "cache"
_MEMORY: dict[str, bytes] = {}  # cache key -> cubin, for this process
_WARNED: set[str] = set()


def _reset() -> None:
    """Forgets every decision (backend, NVRTC, cache state, loaded modules); for tests."""
    with _LOCK:
        MODULES.clear()
        _DEVICE_BACKEND.clear()
        _COPY_REASON.clear()
        _STATE.clear()
        _MEMORY.clear()
        _WARNED.clear()
        api = sys.modules.get(__package__ + "._api")
        if api is not None:
            api._FAST_NORMAL.clear()


def _warn_once(tag: str, message: str) -> None:
    if tag in _WARNED:
        return
    _WARNED.add(tag)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


# --------------------------------------------------------------------------------------------
# backend choice
def requested() -> str:
    """The value of FASTRAND_CUDA_BACKEND (default auto); ValueError naming it if unknown."""
    raw = os.environ.get(ENV_BACKEND, "")
    value = raw.strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"{ENV_BACKEND}={raw!r}: expected one of {', '.join(BACKENDS)}")
    return value


def backend() -> str:
    """ "aot", "nvrtc" or "copy": the backend CUDA draws use in this process (per the rule of
    FASTRAND_CUDA_BACKEND; a device the AOT build holds no code for may still use nvrtc, see
    device_backend)."""
    b = _STATE.get("backend")
    if b is None:
        with _LOCK:
            b = _STATE["backend"] = _choose_backend()
    return b


def _choose_backend() -> str:
    req = requested()
    if req == "aot":
        if not _C.CUDA:
            raise RuntimeError(
                f"{ENV_BACKEND}=aot, but this build of fastrand has no nvcc-compiled CUDA kernel "
                "(reinstall it where nvcc is found, or use FASTRAND_CUDA_BACKEND=auto or nvrtc)"
            )
        return "aot"
    if req == "nvrtc":
        if _hint() is None:
            nvrtc()  # raises NvrtcNotFoundError naming the paths tried
        return "nvrtc"
    if req == "copy":
        return "copy"
    if _C.CUDA:
        return "aot"
    if _hint() is not None:
        return "nvrtc"
    try:
        nvrtc()
    except NvrtcNotFoundError as e:
        _STATE["why_copy"] = f"this build of fastrand has no nvcc-compiled CUDA kernel, and {e}"
        return "copy"
    return "nvrtc"


def device_backend(index: int) -> str:
    """The backend draws on cuda:index use; under auto, warns once when that is copy."""
    b = _DEVICE_BACKEND.get(index)
    if b is None:
        with _LOCK:
            b = _DEVICE_BACKEND.get(index)
            if b is None:
                b = _DEVICE_BACKEND[index] = _choose_device_backend(index)
    return b


def _capability(index: int) -> int:
    major, minor = torch.cuda.get_device_capability(index)
    return 10 * major + minor


def aot_covers(arch: int, archs: str | None = None) -> bool:
    """True when the AOT build (its _C.CUDA_ARCHS, e.g. "sm_80,sm_90,compute_90") holds code
    that runs on a device of compute capability `arch`: a cubin of the same major and a
    minor not above it, or PTX of an arch not above it."""
    for tok in (_C.CUDA_ARCHS if archs is None else archs).split(","):
        m = re.fullmatch(r"(sm|compute)_(\d+)[a-z]?", tok.strip())
        if not m:
            continue
        a = int(m.group(2))
        if m.group(1) == "sm" and a // 10 == arch // 10 and a <= arch:
            return True
        if m.group(1) == "compute" and a <= arch:
            return True
    return False


def _choose_device_backend(index: int) -> str:
    b = backend()
    if requested() != "auto":
        return b
    reason = None
    if b == "aot":
        arch = _capability(index)
        if aot_covers(arch):
            return "aot"
        reason = (
            f"this build's CUDA kernel holds {_C.CUDA_ARCHS}, nothing for cuda:{index} (sm_{arch})"
        )
        try:
            nvrtc()
        except NvrtcNotFoundError as e:
            reason += f", and {e}"
            b = "copy"
        else:
            b = "nvrtc"
    if b == "nvrtc":
        status = _C.drv_status()
        if status:
            reason = f"NVRTC was found, but the CUDA driver API is not usable: {status}"
            b = "copy"
        elif _cached_without_nvrtc(_capability(index)) is None:
            try:
                target_arch(_capability(index))
            except RuntimeError as e:
                reason = str(e)
                b = "copy"
    if b == "copy":
        if reason is None:
            reason = _STATE.get("why_copy", f"{ENV_BACKEND}=copy")
        _COPY_REASON[index] = reason
        _warn_once(
            "copy",
            f"fastrand: CUDA draws on cuda:{index} are generated on the CPU and copied (the "
            f"same bits, far slower) because {reason}. Fix: install NVRTC for torch's CUDA "
            f"({_nvrtc_fix()}), or point {ENV_NVRTC} at libnvrtc.so, or reinstall fastrand "
            f"where nvcc is found; set {ENV_BACKEND}=copy to choose this path silently.",
        )
    return b


def _torch_cuda_major() -> int | None:
    v = torch.version.cuda
    try:
        return int(v.split(".")[0]) if v else None
    except ValueError:
        return None


def _nvrtc_fix() -> str:
    major = _torch_cuda_major()
    if major == 12:
        return "pip install nvidia-cuda-nvrtc-cu12"
    if major is not None:
        return f'pip install "nvidia-cuda-nvrtc=={major}.*"'
    return "pip install nvidia-cuda-nvrtc"


def copy_reason(index: int) -> str:
    """Why cuda:index uses the copy backend ("" when it does not)."""
    if device_backend(index) != "copy":
        return ""
    return _COPY_REASON.get(index, f"{ENV_BACKEND}=copy")


def native(index: int) -> bool:
    """True when draws on cuda:index run a CUDA kernel (aot or nvrtc), not the CPU copy."""
    return device_backend(index) != "copy"


# --------------------------------------------------------------------------------------------
# finding NVRTC
#
# cuda-pathfinder (NVIDIA's locator) is not a dependency. Its search (already loaded, NVIDIA
# wheels, conda, the system loader, CUDA_HOME) stops at the first library it finds; fastrand
# needs to prefer the NVRTC major that matches torch's CUDA among several (a newer major's cubin
# may not load on the driver torch runs with), to take libnvrtc-builtins from libnvrtc's own
# directory, and to name every path it tried when nothing works. That is a short list of
# well-known places, below. When cuda-pathfinder is installed anyway and none of them works, its
# answer is tried last (it loads the library itself, so never earlier), which adds the conda
# layouts it knows at no cost to everyone else.
_WHEEL_GLOBS = (
    "nvidia/cu[0-9]*/lib/libnvrtc.so.[0-9]*",
    "nvidia/cuda_nvrtc/lib/libnvrtc.so.[0-9]*",
)
_TOOLKIT_GLOBS = (
    "lib64/libnvrtc.so.[0-9]*",
    "lib/libnvrtc.so.[0-9]*",
    "targets/*/lib/libnvrtc.so.[0-9]*",
)
_NAMES = ("libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so")


def _lib_major(path: str) -> int | None:
    m = re.search(r"libnvrtc\.so\.(\d+)", os.path.basename(path))
    return int(m.group(1)) if m else None


def _loaded_nvrtc() -> list[str]:
    """libnvrtc files this process already mapped (torch's CUDA wheels preload theirs)."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return []
    found = []
    for line in maps.splitlines():
        parts = line.split(None, 5)
        path = parts[5] if len(parts) == 6 else ""
        if re.search(r"/libnvrtc\.so(\.\d+)*$", path) and path not in found:
            found.append(path)
    return found


def _site_dirs() -> list[str]:
    dirs = []
    torch_parent = os.path.dirname(os.path.dirname(os.path.abspath(torch.__file__)))
    for d in [torch_parent] + list(sys.path):
        if d and os.path.isdir(d) and d not in dirs:
            dirs.append(d)
    return dirs


def nvrtc_candidates() -> list[tuple[str, str]]:
    """(path or library name, where it comes from), in the order they are tried: already
    loaded, torch's pip wheels, a toolkit (CUDA_HOME, CUDA_PATH, /usr/local/cuda), the system
    loader by name (cuda-pathfinder, if installed, is asked only when all of these fail); then
    stably sorted so that the NVRTC major matching
    torch.version.cuda comes first."""
    out: list[tuple[str, str]] = []

    def add(path: str, where: str) -> None:
        real = os.path.realpath(path) if os.sep in path else path
        if all((os.path.realpath(p) if os.sep in p else p) != real for p, _ in out):
            out.append((path, where))

    for p in _loaded_nvrtc():
        add(p, "already loaded")
    for d in _site_dirs():
        for pattern in _WHEEL_GLOBS:
            for p in sorted(glob.glob(os.path.join(d, pattern)), reverse=True):
                add(p, "pip wheel")
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    for root in roots:
        if not root:
            continue
        hits = []
        for pattern in _TOOLKIT_GLOBS:
            hits += sorted(glob.glob(os.path.join(root, pattern)), reverse=True)
        if not hits:
            add(os.path.join(root, "lib64", "libnvrtc.so"), "toolkit")  # named in the error
        for p in hits:
            add(p, "toolkit")
    for name in _NAMES:
        add(name, "system loader")
    want = _torch_cuda_major()
    if want is not None:
        out.sort(key=lambda c: _lib_major(c[0]) != want)
    return out


class Nvrtc:
    """A loaded NVRTC library (with its builtins from the same directory)."""

    def __init__(self, path: str, where: str):
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            raise OSError(f"cannot be loaded ({e})") from None
        try:
            version = lib.nvrtcVersion
            for name in ("nvrtcGetSupportedArchs", "nvrtcGetNumSupportedArchs", "nvrtcGetCUBIN"):
                getattr(lib, name)
        except AttributeError:
            raise OSError(
                "is not NVRTC (no nvrtcVersion / nvrtcGetSupportedArchs / nvrtcGetCUBIN)"
            ) from None
        major, minor = ctypes.c_int(), ctypes.c_int()
        version.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
        if version(ctypes.byref(major), ctypes.byref(minor)) != 0:
            raise OSError("nvrtcVersion failed")
        self.lib = lib
        self.version = (major.value, minor.value)
        self.where = where
        self.path = _mapped_path(path) or path
        # NVRTC opens libnvrtc-builtins.so.MAJOR.MINOR at its first compile; load the one
        # beside this libnvrtc now (before any compile, global so NVRTC's dlopen finds it), so
        # the pair always comes from one place.
        builtins = os.path.join(
            os.path.dirname(self.path), f"libnvrtc-builtins.so.{major.value}.{minor.value}"
        )
        if not os.path.isfile(builtins):
            raise OSError(f"has no {os.path.basename(builtins)} beside it ({builtins})")
        try:
            self.builtins = ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise OSError(f"its builtins {builtins} cannot be loaded ({e})") from None
        self.builtins_path = builtins
        self._setup()
        n = ctypes.c_int()
        self._check(lib.nvrtcGetNumSupportedArchs(ctypes.byref(n)), "nvrtcGetNumSupportedArchs")
        arr = (ctypes.c_int * max(n.value, 1))()
        self._check(lib.nvrtcGetSupportedArchs(arr), "nvrtcGetSupportedArchs")
        self.archs = sorted(arr[i] for i in range(n.value))

    @property
    def version_string(self) -> str:
        return "%d.%d" % self.version

    def _setup(self) -> None:
        lib, P, c_int, c_size_t = self.lib, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        charpp = ctypes.POINTER(ctypes.c_char_p)
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcGetErrorString.argtypes = [c_int]
        lib.nvrtcGetNumSupportedArchs.argtypes = [ctypes.POINTER(c_int)]
        lib.nvrtcGetSupportedArchs.argtypes = [ctypes.POINTER(c_int)]
        lib.nvrtcCreateProgram.argtypes = [
            ctypes.POINTER(P),
            ctypes.c_char_p,
            ctypes.c_char_p,
            c_int,
            charpp,
            charpp,
        ]
        lib.nvrtcCompileProgram.argtypes = [P, c_int, charpp]
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(P)]
        lib.nvrtcGetProgramLogSize.argtypes = [P, ctypes.POINTER(c_size_t)]
        lib.nvrtcGetProgramLog.argtypes = [P, ctypes.c_char_p]
        lib.nvrtcGetCUBINSize.argtypes = [P, ctypes.POINTER(c_size_t)]
        lib.nvrtcGetCUBIN.argtypes = [P, ctypes.c_char_p]
        for name in (
            "nvrtcGetNumSupportedArchs",
            "nvrtcGetSupportedArchs",
            "nvrtcCreateProgram",
            "nvrtcCompileProgram",
            "nvrtcDestroyProgram",
            "nvrtcGetProgramLogSize",
            "nvrtcGetProgramLog",
            "nvrtcGetCUBINSize",
            "nvrtcGetCUBIN",
        ):
            getattr(lib, name).restype = c_int

    def _error(self, code: int) -> str:
        s = self.lib.nvrtcGetErrorString(code)
        return s.decode(errors="replace") if s else f"NVRTC error {code}"

    def _check(self, code: int, what: str) -> None:
        if code != 0:
            raise RuntimeError(f"{what} failed: {self._error(code)} (NVRTC at {self.path})")

    def compile(
        self, sources: dict[str, str], main: str, options: Iterable[str]
    ) -> tuple[bytes, str]:
        """(cubin, log) of the program `main` with the other sources as in-memory headers."""
        lib = self.lib
        opts = [o.encode() for o in options]
        names = [n for n in sorted(sources) if n != main]
        hdr_src = (ctypes.c_char_p * max(len(names), 1))(*[sources[n].encode() for n in names])
        hdr_names = (ctypes.c_char_p * max(len(names), 1))(*[n.encode() for n in names])
        prog = ctypes.c_void_p()
        self._check(
            lib.nvrtcCreateProgram(
                ctypes.byref(prog),
                sources[main].encode(),
                main.encode(),
                len(names),
                hdr_src,
                hdr_names,
            ),
            "nvrtcCreateProgram",
        )
        try:
            arr = (ctypes.c_char_p * max(len(opts), 1))(*opts)
            res = lib.nvrtcCompileProgram(prog, len(opts), arr)
            size = ctypes.c_size_t()
            log = ""
            if lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)) == 0 and size.value > 1:
                buf = ctypes.create_string_buffer(size.value)
                if lib.nvrtcGetProgramLog(prog, buf) == 0:
                    log = buf.value.decode(errors="replace").strip()
            if res != 0:
                raise NvrtcCompileError(
                    f"NVRTC {self.version_string} ({self.path}) could not compile {main} with "
                    f"{' '.join(o.decode() for o in opts)}: {self._error(res)}\n{log}"
                )
            self._check(lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "nvrtcGetCUBINSize")
            buf = ctypes.create_string_buffer(size.value)
            self._check(lib.nvrtcGetCUBIN(prog, buf), "nvrtcGetCUBIN")
            return buf.raw, log
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _mapped_path(name: str) -> str | None:
    """The file a library loaded by name came from (from /proc/self/maps)."""
    if os.sep in name:
        return os.path.realpath(name) if os.path.exists(name) else None
    base = name.split(".so")[0] + ".so"
    for p in _loaded_nvrtc():
        if os.path.basename(p).startswith(base):
            return p
    return None


def nvrtc() -> Nvrtc:
    """The NVRTC library this process uses (found once); NvrtcNotFoundError names every path
    tried and why each failed."""
    nv = _STATE.get("nvrtc")
    if nv is not None:
        return nv
    with _LOCK:
        nv = _STATE.get("nvrtc")
        if nv is not None:
            return nv
        err = _STATE.get("nvrtc_error")
        if err is not None:
            raise NvrtcNotFoundError(err)
        try:
            nv = _find_nvrtc()
        except NvrtcNotFoundError as e:
            _STATE["nvrtc_error"] = str(e)
            raise
        _STATE["nvrtc"] = nv
        return nv


def _find_nvrtc() -> Nvrtc:
    explicit = os.environ.get(ENV_NVRTC, "").strip()
    if explicit:
        path = explicit
        if os.path.isdir(path):
            hits = sorted(glob.glob(os.path.join(path, "libnvrtc.so*")), reverse=True)
            hits = [h for h in hits if "builtins" not in h]
            if not hits:
                raise NvrtcNotFoundError(f"{ENV_NVRTC}={explicit}: no libnvrtc.so* in it")
            path = hits[0]
        elif not os.path.exists(path):
            raise NvrtcNotFoundError(f"{ENV_NVRTC}={explicit}: no such file")
        try:
            return Nvrtc(path, ENV_NVRTC)
        except OSError as e:
            raise NvrtcNotFoundError(f"{ENV_NVRTC}={explicit}: {path} {e}") from None
    tried = []
    for path, where in nvrtc_candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(f"{path} ({where}): not there")
            continue
        try:
            return Nvrtc(path, where)
        except OSError as e:
            tried.append(f"{path} ({where}): {e}")
    try:  # optional, see above
        from cuda import pathfinder  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        try:
            path = pathfinder.load_nvidia_dynamic_lib("nvrtc").abs_path
            return Nvrtc(path, "cuda-pathfinder")
        except Exception as e:  # noqa: BLE001 - its own not-found errors, or ours
            tried.append(f"cuda-pathfinder: {e}")
    raise NvrtcNotFoundError(
        "NVRTC was not found; tried " + "; ".join(tried) + f". Install it ({_nvrtc_fix()}) "
        f"or set {ENV_NVRTC} to the path of libnvrtc.so"
    )


# Loading NVRTC (140 MB, 300,000 relocations) costs tens of milliseconds, more than reading and
# loading a cached cubin. So a process whose cubin is cached does not load it: the version in
# the cache key comes from the builtins library beside the libnvrtc that would be loaded
# (libnvrtc-builtins.so.MAJOR.MINOR, the exact version NVRTC itself requires), and the arch is
# the device's own. Anything else (no hint, a miss, an entry that does not load) takes the full
# path: NVRTC loaded, the arch checked, compiled.
def _hint() -> tuple[str, str] | None:
    """(libnvrtc path, "MAJOR.MINOR") of the NVRTC nvrtc() would most likely load, found
    without loading it; None when there is no such file with exactly one builtins beside it."""
    if "hint" in _STATE:
        return _STATE["hint"]
    hint = None
    explicit = os.environ.get(ENV_NVRTC, "").strip()
    if explicit:
        cands = (
            [explicit]
            if not os.path.isdir(explicit)
            else sorted(
                (
                    p
                    for p in glob.glob(os.path.join(explicit, "libnvrtc.so*"))
                    if "builtins" not in p
                ),
                reverse=True,
            )[:1]
        )
    else:
        cands = [p for p, _ in nvrtc_candidates()]
    for path in cands:
        if os.sep not in path or not os.path.isfile(path):
            continue
        real = os.path.realpath(path)
        major = _lib_major(path) or _lib_major(real)
        if major is None:
            continue
        found = glob.glob(os.path.join(os.path.dirname(real), f"libnvrtc-builtins.so.{major}.*"))
        versions = [m for m in (re.search(r"\.so\.(\d+\.\d+)$", f) for f in found) if m]
        if len(versions) == 1:
            hint = (real, versions[0].group(1))
        break  # only the first candidate: the one nvrtc() tries first
    _STATE["hint"] = hint
    return hint


def _cached_without_nvrtc(arch: int) -> Cubin | None:
    """The cached cubin of the kernels for sm_<arch>, found without loading NVRTC, or None."""
    if "nvrtc" in _STATE or arch < MIN_ARCH:
        return None  # NVRTC is loaded anyway (or of no use): the full path costs nothing more
    hint = _hint()
    if hint is None:
        return None
    sources, main = kernel_sources()
    key = cache_key(arch, sources, main, hint[1], options(arch, hint[1]))
    cache = _cache()
    with _LOCK:
        image = _MEMORY.get(key)
        if image is not None:
            return Cubin(image, arch, key, cache.path_of(key, arch), "memory", 0.0)
        t0 = time.perf_counter()
        image, path = cache.read(key, arch)
        if image is None:
            return None
        _MEMORY[key] = image
        return Cubin(image, arch, key, path, "disk", time.perf_counter() - t0)


def nvrtc_version() -> str | None:
    """The version of the NVRTC found ("13.0"), or None."""
    try:
        return nvrtc().version_string
    except NvrtcNotFoundError:
        return None


# --------------------------------------------------------------------------------------------
# compiling
def parse_archs(values: Iterable[str | int]) -> list[int]:
    """[90, 120] from e.g. ["90", "sm_120"], ["90,sm_100"], [90] or ["9.0"]."""
    out: list[int] = []
    for value in values:
        parts = [value] if isinstance(value, int) else str(value).split(",")
        for part in parts:
            if isinstance(part, int) and not isinstance(part, bool):
                arch = part
            else:
                tok = str(part).strip().lower()
                m = re.fullmatch(r"(?:sm_)?(\d{2,3})", tok) or re.fullmatch(r"(\d+)\.(\d)", tok)
                if not m:
                    raise ValueError(
                        f"archs: cannot read {part!r} as a GPU architecture "
                        "(expected e.g. 90 or sm_90)"
                    )
                arch = (
                    int(m.group(1)) * 10 + int(m.group(2)) if m.lastindex == 2 else int(m.group(1))
                )
            if arch not in out:
                out.append(arch)
    return out


def options(arch: int, version: str = "0.0") -> list[str]:
    """The NVRTC options of a compile for sm_<arch> by NVRTC `version` ("13.0").

    From NVRTC 12.4 on, --split-compile=0 runs the optimizer on all cores (the kernels are
    independent functions; checked on sm_90: the same instructions per kernel, only register
    numbering differs), which is most of a cold compile's time."""
    major, minor = (int(x) for x in version.split(".")[:2])
    split = ["--split-compile=0"] if (major, minor) >= (12, 4) else []
    return [f"-arch=sm_{arch}", *NVRTC_OPTIONS, *split]


def check_arch(arch: int, nv: Nvrtc | None = None) -> None:
    """ValueError naming the arch when fastrand or this NVRTC cannot compile for it."""
    nv = nv or nvrtc()
    if arch < MIN_ARCH:
        raise ValueError(
            f"archs: sm_{arch} is older than sm_{MIN_ARCH}, the oldest fastrand supports"
        )
    if arch not in nv.archs:
        raise ValueError(
            f"archs: NVRTC {nv.version_string} ({nv.path}) cannot compile for sm_{arch}; it "
            f"supports {', '.join(f'sm_{a}' for a in nv.archs if a >= MIN_ARCH)}"
        )


def target_arch(capability: int, nv: Nvrtc | None = None) -> int:
    """The arch to compile for a device of compute capability `capability`: itself, or the
    newest NVRTC arch of the same major below it (a cubin runs on later minors)."""
    nv = nv or nvrtc()
    same = [a for a in nv.archs if a // 10 == capability // 10 and MIN_ARCH <= a <= capability]
    if not same:
        raise RuntimeError(
            f"NVRTC {nv.version_string} ({nv.path}) cannot compile for sm_{capability} (it "
            f"supports {', '.join(f'sm_{a}' for a in nv.archs)}); install a newer NVRTC "
            f"({_nvrtc_fix()})"
        )
    return max(same)


def kernel_sources() -> tuple[dict[str, str], str]:
    """(name -> source text, main file name) of the kernels, as embedded in the extension."""
    return dict(_C.kernel_sources()), str(_C.KERNEL_MAIN)


def cache_key(
    arch: int, sources: dict[str, str], main: str, nvrtc_version: str, opts: Iterable[str]
) -> str:
    """sha256 of fastrand's version, every source byte, the NVRTC version, the options, the arch."""
    from . import __version__

    h = hashlib.sha256()

    def put(s: str | bytes) -> None:
        b = s.encode() if isinstance(s, str) else s
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)

    put(_KEY_TAG)
    put(__version__)
    put(main)
    put(str(len(sources)))
    for name in sorted(sources):
        put(name)
        put(sources[name])
    put(nvrtc_version)
    for o in opts:
        put(o)
    put(f"sm_{arch}")
    return h.hexdigest()


class Cubin(NamedTuple):
    image: bytes
    arch: int
    key: str
    path: str | None  # the cache entry holding it, None when only in memory
    origin: str  # "compiled", "disk" or "memory"
    seconds: float  # compile (or read) time


def cubin(
    arch: int,
    sources: dict[str, str] | None = None,
    main: str | None = None,
    *,
    fresh: bool = False,
) -> Cubin:
    """The cubin of the kernels (or of `sources`/`main`) for sm_<arch>: from this process's
    memory, else from the disk cache, else compiled by NVRTC and written to the cache. `fresh`
    discards a cached one first."""
    nv = nvrtc()
    if sources is None:
        sources, main = kernel_sources()
    elif main is None:
        raise ValueError("main: the name of the main source is needed with sources")
    opts = options(arch, nv.version_string)
    key = cache_key(arch, sources, main, nv.version_string, opts)
    cache = _cache()
    with _LOCK:
        if fresh:
            _MEMORY.pop(key, None)
            cache.discard(key, arch)
        image = _MEMORY.get(key)
        if image is not None:
            return Cubin(image, arch, key, cache.path_of(key, arch), "memory", 0.0)
        t0 = time.perf_counter()
        image, path = cache.read(key, arch)
        if image is not None:
            _MEMORY[key] = image
            return Cubin(image, arch, key, path, "disk", time.perf_counter() - t0)
        image, _log = nv.compile(sources, main, opts)
        seconds = time.perf_counter() - t0
        _MEMORY[key] = image
        path = cache.write(key, arch, image)
        return Cubin(image, arch, key, path, "compiled", seconds)


# --------------------------------------------------------------------------------------------
# the disk cache
def cache_dir() -> str:
    """FASTRAND_CACHE_DIR, else $XDG_CACHE_HOME/fastrand, else ~/.cache/fastrand."""
    d = os.environ.get(ENV_CACHE, "").strip()
    if d:
        return os.path.abspath(os.path.expanduser(d))
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastrand")


def _unsafe(st: os.stat_result, what: str) -> str | None:
    """Why a directory or file with this stat must not be trusted, or None."""
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"{what} is owned by uid {st.st_uid}, not by this user ({os.getuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{what} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


class _Cache:
    """Cubins on disk under one directory; problems turn it off (memory only) with one warning.

    Entries: <dir>/sm_<arch>-<key>.cubin = magic, sha256 of the image, the image. Written to a
    temporary file in the same directory and renamed over the entry (atomic), so processes
    warming at once each leave a whole entry. A corrupt entry is deleted and recompiled."""

    def __init__(self, path: str):
        self.dir = path
        self.error: str | None = None
        self._ready = False

    def _off(self, reason: str) -> None:
        self.error = reason
        _warn_once(
            "cache",
            f"fastrand: not using the cubin cache: {reason}; kernels compiled by NVRTC are kept "
            f"in memory for this process only (set {ENV_CACHE} to a private directory)",
        )

    def usable(self) -> bool:
        if self.error is not None:
            return False
        if self._ready:
            return True
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            st = os.stat(self.dir)
        except OSError as e:
            self._off(f"cannot create {self.dir} ({e.strerror or e})")
            return False
        if not stat.S_ISDIR(st.st_mode):
            self._off(f"{self.dir} is not a directory")
            return False
        why = _unsafe(st, self.dir)
        if why:
            self._off(why)
            return False
        self._ready = True
        return True

    def path_of(self, key: str, arch: int) -> str | None:
        if self.error is not None:
            return None
        p = os.path.join(self.dir, f"sm_{arch}-{key}.cubin")
        return p if os.path.exists(p) else None

    def read(self, key: str, arch: int) -> tuple[bytes | None, str | None]:
        if not self.usable():
            return None, None
        path = os.path.join(self.dir, f"sm_{arch}-{key}.cubin")
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None, None
        except OSError as e:
            self._off(f"cannot read {path} ({e.strerror or e})")
            return None, None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            why = _unsafe(st, path) or (None if stat.S_ISREG(st.st_mode) else f"{path} is odd")
            if why:
                self._off(why)
                return None, None
            data = f.read()
        head = len(_CACHE_MAGIC) + 32
        image = data[head:]
        if (
            len(data) <= head
            or data[: len(_CACHE_MAGIC)] != _CACHE_MAGIC
            or hashlib.sha256(image).digest() != data[len(_CACHE_MAGIC) : head]
        ):
            self.discard(key, arch)  # corrupt: deleted, and the caller compiles it again
            return None, None
        return image, path

    def write(self, key: str, arch: int, image: bytes) -> str | None:
        if not self.usable():
            return None
        path = os.path.join(self.dir, f"sm_{arch}-{key}.cubin")
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".cubin", dir=self.dir)
            with os.fdopen(fd, "wb") as f:
                f.write(_CACHE_MAGIC + hashlib.sha256(image).digest() + image)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            return path
        except OSError as e:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            self._off(f"cannot write to {self.dir} ({e.strerror or e})")
            return None

    def discard(self, key: str, arch: int) -> None:
        if self.error is not None:
            return
        try:
            os.unlink(os.path.join(self.dir, f"sm_{arch}-{key}.cubin"))
        except OSError:
            pass


def _cache() -> _Cache:
    c = _STATE.get("cache")
    if c is None:
        c = _STATE["cache"] = _Cache(cache_dir())
    return c


def cache_error() -> str | None:
    """Why the disk cache is off in this process (None while it is in use)."""
    c = _cache()
    c.usable()
    return c.error


# --------------------------------------------------------------------------------------------
# loading and launching
def _capturing() -> bool:
    try:
        return bool(torch.cuda.is_current_stream_capturing())
    except (RuntimeError, AssertionError):  # a torch without CUDA captures nothing
        return False


def _refuse_in_capture(what: str) -> None:
    if _capturing():
        raise RuntimeError(
            f"fastrand: cannot {what} while a CUDA graph is being captured (modules are never "
            "compiled or loaded during capture). Call fastrand.warmup() in this process before "
            "capturing (or draw once on the device outside the capture); "
            "`python -m fastrand warmup` fills the disk cache beforehand so that this is fast."
        )


def module(index: int) -> int:
    """The driver module of the NVRTC kernels on cuda:index, compiled/cached/loaded on first use
    (never during CUDA-graph capture)."""
    m = MODULES.get(index)
    if m is not None:
        return m
    with _LOCK:
        m = MODULES.get(index)
        if m is None:
            _refuse_in_capture(f"compile or load the NVRTC kernels for cuda:{index}")
            m = MODULES[index] = _load(index)[0]
    return m


def _load(index: int) -> tuple[int, Cubin]:
    status = _C.drv_status()
    if status:
        raise RuntimeError(f"fastrand: the CUDA driver API is not usable: {status}")
    cap = _capability(index)
    c = _cached_without_nvrtc(cap)
    if c is not None:
        try:
            return _C.drv_load_module(index, c.image), c
        except RuntimeError:  # deleted; compiled below
            _MEMORY.pop(c.key, None)
            _cache().discard(c.key, c.arch)
    arch = target_arch(cap)
    c = cubin(arch)
    try:
        return _C.drv_load_module(index, c.image), c
    except RuntimeError:
        if c.origin == "compiled":
            raise
    # an entry that does not load (damaged, or from elsewhere): deleted, compiled again
    c = cubin(arch, fresh=True)
    return _C.drv_load_module(index, c.image), c


def prepare(index: int) -> None:
    """Before a draw on cuda:index reserves positions: whatever can refuse it does so now
    (backend choice, module load, capture rules), so a refused draw advances no generator."""
    b = _DEVICE_BACKEND.get(index) or device_backend(index)
    if b == "nvrtc":
        if index not in MODULES:
            module(index)
    elif b == "copy":
        _refuse_copy_in_capture(index)


def _refuse_copy_in_capture(index: int) -> None:
    if _capturing():
        raise RuntimeError(
            f"fastrand: cuda:{index} has no native kernel ({copy_reason(index)}), and the CPU "
            "draw plus copy cannot be captured in a CUDA graph"
        )


def _copy_fill(
    out: torch.Tensor, n: int, kind: int, code: int, seed: int, stream: int, offset: int
) -> None:
    _refuse_copy_in_capture(out.get_device())
    host = torch.empty(out.shape, dtype=out.dtype, device="cpu")
    _C.fill_cpu(host.data_ptr(), n, kind, code, seed, stream, offset, torch.get_num_threads())
    out.copy_(host)


def fill(
    out: torch.Tensor, n: int, kind: int, code: int, seed: int, stream: int, offset: int
) -> None:
    """n values of the stream into the contiguous CUDA tensor `out`, on the current stream."""
    index = out.get_device()
    b = _DEVICE_BACKEND.get(index) or device_backend(index)
    if b == "aot":
        _C.fill_cuda(out.data_ptr(), n, kind, code, seed, stream, offset, index, _raw_stream(index))
    elif b == "nvrtc":
        m = MODULES.get(index)
        if m is None:
            m = module(index)
        _C.drv_fill(
            m, out.data_ptr(), n, kind, code, seed, stream, offset, index, _raw_stream(index)
        )
    else:
        _copy_fill(out, n, kind, code, seed, stream, offset)


def fill_state(out: torch.Tensor, n: int, kind: int, code: int, state: torch.Tensor) -> None:
    """As fill, with (seed, stream, offset) read from the int64[3] device tensor `state` when the
    kernel runs, and its offset advanced on the device (CUDA-graph replays draw fresh noise).
    The copy backend reads the state to the host (synchronising) and writes the new offset."""
    index = out.get_device()
    b = _DEVICE_BACKEND.get(index) or device_backend(index)
    if b == "aot":
        _C.fill_cuda_state(
            out.data_ptr(), n, kind, code, state.data_ptr(), index, _raw_stream(index)
        )
    elif b == "nvrtc":
        m = MODULES.get(index)
        if m is None:
            m = module(index)
        _C.drv_fill_state(
            m, out.data_ptr(), n, kind, code, state.data_ptr(), index, _raw_stream(index)
        )
    else:
        _refuse_copy_in_capture(index)
        seed, stream, offset = (int(v) % U64 for v in state.tolist())
        _copy_fill(out, n, kind, code, seed, stream, offset)
        new = next_offset(offset, n, code == _C.DT_FLOAT64)
        state[2] = new - U64 if new >= (1 << 63) else new


def fill_box(
    out: torch.Tensor,
    kind: int,
    code: int,
    seed: int,
    stream: int,
    offset: int,
    base: int,
    sizes: list[int],
    gstrides: list[int],
) -> None:
    """The box (base, sizes, gstrides; see Box in csrc/backend.h) of a global draw into the
    contiguous CUDA tensor `out`."""
    index = out.get_device()
    b = _DEVICE_BACKEND.get(index) or device_backend(index)
    if b == "aot":
        _C.fill_cuda_box(
            out.data_ptr(),
            kind,
            code,
            seed,
            stream,
            offset,
            base,
            sizes,
            gstrides,
            index,
            _raw_stream(index),
        )
    elif b == "nvrtc":
        m = MODULES.get(index)
        if m is None:
            m = module(index)
        _C.drv_fill_box(
            m,
            out.data_ptr(),
            kind,
            code,
            seed,
            stream,
            offset,
            base,
            sizes,
            gstrides,
            index,
            _raw_stream(index),
        )
    else:
        _refuse_copy_in_capture(index)
        host = torch.empty(out.shape, dtype=out.dtype, device="cpu")
        _cpu_box(host, kind, code, seed, stream, offset, base, sizes, gstrides)
        out.copy_(host)


def _cpu_box(host, kind, code, seed, stream, offset, base, sizes, gstrides) -> None:
    """The copy backend's box: the CPU's box fill (one threaded call) into `host`."""
    if host.numel() == 0:
        return
    _C.fill_box_cpu(
        host.data_ptr(),
        kind,
        code,
        seed,
        stream,
        offset,
        base,
        list(sizes),
        list(gstrides),
        torch.get_num_threads(),
    )


# --------------------------------------------------------------------------------------------
# warmup
def warmup(archs: Iterable[str | int] | None = None) -> list[dict[str, Any]]:
    """Compiles and caches the NVRTC kernels ahead of time.

    ``archs=None``: for every visible GPU that uses the NVRTC backend, compile (or read from the
    cache) and load the kernels into it, so later draws, CUDA-graph captures included, need no
    compile or load. With ``archs`` (e.g. ``[90, "sm_120"]``, or ``"90,100"``): compile for
    those archs into the disk cache; no GPU is needed (e.g. while building a container image).
    Returns one record per arch or device: ``arch``, ``device``, ``backend``, ``path`` (the cache
    entry, None when only in memory), ``origin`` ("compiled", "disk", "memory"), ``seconds``.
    Raises NvrtcNotFoundError when NVRTC is missing, ValueError naming an unsupported arch.
    """
    records: list[dict[str, Any]] = []
    if archs is not None:
        if isinstance(archs, (str, int)):
            archs = [archs]
        wanted = parse_archs(archs)
        if not wanted:
            raise ValueError("archs: no architecture named")
        nv = nvrtc()
        for a in wanted:
            check_arch(a, nv)
        for a in wanted:
            c = cubin(a)
            records.append(_record(c, None, "nvrtc"))
        return records
    if not torch.cuda.is_available():
        raise RuntimeError(
            "fastrand.warmup: no CUDA device is visible; name the archs to compile for "
            "(warmup(archs=[90]) or python -m fastrand warmup --arch 90)"
        )
    for index in range(torch.cuda.device_count()):
        b = device_backend(index)
        if b != "nvrtc":
            records.append({"arch": f"sm_{_capability(index)}", "device": index, "backend": b})
            continue
        with _LOCK:
            _refuse_in_capture(f"compile or load the NVRTC kernels for cuda:{index}")
            if index in MODULES:
                c = cubin(target_arch(_capability(index)))
            else:
                m, c = _load(index)
                MODULES[index] = m
        records.append(_record(c, index, "nvrtc"))
    return records


def _record(c: Cubin, device: int | None, b: str) -> dict[str, Any]:
    return {
        "arch": f"sm_{c.arch}",
        "device": device,
        "backend": b,
        "path": c.path,
        "origin": c.origin,
        "bytes": len(c.image),
        "seconds": round(c.seconds, 3),
    }


def info() -> dict[str, Any]:
    """build_info()'s keys of this module: cuda_backend, nvrtc, cache_dir."""
    if torch.cuda.is_available():
        b = device_backend(torch.cuda.current_device())
    else:
        b = backend()
    return {"cuda_backend": b, "nvrtc": nvrtc_version(), "cache_dir": cache_dir()}
