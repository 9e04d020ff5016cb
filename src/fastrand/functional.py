"""Draws at an explicit (seed, offset, stream), and draws from a state tensor, as torch custom
ops (namespace `fastrand`), so torch.compile(fullgraph=True) traces them without graph breaks:

    import fastrand.functional as F

    @torch.compile(fullgraph=True)
    def noisy(x, step):
        return x + F.randn(x.shape, seed=0, offset=step * x.numel(), device=x.device)

In eager mode these functions take the same fast path as fastrand.randn (no custom-op dispatch);
inside torch.compile they call torch.ops.fastrand.draw / draw_state, which have fake (meta)
implementations for tracing. The result is bit-identical either way.

draw_state reads (seed, stream, offset) from an int64[3] tensor and advances its offset: pass
fastrand.CudaGraphGenerator(...).state to get fresh noise on every replay of a CUDA graph,
including the graphs torch.compile(mode="reduce-overhead") records.
"""

from __future__ import annotations

from typing import List

import torch

from . import _C, _cuda
from ._api import _CPU, _device_arg, _fill, _float_dtype_arg, _shape_arg
from ._generator import U64, check_seed, check_u64, next_offset

__all__ = ["randn", "rand", "randn_from_state", "rand_from_state"]

_CODE = {
    torch.float32: _C.DT_FLOAT32,
    torch.float16: _C.DT_FLOAT16,
    torch.bfloat16: _C.DT_BFLOAT16,
    torch.float64: _C.DT_FLOAT64,
}


def _i64(v):
    """uint64 -> the int64 with the same bits (custom-op ints are int64)."""
    return v - U64 if v >= (1 << 63) else v


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
    out = torch.empty(shape, dtype=dtype, device=device)
    _fill(out, out.numel(), out.device, kind, _CODE[dtype], seed % U64, stream % U64, offset % U64)
    return out


@_draw.register_fake
def _draw_fake(shape, kind, seed, stream, offset, dtype, device):
    return torch.empty(shape, dtype=dtype, device=device)


@torch.library.custom_op("fastrand::draw_state", mutates_args=("state",))
def _draw_state(
    state: torch.Tensor, shape: List[int], kind: int, dtype: torch.dtype
) -> torch.Tensor:
    out = torch.empty(shape, dtype=dtype, device=state.device)
    n = out.numel()
    code = _CODE[dtype]
    if state.device.type == "cuda":  # the CUDA backend (its copy path reads the state back)
        _cuda.fill_state(out, n, kind, code, state)
    else:  # host copy of the state (synchronises on non-CPU devices)
        seed, stream, offset = (int(v) % U64 for v in state.tolist())
        _fill(out, n, out.device, kind, code, seed, stream, offset)
        state[2] = _i64(next_offset(offset, n, code == _C.DT_FLOAT64))
    return out


@_draw_state.register_fake
def _draw_state_fake(state, shape, kind, dtype):
    return torch.empty(shape, dtype=dtype, device=state.device)


def _check_state(state):
    if not isinstance(state, torch.Tensor):
        raise TypeError(f"state: expected an int64 tensor of 3 values, got {type(state).__name__}")
    if state.dtype != torch.int64 or tuple(state.shape) != (3,) or not state.is_contiguous():
        raise ValueError(
            "state: expected a contiguous int64 tensor of shape (3,) holding "
            "(seed, stream, offset), e.g. CudaGraphGenerator(...).state"
        )


def _explicit(kind, shape, seed, offset, stream, dtype, device):
    if torch.compiler.is_compiling():
        dt = torch.get_default_dtype() if dtype is None else dtype
        dev = _CPU if device is None else torch.device(device)
        return torch.ops.fastrand.draw(
            list(shape), kind, _i64(seed % U64), _i64(stream % U64), _i64(offset % U64), dt, dev
        )
    shape = _shape_arg(tuple(shape) if isinstance(shape, (list, torch.Size)) else shape)
    dev = _device_arg(device)
    dt, code = _float_dtype_arg(dtype)
    out = torch.empty(shape, dtype=dt, device=dev)
    return _fill(
        out,
        out.numel(),
        dev,
        kind,
        code,
        check_seed(seed),
        check_u64(stream, "stream"),
        check_u64(offset, "offset"),
    )


def randn(shape, seed, offset=0, stream=0, dtype=None, device=None):
    """Standard normals at (seed, stream, offset): equal to fastrand.randn(*shape,
    generator=fastrand.Generator(seed, offset=offset, stream=stream), dtype, device)."""
    return _explicit(_C.KIND_NORMAL, shape, seed, offset, stream, dtype, device)


def rand(shape, seed, offset=0, stream=0, dtype=None, device=None):
    """Uniform [0, 1) values at (seed, stream, offset)."""
    return _explicit(_C.KIND_UNIFORM, shape, seed, offset, stream, dtype, device)


def _from_state(kind, state, shape, dtype):
    if torch.compiler.is_compiling():
        dt = torch.get_default_dtype() if dtype is None else dtype
        return torch.ops.fastrand.draw_state(state, list(shape), kind, dt)
    _check_state(state)
    shape = _shape_arg(tuple(shape) if isinstance(shape, (list, torch.Size)) else shape)
    dt, _ = _float_dtype_arg(dtype)
    return _draw_state(state, list(shape), kind, dt)


def randn_from_state(state, shape, dtype=None):
    """Standard normals at the (seed, stream, offset) held in `state` (int64[3]), advancing its
    offset; on CUDA without synchronising, so CUDA-graph replays draw fresh noise."""
    return _from_state(_C.KIND_NORMAL, state, shape, dtype)


def rand_from_state(state, shape, dtype=None):
    """Uniform [0, 1) values from `state`, advancing it (see randn_from_state)."""
    return _from_state(_C.KIND_UNIFORM, state, shape, dtype)
