"""Torch front end: argument policy, generators and dispatch to the compiled kernels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, SupportsIndex, Union

import torch

from . import _C, _cuda
from ._cuda import _raw_stream
from ._cuda._common import DEVICE_BACKEND as _CUDA_BACKEND
from ._cuda._common import READY as _CUDA_READY
from ._generator import MAX_NUMEL as _MAX_NUMEL
from ._generator import Generator, check_shape
from ._sources import direct_reserve, source_of

_NORMAL, _UNIFORM, _WORDS = _C.KIND_NORMAL, _C.KIND_UNIFORM, _C.KIND_WORDS
_FLOAT_CODES = {
    torch.float32: _C.DT_FLOAT32,
    torch.float16: _C.DT_FLOAT16,
    torch.bfloat16: _C.DT_BFLOAT16,
    torch.float64: _C.DT_FLOAT64,
}
_WORD_DTYPES = (torch.int32,) + ((torch.uint32,) if hasattr(torch, "uint32") else ())
_ITEMSIZE = {
    torch.float32: 4,
    torch.float16: 2,
    torch.bfloat16: 2,
    torch.float64: 8,
    torch.int32: 4,
    **({torch.uint32: 4} if hasattr(torch, "uint32") else {}),
}
if TYPE_CHECKING:
    from ._graph import CudaGraphGenerator

    GeneratorLike = Union[Generator, torch.Generator, CudaGraphGenerator]
    GeneratorArg = Union[GeneratorLike, Sequence[GeneratorLike], None]
    DeviceArg = Union[torch.device, str, int, None]
    SizeArg = Union[SupportsIndex, Sequence[SupportsIndex], torch.Size]

_CPU = torch.device("cpu")
_DT_FLOAT64 = _C.DT_FLOAT64
_get_num_threads = torch.get_num_threads
_CUDA_OK: list[
    bool
] = []  # [True] once torch has reported CUDA available (it does not change after)
_CUDA_DEVICES: dict[int, torch.device] = {}  # index -> torch.device("cuda", index)


# --------------------------------------------------------------------------------------------
# argument policy
_DEVICE_CACHE: dict[
    tuple[type, Any], torch.device
] = {}  # (type, validated device argument) -> device


def _device_arg(device):
    if device is None:
        return _CPU
    try:  # keyed by type too: False == 0 == 0.0 hash alike, but only the int is a device
        return _DEVICE_CACHE[type(device), device]
    except (KeyError, TypeError):
        pass
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, (str, int)) and not isinstance(device, bool):
        try:  # torch raises many types here (ModuleNotFoundError for "hpu" without its module)
            dev = torch.device(device)
        except Exception as e:
            raise ValueError(
                f"device: cannot read {device!r} as a torch device ({_first_line(e)})"
            ) from None
    else:
        raise TypeError(f"device: expected a torch.device, str or int, got {type(device).__name__}")
    if dev.type == "cuda":
        if not _CUDA_OK:
            if not torch.cuda.is_available():
                raise ValueError(f"device: {dev} requested but CUDA is not available to torch")
            _CUDA_OK.append(True)
        if dev.index is None:  # the current device: resolved per call, never cached
            index = torch.cuda.current_device()
            cur = _CUDA_DEVICES.get(index)
            if cur is None:
                cur = _CUDA_DEVICES[index] = torch.device("cuda", index)
            return cur
        if dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device: {dev} does not exist ({torch.cuda.device_count()} CUDA devices)"
            )
    elif dev.type != "cpu":
        try:  # a device torch can name but has no backend for (mps on Linux, xla, hpu, ...)
            torch.empty(0, device=dev)
        except Exception as e:  # whatever type the backend's import or dispatch raises
            raise ValueError(
                f"device: {dev} is not available to torch ({_first_line(e)})"
            ) from None
    if len(_DEVICE_CACHE) < 256:
        _DEVICE_CACHE[type(device), device] = dev
    return dev


def _first_line(e):
    text = str(e)
    return text.splitlines()[0] if text else type(e).__name__


def _float_dtype_arg(dtype):
    if dtype is None:
        dtype = torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype: expected a torch.dtype, got {type(dtype).__name__}")
    code = _FLOAT_CODES.get(dtype)
    if code is None:
        raise ValueError(
            f"dtype: fastrand draws float32, float16, bfloat16 or float64, not {dtype}"
        )
    return dtype, code


def _layout_arg(layout):
    if layout is None or layout == torch.strided:
        return
    if not isinstance(layout, torch.layout):
        raise TypeError(f"layout: expected a torch.layout, got {type(layout).__name__}")
    raise ValueError(f"layout: only torch.strided is supported, not {layout}")


_shape_arg = check_shape


def _check_bytes(shape, dtype, name):
    """torch describes a tensor only if its byte size, counting zero-sized dimensions as 1,
    fits in int64; refuse larger shapes here with the argument's name."""
    total = 1
    for d in shape:
        total *= d if d > 1 else 1
    if total * _ITEMSIZE[dtype] > _MAX_NUMEL:
        raise ValueError(f"{name}: {tuple(shape)} of {dtype} needs more than 2^63 - 1 bytes")


def _size_args(size, name="size"):
    """torch style: f(2, 3) or f((2, 3)) or f([2, 3])."""
    if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
        return _shape_arg(size[0], name)
    return _shape_arg(size, name)


# --------------------------------------------------------------------------------------------
# kernels
def _fill(out, n, dev, kind, code, seed, stream, offset):
    """Writes n values of the stream into the contiguous tensor `out` on device `dev`."""
    if n == 0:
        return out
    typ = dev.type
    if typ == "cpu":
        _C.fill_cpu(out.data_ptr(), n, kind, code, seed, stream, offset, _get_num_threads())
    elif typ == "cuda":  # the backend of FASTRAND_CUDA_BACKEND (aot, nvrtc or copy)
        _cuda.fill(out, n, kind, code, seed, stream, offset)
    else:  # no native kernel for this device: the same bits, generated on the CPU and copied
        # device= explicitly: torch.set_default_device must not move the staging buffer
        host = torch.empty(out.shape, dtype=out.dtype, device=_CPU)
        _fill(host, n, _CPU, kind, code, seed, stream, offset)
        out.copy_(host)
    return out


def _draw(shape, generator, device, dtype, kind, code):
    src = source_of(generator)  # the one question about the generator's kind
    if device.type == "cuda":  # readies the kernels, or refuses, before any reservation
        _cuda.prepare(device.index, kind, code)
    out = torch.empty(shape, dtype=dtype, device=device)
    if device.type == "meta":  # shape and dtype only, as torch's factories: nothing drawn
        return out
    if src.rows is not None:
        src.check(shape, out.device)
    else:
        src.check(out.device)
    return _fill_from(src, out, math.prod(shape), shape, device, kind, code)


def _fill_from(src, out, n, shape, device, kind, code):
    """Fills `out` (n values) from a checked source: positions reserved on the host, the state
    on the device, or one source per batch row."""
    if src.rows is not None:
        row = n // shape[0] if shape[0] else 0
        flat = out.view(-1)
        for i in range(shape[0]):
            part = flat[i * row : (i + 1) * row]
            _fill_from(src.rows[i], part, row, (row,), device, kind, code)
        return out
    if src.state is not None:
        from ._graph import keep_for_capture

        _cuda.prepare(src.device.index, kind, code, "state")
        keep_for_capture(src.state)  # a graph captured now keeps the state's address
        _cuda.fill_state(out, n, kind, code, src.state)
        return out
    seed, stream, offset = src.reserve(n, code == _DT_FLOAT64)
    return _fill(out, n, device, kind, code, seed, stream, offset)


# --------------------------------------------------------------------------------------------
# public API
# randn_tensor's fast path: (shape, device, dtype) of calls already validated, for a
# fastrand.Generator, a tuple of ints and an explicit dtype -> (device for torch.empty, dtype,
# dtype code, n, float64?, backend: 0 CPU kernel, 1 CUDA AOT kernel, 3 CUDA NVRTC kernel,
# 2 other).
_FAST_NORMAL: dict[tuple[Any, Any, Any], tuple[Any, ...]] = {}


def randn_tensor(
    shape: Sequence[SupportsIndex],
    generator: GeneratorArg = None,
    device: DeviceArg = None,
    dtype: torch.dtype | None = None,
    layout: torch.layout | None = None,
) -> torch.Tensor:
    """Standard normal noise with diffusers' ``randn_tensor`` signature and batch semantics.

    The same (generator seed, offset) gives the same bits on every device; the noise is drawn
    directly on ``device`` (CPU when None). ``generator`` may be a fastrand.Generator, a
    torch.Generator of any device, None (torch's default generator), or a list of them: then row
    ``i`` of the batch (shape ``(1,) + shape[1:]``) comes from ``generator[i]``.

    >>> import torch, fastrand
    >>> x = fastrand.randn_tensor((2, 3), generator=torch.Generator().manual_seed(0))
    >>> x.shape, x.dtype
    (torch.Size([2, 3]), torch.float32)
    >>> # a seeded torch.Generator stands at stream 2^63 of its seed, on every device
    >>> y = fastrand.randn_tensor((2, 3), generator=fastrand.Generator(0, stream=2**63))
    >>> torch.equal(x.view(torch.int32), y.view(torch.int32))
    True
    >>> # a list of generators: row i from generator[i], whatever the batch size
    >>> rows = fastrand.randn_tensor((2, 3), generator=[fastrand.Generator(5), fastrand.Generator(6)])
    >>> one = fastrand.randn_tensor((1, 3), generator=fastrand.Generator(6))
    >>> torch.equal(rows[1:].view(torch.int32), one.view(torch.int32))
    True
    """
    reserve = direct_reserve(generator)
    if reserve is not None and type(shape) is tuple and layout is None:
        # The common call, repeated every denoising step: skip the argument checks it passed
        # before. Sizes must be plain ints (a bool or float equal to a cached int is not).
        try:
            entry = _FAST_NORMAL[shape, device, dtype]
        except (KeyError, TypeError):
            entry = None
        if entry is not None and dtype is None and entry[1] is not torch.get_default_dtype():
            entry = None  # cached under another default dtype: the general path re-caches it
        if entry is not None:
            for d in shape:
                if type(d) is not int:
                    break
            else:
                dev, dt, code, n, two, backend = entry
                out = torch.empty(shape, dtype=dt, device=dev)
                if backend == 1:
                    seed, stream, offset = reserve(n, two)
                    if n:
                        index = out.get_device()
                        _C.fill_cuda(
                            out.data_ptr(),
                            n,
                            _NORMAL,
                            code,
                            seed,
                            stream,
                            offset,
                            index,
                            _raw_stream(index),
                        )
                    return out
                if backend == 0:
                    seed, stream, offset = reserve(n, two)
                    if n:
                        _C.fill_cpu(
                            out.data_ptr(),
                            n,
                            _NORMAL,
                            code,
                            seed,
                            stream,
                            offset,
                            _get_num_threads(),
                        )
                    return out
                if backend == 3 and n:
                    index = out.get_device()
                    if not _CUDA_READY.get((index, _NORMAL, code)):
                        # readied before the reservation: a refusal costs nothing
                        _cuda.prepare(index, _NORMAL, code)
                    if _CUDA_BACKEND.get(index) != "nvrtc":  # it fell back: the general path
                        seed, stream, offset = reserve(n, two)
                        return _fill(out, n, out.device, _NORMAL, code, seed, stream, offset)
                    seed, stream, offset = reserve(n, two)
                    _C.drv_fill(
                        out.data_ptr(),
                        n,
                        _NORMAL,
                        code,
                        seed,
                        stream,
                        offset,
                        index,
                        _raw_stream(index),
                    )
                    return out
                if n and out.is_cuda:
                    _cuda.prepare(out.get_device(), _NORMAL, code)
                seed, stream, offset = reserve(n, two)
                if n == 0:
                    return out
                return _fill(out, n, out.device, _NORMAL, code, seed, stream, offset)
    out = _normal(_shape_arg(shape), generator, device, dtype, layout, "shape")
    if reserve is not None and type(shape) is tuple and layout is None and len(_FAST_NORMAL) < 256:
        _remember_fast(shape, device, dtype)
    return out


def _remember_fast(shape, device, dtype):
    """Caches a call that just passed every check (see randn_tensor)."""
    if not all(type(d) is int for d in shape):
        return
    if not (device is None or type(device) is str or type(device) is torch.device):
        return  # an int device would also match False / 0.0, which the checks refuse
    dev = _device_arg(device)
    if dev.type == "meta":
        return  # draws nothing: the full path handles it
    if dev.type == "cuda":
        # an index-less CUDA device stays index-less: torch.empty places the tensor on the
        # current device and the fill reads the index back from it (so the backend must be the
        # same on every visible device for it, else the general path picks it per call)
        target = torch.device(device) if isinstance(device, str) else (device or dev)
        # (only devices already set up count: this never sets up another GPU)
        if target.index is None:
            chosen = {_CUDA_BACKEND.get(i) for i in range(torch.cuda.device_count())}
        else:
            chosen = {_CUDA_BACKEND.get(target.index)}
        one = chosen.pop() if len(chosen) == 1 else None
        backend = {"aot": 1, "nvrtc": 3}.get(one or "", 2)
    elif dev.type == "cpu":
        backend, target = 0, dev
    else:
        backend, target = 2, dev
    dt = torch.get_default_dtype() if dtype is None else dtype  # None: checked at each use
    code = _FLOAT_CODES[dt]
    _FAST_NORMAL[shape, device, dtype] = (
        target,
        dt,
        code,
        math.prod(shape),
        code == _DT_FLOAT64,
        backend,
    )


_fn_stack_len = getattr(torch._C, "_len_torch_function_stack", None)


def _factory_device(device):
    """torch's rule for its factory functions (torch.randn, torch.rand): ``device=None`` means
    the current default device (``torch.set_default_device``, ``with torch.device(...)``)."""
    if device is not None:
        return device
    if _fn_stack_len is not None and _fn_stack_len() == 0:
        return _CPU  # no device context can be active: the common case, without the lookup
    return torch.get_default_device()


def _normal(shape, generator, device, dtype, layout, name):
    device = _device_arg(device)
    dtype, code = _float_dtype_arg(dtype)
    if layout is not None:
        _layout_arg(layout)
    _check_bytes(shape, dtype, name)
    return _draw(shape, generator, device, dtype, _NORMAL, code)


def randn(
    *size: SizeArg,
    generator: GeneratorArg = None,
    dtype: torch.dtype | None = None,
    device: DeviceArg = None,
    layout: torch.layout | None = None,
) -> torch.Tensor:
    """Like torch.randn: ``randn(2, 3)`` or ``randn((2, 3))``; the noise of randn_tensor."""
    return _normal(_size_args(size), generator, _factory_device(device), dtype, layout, "size")


def rand(
    *size: SizeArg,
    generator: GeneratorArg = None,
    dtype: torch.dtype | None = None,
    device: DeviceArg = None,
    layout: torch.layout | None = None,
) -> torch.Tensor:
    """Uniform [0, 1) values of the stream (spec section 6), like torch.rand."""
    shape = _size_args(size)
    device = _device_arg(_factory_device(device))
    dtype, code = _float_dtype_arg(dtype)
    _layout_arg(layout)
    _check_bytes(shape, dtype, "size")
    return _draw(shape, generator, device, dtype, _UNIFORM, code)


def _like_args(t, dtype, device, memory_format):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"input: expected a torch.Tensor, got {type(t).__name__}")
    if t.layout != torch.strided:
        raise ValueError(f"input: has layout {t.layout}; fastrand draws only strided (dense) noise")
    if not isinstance(memory_format, torch.memory_format):
        raise TypeError(
            f"memory_format: expected a torch.memory_format, got {type(memory_format).__name__}"
        )
    if memory_format in (torch.channels_last, torch.channels_last_3d):
        rank = 4 if memory_format == torch.channels_last else 5
        if t.dim() != rank:
            raise ValueError(
                f"memory_format: {memory_format} needs a {rank}-D input, got {t.dim()}-D"
            )
    return (
        tuple(t.shape),
        (t.dtype if dtype is None else dtype),
        (t.device if device is None else device),
    )


def _laid_out_like(values, input, memory_format):
    """`values` (contiguous; value i is element i in row-major order of the logical shape)
    laid out in memory like torch's *_like would: the input's strides for preserve_format (when
    the input is dense and non-overlapping; else torch's suggested format), or the given
    format. The values per logical index never change, only where they sit in memory."""
    if memory_format == torch.contiguous_format or (
        memory_format == torch.preserve_format and input.is_contiguous()
    ):
        return values
    out = torch.empty_like(
        input, dtype=values.dtype, device=values.device, memory_format=memory_format
    )
    if out.stride() == values.stride():
        return values
    return out.copy_(values)


def randn_like(
    input: torch.Tensor,
    *,
    generator: GeneratorArg = None,
    dtype: torch.dtype | None = None,
    device: DeviceArg = None,
    memory_format: torch.memory_format = torch.preserve_format,
) -> torch.Tensor:
    """Normal noise with the shape of ``input`` (and its dtype and device unless given).

    The values are those of ``randn_tensor(input.shape)`` (element i in row-major order of the
    logical shape is value i of the stream), laid out in memory like ``torch.randn_like``:
    ``memory_format=torch.preserve_format`` keeps the input's strides (channels_last stays
    channels_last). So ``randn_like(x)`` equals ``randn_tensor(x.shape)`` element for element
    whatever the layout of ``x``.
    """
    shape, dtype, device = _like_args(input, dtype, device, memory_format)
    values = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    return _laid_out_like(values, input, memory_format)


def rand_like(
    input: torch.Tensor,
    *,
    generator: GeneratorArg = None,
    dtype: torch.dtype | None = None,
    device: DeviceArg = None,
    memory_format: torch.memory_format = torch.preserve_format,
) -> torch.Tensor:
    """Uniform [0, 1) values with the shape of ``input`` (and its dtype and device unless given);
    laid out like ``input`` as in randn_like."""
    shape, dtype, device = _like_args(input, dtype, device, memory_format)
    values = rand(shape, generator=generator, dtype=dtype, device=device)
    return _laid_out_like(values, input, memory_format)


def random_words(
    *size: SizeArg,
    generator: GeneratorArg = None,
    device: DeviceArg = None,
    dtype: torch.dtype = torch.int32,
) -> torch.Tensor:
    """The raw 32-bit Philox words of the stream (spec section 6), one position per value.

    Returned as torch.int32 (the words' bits; ``.view(torch.uint32)`` where torch has it) or as
    torch.uint32 when ``dtype=torch.uint32``.
    """
    shape = _size_args(size)
    device = _device_arg(_factory_device(device))
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype: expected a torch.dtype, got {type(dtype).__name__}")
    if dtype not in _WORD_DTYPES:
        raise ValueError(f"dtype: raw words come as torch.int32 or torch.uint32, not {dtype}")
    _check_bytes(shape, dtype, "size")
    return _draw(shape, generator, device, dtype, _WORDS, _C.DT_UINT32)


def build_info() -> dict[str, Any]:
    """What this build and machine offer."""
    from . import __version__

    archs = [a for a in _C.CUDA_ARCHS.split(",") if a]
    return {
        "version": __version__,
        "stream_version": int(_C.STREAM_VERSION),
        "cuda": bool(_C.CUDA),
        "cuda_archs": archs,
        "cuda_available": bool(torch.cuda.is_available()),
        "cpu_isa": list(_C.cpu_isa_available()),
        "cpu_isa_selected": _C.cpu_isa_selected(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **_cuda.info(),  # cuda_backend, nvrtc, cache_dir
    }
