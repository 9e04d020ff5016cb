"""CUDA backends: which kernels a CUDA draw runs, NVRTC at run time, the image cache, and the
known-answer check that each device runs before it trusts a backend.

Three ways to fill a CUDA tensor, chosen per device by ``FASTRAND_CUDA_BACKEND=auto|aot|nvrtc|
copy`` (_backend.py):

- ``aot``: the kernels nvcc compiled into ``fastrand._C`` at install time (``_C.CUDA``);
- ``nvrtc``: the same kernel source (embedded in the extension) compiled by NVRTC at first use,
  one small program per kernel group, for the device's arch (_nvrtc.py), cached on disk
  (_cache.py), loaded and launched through the driver API (libcuda opened at run time);
- ``copy``: the CPU draw copied to the device: the same bits, not the same speed, and never
  inside CUDA-graph capture.

Whatever the backend, the bits are the same: the kernels share one source, and each device
checks them (_probe.py) before it uses them.

Files: _common.py (settings and process state), _nvrtc.py (finding and running NVRTC, arch
choice), _cache.py (kernel groups, cache keys, the disk cache), _probe.py (the known-answer
check), _backend.py (backend choice, device setup, launches, warmup).
"""

from ._backend import (
    aot_covers,
    backend,
    copy_reason,
    device_backend,
    devices_info,
    fill,
    fill_box,
    fill_state,
    info,
    native,
    prepare,
    requested,
    warmup,
)
from ._cache import (
    BOX,
    OPS,
    PROBE,
    STATE,
    Cubin,
    cache_dir,
    cache_error,
    cache_key,
    cubin,
    group_names,
    groups,
    kernel_sources,
    op_group,
    program,
)
from ._common import (
    BACKENDS,
    ENV_BACKEND,
    ENV_CACHE,
    ENV_NVRTC,
    MIN_ARCH,
    NvrtcCompileError,
    NvrtcNotFoundError,
    Unusable,
    _raw_stream,
    capturing,
    reset,
)
from ._nvrtc import (
    Nvrtc,
    Target,
    check_arch,
    compatible_archs,
    nvrtc,
    nvrtc_candidates,
    nvrtc_version,
    options,
    parse_archs,
    runs_on,
    target_arch,
)

__all__ = [
    "BACKENDS",
    "BOX",
    "ENV_BACKEND",
    "ENV_CACHE",
    "ENV_NVRTC",
    "MIN_ARCH",
    "OPS",
    "PROBE",
    "STATE",
    "Cubin",
    "Nvrtc",
    "NvrtcCompileError",
    "NvrtcNotFoundError",
    "Target",
    "Unusable",
    "_raw_stream",
    "aot_covers",
    "backend",
    "cache_dir",
    "cache_error",
    "cache_key",
    "capturing",
    "check_arch",
    "compatible_archs",
    "copy_reason",
    "cubin",
    "device_backend",
    "devices_info",
    "fill",
    "fill_box",
    "fill_state",
    "group_names",
    "groups",
    "info",
    "kernel_sources",
    "native",
    "nvrtc",
    "nvrtc_candidates",
    "nvrtc_version",
    "op_group",
    "options",
    "parse_archs",
    "prepare",
    "program",
    "requested",
    "reset",
    "runs_on",
    "target_arch",
    "warmup",
]
