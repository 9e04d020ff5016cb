"""Sharded noise on torch.distributed: DTensors whose shards each rank draws alone.

``fastrand.distributed.randn(*size, device_mesh=mesh, placements=[Shard(0)])`` mirrors
``torch.distributed.tensor.randn`` and returns a DTensor whose ``full_tensor()`` equals
``fastrand.randn(*size)`` on one device, bit for bit, for every mesh and placement. Each rank
draws only its local shard (a region draw, fastrand.randn_slice) on its mesh's device; no
collective runs.

Generator contract: every rank passes a generator in an EQUAL state (the same fastrand.Generator
seed/stream/offset, or torch.Generator / torch's default generator seeded alike, with the same
draws before). Every call advances the generator by the whole global tensor on every rank, so
generators stay in step without communication. Nothing checks this across ranks: unequal
states give shards of different tensors.

Placements: ``Replicate()``; ``Shard(d)`` on any dimension (negative d counts from the end),
uneven and empty shards split as DTensor splits them (``torch.chunk`` sizes, empty trailing
shards), on 1-D and n-D meshes, several ``Shard``s of one tensor dimension nested in mesh-
dimension order. Refused with ValueError: ``Partial`` (noise is not a sum of partial terms) and
``_StridedShard`` (its local shard is not one box of the global tensor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as _dist

from . import _C
from ._api import _check_bytes, _device_arg, _float_dtype_arg, _layout_arg, _size_args
from ._slice import _draw_box
from ._sources import source_of

if not _dist.is_available():  # pragma: no cover - torch builds without distributed support
    raise ImportError("fastrand.distributed needs torch.distributed, which this torch lacks")

try:
    from torch.distributed.device_mesh import DeviceMesh
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard
except ImportError as _e:  # pragma: no cover - torch before the public DTensor module
    raise ImportError(
        f"fastrand.distributed needs torch's public torch.distributed.tensor (DTensor) API, "
        f"which torch {torch.__version__} lacks ({_e})"
    ) from None

_STRIDED_SHARD: Any = None  # private in torch 2.13; used only to refuse it by name
try:
    from torch.distributed.tensor.placement_types import _StridedShard

    _STRIDED_SHARD = _StridedShard
except ImportError:  # pragma: no cover
    pass
# torch's own rule for a rank's shard: private (torch 2.13), so _local_box stands in without it
_TORCH_LOCAL_SHAPE_AND_OFFSET: Any = None
try:
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    _TORCH_LOCAL_SHAPE_AND_OFFSET = compute_local_shape_and_global_offset
except ImportError:  # pragma: no cover
    pass

__all__ = ["randn", "rand"]


# --------------------------------------------------------------------------------------------
# arguments
def _mesh_arg(device_mesh: Any) -> DeviceMesh:
    if device_mesh is None:
        # torch's factories use the innermost `with mesh:`; torch 2.13 has no public accessor
        # for it, so this reads the same private _mesh_resources stack they read
        try:
            from torch.distributed.device_mesh import _mesh_resources

            return _mesh_resources.get_current_mesh()
        except (ImportError, AttributeError, RuntimeError) as e:
            raise ValueError(
                f"device_mesh: None means the current mesh (`with mesh:`), and there is none ({e})"
            ) from None
    if not isinstance(device_mesh, DeviceMesh):
        raise TypeError(
            f"device_mesh: expected a torch.distributed DeviceMesh, got {type(device_mesh).__name__}"
        )
    return device_mesh


def _mesh_device(mesh: DeviceMesh) -> torch.device:
    """The device of this rank's local tensor: the mesh's device type (CUDA: the current
    device, as DTensor places it)."""
    try:
        return _device_arg(mesh.device_type)
    except ValueError as e:
        raise ValueError(
            f"device_mesh: its device type {mesh.device_type!r} cannot hold tensors here ({e})"
        ) from None


def _placements_arg(placements: Any, mesh: DeviceMesh, ndim: int) -> list[Any]:
    if placements is None:
        return [Replicate() for _ in range(mesh.ndim)]
    if not isinstance(placements, (list, tuple)):
        raise TypeError(
            f"placements: expected a list or tuple of placements, got {type(placements).__name__}"
        )
    if len(placements) != mesh.ndim:
        raise ValueError(
            f"placements: {len(placements)} placements for a {mesh.ndim}-dimensional device mesh; "
            "expected one per mesh dimension"
        )
    out: list[Any] = []
    for m, p in enumerate(placements):
        if _STRIDED_SHARD is not None and isinstance(p, _STRIDED_SHARD):
            raise ValueError(
                f"placements: _StridedShard (mesh dimension {m}) is not supported: its local "
                "shard is not one box of the global tensor; draw with Shard placements and "
                "redistribute"
            )
        if isinstance(p, Partial):
            raise ValueError(
                f"placements: Partial (mesh dimension {m}) is refused: noise is not a sum of "
                "partial tensors; use Replicate() or Shard(d)"
            )
        if isinstance(p, Shard):
            d = p.dim
            if not -ndim <= d < ndim:
                raise ValueError(
                    f"placements: Shard({d}) on mesh dimension {m} for a {ndim}-dimensional tensor"
                )
            out.append(Shard(d + ndim) if d < 0 else p)
        elif isinstance(p, Replicate):
            out.append(p)
        else:
            raise TypeError(
                f"placements: expected Shard or Replicate placements, got {type(p).__name__} "
                f"on mesh dimension {m}"
            )
    return out


# --------------------------------------------------------------------------------------------
# local box
def _local_box(
    shape: Sequence[int],
    mesh_shape: Sequence[int],
    coordinate: Sequence[int],
    placements: Sequence[Any],
) -> tuple[list[int], list[int]]:
    """(starts, lengths) of the local shard at mesh `coordinate`: for each Shard in mesh-
    dimension order, the current extent of its tensor dimension is cut in mesh_shape[m] chunks
    of ceil(n / k) (torch.chunk sizes; trailing shards may be short or empty), as DTensor cuts
    it (torch.distributed.tensor._utils.compute_local_shape_and_global_offset; the tests check
    this rule against distribute_tensor)."""
    starts = [0] * len(shape)
    lengths = list(shape)
    for m, p in enumerate(placements):
        if not isinstance(p, Shard):
            continue
        d, k, r = p.dim, mesh_shape[m], coordinate[m]
        n = lengths[d]
        chunk = -(-n // k)
        lo = min(r * chunk, n)
        starts[d] += lo
        lengths[d] = min(n, lo + chunk) - lo
    return starts, lengths


def _shard_box(
    shape: Sequence[int], mesh: DeviceMesh, coordinate: Sequence[int], placements: Sequence[Any]
) -> tuple[list[int], list[int]]:
    """(starts, lengths) of this rank's shard: torch's own computation where this torch has
    it, else the same rule (_local_box)."""
    if _TORCH_LOCAL_SHAPE_AND_OFFSET is not None:
        try:
            local_shape, offset = _TORCH_LOCAL_SHAPE_AND_OFFSET(tuple(shape), mesh, placements)
        except Exception:  # noqa: BLE001 - a private helper whose signature may change
            pass
        else:
            if len(local_shape) == len(shape) and len(offset) == len(shape):
                return [int(o) for o in offset], [int(n) for n in local_shape]
    return _local_box(shape, mesh.shape, coordinate, placements)


def _contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * max(shape[d + 1], 1)
    return tuple(strides)


def _distributed_draw(
    size: tuple[Any, ...],
    generator: Any,
    dtype: Any,
    layout: Any,
    requires_grad: Any,
    device_mesh: Any,
    placements: Any,
    kind: int,
) -> DTensor:
    shape = _size_args(size)
    dt, code = _float_dtype_arg(dtype)
    _layout_arg(layout)
    if not isinstance(requires_grad, bool):
        raise TypeError(f"requires_grad: expected a bool, got {type(requires_grad).__name__}")
    _check_bytes(shape, dt, "size")
    mesh = _mesh_arg(device_mesh)
    places = _placements_arg(placements, mesh, len(shape))
    device = _mesh_device(mesh)
    source_of(generator, rows=False, state=False, draw="a region draw")  # before any work
    coordinate = mesh.get_coordinate()
    if coordinate is None:
        # a rank outside the mesh holds an empty local tensor (as torch's factories give it)
        # and still advances its generator by the whole tensor
        starts, lengths, local_shape = [0] * len(shape), [0] * len(shape), [0]
    else:
        starts, lengths = _shard_box(shape, mesh, coordinate, places)
        local_shape = lengths
    local = _draw_box(shape, starts, lengths, local_shape, generator, device, dt, kind, code)
    out = DTensor.from_local(
        local,
        mesh,
        places,
        run_check=False,
        shape=torch.Size(shape),
        stride=_contiguous_strides(shape),
    )
    # set on the DTensor, not on `local`: from_local of a tensor that requires grad returns a
    # non-leaf (its .grad stays None, optimizers refuse it); torch's DTensor factories give a leaf
    out.requires_grad_(requires_grad)
    return out


# --------------------------------------------------------------------------------------------
# public API
def randn(
    *size: Any,
    generator: Any | None = None,
    dtype: torch.dtype | None = None,
    layout: torch.layout | None = None,
    requires_grad: bool = False,
    device_mesh: DeviceMesh | None = None,
    placements: Sequence[Any] | None = None,
) -> DTensor:
    """A DTensor of standard normal noise, like ``torch.distributed.tensor.randn``, whose
    ``full_tensor()`` is ``fastrand.randn(*size, generator=generator, dtype=dtype)`` bit for bit.

    Each rank draws only its local shard, on the mesh's device, with no communication.
    ``generator``: a fastrand.Generator, a torch.Generator or None (torch's default generator),
    in an equal state on every rank; it advances by the whole tensor. ``device_mesh`` None is
    the current mesh (``with mesh:``); ``placements`` None is Replicate() on every mesh
    dimension. See the module docstring for the placements supported.
    """
    return _distributed_draw(
        size, generator, dtype, layout, requires_grad, device_mesh, placements, _C.KIND_NORMAL
    )


def rand(
    *size: Any,
    generator: Any | None = None,
    dtype: torch.dtype | None = None,
    layout: torch.layout | None = None,
    requires_grad: bool = False,
    device_mesh: DeviceMesh | None = None,
    placements: Sequence[Any] | None = None,
) -> DTensor:
    """Uniform [0, 1) values as a DTensor whose ``full_tensor()`` is ``fastrand.rand(*size, ...)``
    bit for bit; see randn."""
    return _distributed_draw(
        size, generator, dtype, layout, requires_grad, device_mesh, placements, _C.KIND_UNIFORM
    )
