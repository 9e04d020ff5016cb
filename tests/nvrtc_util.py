"""A minimal ctypes driver of NVRTC for the tests: compile fastrand's embedded kernel source.

The library's own NVRTC discovery lives in fastrand._cuda; the tests keep this small, separate
helper so that they check the compiled module's sources independently of it.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import shutil
import site
import subprocess
import sys

OPTIONS = ("--fmad=false", "--std=c++17")


def _site_dirs() -> list[str]:
    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    dirs += [p for p in sys.path if p.endswith("site-packages")]
    return list(dict.fromkeys(dirs))


def find_nvrtc() -> str | None:
    """Path of a libnvrtc: $FASTRAND_NVRTC, the pip wheels, then a CUDA toolkit."""
    env = os.environ.get("FASTRAND_NVRTC")
    if env and os.path.isfile(env):
        return env
    cands = []
    for d in _site_dirs():
        cands += sorted(glob.glob(os.path.join(d, "nvidia", "cu1*", "lib", "libnvrtc.so.*")))
        cands += sorted(glob.glob(os.path.join(d, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.*")))
    for root in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root:
            cands += sorted(glob.glob(os.path.join(root, "lib64", "libnvrtc.so*")))
    cands = [c for c in cands if "builtins" not in c and "alt" not in os.path.basename(c)]
    return cands[0] if cands else None


def find_tool(name: str) -> str | None:
    """cuobjdump / nvdisasm / nvcc: the pip wheels' bin/, a toolkit, then PATH."""
    for d in _site_dirs():
        for p in sorted(glob.glob(os.path.join(d, "nvidia", "cu1*", "bin", name))):
            if os.access(p, os.X_OK):
                return p
        p = os.path.join(d, "nvidia", "cuda_" + name, "bin", name)
        if os.access(p, os.X_OK):
            return p
    for root in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and os.access(os.path.join(root, "bin", name), os.X_OK):
            return os.path.join(root, "bin", name)
    return shutil.which(name)


class Nvrtc:
    """NVRTC through ctypes: version, supported archs, compile to cubin or PTX."""

    def __init__(self, path: str) -> None:
        self.path = path
        lib = ctypes.CDLL(path)
        self.lib = lib
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcCreateProgram.argtypes = [
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_char_p),
        ]
        lib.nvrtcCompileProgram.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p),
        ]
        for f in ("nvrtcGetProgramLogSize", "nvrtcGetCUBINSize", "nvrtcGetPTXSize"):
            getattr(lib, f).argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        for f in ("nvrtcGetProgramLog", "nvrtcGetCUBIN", "nvrtcGetPTX"):
            getattr(lib, f).argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p)]

    def _check(self, r: int, what: str) -> None:
        if r != 0:
            raise RuntimeError(f"{what}: {self.lib.nvrtcGetErrorString(r).decode()}")

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "version")
        return major.value, minor.value

    def supported_archs(self) -> list[int]:
        n = ctypes.c_int()
        self._check(self.lib.nvrtcGetNumSupportedArchs(ctypes.byref(n)), "archs")
        arr = (ctypes.c_int * n.value)()
        self._check(self.lib.nvrtcGetSupportedArchs(arr), "archs")
        return list(arr)

    def compile(
        self,
        sources: dict[str, str],
        main: str,
        arch: str,
        options: tuple[str, ...] | list[str] = OPTIONS,
        ptx: bool = False,
    ) -> tuple[bytes, str]:
        """(cubin or PTX, log) of the program `main` with the other sources as headers, for
        arch "sm_90" (cubin) or "compute_90" (PTX). Raises RuntimeError with the log."""
        names = [n for n in sources if n != main]
        hdr = (ctypes.c_char_p * len(names))(*[sources[n].encode() for n in names])
        hnames = (ctypes.c_char_p * len(names))(*[n.encode() for n in names])
        prog = ctypes.c_void_p()
        self._check(
            self.lib.nvrtcCreateProgram(
                ctypes.byref(prog),
                sources[main].encode(),
                main.encode(),
                len(names),
                hdr,
                hnames,
            ),
            "nvrtcCreateProgram",
        )
        try:
            opts = [f"-arch={arch}", *options]
            copts = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
            r = self.lib.nvrtcCompileProgram(prog, len(opts), copts)
            size = ctypes.c_size_t()
            self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            self.lib.nvrtcGetProgramLog(prog, buf)
            log = buf.value.decode(errors="replace").strip()
            if r != 0:
                raise RuntimeError(f"NVRTC compile for {arch} failed:\n{log}")
            get_size, get = (
                (self.lib.nvrtcGetPTXSize, self.lib.nvrtcGetPTX)
                if ptx
                else (self.lib.nvrtcGetCUBINSize, self.lib.nvrtcGetCUBIN)
            )
            self._check(get_size(prog, ctypes.byref(size)), "size")
            out = ctypes.create_string_buffer(size.value)
            self._check(get(prog, out), "get")
            return out.raw[: size.value], log
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def compile_in_child(
    path: str,
    sources: dict[str, str],
    main: str,
    archs: list[int],
    options: tuple[str, ...],
    names: list[str],
) -> dict[int, tuple[str, str]]:
    """Compiles for each arch ("sm_XY" cubins, two at a time) in a child process and returns
    arch -> (log or error text, problems). Some NVRTC options (--Ofast-compile in NVRTC 13.5)
    change later compiles in the same process, so such compiles stay out of the test process.
    problems lists what the cubin lacks: "not ELF", or kernel names."""
    job = {
        "path": path,
        "sources": sources,
        "main": main,
        "archs": archs,
        "options": list(options),
        "names": names,
    }
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(
        [sys.executable, os.path.join(here, "nvrtc_util.py")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"NVRTC child failed:\n{out.stderr}")
    return {int(a): (v[0], v[1]) for a, v in json.loads(out.stdout).items()}


def _child_main() -> None:
    from concurrent.futures import ThreadPoolExecutor

    job = json.load(sys.stdin)
    nv = Nvrtc(job["path"])

    def one(arch: int) -> tuple[str, str]:
        try:
            cubin, log = nv.compile(job["sources"], job["main"], f"sm_{arch}", job["options"])
        except RuntimeError as e:
            return str(e), ""
        problems = [] if cubin[:4] == b"\x7fELF" else ["not ELF"]
        problems += [n for n in job["names"] if n.encode() + b"\0" not in cubin]
        return log, " ".join(problems)

    with ThreadPoolExecutor(max_workers=2) as ex:
        res = dict(zip(job["archs"], ex.map(one, job["archs"])))
    json.dump(res, sys.stdout)


if __name__ == "__main__":
    _child_main()
