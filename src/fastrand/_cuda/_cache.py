"""Kernel programs and the image cache: what NVRTC compiles (one small program per kernel
group, on demand), the cache key, and the images on disk.

Groups: one per op (its plain fills in every launch shape: "normal/float32", ...,
"words/uint32"), "state" (CUDA-graph state fills and the advance), "box" (region fills) and
"probe" (the math probe of the known-answer check). A float32 randn compiles only its group.

Entries: <dir>/<arch>-<key>.cubin (arch "sm_90", or "compute_120" for PTX) = magic, sha256 of
the image, the image. Written to a temporary file in the same directory and renamed over the
entry (atomic), so processes warming at once each leave a whole entry. A corrupt or odd entry
(not a regular file: a FIFO, a directory, a link) is never opened for reading as a cubin: it is
set aside, compiled again, and the draw goes on.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import time
from collections.abc import Iterable
from typing import NamedTuple

from .. import _C
from . import _common as C
from . import _nvrtc as N
from ._common import ENV_CACHE, MIN_ARCH

_CACHE_MAGIC = b"fastrand-cubin\x00\x01"  # 16 bytes, then sha256(image), then the image
_KEY_TAG = b"fastrand nvrtc cubin cache v2"

# --------------------------------------------------------------------------------------------
# kernel groups
_KIND_NAMES = {_C.KIND_NORMAL: "normal", _C.KIND_UNIFORM: "uniform", _C.KIND_WORDS: "words"}
_DTYPE_NAMES = {
    _C.DT_FLOAT32: "float32",
    _C.DT_FLOAT16: "float16",
    _C.DT_BFLOAT16: "bfloat16",
    _C.DT_FLOAT64: "float64",
    _C.DT_UINT32: "uint32",
}
# (kind, dtype code) of each op, in the order of FASTRAND_KERNEL_OPS (launch_plan.cpp op_index)
OPS: list[tuple[int, int]] = [
    *((_C.KIND_NORMAL, d) for d in (_C.DT_FLOAT32, _C.DT_FLOAT16, _C.DT_BFLOAT16, _C.DT_FLOAT64)),
    *((_C.KIND_UNIFORM, d) for d in (_C.DT_FLOAT32, _C.DT_FLOAT16, _C.DT_BFLOAT16, _C.DT_FLOAT64)),
    (_C.KIND_WORDS, _C.DT_UINT32),
]
STATE, BOX, PROBE = "state", "box", "probe"


def op_group(kind: int, code: int) -> str:
    """The group of an op's plain fills: "normal/float32", ..., "words/uint32"."""
    return f"{_KIND_NAMES[kind]}/{_DTYPE_NAMES[code]}"


def groups() -> list[str]:
    """Every group, in the order warmup() compiles them."""
    return [PROBE] + [op_group(k, d) for k, d in OPS] + [STATE, BOX]


def group_names(ops: Iterable[str] | str | None) -> list[str]:
    """The groups named by `ops` (None: all): group names, "words" for "words/uint32", "all";
    ValueError naming the argument for anything else."""
    every = groups()
    if ops is None:
        return every
    if isinstance(ops, str):
        ops = [p for p in ops.split(",") if p.strip()]
    out: list[str] = []
    for o in ops:
        if not isinstance(o, str):
            raise TypeError(f"ops: expected group names (e.g. 'normal/float32'), got {o!r}")
        name = o.strip().lower()
        name = {"words": "words/uint32"}.get(name, name)
        picked = every if name == "all" else [name]
        if name != "all" and name not in every:
            raise ValueError(f"ops: unknown kernel group {o!r}; expected one of {', '.join(every)}")
        out += [g for g in picked if g not in out]
    if not out:
        raise ValueError("ops: no kernel group named")
    return out


def kernel_sources() -> dict[str, str]:
    """name -> source text of the kernel files, as embedded in the extension."""
    return dict(_C.kernel_sources())


def program(group: str) -> tuple[dict[str, str], str]:
    """(sources, main file name) of a group's NVRTC program: the embedded kernel files, and a
    main file that instantiates the group's kernels (fastrand_kernels.cuh's macros)."""
    if group == PROBE:
        body = "FASTRAND_PROBE_KERNEL"
    elif group == STATE:
        body = "FASTRAND_KERNEL_OPS(FASTRAND_STATE_KERNEL_OF)\nFASTRAND_ADVANCE_KERNEL"
    elif group == BOX:
        body = "FASTRAND_KERNEL_OPS(FASTRAND_BOX_KERNEL_OF)"
    else:
        try:
            i = [op_group(k, d) for k, d in OPS].index(group)
        except ValueError:
            raise ValueError(f"no kernel group {group!r}") from None
        name, typ = _C.KERNEL_OPS[i]
        body = f"FASTRAND_PLAIN_KERNELS_OF({name}, {typ})"
    main = f"fastrand_group_{group.replace('/', '_')}.cu"
    sources = kernel_sources()
    sources[main] = (
        f"// fastrand kernel group {group}\n#define FASTRAND_KERNEL_GROUP 1\n"
        f'#include "{_C.KERNEL_MAIN}"\n{body}\n'
    )
    return sources, main


# --------------------------------------------------------------------------------------------
# keys and images
def cache_key(
    arch: int | str, sources: dict[str, str], main: str, nvrtc_build: str, opts: list[str]
) -> str:
    """sha256 of fastrand's version, every source byte, the NVRTC build (version and
    fingerprint, _nvrtc.build_id), the options, the target ("sm_90" or "compute_120")."""
    from .. import __version__

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
    put(nvrtc_build)
    for o in opts:
        put(o)
    put(arch if isinstance(arch, str) else f"sm_{arch}")
    return h.hexdigest()


class Cubin(NamedTuple):
    image: bytes
    arch: int
    key: str
    path: str | None  # the cache entry holding it, None when only in memory
    origin: str  # "compiled", "disk" or "memory"
    seconds: float  # compile (or read) time
    group: str = ""
    ptx: bool = False

    @property
    def target(self) -> str:
        return f"{'compute' if self.ptx else 'sm'}_{self.arch}"


def _key_of(target: N.Target, group: str, build: str) -> tuple[str, str, str, list[str]]:
    sources, main = program(group)
    opts = N.options(target.arch, build, target.ptx)
    return cache_key(target.name, sources, main, build, opts), main, target.name, opts


def cubin(
    target: N.Target | int,
    group: str = PROBE,
    *,
    fresh: bool = False,
    sources: dict[str, str] | None = None,
    main: str | None = None,
) -> Cubin:
    """The image of a group's program (or of `sources`/`main`) for `target` (a Target, or an
    arch for a cubin): from this process's memory, else from the disk cache, else compiled by
    NVRTC and written to the cache. `fresh` discards a cached one first."""
    nv = N.nvrtc()
    if not isinstance(target, N.Target):
        target = N.Target(int(target), False)
    if sources is None:
        sources, main = program(group)
    elif main is None:
        raise ValueError("main: the name of the main source is needed with sources")
    opts = N.options(target.arch, nv.build_id, target.ptx)
    key = cache_key(target.name, sources, main, nv.build_id, opts)
    cache = _cache()
    with C.LOCK:
        if fresh:
            C.MEMORY.pop(key, None)
            cache.discard(key, target.name)
        image = C.MEMORY.get(key)
        if image is not None:
            return Cubin(
                image,
                target.arch,
                key,
                cache.path_of(key, target.name),
                "memory",
                0.0,
                group,
                target.ptx,
            )
        t0 = time.perf_counter()
        image, path = cache.read(key, target.name)
        if image is not None:
            C.MEMORY[key] = image
            return Cubin(
                image, target.arch, key, path, "disk", time.perf_counter() - t0, group, target.ptx
            )
        image, _log = nv.compile(sources, main, opts)
        seconds = time.perf_counter() - t0
        C.MEMORY[key] = image
        path = cache.write(key, target.name, image)
        return Cubin(image, target.arch, key, path, "compiled", seconds, group, target.ptx)


# Loading NVRTC (140 MB, 300,000 relocations) costs tens of milliseconds, more than reading and
# loading a cached cubin. So a process whose cubins are cached does not load it: the build in
# the cache key comes from the files beside the libnvrtc that would be loaded (_nvrtc._hint), and
# the arch is the device's own or one it runs (_nvrtc.compatible_archs: the entry is found under
# whichever arch NVRTC compiled it for). Anything else (no hint, a miss, an entry that does not
# load) takes the full path: NVRTC loaded, the arch chosen, compiled.
def cached_without_nvrtc(capability: int, group: str) -> Cubin | None:
    """The cached image of a group for a device of `capability`, found without loading NVRTC,
    or None."""
    if "nvrtc" in C.STATE or capability < MIN_ARCH:
        return None  # NVRTC is loaded anyway (or of no use): the full path costs nothing more
    hint = N._hint()
    if hint is None:
        return None
    cache = _cache()
    with C.LOCK:
        for arch in N.compatible_archs(capability):
            key, main, name, opts = _key_of(N.Target(arch, False), group, hint[1])
            image = C.MEMORY.get(key)
            if image is not None:
                return Cubin(image, arch, key, cache.path_of(key, name), "memory", 0.0, group)
            t0 = time.perf_counter()
            image, path = cache.read(key, name)
            if image is not None:
                C.MEMORY[key] = image
                return Cubin(image, arch, key, path, "disk", time.perf_counter() - t0, group)
    return None


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
        self.bad: set[str] = set()  # odd entries (warned about): not replaceable, not an error

    def _off(self, reason: str) -> None:
        self.error = reason
        C.warn_once(
            "cache",
            f"fastrand: not using the cubin cache: {reason}; kernels compiled by NVRTC are kept "
            f"in memory for this process only (set {ENV_CACHE} to a private directory)",
        )

    def _bad_entry(self, path: str) -> None:
        self.bad.add(path)
        C.warn_once(
            "cache-entry",
            f"fastrand: ignoring the cubin cache entry {path}: it is not a regular file; the "
            "kernels are compiled again",
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

    def path_of(self, key: str, arch: str) -> str | None:
        if self.error is not None:
            return None
        p = os.path.join(self.dir, f"{arch}-{key}.cubin")
        return p if os.path.exists(p) else None

    def read(self, key: str, arch: str) -> tuple[bytes | None, str | None]:
        if not self.usable():
            return None, None
        path = os.path.join(self.dir, f"{arch}-{key}.cubin")
        try:  # never open what is not a regular file (a FIFO would block, a link leads away)
            st = os.lstat(path)
        except FileNotFoundError:
            return None, None
        except OSError as e:
            self._off(f"cannot read {path} ({e.strerror or e})")
            return None, None
        if not stat.S_ISREG(st.st_mode):
            self._bad_entry(path)
            return None, None
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return None, None
        except OSError as e:
            self._off(f"cannot read {path} ({e.strerror or e})")
            return None, None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):  # replaced between the lstat and the open
                self._bad_entry(path)
                return None, None
            why = _unsafe(st, path)
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

    def write(self, key: str, arch: str, image: bytes) -> str | None:
        if not self.usable():
            return None
        path = os.path.join(self.dir, f"{arch}-{key}.cubin")
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
            if path not in self.bad:  # an odd entry (a directory) already warned about stays
                self._off(f"cannot write to {self.dir} ({e.strerror or e})")
            return None

    def discard(self, key: str, arch: str) -> None:
        if self.error is not None:
            return
        try:
            os.unlink(os.path.join(self.dir, f"{arch}-{key}.cubin"))
        except OSError:
            pass


def _cache() -> _Cache:
    c = C.STATE.get("cache")
    if c is None:
        c = C.STATE["cache"] = _Cache(cache_dir())
    return c


def cache_error() -> str | None:
    """Why the disk cache is off in this process (None while it is in use)."""
    c = _cache()
    c.usable()
    return c.error
