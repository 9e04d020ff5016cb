"""Region draws: one box of a global tensor's noise, without computing the rest.

``randn_slice(shape, index)`` is ``randn(*shape)[index]`` bit for bit. The stream is addressed by
position (value g of a draw at offset o sits at position o + g; float64: two positions per value
from an even start), so a box is a set of contiguous runs of global values that the compiled box
fill draws in one call (csrc/cpu/cpu_box.cpp on the CPU; fastrand._cuda.fill_box on CUDA). The
generator advances by the whole shape, so every rank or worker drawing its own box of the same
tensor stays in step without communication (fastrand.distributed builds on this).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import torch

from . import _C, _cuda
from ._api import (
    _check_bytes,
    _device_arg,
    _factory_device,
    _float_dtype_arg,
)
from ._generator import check_shape
from ._sources import source_of

_NORMAL, _UNIFORM = _C.KIND_NORMAL, _C.KIND_UNIFORM
_DT_FLOAT64 = _C.DT_FLOAT64
_MAX_BOX_DIMS = 8  # csrc/backend.h MAX_BOX_DIMS
_CPU = torch.device("cpu")

# fastrand._cuda (the CUDA backends: AOT, NVRTC, copy), once it is importable; else None


# --------------------------------------------------------------------------------------------
# arguments
def _index_entry_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or isinstance(value, torch.Tensor):
        raise TypeError(f"index: {what} must be an integer, got {type(value).__name__}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"index: {what} must be an integer, got {type(value).__name__}") from None


def _index_arg(index: Any, shape: tuple[int, ...]) -> tuple[list[int], list[int], list[bool]]:
    """(start, length, kept) per dimension of `shape` for a basic index: a tuple of slices with
    step 1, integers (which drop their dimension) and at most one Ellipsis. Missing trailing
    dimensions are whole; slice bounds follow Python slicing."""
    entries: tuple[Any, ...]
    if isinstance(index, tuple):
        entries = index
    elif isinstance(index, (slice, int)) or index is Ellipsis:
        entries = (index,)
    elif hasattr(index, "__index__") and not isinstance(index, (torch.Tensor, bool)):
        entries = (index,)
    else:
        raise TypeError(
            f"index: expected a slice, an integer or a tuple of them, got {type(index).__name__}"
        )
    n_ellipsis = sum(1 for e in entries if e is Ellipsis)
    if n_ellipsis > 1:
        raise ValueError("index: at most one Ellipsis (...)")
    nd = len(shape)
    if len(entries) - n_ellipsis > nd:
        raise ValueError(
            f"index: {len(entries) - n_ellipsis} entries for a {nd}-dimensional shape {shape}"
        )
    if n_ellipsis:
        at = next(i for i, e in enumerate(entries) if e is Ellipsis)
        whole = (slice(None),) * (nd - len(entries) + 1)
        entries = entries[:at] + whole + entries[at + 1 :]
    entries = entries + (slice(None),) * (nd - len(entries))
    starts, lengths, kept = [], [], []
    for d, (e, size) in enumerate(zip(entries, shape)):
        if isinstance(e, slice):
            if e.step is not None and _index_entry_int(e.step, "a slice step") != 1:
                raise ValueError(
                    f"index: slices need step 1 (a box of the tensor), got step {e.step} "
                    f"in dimension {d}"
                )
            lo = None if e.start is None else _index_entry_int(e.start, "a slice bound")
            hi = None if e.stop is None else _index_entry_int(e.stop, "a slice bound")
            a, b, _ = slice(lo, hi, 1).indices(size)
            starts.append(a)
            lengths.append(max(0, b - a))
            kept.append(True)
        elif e is None:
            raise TypeError("index: None (a new axis) is not supported")
        else:
            i = _index_entry_int(e, "an index entry")
            if not -size <= i < size:
                raise ValueError(f"index: {i} is out of range for dimension {d} of size {size}")
            starts.append(i % size)
            lengths.append(1)
            kept.append(False)
    return starts, lengths, kept


# --------------------------------------------------------------------------------------------
# the box
def _collapse(
    shape: Sequence[int], starts: Sequence[int], lengths: Sequence[int]
) -> tuple[int, list[int], list[int]]:
    """(base, sizes, gstrides) of the box: dimensions of length 1 folded into the base,
    neighbours that form one contiguous run of global values merged, last global stride 1."""
    nd = len(shape)
    gstride = [1] * nd
    for d in range(nd - 2, -1, -1):
        gstride[d] = gstride[d + 1] * shape[d + 1]
    base = sum(s * g for s, g in zip(starts, gstride))
    rev: list[list[int]] = []  # innermost first: [size, gstride]
    for d in range(nd - 1, -1, -1):
        n = lengths[d]
        if n == 1:
            continue
        if rev and rev[-1][0] * rev[-1][1] == gstride[d]:
            rev[-1][0] *= n
        else:
            rev.append([n, gstride[d]])
    if not rev or rev[0][1] != 1:
        rev.insert(0, [1, 1])
    rev.reverse()
    return base, [s for s, _ in rev], [g for _, g in rev]


def _fill_box(
    out: torch.Tensor,
    dev: torch.device,
    kind: int,
    code: int,
    seed: int,
    stream: int,
    offset: int,
    base: int,
    sizes: list[int],
    gstrides: list[int],
) -> None:
    """Writes the box's values into the contiguous tensor `out` (numel = prod(sizes))."""
    if dev.type == "cpu":
        _C.fill_box_cpu(
            out.data_ptr(),
            kind,
            code,
            seed,
            stream,
            offset,
            base,
            sizes,
            gstrides,
            torch.get_num_threads(),
        )
        return
    if dev.type == "cuda":  # the CUDA backend (AOT, NVRTC, or its own copy path)
        _cuda.fill_box(out, kind, code, seed, stream, offset, base, sizes, gstrides)
        return
    # no native box fill for this device: the same bits drawn on the CPU and copied
    host = torch.empty(out.shape, dtype=out.dtype, device=_CPU)
    _fill_box(host, _CPU, kind, code, seed, stream, offset, base, sizes, gstrides)
    out.copy_(host)


def _draw_box(
    shape: tuple[int, ...],
    starts: Sequence[int],
    lengths: Sequence[int],
    out_shape: Sequence[int],
    generator: Any,
    device: torch.device,
    dtype: torch.dtype,
    kind: int,
    code: int,
) -> torch.Tensor:
    """The box [starts, starts + lengths) of a `shape` draw, shaped `out_shape`, with every
    argument already checked; advances the generator by numel(shape)."""
    src = source_of(generator, rows=False, state=False, draw="a region draw")
    out = torch.empty(tuple(out_shape), dtype=dtype, device=device)
    if out.is_cuda and out.numel():  # kernels ready (or the draw refused) before any reservation
        _cuda.prepare(out.get_device(), kind, code, "box")
    src.check(out.device)
    seed, stream, offset = src.reserve(math.prod(shape), code == _DT_FLOAT64)
    if out.numel() == 0:
        return out
    base, sizes, gstrides = _collapse(shape, starts, lengths)
    flat = out.view(-1)
    if len(sizes) <= _MAX_BOX_DIMS:
        _fill_box(flat, device, kind, code, seed, stream, offset, base, sizes, gstrides)
        return out
    # more dimensions than the kernels take (only boxes cut in more than 8 places): one call
    # per index of the outer dimensions, each filling a contiguous part of the output
    outer, inner = sizes[:-_MAX_BOX_DIMS], sizes[-_MAX_BOX_DIMS:]
    outer_g, inner_g = gstrides[:-_MAX_BOX_DIMS], gstrides[-_MAX_BOX_DIMS:]
    part = math.prod(inner)
    for k in range(math.prod(outer)):
        b, rest = base, k
        for d in range(len(outer) - 1, -1, -1):
            rest, i = divmod(rest, outer[d])
            b += i * outer_g[d]
        _fill_box(
            flat[k * part : (k + 1) * part],
            device,
            kind,
            code,
            seed,
            stream,
            offset,
            b,
            inner,
            inner_g,
        )
    return out


def _slice_draw(
    shape: Any, index: Any, generator: Any, dtype: Any, device: Any, kind: int
) -> torch.Tensor:
    shape = check_shape(shape, "shape")
    dev = _device_arg(_factory_device(device))  # torch's rule, as randn's
    dt, code = _float_dtype_arg(dtype)
    _check_bytes(shape, dt, "shape")
    starts, lengths, kept = _index_arg(index, shape)
    source_of(generator, rows=False, state=False, draw="a region draw")  # before any work
    out_shape = [n for n, k in zip(lengths, kept) if k]
    if dev.type == "meta":  # shape and dtype only, as torch's factories: nothing drawn
        return torch.empty(out_shape, dtype=dt, device=dev)
    return _draw_box(shape, starts, lengths, out_shape, generator, dev, dt, kind, code)


# --------------------------------------------------------------------------------------------
# public API
def randn_slice(
    shape: Sequence[int],
    index: Any,
    *,
    generator: Any | None = None,
    dtype: torch.dtype | None = None,
    device: Any | None = None,
) -> torch.Tensor:
    """``randn(*shape, generator=generator, dtype=dtype, device=device)[index]``, bit for bit,
    at the cost of the slice only.

    ``index``: a slice, an integer or a tuple of slices with step 1 and integers (an integer
    drops its dimension, as in Python indexing) and at most one ``...``; missing trailing
    dimensions are whole and out-of-range slice bounds are clipped as in Python slicing. The
    generator advances by the whole shape (as the full draw would), so ranks that draw
    different slices of one tensor from equal generators stay in step.

    >>> import torch, fastrand
    >>> full = fastrand.randn(4, 6, generator=fastrand.Generator(7))
    >>> g = fastrand.Generator(7)
    >>> part = fastrand.randn_slice((4, 6), (slice(1, 3), slice(2, 5)), generator=g)
    >>> part.shape, g.get_offset()
    (torch.Size([2, 3]), 24)
    >>> torch.equal(part.view(torch.int32), full[1:3, 2:5].view(torch.int32))
    True
    """
    return _slice_draw(shape, index, generator, dtype, device, _NORMAL)


def rand_slice(
    shape: Sequence[int],
    index: Any,
    *,
    generator: Any | None = None,
    dtype: torch.dtype | None = None,
    device: Any | None = None,
) -> torch.Tensor:
    """``rand(*shape, ...)[index]`` bit for bit (uniform [0, 1) values); see randn_slice."""
    return _slice_draw(shape, index, generator, dtype, device, _UNIFORM)
