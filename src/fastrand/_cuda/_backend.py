"""Which backend serves each CUDA device, getting it ready (with the known-answer check),
launching, and warmup.

Order under FASTRAND_CUDA_BACKEND=auto, per device: ``aot`` (the nvcc-compiled kernels, when the
build holds code for the device's arch), then ``nvrtc`` (the kernel source compiled at run time),
then ``copy`` (the CPU draw copied: the same bits, far slower, never inside CUDA-graph capture).
A backend serves a device only after its kernels loaded there and passed the known-answer check
(_probe.py); anything that fails moves the device to the next backend once, with one warning
naming the device, its arch, the backend and why. A forced backend (aot, nvrtc) raises instead.
Nothing is retried per draw: a refused image or a failed check is remembered.

Kernels are loaded and checked outside CUDA-graph capture only: at the first eager draw on a
device (NVRTC: the first draw of each kernel group) or in ``warmup()``. The hot path is one
dict lookup and the launch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

import torch

from .. import _C
from .._generator import U64, next_offset
from . import _cache as K
from . import _common as C
from . import _nvrtc as N
from . import _probe as P
from ._common import ENV_BACKEND, ENV_NVRTC, NvrtcNotFoundError, Unusable, _raw_stream


# --------------------------------------------------------------------------------------------
# the rule
def requested() -> str:
    """The value of FASTRAND_CUDA_BACKEND (default auto); ValueError naming it if unknown."""
    raw = os.environ.get(ENV_BACKEND, "")
    value = raw.strip().lower() or "auto"
    if value not in C.BACKENDS:
        raise ValueError(f"{ENV_BACKEND}={raw!r}: expected one of {', '.join(C.BACKENDS)}")
    return value


def backend() -> str:
    """ "aot", "nvrtc" or "copy": the first backend of this process's rule (a device may end on
    a later one, see device_backend). Raises for a forced backend that cannot exist here."""
    b = C.STATE.get("backend")
    if b is None:
        with C.LOCK:
            b = C.STATE["backend"] = _choose_backend()
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
        if N._hint() is None:
            N.nvrtc()  # raises NvrtcNotFoundError naming the paths tried
        return "nvrtc"
    if req == "copy":
        return "copy"
    if _C.CUDA:
        return "aot"
    if N._hint() is not None:
        return "nvrtc"
    try:
        N.nvrtc()
    except NvrtcNotFoundError as e:
        C.STATE["why_copy"] = f"this build of fastrand has no nvcc-compiled CUDA kernel, and {e}"
        return "copy"
    return "nvrtc"


def aot_covers(arch: int, archs: str | None = None) -> bool:
    """True when the AOT build (its _C.CUDA_ARCHS, e.g. "sm_80,sm_90,compute_90") holds code
    that runs on a device of compute capability `arch`: a cubin it runs (_nvrtc.runs_on), or PTX
    of an arch not above it."""
    for tok in (_C.CUDA_ARCHS if archs is None else archs).split(","):
        m = re.fullmatch(r"(sm|compute)_(\d+)[a-z]?", tok.strip())
        if not m:
            continue
        a = int(m.group(2))
        if m.group(1) == "sm" and N.runs_on(a, arch):
            return True
        if m.group(1) == "compute" and a <= arch:
            return True
    return False


def _order(index: int) -> list[str]:
    """The backends cuda:index tries, in order."""
    first = backend()
    if requested() != "auto":
        return [first]
    out = []
    if _C.CUDA and aot_covers(C.capability(index)):
        out.append("aot")
    if first != "copy":
        out.append("nvrtc")
    return out + ["copy"]


# --------------------------------------------------------------------------------------------
# getting a device ready
def device_backend(index: int) -> str:
    """The backend draws on cuda:index use, getting it ready on first use (see the module
    docstring); under auto, warns once when the device does not get its first choice."""
    b = C.DEVICE_BACKEND.get(index)
    if b is None:
        b = _setup(index)
    return b


def _setup(index: int) -> str:
    with C.LOCK:
        b = C.DEVICE_BACKEND.get(index)
        if b is not None:
            return b
        order = _order(index)
        req = requested()
        cap = C.capability(index)
        if order[0] != "copy":
            C.refuse_in_capture(f"load and check the CUDA kernels for cuda:{index}")
        reasons = []
        for b in order:
            if b == "copy":
                break
            try:
                if b == "aot":
                    _ready_aot(index)
                else:
                    _ready_nvrtc(index, cap)
            except RuntimeError as e:  # Unusable, NVRTC missing, a refused load or launch
                if req != "auto":
                    raise RuntimeError(
                        f"fastrand: {ENV_BACKEND}={req}, but cuda:{index} (sm_{cap}) cannot use "
                        f"the {b} kernels: {e}"
                    ) from None
                reasons.append(f"the {b} kernels cannot serve it: {e}")
                continue
            C.DEVICE_BACKEND[index] = b
            if reasons:
                C.REASON[index] = "; ".join(reasons)
                C.warn_once(
                    f"fallback-{index}",
                    f"fastrand: cuda:{index} (sm_{cap}) uses the {b} backend because "
                    f"{C.REASON[index]}",
                )
            return b
        if req == "auto" and _C.CUDA and "aot" not in order:
            reasons.insert(
                0, f"this build's CUDA kernels hold {_C.CUDA_ARCHS}, nothing for sm_{cap}"
            )
        _to_copy(index, cap, "; ".join(reasons) or C.STATE.get("why_copy") or "")
        return "copy"


def _to_copy(index: int, cap: int, reason: str) -> None:
    """cuda:index draws by the CPU copy from now on (warned once under auto)."""
    C.REASON[index] = reason or f"{ENV_BACKEND}=copy"
    C.DEVICE_BACKEND[index] = "copy"
    for key in [k for k in C.READY if k[0] == index]:
        del C.READY[key]
    C.clear_fast_path()
    if requested() == "auto":
        C.warn_once(
            "copy: " + C.REASON[index],  # once per reason (devices without NVRTC share one)
            f"fastrand: CUDA draws on cuda:{index} (sm_{cap}) are generated on the CPU and "
            f"copied (the same bits, far slower) because {C.REASON[index]}. Fix: install NVRTC "
            f"for torch's CUDA ({C.nvrtc_fix()}), or point {ENV_NVRTC} at libnvrtc.so, or "
            f"reinstall fastrand where nvcc is found; set {ENV_BACKEND}=copy to choose this path "
            "silently.",
        )


def _ready_aot(index: int) -> None:
    _C.cuda_prepare(index)  # driver version, runtime, every kernel loaded (GIL released)
    n = P.check(index, "aot", K.groups())
    C.PROBES.setdefault(index, {})["aot"] = f"passed ({n} cases)"
    for kind, code in K.OPS:
        C.READY[index, kind, code] = True


def _ready_nvrtc(index: int, cap: int) -> None:
    status = _C.drv_status()
    if status:
        raise Unusable(f"the CUDA driver API is not usable: {status}")
    _load_group(index, cap, K.PROBE)


def _load_group(index: int, cap: int, group: str) -> K.Cubin:
    """Loads a group's image on cuda:index and checks it (raises Unusable, or RuntimeError from
    NVRTC); a refused or failing image is remembered, never compiled again in this process."""
    c = K.cached_without_nvrtc(cap, group)
    if c is not None:
        try:
            return _load_checked(index, c)
        except _Refused:  # from elsewhere, or damaged: deleted, and the full path below
            C.MEMORY.pop(c.key, None)
            K._cache().discard(c.key, c.target)
    target = N.target_arch(cap)
    c = K.cubin(target, group)
    why = C.REFUSED.get((index, c.key))
    if why is not None:
        raise Unusable(why)
    try:
        return _load_checked(index, c)
    except _Refused as e:
        if c.origin == "compiled":
            C.REFUSED[index, c.key] = str(e)
            raise Unusable(str(e)) from None
    c = K.cubin(target, group, fresh=True)  # an entry that does not load: compiled again, once
    try:
        return _load_checked(index, c)
    except _Refused as e:
        C.REFUSED[index, c.key] = str(e)
        raise Unusable(str(e)) from None


class _Refused(RuntimeError):
    """The driver did not load an image."""


def _load_checked(index: int, c: K.Cubin) -> K.Cubin:
    try:
        _C.drv_load_module(index, c.image)
    except RuntimeError as e:
        raise _Refused(f"{c.target} image of the {c.group} kernels: {e}") from None
    try:
        n = P.check(index, "nvrtc", [c.group])
    except Unusable as e:
        C.REFUSED[index, c.key] = f"{c.target} image of the {c.group} kernels: {e}"
        raise Unusable(C.REFUSED[index, c.key]) from None
    C.PROBES.setdefault(index, {})[c.group] = f"passed ({n} cases, {c.target})"
    C.GROUPS.setdefault(index, set()).add(c.group)
    C.LOADED[index, c.group] = c
    if c.group not in (K.PROBE, K.STATE, K.BOX):
        kind, code = K.OPS[[K.op_group(k, d) for k, d in K.OPS].index(c.group)]
        C.READY[index, kind, code] = True
    return c


def _ensure_group(index: int, group: str) -> str:
    """The device's backend after making sure a group is loaded there (NVRTC)."""
    with C.LOCK:
        if C.DEVICE_BACKEND.get(index) != "nvrtc" or group in C.GROUPS.get(index, ()):
            return C.DEVICE_BACKEND[index]
        C.refuse_in_capture(f"compile or load the NVRTC kernels ({group}) for cuda:{index}")
        cap = C.capability(index)
        try:
            _load_group(index, cap, group)
        except RuntimeError as e:
            if requested() != "auto":
                raise RuntimeError(
                    f"fastrand: {ENV_BACKEND}=nvrtc, but cuda:{index} (sm_{cap}) cannot use the "
                    f"nvrtc kernels: {e}"
                ) from None
            _to_copy(index, cap, f"the nvrtc kernels cannot serve it: {e}")
        return C.DEVICE_BACKEND[index]


def prepare(
    index: int, kind: int | None = None, code: int | None = None, what: str = "fill"
) -> str:
    """Before a draw on cuda:index reserves positions: whatever can refuse it does so now
    (backend choice, kernel load and check, capture rules), so a refused draw advances no
    generator. `what`: "fill" (plain fills of (kind, code)), "box" or "state". Returns the
    backend the draw will use."""
    b = C.DEVICE_BACKEND.get(index) or device_backend(index)
    if b == "nvrtc" and kind is not None and code is not None:
        if what == "state":
            b = _ensure_group(index, K.STATE)
        elif not C.READY.get((index, kind, code)):
            b = _ensure_group(index, K.op_group(kind, code))
        if what == "box" and b == "nvrtc":
            b = _ensure_group(index, K.BOX)
    if b == "copy":
        _refuse_copy_in_capture(index)
    return b


def copy_reason(index: int) -> str:
    """Why cuda:index uses the copy backend ("" when it does not)."""
    if device_backend(index) != "copy":
        return ""
    return C.REASON.get(index, f"{ENV_BACKEND}=copy")


def native(index: int) -> bool:
    """True when draws on cuda:index run a CUDA kernel (aot or nvrtc), not the CPU copy."""
    return device_backend(index) != "copy"


# --------------------------------------------------------------------------------------------
# launching
def _refuse_copy_in_capture(index: int) -> None:
    if C.capturing():
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
    b = C.DEVICE_BACKEND.get(index)
    if b == "aot":
        _C.fill_cuda(out.data_ptr(), n, kind, code, seed, stream, offset, index, _raw_stream(index))
        return
    if b != "nvrtc" or not C.READY.get((index, kind, code)):
        b = prepare(index, kind, code)
        if b == "aot":
            return fill(out, n, kind, code, seed, stream, offset)
    if b == "nvrtc":
        _C.drv_fill(out.data_ptr(), n, kind, code, seed, stream, offset, index, _raw_stream(index))
    else:
        _copy_fill(out, n, kind, code, seed, stream, offset)


def fill_state(out: torch.Tensor, n: int, kind: int, code: int, state: torch.Tensor) -> None:
    """As fill, with (seed, stream, offset) read from the int64[3] device tensor `state` when the
    kernel runs, and its offset advanced on the device (CUDA-graph replays draw fresh noise).
    The copy backend reads the state to the host (synchronising) and writes the new offset."""
    index = out.get_device()
    b = prepare(index, kind, code, "state")
    if b == "aot":
        _C.fill_cuda_state(
            out.data_ptr(), n, kind, code, state.data_ptr(), index, _raw_stream(index)
        )
    elif b == "nvrtc":
        _C.drv_fill_state(
            out.data_ptr(), n, kind, code, state.data_ptr(), index, _raw_stream(index)
        )
    else:
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
    b = prepare(index, kind, code, "box")
    ptr, st = out.data_ptr(), _raw_stream(index)
    if b == "aot":
        _C.fill_cuda_box(ptr, kind, code, seed, stream, offset, base, sizes, gstrides, index, st)
    elif b == "nvrtc":
        _C.drv_fill_box(ptr, kind, code, seed, stream, offset, base, sizes, gstrides, index, st)
    else:
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
# warmup and info
def _archs_arg(archs: Any) -> list[int]:
    if isinstance(archs, (bytes, bytearray, memoryview)) or isinstance(archs, (bool, float)):
        raise TypeError(
            f"archs: expected an arch (90, 'sm_90', '9.0'), a comma-separated string of them or "
            f"a list, got {type(archs).__name__}"
        )
    if isinstance(archs, (str, int)):
        archs = [archs]
    try:
        items = list(archs)
    except TypeError:
        raise TypeError(
            f"archs: expected an arch (90, 'sm_90'), a comma-separated string of them or a "
            f"list, got {type(archs).__name__}"
        ) from None
    for a in items:
        if isinstance(a, bool) or not isinstance(a, (str, int)):
            raise TypeError(
                f"archs: expected archs as ints or strings (90, 'sm_90'), got {type(a).__name__}"
            )
    wanted = N.parse_archs(items)
    if not wanted:
        raise ValueError("archs: no architecture named")
    return wanted


def _devices_arg(devices: Any) -> list[int]:
    count = torch.cuda.device_count()
    if isinstance(devices, (int, str, torch.device)) and not isinstance(devices, bool):
        devices = [devices]
    out: list[int] = []
    for d in devices:
        if isinstance(d, bool):
            raise TypeError("devices: expected device indices or CUDA devices, got bool")
        if isinstance(d, int):
            index = d
        elif isinstance(d, (str, torch.device)):
            dev = torch.device(d)
            if dev.type != "cuda":
                raise ValueError(f"devices: {d!r} is not a CUDA device")
            index = dev.index if dev.index is not None else torch.cuda.current_device()
        else:
            raise TypeError(f"devices: expected device indices or CUDA devices, got {d!r}")
        if not 0 <= index < count:
            raise ValueError(f"devices: cuda:{index} is not a visible device ({count} visible)")
        if index not in out:
            out.append(index)
    return out


def _has_context(index: int) -> bool:
    has = getattr(torch._C, "_cuda_hasPrimaryContext", None)
    try:
        return bool(has(index)) if has is not None else False
    except RuntimeError:
        return False


def warmup(
    archs: Iterable[str | int] | str | int | None = None,
    *,
    devices: Iterable[int | str | torch.device] | int | str | torch.device | None = None,
    ops: Iterable[str] | str | None = None,
) -> list[dict[str, Any]]:
    """Compiles, loads and checks the CUDA kernels ahead of time.

    ``archs=None``: for each CUDA device in ``devices`` (default: the current device, and any
    device whose primary context is already active; never creating a context on another GPU),
    choose its backend, load its kernels and run the known-answer check, so later draws (CUDA
    graph captures included) need no compile, load or check. With ``archs`` (e.g. ``[90,
    "sm_120"]``, or ``"90,100"``): compile for those archs into the disk cache; no GPU is needed
    (e.g. while building a container image). ``ops`` limits the NVRTC kernel groups
    (``"normal/float32"``, ``"uniform/bfloat16"``, ``"words"``, ``"state"``, ``"box"``,
    ``"probe"``; default all). Returns one record per arch or device and group: ``arch``,
    ``device``, ``backend``, ``group``, ``path`` (the cache entry, None when only in memory),
    ``origin`` ("compiled", "disk", "memory"), ``seconds``. Raises NvrtcNotFoundError when NVRTC
    is missing, ValueError naming an unsupported arch, device or group.
    """
    groups = K.group_names(ops)
    records: list[dict[str, Any]] = []
    if archs is not None:
        if devices is not None:
            raise ValueError("devices: name archs (compile only) or devices, not both")
        wanted = _archs_arg(archs)
        nv = N.nvrtc()
        for a in wanted:
            N.check_arch(a, nv)
        for a in wanted:
            for g in groups:
                records.append(_record(K.cubin(a, g), None, "nvrtc"))
        return records
    if not torch.cuda.is_available():
        raise RuntimeError(
            "fastrand.warmup: no CUDA device is visible; name the archs to compile for "
            "(warmup(archs=[90]) or python -m fastrand warmup --arch 90)"
        )
    if devices is None:
        cur = torch.cuda.current_device()
        indices = [cur] + [
            i for i in range(torch.cuda.device_count()) if i != cur and _has_context(i)
        ]
    else:
        indices = _devices_arg(devices)
    for index in indices:
        b = device_backend(index)
        if b == "nvrtc":
            for g in groups:
                b = _ensure_group(index, g)
                if b != "nvrtc":
                    break
                records.append(_record(C.LOADED[index, g], index, "nvrtc"))
        if b != "nvrtc":
            records.append(
                {
                    "arch": f"sm_{C.capability(index)}",
                    "device": index,
                    "backend": b,
                    "probe": C.PROBES.get(index, {}).get(b, ""),
                }
            )
    return records


def _record(c: K.Cubin, device: int | None, b: str) -> dict[str, Any]:
    return {
        "arch": c.target,
        "device": device,
        "backend": b,
        "group": c.group,
        "path": c.path,
        "origin": c.origin,
        "bytes": len(c.image),
        "seconds": round(c.seconds, 3),
    }


def devices_info() -> dict[str, dict[str, Any]]:
    """Each CUDA device set up in this process: its arch, backend, known-answer results, and why
    it is not on its first backend."""
    out = {}
    for index in sorted(C.DEVICE_BACKEND):
        b = C.DEVICE_BACKEND[index]
        out[f"cuda:{index}"] = {
            "arch": f"sm_{C.capability(index)}",
            "backend": b,
            "probe": dict(C.PROBES.get(index, {})),
            "reason": C.REASON.get(index, ""),
        }
    return out


def info() -> dict[str, Any]:
    """build_info()'s keys of this package: cuda_backend, cuda_devices, nvrtc, cache_dir."""
    if torch.cuda.is_available():
        b = device_backend(torch.cuda.current_device())
    else:
        b = backend()
    return {
        "cuda_backend": b,
        "cuda_devices": devices_info(),
        "nvrtc": N.nvrtc_version(),
        "cache_dir": K.cache_dir(),
    }
