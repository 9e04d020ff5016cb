"""Generators: where a draw's (seed, stream, offset) comes from.

`Generator` is fastrand's own counter-based generator. `torch.Generator` objects (any device)
are read through `_TorchTracker` as (initial_seed(), stream 0, an offset that advances with use).
Both reserve positions atomically, so threads sharing a generator never get overlapping noise.
"""

from __future__ import annotations

import hashlib
import math
import operator
import os
import struct
import threading
import weakref
from collections import OrderedDict

U64 = 1 << 64
_STATE_MAGIC = b"FRG1"
_STATE_LEN = 32  # magic(4) + reserved(4) + seed, stream, offset (3 x uint64 little-endian)


def _as_int(value, name):
    # bool, and 0-d bool tensors/arrays (torch.tensor(True) passes operator.index) are no integers
    if isinstance(value, bool) or str(getattr(value, "dtype", "")) in ("torch.bool", "bool"):
        raise TypeError(f"{name}: expected an integer, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}") from None


def check_seed(seed, name="seed"):
    """Seeds are taken modulo 2^64 (negative seeds allowed, as in torch)."""
    s = _as_int(seed, name)
    if not -(1 << 63) <= s < U64:
        raise ValueError(f"{name}: expected an integer in [-2^63, 2^64), got {s}")
    return s % U64


def check_u64(value, name):
    v = _as_int(value, name)
    if not 0 <= v < U64:
        raise ValueError(f"{name}: expected an integer in [0, 2^64), got {v}")
    return v


MAX_NUMEL = (1 << 63) - 1


def check_shape(shape, name="shape"):
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


def next_offset(offset, n, two_words):
    """The offset after a request of n values at `offset` (spec sections 2 and 5)."""
    if two_words:
        return (offset + (offset & 1) + 2 * n) % U64
    return (offset + n) % U64


def _random_seed():
    return int.from_bytes(os.urandom(8), "little")


class Generator:
    """A fastrand noise generator: (seed, stream, offset) of stream v1.

    ``Generator(seed)`` and ``torch.Generator().manual_seed(seed)`` give the same sequence of
    draws. Each draw of n values starts at the generator's offset and advances it (float64
    values take two positions each), so two draws of n1 and n2 values equal one of n1 + n2.
    Thread-safe: concurrent draws reserve disjoint positions.
    """

    __slots__ = ("_lock", "_seed", "_stream", "_offset", "__weakref__")

    def __init__(self, seed=None, *, offset=0, stream=0):
        self._lock = threading.Lock()
        self._seed = _random_seed() if seed is None else check_seed(seed)
        self._stream = check_u64(stream, "stream")
        self._offset = check_u64(offset, "offset")

    # torch.Generator-like interface -----------------------------------------------------------
    def manual_seed(self, seed):
        """Sets the seed and restarts the sequence (offset 0). Returns self."""
        s = check_seed(seed)
        with self._lock:
            self._seed = s
            self._offset = 0
        return self

    def seed(self):
        """Reseeds from the operating system's entropy; returns the new seed."""
        s = _random_seed()
        self.manual_seed(s)
        return s

    def initial_seed(self):
        return self._seed

    @property
    def stream(self):
        return self._stream

    def get_offset(self):
        return self._offset

    def set_offset(self, offset):
        """Moves the generator to position `offset`. Returns self."""
        o = check_u64(offset, "offset")
        with self._lock:
            self._offset = o
        return self

    def get_state(self):
        """The state as a torch.uint8 tensor of 32 bytes (see set_state)."""
        import torch

        return torch.frombuffer(bytearray(self._state_bytes()), dtype=torch.uint8)

    def set_state(self, state):
        """Restores a state from get_state() (a uint8 tensor, bytes or bytearray). Returns self."""
        if isinstance(state, (bytes, bytearray, memoryview)):
            raw = bytes(state)
        else:
            try:
                import torch
            except ImportError:  # pragma: no cover
                torch = None
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

    def clone(self):
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


class _TorchEntry:
    __slots__ = ("seed", "last", "next", "high")

    def __init__(self, seed):
        self.seed = seed
        self.last = None  # state fingerprint right after this tracker's last draw
        self.next = 0  # offset where that draw ended
        self.high = 0  # end of the furthest draw since the generator was last seen fresh


class _GeneratorTable:
    """Per-generator entries: weakly keyed where torch generators allow weak references
    (torch >= 2.13), else keyed by identity with a reference held, the least recently used
    forgotten beyond MAX_GENERATORS."""

    MAX_GENERATORS = 4096

    def __init__(self):
        self._weak = weakref.WeakKeyDictionary()
        self._strong = OrderedDict()  # id(g) -> (g, entry)

    def get(self, g):
        try:
            return self._weak.get(g)
        except TypeError:
            item = self._strong.get(id(g))
            if item is None:
                return None
            self._strong.move_to_end(id(g))
            return item[1]

    def put(self, g, entry):
        try:
            self._weak[g] = entry
        except TypeError:
            self._strong[id(g)] = (g, entry)
            while len(self._strong) > self.MAX_GENERATORS:
                self._strong.popitem(last=False)


class _TorchTracker:
    """Reads a torch.Generator as (initial_seed(), stream 0, offset).

    Each draw advances the generator by a tiny amount (one 64-bit draw on the CPU, 4 Philox
    offsets on CUDA, no kernel) and remembers the state it leaves behind. At the next draw:
    the remembered state means nothing else touched the generator, so the draw continues where
    the last one ended; a generator not seen before, in a state that a draw left some generator
    in (a deepcopy, pickle or set_state copy), continues from there; the state manual_seed(initial_seed())
    gives means the generator was (re)seeded, so the draw starts at offset 0; any other state
    means torch's own ops used the generator in between, so the draw starts past the furthest
    draw since the last seeding and never repeats one. (A copy made after torch's own ops
    touched the generator, or restored in another process, cannot be recognised: it starts
    as a new generator would.)
    """

    MAX_AFTER = 1 << 16  # remembered post-draw states (copies of generators), oldest dropped

    def __init__(self):
        self._lock = threading.Lock()
        self._table = _GeneratorTable()
        self._fresh = OrderedDict()  # (device type, seed) -> fingerprint of manual_seed(seed)
        # (device type, seed, fingerprint a draw left behind) -> (next offset, furthest end):
        # lets a copy of a generator (deepcopy, pickle, set_state) continue where it was copied
        self._after = OrderedDict()

    @staticmethod
    def _fingerprint(g):
        if g.device.type != "cpu":
            try:  # Philox generators (CUDA and others): the state is (seed, offset)
                return (g.initial_seed(), g.get_offset())
            except (RuntimeError, AttributeError):
                pass
        return hashlib.blake2b(g.get_state().numpy(), digest_size=16).digest()

    def _fresh_fingerprint(self, g, seed):
        import torch

        key = (str(g.device), seed)
        fp = self._fresh.get(key)
        if fp is None:
            fresh = torch.Generator(device=g.device)
            fresh.manual_seed(seed)
            fp = self._fingerprint(fresh)
            self._fresh[key] = fp
            if len(self._fresh) > 1024:
                self._fresh.popitem(last=False)
        return fp

    @staticmethod
    def _advance(g):
        import torch

        if g.device.type == "cpu":
            torch.empty((), dtype=torch.int64).random_(generator=g)
            return
        try:  # CUDA (and other Philox) generators: move the offset, no kernel launched
            g.set_offset(g.get_offset() + 4)
        except (RuntimeError, AttributeError):
            torch.empty((), dtype=torch.int64, device=g.device).random_(generator=g)

    def reserve(self, g, n, two_words):
        with self._lock:
            seed = g.initial_seed() % U64
            ent = self._table.get(g)
            new = ent is None or ent.seed != seed
            if new:
                ent = _TorchEntry(seed)
                self._table.put(g, ent)
            fp = self._fingerprint(g)
            kind = g.device.type
            if not new and fp == ent.last:
                offset = ent.next
            elif fp == self._fresh_fingerprint(g, seed):
                offset = ent.high = 0
            elif new and (kind, seed, fp) in self._after:
                # a generator this tracker has not seen, in a state one of our draws left
                # behind: a deepcopy / pickle / set_state copy, which continues from there
                offset, ent.high = self._after[(kind, seed, fp)]
            else:
                offset = ent.high
            end = offset + (offset & 1 if two_words else 0) + (2 * n if two_words else n)
            self._advance(g)
            ent.last = self._fingerprint(g)
            ent.next = end
            ent.high = max(ent.high, end)
            self._after[(kind, seed, ent.last)] = (end, ent.high)
            while len(self._after) > self.MAX_AFTER:
                self._after.popitem(last=False)
            return seed, 0, offset % U64


TORCH_TRACKER = _TorchTracker()
