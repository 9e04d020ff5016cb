"""NVRTC: finding the library, loading it, compiling kernel programs, and choosing the arch.

The run-time backend compiles the kernel source (embedded in the extension) for the device's
arch with NVRTC: a cubin of the exact arch when NVRTC knows it, else of the newest arch CUDA's
compatibility rules let the device run, else (a GPU newer than every arch this NVRTC knows) PTX
of the newest arch, which the driver compiles at load. The known-answer check guards each
choice on the device itself.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import sys
from collections.abc import Iterable
from typing import NamedTuple

import torch

from . import _common as C
from ._common import ENV_NVRTC, MIN_ARCH, NvrtcCompileError, NvrtcNotFoundError

# NVRTC options besides -arch: no -I (every header is an in-memory header, so every byte is in
# the cache key), no fused multiply-adds the source did not ask for (as the nvcc build).
NVRTC_OPTIONS = ("--fmad=false", "-std=c++17")

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
    want = C.torch_cuda_major()
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
            for name in (
                "nvrtcGetSupportedArchs",
                "nvrtcGetNumSupportedArchs",
                "nvrtcGetCUBIN",
                "nvrtcGetPTX",
            ):
                getattr(lib, name)
        except AttributeError:
            raise OSError(
                "is not NVRTC (no nvrtcVersion / nvrtcGetSupportedArchs / nvrtcGetCUBIN / "
                "nvrtcGetPTX)"
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
        self.build_id = build_id(self.path, builtins, self.version_string)
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
        lib.nvrtcGetPTXSize.argtypes = [P, ctypes.POINTER(c_size_t)]
        lib.nvrtcGetPTX.argtypes = [P, ctypes.c_char_p]
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
            "nvrtcGetPTXSize",
            "nvrtcGetPTX",
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
        """(image, log) of the program `main` with the other sources as in-memory headers: a
        cubin for -arch=sm_XY, PTX (NUL-terminated text, as the driver loads it) for
        -arch=compute_XY."""
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
            if any(o.startswith(b"-arch=compute_") for o in opts):
                self._check(lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
                buf = ctypes.create_string_buffer(size.value)
                self._check(lib.nvrtcGetPTX(prog, buf), "nvrtcGetPTX")
                return buf.raw, log
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
    nv = C.STATE.get("nvrtc")
    if nv is not None:
        return nv
    with C.LOCK:
        nv = C.STATE.get("nvrtc")
        if nv is not None:
            return nv
        err = C.STATE.get("nvrtc_error")
        if err is not None:
            raise NvrtcNotFoundError(err)
        try:
            nv = _find_nvrtc()
        except NvrtcNotFoundError as e:
            C.STATE["nvrtc_error"] = str(e)
            raise
        C.STATE["nvrtc"] = nv
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
        from cuda import pathfinder
    except ImportError:
        pass
    else:
        try:
            path = pathfinder.load_nvidia_dynamic_lib("nvrtc").abs_path
            return Nvrtc(path, "cuda-pathfinder")
        except Exception as e:  # noqa: BLE001 - its own not-found errors, or ours
            tried.append(f"cuda-pathfinder: {e}")
    raise NvrtcNotFoundError(
        "NVRTC was not found; tried " + "; ".join(tried) + f". Install it ({C.nvrtc_fix()}) "
        f"or set {ENV_NVRTC} to the path of libnvrtc.so"
    )


# Loading NVRTC (140 MB, 300,000 relocations) costs tens of milliseconds, more than reading and
# loading a cached cubin. So a process whose cubin is cached does not load it: the version in
# the cache key comes from the builtins library beside the libnvrtc that would be loaded
# (libnvrtc-builtins.so.MAJOR.MINOR, the exact version NVRTC itself requires), and the arch is
# the device's own. Anything else (no hint, a miss, an entry that does not load) takes the full
# path: NVRTC loaded, the arch checked, compiled.
def build_id(lib: str, builtins: str, version: str) -> str:
    """The NVRTC build in a cache key: "MAJOR.MINOR" (NVRTC tells no patch level) and the sizes
    of libnvrtc and its builtins, which tell patch releases apart; the same for a loaded NVRTC
    and for the files _hint() finds without loading them."""
    sizes = []
    for p in (lib, builtins):
        try:
            sizes.append(str(os.stat(p).st_size))
        except OSError:
            sizes.append("?")
    return f"{version}+{'.'.join(sizes)}"


def _hint() -> tuple[str, str] | None:
    """(libnvrtc path, build id) of the NVRTC nvrtc() would most likely load, found without
    loading it; None when there is no such file with exactly one builtins beside it."""
    if "hint" in C.STATE:
        return C.STATE["hint"]
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
            hint = (real, build_id(real, found[0], versions[0].group(1)))
        break  # only the first candidate: the one nvrtc() tries first
    C.STATE["hint"] = hint
    return hint


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


def options(arch: int, version: str = "0.0", ptx: bool = False) -> list[str]:
    """The NVRTC options of a compile for sm_<arch> (compute_<arch> with `ptx`) by NVRTC
    `version` ("13.0", or a build id "13.0+...").

    From NVRTC 12.4 on, --split-compile=0 runs the optimizer on all cores (the kernels are
    independent functions; checked on sm_90: the same instructions per kernel, only register
    numbering differs), which is most of a cold compile's time."""
    major, minor = (int(x) for x in version.split("+")[0].split(".")[:2])
    split = ["--split-compile=0"] if (major, minor) >= (12, 4) else []
    return [f"-arch={'compute' if ptx else 'sm'}_{arch}", *NVRTC_OPTIONS, *split]


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


def runs_on(arch: int, capability: int) -> bool:
    """True when a cubin of sm_<arch> runs on a device of compute capability `capability`
    (CUDA's rule: the same major and a minor not above the device's). sm_101 is the exception:
    CUDA 12.8/12.9's name for the GPU CUDA 13 calls sm_110, not a sibling of sm_100/sm_103."""
    if arch == 101 and capability != 101:
        return False
    return arch // 10 == capability // 10 and MIN_ARCH <= arch <= capability


def compatible_archs(capability: int) -> list[int]:
    """The cubin archs a device of `capability` runs, best (newest) first: itself, then older
    minors of its major (see runs_on)."""
    return [a for a in range(capability, (capability // 10) * 10 - 1, -1) if runs_on(a, capability)]


class Target(NamedTuple):
    arch: int
    ptx: bool  # compute_<arch> PTX (JIT-compiled by the driver) rather than a sm_<arch> cubin

    @property
    def name(self) -> str:
        return f"{'compute' if self.ptx else 'sm'}_{self.arch}"


def target_arch(capability: int, nv: Nvrtc | None = None) -> Target:
    """What to compile for a device of compute capability `capability`: a cubin of its own arch
    when NVRTC lists it, else of the newest arch NVRTC lists that the device runs (runs_on);
    PTX of NVRTC's newest arch for a GPU newer than every arch NVRTC knows; RuntimeError
    otherwise."""
    nv = nv or nvrtc()
    same = [a for a in nv.archs if runs_on(a, capability)]
    if same:
        return Target(max(same), False)
    known = [a for a in nv.archs if a >= MIN_ARCH]
    if known and capability > max(known):
        return Target(max(known), True)
    raise RuntimeError(
        f"NVRTC {nv.version_string} ({nv.path}) cannot compile for sm_{capability} (it "
        f"supports {', '.join(f'sm_{a}' for a in nv.archs)}); install a newer NVRTC "
        f"({C.nvrtc_fix()})"
    )


def nvrtc_version() -> str | None:
    """The version of the NVRTC found ("13.0"), or None."""
    try:
        return nvrtc().version_string
    except NvrtcNotFoundError:
        return None
