"""fastrand compiled core: noise stream v1 on raw buffers (no torch inside).

Type stub for the pybind11 module built from csrc/bindings/bindings.cpp and
csrc/bindings/bindings_cuda.cpp. Pointers (``ptr``, ``state``, ``words``, ``out``) are addresses
as ints (``tensor.data_ptr()``, ``array.ctypes.data``); ``cuda_stream`` is a raw CUDA stream
handle. Kinds and dtypes are the ``KIND_*`` / ``DT_*`` codes below.
"""

from collections.abc import Callable, Sequence
from typing import Any

__version__: str
STREAM_VERSION: int
KIND_NORMAL: int
KIND_UNIFORM: int
KIND_WORDS: int
DT_FLOAT32: int
DT_FLOAT16: int
DT_BFLOAT16: int
DT_FLOAT64: int
DT_UINT32: int
PROBE_RADIUS32: int
PROBE_ANGLE32: int

# True when the build holds the nvcc-compiled (AOT) kernels; then CUDA_ARCHS lists them
# ("sm_75,...,compute_121") and the fill_cuda* / probe_cuda functions below exist.
CUDA: bool
CUDA_ARCHS: str
# The CUDA kernel source as embedded at build time (every build), for NVRTC.
KERNEL_MAIN: str
KERNEL_NAMES: list[str]
# (op name, stream Op type) of each op, e.g. ("normal_f32", "NormalF32"): the kernel groups
KERNEL_OPS: list[tuple[str, str]]

# CPU -----------------------------------------------------------------------------------------
def fill_cpu(
    ptr: int, n: int, kind: int, dtype: int, seed: int, stream: int, offset: int, threads: int
) -> None: ...
def fill_box_cpu(
    ptr: int,
    kind: int,
    dtype: int,
    seed: int,
    stream: int,
    offset: int,
    base: int,
    sizes: Sequence[int],
    gstrides: Sequence[int],
    threads: int,
) -> None: ...
def transform_cpu(kind: int, dtype: int, words: int, out: int, nblocks: int) -> None: ...
def probe_cpu(which: int, ptr: int, first: int, count: int, threads: int) -> None: ...
def philox(ctr: Sequence[int], key: Sequence[int]) -> list[int]: ...
def cpu_isa_available() -> list[str]: ...
def cpu_isa_selected() -> str: ...
def cpu_isa_select(name: str) -> bool: ...
def cpu_isa_env_warning() -> str: ...

# CPU torch.Generator states (docs/torch-generators.md; csrc/cpu/torch_state.cpp) -----------------
# C(seed, stream, pos): the 5056-byte state a draw that ends at pos of stream leaves behind.
def torch_cpu_state(seed: int, stream: int, pos: int) -> bytes: ...

# (generation, position, offset after) of an n-value draw from a Philox torch.Generator state
# (seed, offset) (docs/torch-generators.md, "Philox generators").
def torch_philox_draw(seed: int, offset: int, n: int, two_words: bool) -> tuple[int, int, int]: ...

class TorchCpuReader:
    """A CPU torch.Generator's draw in one call: ``get_state()``, the read of it, the state
    after the draw written to ``buffer``, ``set_state(buffer)``, under one lock (a draw started
    inside another on the same thread raises RuntimeError). ``fresh(seed)``: torch's state right
    after manual_seed(seed), as bytes. ``trusted``: the generator type whose ``get_state`` needs
    no layout check (torch.Generator); any other type's state must be a contiguous CPU uint8
    tensor."""

    def __init__(
        self, capacity: int, buffer: Any, fresh: Callable[[int], bytes], trusted: type
    ) -> None: ...
    def reserve(self, generator: Any, n: int, two_words: bool) -> tuple[int, int, int]:
        """(seed, stream, offset) of an n-value draw; the generator now holds the state after
        it."""

# CUDA, every build -----------------------------------------------------------------------------
def kernel_sources() -> dict[str, str]: ...
def cuda_set_variant(variant: int) -> None: ...
def cuda_variant_count() -> int: ...
def drv_status() -> str: ...
def drv_load_module(device: int, image: bytes) -> list[str]: ...
def drv_fill(
    ptr: int,
    n: int,
    kind: int,
    dtype: int,
    seed: int,
    stream: int,
    offset: int,
    device: int,
    cuda_stream: int,
    variant: int = -1,
) -> None: ...
def drv_fill_state(
    ptr: int,
    n: int,
    kind: int,
    dtype: int,
    state_ptr: int,
    device: int,
    cuda_stream: int,
) -> None: ...
def drv_fill_box(
    ptr: int,
    kind: int,
    dtype: int,
    seed: int,
    stream: int,
    offset: int,
    base: int,
    sizes: Sequence[int],
    gstrides: Sequence[int],
    device: int,
    cuda_stream: int,
) -> None: ...
def drv_probe(
    which: int, ptr: int, first: int, count: int, device: int, cuda_stream: int
) -> None: ...

# CUDA, only in builds with the AOT kernels (CUDA is True) ---------------------------------------
def fill_cuda(
    ptr: int,
    n: int,
    kind: int,
    dtype: int,
    seed: int,
    stream: int,
    offset: int,
    device: int,
    cuda_stream: int,
    variant: int = -1,
) -> None: ...
def fill_cuda_state(
    ptr: int, n: int, kind: int, dtype: int, state: int, device: int, cuda_stream: int
) -> None: ...
def fill_cuda_box(
    ptr: int,
    kind: int,
    dtype: int,
    seed: int,
    stream: int,
    offset: int,
    base: int,
    sizes: Sequence[int],
    gstrides: Sequence[int],
    device: int,
    cuda_stream: int,
) -> None: ...
def probe_cuda(
    which: int, ptr: int, first: int, count: int, device: int, cuda_stream: int
) -> None: ...
def cuda_prepare(device: int) -> None: ...
def cuda_versions() -> tuple[int | None, int, str]: ...
