"""Where a draw's values come from: one adapter per generator kind, behind one interface.

A draw asks once, `source_of(generator)`, and fills from what the adapter gives:

- ``reserve(n, two_words) -> (seed, stream, offset)``: positions on the host, the generator
  advanced past them (fastrand.Generator; torch.Generator of any device and ``None``, torch's
  default generator, read from their state: docs/torch-generators.md);
- ``state``: an int64[3] device tensor (seed, stream, offset) that the kernel reads and advances
  on the device (CudaGraphGenerator), and ``device``, the only device it draws on;
- ``rows``: one source per batch row (a list of generators, diffusers' batch semantics).

``check(device, what)`` refuses, before anything advances, what the draw cannot take. Nothing
outside this module asks what kind a generator is.
"""

from __future__ import annotations

import weakref
from functools import partial
from typing import Any

import torch

from ._generator import TORCH_TRACKER, Generator

_KINDS = "a fastrand.Generator, a fastrand.CudaGraphGenerator, a torch.Generator"


class Positions:
    """A source that reserves positions on the host."""

    __slots__ = ("reserve", "check")
    state = None
    rows = None

    def __init__(self, reserve: Any, check: Any = None):
        self.reserve = reserve
        self.check = check or _no_check


def _no_check(device: torch.device, what: str = "generator") -> None:
    pass


class DeviceState:
    """A source whose position lives in device memory (CudaGraphGenerator)."""

    __slots__ = ("generator",)
    rows = None

    def __init__(self, generator: Any):
        self.generator = generator

    @property
    def state(self) -> torch.Tensor:
        return self.generator.state

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def check(self, device: torch.device, what: str = "a CudaGraphGenerator") -> None:
        from . import _cuda

        if device != self.device:
            raise ValueError(
                f"device: {what} on {self.device} draws only on that device, not {device}"
            )
        index = self.device.index
        if not _cuda.native(index):
            raise ValueError(
                "generator: CudaGraphGenerator needs a CUDA kernel (AOT or NVRTC), and "
                f"{self.device} has none: {_cuda.copy_reason(index)}"
            )


class Rows:
    """One source per batch row: row i of the draw comes from rows[i]."""

    __slots__ = ("rows",)
    state = None

    def __init__(self, rows: list[Any]):
        self.rows = rows

    def check(self, shape: tuple[int, ...], device: torch.device) -> None:
        """Every row's source checked before any of them advances."""
        if len(shape) == 0:
            raise ValueError("generator: a list of generators needs a shape with a batch dimension")
        if len(self.rows) < shape[0]:
            raise ValueError(
                f"generator: a list of {len(self.rows)} generators for a batch of "
                f"{shape[0]}; expected at least {shape[0]}"
            )
        for i in range(shape[0]):
            what = f"the CudaGraphGenerator at element {i} of the list"
            self.rows[i].check(device, what)


def direct_reserve(generator: Any) -> Any:
    """The reserve function ``(n, two_words) -> (seed, stream, offset)`` of a generator that
    reserves positions on the host (fastrand.Generator, torch.Generator, None for torch's
    default generator), else None. randn_tensor's cache of checked calls draws through it."""
    if type(generator) is Generator:
        return generator._reserve
    if generator is None:
        generator = torch.default_generator
    elif not isinstance(generator, torch.Generator):
        return None
    if _on_cpu(generator):  # straight into the compiled core's reader
        return partial(TORCH_TRACKER.cpu_reader().reserve, generator)
    return partial(TORCH_TRACKER.reserve, generator)


# id(torch.Generator) -> (a weak reference to it, whether it is a CPU generator): its device
# never changes, and asking it (g.device.type) costs more than the lookup. An entry goes with
# its generator; a reused id is told apart by the reference.
_CPU_GENERATORS: dict[int, tuple[Any, bool]] = {}


def _on_cpu(g: torch.Generator) -> bool:
    entry = _CPU_GENERATORS.get(id(g))
    if entry is not None and entry[0]() is g:
        return entry[1]
    cpu = g.device.type == "cpu"
    key = id(g)
    _CPU_GENERATORS[key] = (weakref.ref(g, partial(_forget, key)), cpu)
    return cpu


def _forget(key: int, _ref: Any) -> None:
    entry = _CPU_GENERATORS.get(key)
    if entry is not None and entry[0]() is None:  # not a newer generator's entry
        _CPU_GENERATORS.pop(key, None)


def _is_graph_generator(g: Any) -> bool:
    return type(g).__name__ == "CudaGraphGenerator" and type(g).__module__ == "fastrand._graph"


def _torch(g: torch.Generator) -> Positions:
    return Positions(
        partial(TORCH_TRACKER.reserve, g),
        lambda device, what="generator": TORCH_TRACKER.precheck(g),
    )


def source_of(generator: Any, *, rows: bool = True, state: bool = True, draw: str = "") -> Any:
    """The source of `generator` (see the module docstring); a list of one is its element.
    `rows`/`state`: whether the draw takes a list of generators / a device-state generator
    (region draws, `draw="a region draw"`, take neither). TypeError naming the argument for
    anything else."""
    if type(generator) is Generator:  # the common case first
        return Positions(generator._reserve)
    if generator is None:
        return _torch(torch.default_generator)
    if isinstance(generator, torch.Generator):
        return _torch(generator)
    if isinstance(generator, Generator):
        return Positions(generator._reserve)
    if state and _is_graph_generator(generator):
        return DeviceState(generator)
    if rows and isinstance(generator, (list, tuple)):
        if len(generator) == 1:
            return source_of(generator[0], rows=False)
        out = []
        for i, g in enumerate(generator):
            try:
                if g is None:  # None means torch's default generator only as the argument
                    raise TypeError
                out.append(source_of(g, rows=False))
            except TypeError:
                raise TypeError(
                    f"generator: element {i} of the list is a {type(g).__name__}, expected {_KINDS}"
                ) from None
        return Rows(out)
    if draw:
        raise TypeError(
            f"generator: {draw} takes a fastrand.Generator, a torch.Generator or None, got "
            f"{type(generator).__name__}"
        )
    raise TypeError(
        f"generator: expected {_KINDS}, a list of them or None, got {type(generator).__name__}"
    )
