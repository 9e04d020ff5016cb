"""What the CUDA backend's modules share: settings, process state, warnings, capture rules."""

from __future__ import annotations

import os
import sys
import threading
import warnings
from typing import Any

import torch

ENV_BACKEND = "FASTRAND_CUDA_BACKEND"
ENV_NVRTC = "FASTRAND_NVRTC"
ENV_CACHE = "FASTRAND_CACHE_DIR"
BACKENDS = ("auto", "aot", "nvrtc", "copy")
MIN_ARCH = 75  # the oldest arch fastrand builds for (AOT and NVRTC alike)

try:  # the raw current-stream handle without building a torch.cuda.Stream object
    _raw_stream = torch._C._cuda_getCurrentRawStream
except AttributeError:  # pragma: no cover - older/newer torch

    def _raw_stream(index):
        return torch.cuda.current_stream(index).cuda_stream


class NvrtcNotFoundError(RuntimeError):
    """No usable NVRTC library; the message names every path tried and why it failed."""


class NvrtcCompileError(RuntimeError):
    """NVRTC rejected the kernel source; the message holds NVRTC's log."""


class Unusable(RuntimeError):
    """A backend cannot serve a device (it failed to load, or its known-answer check failed)."""


# --------------------------------------------------------------------------------------------
# process state (all of it reset by reset(), for tests, and in a forked child)
LOCK = threading.RLock()
# device index -> "aot" | "nvrtc" | "copy", set once the backend is ready (and verified)
DEVICE_BACKEND: dict[int, str] = {}
# (device index, kind, dtype code) -> True once that op's fill kernels are ready on the device;
# the hot path's one lookup (for the AOT backend every op is ready with the device)
READY: dict[tuple[int, int, int], bool] = {}
GROUPS: dict[int, set[str]] = {}  # device index -> kernel groups loaded and checked (NVRTC)
REASON: dict[int, str] = {}  # device index -> why it is not on the first backend of the order
PROBES: dict[int, dict[str, str]] = {}  # device index -> {backend or group: probe result}
REFUSED: dict[tuple[int, str], str] = {}  # (device, cache key) -> why the driver refused it
LOADED: dict[tuple[int, str], Any] = {}  # (device, group) -> the _cache.Cubin loaded there (NVRTC)
STATE: dict[str, Any] = {}  # "backend", "nvrtc", "nvrtc_error", "cache", "hint", "why_copy"
MEMORY: dict[str, bytes] = {}  # cache key -> image, for this process
WARNED: set[str] = set()


def device_state_reset() -> None:
    """Forgets every device decision and loaded kernel (not NVRTC, nor the images in memory)."""
    DEVICE_BACKEND.clear()
    READY.clear()
    GROUPS.clear()
    REASON.clear()
    PROBES.clear()
    REFUSED.clear()
    LOADED.clear()
    clear_fast_path()


def clear_fast_path() -> None:
    """Forgets randn_tensor's cached calls (they hold a device's backend)."""
    api = sys.modules.get(__package__.rsplit(".", 1)[0] + "._api")
    if api is not None:
        api._FAST_NORMAL.clear()


def reset() -> None:
    """Forgets every decision (backend, NVRTC, cache state, loaded kernels); for tests."""
    with LOCK:
        device_state_reset()
        STATE.clear()
        MEMORY.clear()
        WARNED.clear()


def _after_fork_in_child() -> None:
    # The parent's contexts and modules are not the child's (the compiled core forgets its
    # handles too): every device is set up again at its first use, where torch's own check
    # (or the driver) says whether CUDA can be used in this child.
    global LOCK
    LOCK = threading.RLock()
    device_state_reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def warn_once(tag: str, message: str) -> None:
    if tag in WARNED:
        return
    WARNED.add(tag)
    warnings.warn(message, RuntimeWarning, stacklevel=5)


def capability(index: int) -> int:
    major, minor = torch.cuda.get_device_capability(index)
    return 10 * major + minor


def torch_cuda_major() -> int | None:
    v = torch.version.cuda
    try:
        return int(v.split(".")[0]) if v else None
    except ValueError:
        return None


def nvrtc_fix() -> str:
    major = torch_cuda_major()
    if major == 12:
        return "pip install nvidia-cuda-nvrtc-cu12"
    if major is not None:
        return f'pip install "nvidia-cuda-nvrtc=={major}.*"'
    return "pip install nvidia-cuda-nvrtc"


def capturing() -> bool:
    try:
        return bool(torch.cuda.is_current_stream_capturing())
    except (RuntimeError, AssertionError):  # a torch without CUDA captures nothing
        return False


def refuse_in_capture(what: str) -> None:
    if capturing():
        raise RuntimeError(
            f"fastrand: cannot {what} while a CUDA graph is being captured (kernels are never "
            "compiled, loaded or checked during capture). Call fastrand.warmup() in this process "
            "before capturing (or draw once on the device outside the capture); "
            "`python -m fastrand warmup` fills the disk cache beforehand so that this is fast."
        )
