"""Draws at an explicit (seed, offset, stream), and draws from a state tensor, as torch custom
ops (namespace `fastrand`), so torch.compile(fullgraph=True) traces them without graph breaks::

    import fastrand.functional as F

    @torch.compile(fullgraph=True)
    def noisy(x, step):
        return x + F.randn(x.shape, seed=0, offset=step * x.numel(), device=x.device)

In eager mode these functions take the same fast path as fastrand.randn (no custom-op dispatch);
inside torch.compile they call torch.ops.fastrand.draw / draw_state, which have fake (meta)
implementations for tracing. The result is bit-identical either way.

Arguments are checked as in eager mode in every path: under torch.compile by the same Python
code at trace time (a static argument that eager refuses is refused while tracing; under
fullgraph=True torch reports it as torch._dynamo.exc.Unsupported quoting the ValueError or
TypeError, without fullgraph as the error itself). Ints that torch.compile made dynamic (symbolic)
stay symbolic: no operator.index (which would specialise them, one graph per value), only the
same range comparisons, which become guards on the range, so every valid seed, stream and offset
runs one graph (values of 2^63 and more, beyond int64, one more); a value eager refuses fails
the guard, recompiles and is refused at trace time. The ops check their arguments again when they run and
in their fake implementations, so direct torch.ops.fastrand.* calls are checked too (there the
ints are int64 by the op schema; symbolic sizes get a torch._check(size >= 0)).

draw_state reads (seed, stream, offset) from an int64[3] tensor and advances its offset: pass
fastrand.CudaGraphGenerator(...).state to get fresh noise on every replay of a CUDA graph,
including the graphs torch.compile(mode="reduce-overhead") records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, SupportsIndex

import torch

from . import _C, _cuda
from ._api import (
    _check_bytes,
    _device_arg,
    _factory_device,
    _fill,
    _float_dtype_arg,
    _shape_arg,
)
from ._generator import U64, _as_int, check_seed, check_u64, next_offset

__all__ = ["randn", "rand", "randn_from_state", "rand_from_state"]

_CODE = {
    torch.float32: _C.DT_FLOAT32,
    torch.float16: _C.DT_FLOAT16,
    torch.bfloat16: _C.DT_BFLOAT16,
    torch.float64: _C.DT_FLOAT64,
}
_KINDS = (_C.KIND_NORMAL, _C.KIND_UNIFORM)


def _i64(v):
    """uint64 -> the int64 with the same bits (custom-op ints are int64)."""
    return v - U64 if v >= (1 << 63) else v


# --------------------------------------------------------------------------------------------
# checks shared by eager calls, tracing and the ops' real and fake implementations
def _check_state(state, fake=False):
    """The state must be a contiguous int64 tensor of shape (3,) whose values can be read (not
    meta). The fake implementation sees fake tensors, whose device is not checked."""
    if not isinstance(state, torch.Tensor):
        raise TypeError(f"state: expected an int64 tensor of 3 values, got {type(state).__name__}")
    if state.dtype != torch.int64 or tuple(state.shape) != (3,) or not state.is_contiguous():
        raise ValueError(
            "state: expected a contiguous int64 tensor of shape (3,) holding "
            "(seed, stream, offset), e.g. CudaGraphGenerator(...).state; got "
            f"{state.dtype} of shape {tuple(state.shape)}"
            + ("" if state.is_contiguous() else ", not contiguous")
        )
    if not fake and state.device.type == "meta":
        raise ValueError("state: a meta tensor holds no (seed, stream, offset) to draw from")


def _check_kind(kind):
    if kind not in _KINDS:
        raise ValueError(f"kind: expected {_C.KIND_NORMAL} (normal) or {_C.KIND_UNIFORM} (uniform)")


def _op_shape(shape):
    """The shape of a traced call or a fake-implementation call, checked as eager checks it;
    symbolic sizes that reach a fake implementation are int64, only their sign is checked."""
    if isinstance(shape, (tuple, list)) and any(isinstance(d, torch.SymInt) for d in shape):
        dims = []
        for d in shape:
            if isinstance(d, torch.SymInt):
                torch._check(d >= 0, lambda: "shape: sizes must be non-negative")
            else:
                d = _shape_arg((d,))[0]
            dims.append(d)
        return dims
    return list(_shape_arg(tuple(shape) if isinstance(shape, (list, torch.Size)) else shape))


def _op_int(value, name):
    """seed / stream / offset of a traced call, checked as eager checks them, as the int64 with
    the same bits (custom-op ints are int64). A dynamic int stays symbolic: the checks only
    guard its range, so every valid value runs the same graph."""
    if name != "seed":
        return _i64(check_u64(value, name))
    s = _as_int(value, name)
    check_seed(s)  # the range; s - 2^64 below, not its s % 2^64, keeps an int64 seed one graph
    return s - U64 if s >= (1 << 63) else s


def _op_device(device):
    """The device of an op call at trace time (existence is checked when the op runs)."""
    if device is None:
        # torch's factory rule, as in eager; traceable (get_default_device is not): a factory
        # call's device is a trace-time constant that dynamo guards
        return torch.empty(0).device
    if isinstance(device, torch.device):
        return device
    if isinstance(device, (str, int)) and not isinstance(device, bool):
        return torch.device(device)
    raise TypeError(f"device: expected a torch.device, str or int, got {type(device).__name__}")


# --------------------------------------------------------------------------------------------
# the custom ops
@torch.library.custom_op("fastrand::draw", mutates_args=())
def _draw(
    shape: List[int],
    kind: int,
    seed: int,
    stream: int,
    offset: int,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    dims = _shape_arg(tuple(shape))
    _check_kind(kind)
    dtype, code = _float_dtype_arg(dtype)
    device = _device_arg(device)
    _check_bytes(dims, dtype, "shape")
    out = torch.empty(dims, dtype=dtype, device=device)
    _fill(out, out.numel(), out.device, kind, code, seed % U64, stream % U64, offset % U64)
    return out


@_draw.register_fake
def _draw_fake(shape, kind, seed, stream, offset, dtype, device):
    shape = _op_shape(shape)
    _check_kind(kind)
    dtype, _ = _float_dtype_arg(dtype)
    return torch.empty(shape, dtype=dtype, device=device)


@torch.library.custom_op("fastrand::draw_state", mutates_args=("state",))
def _draw_state(
    state: torch.Tensor, shape: List[int], kind: int, dtype: torch.dtype
) -> torch.Tensor:
    _check_state(state)
    dims = _shape_arg(tuple(shape))
    _check_kind(kind)
    dtype, code = _float_dtype_arg(dtype)
    _check_bytes(dims, dtype, "shape")
    out = torch.empty(dims, dtype=dtype, device=state.device)
    n = out.numel()
    if state.device.type == "cuda":  # the CUDA backend (its copy path reads the state back)
        from ._graph import keep_for_capture

        keep_for_capture(state)  # a graph captured now keeps the state's address
        _cuda.fill_state(out, n, kind, code, state)
    else:  # host copy of the state (synchronises on non-CPU devices)
        seed, stream, offset = (int(v) % U64 for v in state.tolist())
        _fill(out, n, out.device, kind, code, seed, stream, offset)
        state[2] = _i64(next_offset(offset, n, code == _C.DT_FLOAT64))
    return out


@_draw_state.register_fake
def _draw_state_fake(state, shape, kind, dtype):
    _check_state(state, fake=True)
    shape = _op_shape(shape)
    _check_kind(kind)
    dtype, _ = _float_dtype_arg(dtype)
    return torch.empty(shape, dtype=dtype, device=state.device)


# --------------------------------------------------------------------------------------------
# public functions
def _explicit(kind, shape, seed, offset, stream, dtype, device):
    if torch.compiler.is_compiling():  # checked at trace time, as below
        shape = _op_shape(shape)
        dt, _ = _float_dtype_arg(dtype)
        dev = _op_device(device)
        s, st, o = _op_int(seed, "seed"), _op_int(stream, "stream"), _op_int(offset, "offset")
        return torch.ops.fastrand.draw(shape, kind, s, st, o, dt, dev)
    shape = _shape_arg(tuple(shape) if isinstance(shape, (list, torch.Size)) else shape)
    dev = _device_arg(_factory_device(device))
    dt, code = _float_dtype_arg(dtype)
    seed, stream, offset = (
        check_seed(seed),
        check_u64(stream, "stream"),
        check_u64(offset, "offset"),
    )
    _check_bytes(shape, dt, "shape")
    out = torch.empty(shape, dtype=dt, device=dev)
    if dev.type == "meta":  # shape and dtype only, as torch's factories
        return out
    return _fill(out, out.numel(), dev, kind, code, seed, stream, offset)


def randn(
    shape: Sequence[SupportsIndex],
    seed: SupportsIndex,
    offset: SupportsIndex = 0,
    stream: SupportsIndex = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | int | None = None,
) -> torch.Tensor:
    """Standard normals at (seed, stream, offset): equal to ``fastrand.randn(*shape,
    generator=fastrand.Generator(seed, offset=offset, stream=stream), dtype, device)``.

    >>> import torch, fastrand, fastrand.functional as F
    >>> x = F.randn((2, 3), seed=0, offset=6)
    >>> x.shape, x.dtype
    (torch.Size([2, 3]), torch.float32)
    >>> y = fastrand.randn(2, 3, generator=fastrand.Generator(0, offset=6))
    >>> torch.equal(x.view(torch.int32), y.view(torch.int32))
    True
    """
    return _explicit(_C.KIND_NORMAL, shape, seed, offset, stream, dtype, device)


def rand(
    shape: Sequence[SupportsIndex],
    seed: SupportsIndex,
    offset: SupportsIndex = 0,
    stream: SupportsIndex = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | int | None = None,
) -> torch.Tensor:
    """Uniform [0, 1) values at (seed, stream, offset)."""
    return _explicit(_C.KIND_UNIFORM, shape, seed, offset, stream, dtype, device)


def _from_state(kind, state, shape, dtype):
    _check_state(state, fake=torch.compiler.is_compiling())
    dt, _ = _float_dtype_arg(dtype)
    if torch.compiler.is_compiling():
        return torch.ops.fastrand.draw_state(state, _op_shape(shape), kind, dt)
    shape = _shape_arg(tuple(shape) if isinstance(shape, (list, torch.Size)) else shape)
    return _draw_state(state, list(shape), kind, dt)


def randn_from_state(
    state: torch.Tensor, shape: Sequence[SupportsIndex], dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Standard normals at the (seed, stream, offset) held in `state` (int64[3]), advancing its
    offset; on CUDA without synchronising, so CUDA-graph replays draw fresh noise."""
    return _from_state(_C.KIND_NORMAL, state, shape, dtype)


def rand_from_state(
    state: torch.Tensor, shape: Sequence[SupportsIndex], dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Uniform [0, 1) values from `state`, advancing it (see randn_from_state)."""
    return _from_state(_C.KIND_UNIFORM, state, shape, dtype)
