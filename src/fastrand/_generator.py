"""Generators: where a draw's (seed, stream, offset) comes from.

`Generator` is fastrand's own counter-based generator. A `torch.Generator` (any device) is read
through `TORCH_TRACKER` from its state alone (docs/torch-generators.md): right after
`manual_seed(s)` it stands at (s, stream 2^63, offset 0), each fastrand draw writes back a state
that encodes where the draw ended, and any other state maps to positions derived from it. Both
reserve positions atomically, so threads sharing a generator never get overlapping noise.
"""

from __future__ import annotations

import hashlib
import math
import operator
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, SupportsIndex

if TYPE_CHECKING:
    import torch

U64 = 1 << 64
_STATE_MAGIC = b"FRG1"
_STATE_LEN = 32  # magic(4) + reserved(4) + seed, stream, offset (3 x uint64 little-endian)


def _as_int(value, name):
    # bool, and 0-d bool tensors/arrays (torch.tensor(True) passes operator.index) are no integers
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer, got bool")
    if isinstance(value, int):
        # an int (+ makes an int subclass a plain int); under torch.compile also a dynamic int
        # (dynamo calls a SymInt an int): operator.index or type() would specialise it (a guard
        # on its value, so one graph per value), while + and the callers' range comparisons
        # keep it symbolic and only guard its range
        return +value
    if type(value).__name__ in ("Tensor", "ndarray", "bool_"):
        # (by type name: this module imports neither torch nor NumPy, and a traced SymInt has
        # no attributes to ask)
        if str(value.dtype) in ("torch.bool", "bool"):
            raise TypeError(f"{name}: expected an integer, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}") from None


def check_seed(seed: SupportsIndex, name: str = "seed") -> int:
    """Seeds are taken modulo 2^64 (negative seeds allowed, as in torch)."""
    s = _as_int(seed, name)
    if not -(1 << 63) <= s < U64:
        raise ValueError(f"{name}: expected an integer in [-2^63, 2^64), got {s}")
    return s % U64


def check_u64(value: SupportsIndex, name: str) -> int:
    v = _as_int(value, name)
    if not 0 <= v < U64:
        raise ValueError(f"{name}: expected an integer in [0, 2^64), got {v}")
    return v


MAX_NUMEL = (1 << 63) - 1


def check_shape(shape: Sequence[SupportsIndex], name: str = "shape") -> tuple[int, ...]:
    """A tuple or list (torch.Size is a tuple) of non-negative integers with fewer than 2^63
    elements in all; returns it as a tuple of ints."""
    if (
        type(shape) is tuple
        and all(type(d) is int and d >= 0 for d in shape)
        and math.prod(shape) <= MAX_NUMEL
    ):
        return shape  # the common case, already valid
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{name}: expected a tuple or list of integers, got {type(shape).__name__}")
    dims = []
    for d in shape:
        # bool, and 0-d bool tensors/arrays (torch.tensor(True) passes operator.index)
        if isinstance(d, bool) or str(getattr(d, "dtype", "")) in ("torch.bool", "bool"):
            raise TypeError(f"{name}: sizes must be integers, got bool")
        try:
            d = operator.index(d)
        except TypeError:
            raise TypeError(f"{name}: sizes must be integers, got {type(d).__name__}") from None
        if d < 0:
            raise ValueError(f"{name}: sizes must be non-negative, got {tuple(shape)}")
        dims.append(d)
    if math.prod(dims) > MAX_NUMEL:
        raise ValueError(f"{name}: {tuple(dims)} has more than 2^63 - 1 elements")
    return tuple(dims)


def next_offset(offset: int, n: int, two_words: bool) -> int:
    """The offset after a request of n values at `offset` (spec sections 2 and 5)."""
    if two_words:
        return (offset + (offset & 1) + 2 * n) % U64
    return (offset + n) % U64


def _random_seed():
    return int.from_bytes(os.urandom(8), "little")


class Generator:
    """A fastrand noise generator: (seed, stream, offset) of stream v1.

    ``Generator(seed, stream=2**63)`` gives the same sequence of draws as
    ``torch.Generator(device).manual_seed(seed)`` on any device. Each draw of n values starts
    at the generator's offset and advances it (float64 values take two positions each), so two
    draws of n1 and n2 values equal one of n1 + n2.
    Thread-safe: concurrent draws reserve disjoint positions.

    >>> import torch, fastrand
    >>> g = fastrand.Generator(0)
    >>> a = fastrand.randn(2, 3, generator=g)
    >>> b = fastrand.randn(4, generator=g)
    >>> g.get_offset()
    10
    >>> whole = fastrand.randn(10, generator=fastrand.Generator(0))
    >>> torch.equal(torch.cat([a.flatten(), b]).view(torch.int32), whole.view(torch.int32))
    True
    """

    __slots__ = ("_lock", "_seed", "_stream", "_offset", "__weakref__")

    def __init__(
        self,
        seed: SupportsIndex | None = None,
        *,
        offset: SupportsIndex = 0,
        stream: SupportsIndex = 0,
    ) -> None:
        self._lock = threading.Lock()
        self._seed = _random_seed() if seed is None else check_seed(seed)
        self._stream = check_u64(stream, "stream")
        self._offset = check_u64(offset, "offset")

    # torch.Generator-like interface -----------------------------------------------------------
    def manual_seed(self, seed: SupportsIndex) -> Generator:
        """Sets the seed and restarts the sequence (offset 0). Returns self."""
        s = check_seed(seed)
        with self._lock:
            self._seed = s
            self._offset = 0
        return self

    def seed(self) -> int:
        """Reseeds from the operating system's entropy; returns the new seed."""
        s = _random_seed()
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    @property
    def stream(self) -> int:
        return self._stream

    def get_offset(self) -> int:
        return self._offset

    def set_offset(self, offset: SupportsIndex) -> Generator:
        """Moves the generator to position `offset`. Returns self."""
        o = check_u64(offset, "offset")
        with self._lock:
            self._offset = o
        return self

    def get_state(self) -> torch.Tensor:
        """The state as a torch.uint8 tensor of 32 bytes (see set_state)."""
        import torch

        return torch.frombuffer(bytearray(self._state_bytes()), dtype=torch.uint8)

    def set_state(self, state: torch.Tensor | bytes | bytearray | memoryview) -> Generator:
        """Restores a state from get_state() (a uint8 tensor, bytes or bytearray). Returns self."""
        if isinstance(state, (bytes, bytearray, memoryview)):
            raw = bytes(state)
        else:
            try:
                import torch
            except ImportError:  # pragma: no cover
                torch = None  # type: ignore[assignment]
            if torch is None or not isinstance(state, torch.Tensor):
                raise TypeError(
                    "state: expected a torch.uint8 tensor or bytes from get_state(), "
                    f"got {type(state).__name__}"
                )
            if state.dtype != torch.uint8 or state.dim() != 1:
                raise ValueError("state: expected a 1-D torch.uint8 tensor from get_state()")
            raw = bytes(state.cpu().numpy().tobytes())
        if len(raw) != _STATE_LEN or raw[:4] != _STATE_MAGIC:
            raise ValueError(f"state: not a fastrand.Generator state ({len(raw)} bytes)")
        seed, stream, offset = struct.unpack("<QQQ", raw[8:])
        with self._lock:
            self._seed, self._stream, self._offset = seed, stream, offset
        return self

    def clone(self) -> Generator:
        """An independent generator at the same (seed, stream, offset)."""
        with self._lock:
            return Generator(self._seed, offset=self._offset, stream=self._stream)

    # internals ------------------------------------------------------------------------------
    def _state_bytes(self):
        with self._lock:
            return (
                _STATE_MAGIC
                + b"\0" * 4
                + struct.pack("<QQQ", self._seed, self._stream, self._offset)
            )

    def _reserve(self, n, two_words):
        """Atomically takes the positions of an n-value request; returns (seed, stream, offset)."""
        with self._lock:
            o = self._offset
            self._offset = next_offset(o, n, two_words)
            return self._seed, self._stream, o

    def __reduce__(self):
        return (_restore_generator, (self._seed, self._stream, self._offset))

    def __deepcopy__(self, memo):
        return self.clone()

    def __copy__(self):
        return self.clone()

    def __repr__(self):
        return (
            f"fastrand.Generator(seed={self._seed:#x}, stream={self._stream}, "
            f"offset={self._offset})"
        )


def _restore_generator(seed, stream, offset):
    return Generator(seed, offset=offset, stream=stream)


# --------------------------------------------------------------------------------------------
# torch.Generator: positions from the generator's state (docs/torch-generators.md)
TORCH_STREAM = 1 << 63  # the stream of a torch generator's own sequence after manual_seed(s)

_HASH_DOMAIN = b"fastrand-torch"  # blake2b personalisation of every hash below


_HASH_BASES: dict = {}  # tag -> blake2b object before any data (copied per hash)
_HASH_PACK = {k: struct.Struct(f"<{k}Q") for k in (2, 3, 4)}


def _hash64(tag, *values):
    """H64(tag; values): BLAKE2b-64 (person "fastrand-torch", salt = tag) of the values as
    little-endian uint64, read as a little-endian integer."""
    base = _HASH_BASES.get(tag)
    if base is None:
        base = _HASH_BASES[tag] = hashlib.blake2b(digest_size=8, person=_HASH_DOMAIN, salt=tag)
    h = base.copy()
    h.update(_HASH_PACK[len(values)].pack(*values))
    return int.from_bytes(h.digest(), "little")


# CPU generators (mt19937): the state tensor is torch's CPUGeneratorImplState (5056 bytes,
# layout in docs/torch-generators.md). The compiled core reads it and builds the state a draw
# writes (csrc/cpu/torch_state.cpp); only rule 1's reference, torch's own state right after
# manual_seed(s), comes from torch.
_CPU_STATE_LEN = 5056


def _cpu_state(seed, stream, pos):
    """The CPU generator state a fastrand draw leaves behind, C(seed, stream, pos): torch's seed
    unchanged; mt19937 word 0 the tag, words 1-4 (stream, next position) as 32-bit halves, words
    5-623 the stream v1 raw words 0..618 of (key = blake2b-64 of (seed, stream, position),
    stream 0); left = 1 and next = 0, so that torch's next use regenerates all 624 words first;
    no cached normals."""
    from . import _C

    return _C.torch_cpu_state(seed, stream, pos)


# Philox generators (CUDA and others): the state is (seed, offset), offset a multiple of 4.
# A state a fastrand draw left behind has the offset
#   bit 63: 0 (a positive int64), bit 62: 1 (torch keeps ~2^62 offsets of room), bits 59-61: the
#   generation g (stream 2^63 + g), bits 18-58: the cursor (next position, 41 bits),
#   bits 2-17: a 15-bit check of (seed, bits 18-63), bits 0-1: 0.
# A torch op adds its increment to the offset: an increment below 2^17 never carries out of
# the check field and leaves it above the check value, so it is always detected.
_PX_CURSOR_BITS = 41
_PX_CURSOR_MASK = (1 << _PX_CURSOR_BITS) - 1
_PX_GENERATIONS = 8
_PX_START_BITS = 40  # a sequence from a state torch touched first starts below 2^40
_PX_GAP_BITS = 24  # after a state torch touched: start past the cursor by 1 + gap < 2^24


def _px_check(seed, high):
    return _hash64(b"check", seed, high) >> 49  # 15 bits


def _px_encode(seed, generation, cursor):
    high = (1 << 44) | (generation << _PX_CURSOR_BITS) | cursor
    return (high << 18) | (_px_check(seed, high) << 2)


def _px_next_generation(generation):
    return generation % (_PX_GENERATIONS - 1) + 1  # 1..7; 0 is the seed's own sequence


def _px_position(seed, offset):
    """(generation, position) of a draw from the Philox state (seed, offset)."""
    if offset == 0:  # manual_seed(seed)
        return 0, 0
    if offset >> 62 == 1 and offset & 3 == 0:
        high = offset >> 18
        generation = (high >> _PX_CURSOR_BITS) & (_PX_GENERATIONS - 1)
        cursor = high & _PX_CURSOR_MASK
        if (offset >> 2) & 0xFFFF == _px_check(seed, high):  # a state a fastrand draw left
            return generation, cursor
        # torch used the generator after a fastrand draw: the cursor field is at or past where
        # that draw ended; go on, one generation further, past it by a gap hashed from the state
        gap = _hash64(b"gap", seed, offset) >> (64 - _PX_GAP_BITS)
        return _px_next_generation(generation), cursor + 1 + gap
    # torch used the generator since it was seeded, or set_offset put it here
    return 1, _hash64(b"start", seed, offset) >> (64 - _PX_START_BITS)


def _px_after(seed, generation, end):
    """The offset that records a draw of (generation) ending at position `end`."""
    if end > _PX_CURSOR_MASK:  # past what the offset can hold: go on one generation further
        generation = _px_next_generation(generation)
        end = _hash64(b"wrap", seed, generation, end % U64) >> (64 - _PX_START_BITS)
    return _px_encode(seed, generation, end)


def _capturing():
    import torch

    return torch.cuda.is_current_stream_capturing()


class _TorchStates:
    """Reads a torch.Generator as (initial_seed(), stream, offset) from its state alone and
    writes back, under one lock, the state that records the draw (docs/torch-generators.md).

    CPU generators (mt19937): the state right after manual_seed(s) draws at (s, 2^63, 0); a
    state a fastrand draw wrote (recognised exactly: it is rebuilt from what it encodes) goes on
    where that draw ended; any other state draws at (s, 2^63 | 63-bit hash of the state, 0).
    Philox generators (CUDA and others): the offset encodes the position (see _px_position).
    The compiled core reads and writes CPU states (csrc/cpu/torch_state.cpp) and remembers the last
    states it wrote; that memory and the seed -> seeded-state dictionary only hold results of
    pure functions of a state, so they change speed, never a result.
    """

    CACHE = 64  # CPU states the compiled core remembers having written

    def __init__(self):
        self._lock = threading.Lock()
        self._fresh = OrderedDict()  # seed -> CPU state bytes right after manual_seed(seed)
        # made at the first CPU draw: the core's reader and writer (_C.TorchCpuReader), with
        # the buffer of the state a draw writes (a CPU torch.uint8 tensor, passed to set_state)
        self._cpu: Any = None

    def _fresh_state(self, seed):
        raw = self._fresh.get(seed)
        if raw is None:
            import torch

            fresh = torch.Generator(device="cpu")
            fresh.manual_seed(seed)
            raw = fresh.get_state().numpy().tobytes()
            self._fresh[seed] = raw
            if len(self._fresh) > 64:
                self._fresh.popitem(last=False)
        return raw

    def cpu_reader(self):
        """The compiled core's reader of CPU generators (_C.TorchCpuReader): its
        ``reserve(g, n, two_words)`` does get_state, the read, the write and set_state in one
        call, under its own lock."""
        reader = self._cpu
        if reader is None:
            with self._lock:
                reader = self._cpu
                if reader is None:
                    import torch

                    from . import _C

                    buf = torch.empty(_CPU_STATE_LEN, dtype=torch.uint8, device="cpu")
                    reader = self._cpu = _C.TorchCpuReader(
                        self.CACHE, buf, self._fresh_state, torch.Generator
                    )
        return reader

    def _reserve_cpu(self, g, n, two_words):
        return self.cpu_reader().reserve(g, n, two_words)

    def precheck(self, g):
        """Refuses what reserve(g, ...) would refuse before drawing, without advancing g (a
        generator list checks every row before any row draws)."""
        if g.device.type != "cpu":
            self._refuse_capture(g)

    @staticmethod
    def _refuse_capture(g):
        if g.device.type == "cuda" and _capturing():
            raise ValueError(
                "generator: a torch.Generator cannot be used while a CUDA graph is being "
                "captured (torch refuses to read or move its state there, and a captured draw "
                "would replay the same noise); use fastrand.CudaGraphGenerator, whose state "
                "lives on the GPU and advances on every replay"
            )

    def _reserve_philox(self, g, n, two_words):
        self._refuse_capture(g)
        with self._lock:
            try:
                offset = g.get_offset()
            except (RuntimeError, AttributeError, NotImplementedError):
                raise ValueError(
                    f"generator: a torch.Generator on {g.device} keeps no Philox offset "
                    "(get_offset) for fastrand to read; use a fastrand.Generator"
                ) from None
            from . import _C

            seed = g.initial_seed() % U64
            # _px_position, then _px_after where the draw ends, in the compiled core
            generation, pos, after = _C.torch_philox_draw(seed, offset % U64, n, two_words)
            g.set_offset(after)
            return seed, TORCH_STREAM + generation, pos

    def reserve(self, g, n, two_words):
        """(seed, stream, offset) for an n-value request, advancing the torch generator."""
        if g.device.type == "cpu":
            return self._reserve_cpu(g, n, two_words)
        return self._reserve_philox(g, n, two_words)


TORCH_TRACKER = _TorchStates()
_ABANDONED: list[Any] = []  # readers a forked child replaced (kept: never destroyed locked)


def _new_reader_in_child():
    # a forked child gets a new reader: the old one's lock may be held by a thread that is gone
    if TORCH_TRACKER._cpu is not None:
        _ABANDONED.append(TORCH_TRACKER._cpu)
        TORCH_TRACKER._cpu = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_reader_in_child)
