"""CPU torch.Generator states: the mapping of docs/torch-generators.md ("CPU generators"),
re-implemented here from the document alone (hashlib, struct, torch's own seeded state and the
NumPy reference), against what fastrand reads and writes.

The compiled core (csrc/cpu/torch_state.cpp) reads the state, builds the state a draw writes and
remembers the states it wrote; with that memory warm, cold or off, every state must map to the
documented (seed, stream, offset) and be replaced by exactly the documented state.
"""

import hashlib
import struct

import numpy as np
import pytest
import torch
from conftest import bits, ref_bits

import fastrand
from fastrand import _C
from fastrand import _generator as gm
from fastrand import reference as ref

U64 = 1 << 64
M32 = 0xFFFFFFFF
R = 1 << 63
TAG = 0x46524731


# --------------------------------------------------------------------------------------------
# the mapping as the document states it
def _h64(data, salt):
    d = hashlib.blake2b(data, digest_size=8, person=b"fastrand-torch", salt=salt).digest()
    return int.from_bytes(d, "little")


def doc_state(seed, stream, pos):
    """C(seed, stream, pos): header (seed, left 1, seeded 1, next 0), words 0-4 the tag and the
    32-bit halves, words 5-623 the reference words 0..618 of (H64("cpu-fill"; ...), stream 0),
    the normals region zero."""
    key = _h64(struct.pack("<QQQ", seed, stream, pos), b"cpu-fill")
    words = [TAG, stream & M32, stream >> 32, pos & M32, pos >> 32]
    words += [int(w) for w in ref.words(key, 0, 0, 619)]
    return struct.pack("<QiiQ", seed, 1, 1, 0) + struct.pack("<624Q", *words) + bytes(40)


def seeded_state(seed):
    return torch.Generator().manual_seed(seed).get_state().numpy().tobytes()


def doc_rule(raw):
    """(rule, seed, stream, offset) of a draw from the state `raw`: rules 1, 2, 3 in order."""
    seed = struct.unpack_from("<Q", raw)[0]
    if raw == seeded_state(seed):
        return 1, seed, R, 0
    _, left, _, nxt, tag, *halves = struct.unpack_from("<QiiQ5Q", raw)
    if tag == TAG and left == 1 and nxt == 0 and max(halves) <= M32:
        stream, pos = halves[0] | halves[1] << 32, halves[2] | halves[3] << 32
        if raw == doc_state(seed, stream, pos):
            return 2, seed, stream, pos
    return 3, seed, R | _h64(raw, b"cpu") >> 1, 0


def doc_position(raw):
    return doc_rule(raw)[1:]


def doc_end(pos, n, two_words):
    """Where a request of n values at pos ends (stream v1: float64 starts at an even
    position and takes two each)."""
    return (pos + (pos & 1) + 2 * n) % U64 if two_words else (pos + n) % U64


# --------------------------------------------------------------------------------------------
# states to read
def _state_of(g):
    return g.get_state().numpy().tobytes()


def _with_state(raw):
    g = torch.Generator()
    g.set_state(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    return g


def _patched(raw, at, fmt, value):
    b = bytearray(raw)
    struct.pack_into(fmt, b, at, value)
    return bytes(b)


def _states():
    """(name, state bytes): seeded, touched by torch, written by fastrand draws, documented
    states at edge positions, and forgeries of them."""
    out = []
    # seeds: 0, 1, a negative seed, the largest, one whose low word is the tag
    for s in (0, 1, -5, U64 - 1, TAG, (7 << 32) | TAG):
        out.append((f"seeded {s}", _state_of(torch.Generator().manual_seed(s))))
    g = torch.Generator().manual_seed(3)
    torch.randn(5, generator=g)
    out.append(("torch randn", _state_of(g)))
    torch.randn(1, dtype=torch.float64, generator=g)  # (cached normals on some paths)
    out.append(("torch randn float64", _state_of(g)))
    g = torch.Generator().manual_seed(4)
    torch.empty(3).normal_(generator=g)
    out.append(("torch normal_", _state_of(g)))
    # written by fastrand draws: a chain of float32, float64 (odd offsets) and word draws
    g = torch.Generator().manual_seed(9)
    for n, dt in ((3, torch.float32), (5, torch.float64), (1, torch.float64), (7, None)):
        if dt is None:
            fastrand.random_words(n, generator=g)
        else:
            fastrand.randn(n, generator=g, dtype=dt)
        out.append((f"after a draw of {n} {dt}", _state_of(g)))
    torch.randn(2, generator=g)  # torch's use after fastrand's
    out.append(("fastrand then torch", _state_of(g)))
    for s, t, p in (
        (7, R, 0),
        (7, 0, 0),
        (7, U64 - 1, U64 - 1),
        (U64 - 1, R + 123, M32),
        (0, 1 << 32, 1 << 32),
        (TAG, R, 5),
    ):
        out.append((f"C({s}, {t}, {p})", doc_state(s, t, p)))
    c = doc_state(5, R + 9, 1000)
    out += [
        ("forged: left 2", _patched(c, 8, "<i", 2)),
        ("forged: next 1", _patched(c, 16, "<Q", 1)),
        ("forged: left 624", _patched(c, 8, "<i", 624)),
        ("forged: not the tag", _patched(c, 24, "<Q", TAG ^ 1)),
        ("forged: another seed", _patched(c, 0, "<Q", 6)),
        ("forged: a filler word", _patched(c, 24 + 8 * 300, "<Q", 12345)),
        ("forged: a cached float normal", _patched(_patched(c, 5048, "<f", 0.25), 5052, "<B", 1)),
        ("forged: the normal flag", _patched(c, 5040, "<i", 1)),
        ("forged: position +1", _patched(c, 24 + 8 * 3, "<Q", 1001)),
    ]
    return out


STATES = _states()
REQUESTS = [(1, False), (4, True), (1000, False), (3, True)]


def _trackers():
    warm = gm.TORCH_TRACKER
    cold = gm._TorchStates()
    off = gm._TorchStates()
    off.CACHE = 0  # the core remembers nothing: every written state is read by its rebuild
    return {"warm": warm, "cold": cold, "off": off}


# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,raw", STATES, ids=[n for n, _ in STATES])
def test_each_state_maps_and_writes_as_documented(name, raw):
    for label, tracker in _trackers().items():
        g = _with_state(raw)
        state = _state_of(g)  # what torch keeps of it, i.e. what fastrand reads
        for n, two_words in REQUESTS:  # the first reads `state`, the others what it wrote
            seed, stream, pos = doc_position(state)
            got = tracker.reserve(g, n, two_words)
            assert got == (seed, stream, pos), (label, n, two_words)
            state = _state_of(g)
            assert state == doc_state(seed, stream, doc_end(pos, n, two_words)), (label, n)


def test_states_reach_every_rule():
    """The cases above are kept by torch as they are and cover the three rules (a check of the
    test itself)."""
    rules = set()
    for name, raw in STATES:
        kept = _state_of(_with_state(raw))
        assert kept == raw, name
        rules.add(doc_rule(kept)[0])
    assert rules == {1, 2, 3}


def test_written_states_are_the_documented_ones():
    for s, t, p in ((0, 0, 0), (U64 - 1, U64 - 1, U64 - 1), (12, R + 7, 2**40 + 3), (TAG, 5, M32)):
        assert gm._cpu_state(s, t, p) == doc_state(s, t, p)


def test_a_state_written_long_ago_continues():
    """A restored state the core no longer remembers (many draws since) is read by its rebuild
    and continues exactly."""
    g = torch.Generator().manual_seed(21)
    first = bits(fastrand.random_words(10, generator=g))
    saved = g.get_state()
    others = [torch.Generator().manual_seed(k) for k in range(8)]
    for _ in range(3 * gm.TORCH_TRACKER.CACHE):
        for h in others:
            fastrand.random_words(1, generator=h)
    g.set_state(saved)
    assert np.array_equal(first, ref_bits("words", 21, R, 0, 10))
    assert np.array_equal(
        bits(fastrand.random_words(6, generator=g)), ref_bits("words", 21, R, 10, 6)
    )


def test_core_refuses_bad_arguments():
    """The seeded state the core compares with (rule 1) must be 5056 bytes; a bad one is
    refused before anything is written, and the generator keeps its state."""
    g = torch.Generator().manual_seed(1)
    before = _state_of(g)
    for bad in (b"x" * 5055, "x" * 5056, bytearray(5056), 0, None):
        reader = _C.TorchCpuReader(
            4, torch.empty(5056, dtype=torch.uint8), lambda seed, bad=bad: bad, torch.Generator
        )
        with pytest.raises(ValueError, match="fresh"):
            reader.reserve(g, 1, False)
        assert _state_of(g) == before
    # the same reader with torch's seeded state: rule 1
    good = _C.TorchCpuReader(
        4, torch.empty(5056, dtype=torch.uint8), gm.TORCH_TRACKER._fresh_state, torch.Generator
    )
    assert good.reserve(g, 1, False) == (1, R, 0)


def test_a_forged_copy_of_a_remembered_state_is_foreign():
    """The core recognises a state it wrote by the whole state: a copy with any one word
    changed (here, one the header and the position words do not cover) is read by rule 3."""
    g = torch.Generator().manual_seed(13)
    fastrand.random_words(5, generator=g)  # the core now remembers this state
    written = _state_of(g)
    for at in (24 + 8 * 5, 24 + 8 * 623, 5052):
        forged = _patched(written, at, "<B", written[at] ^ 1)
        h = _with_state(forged)
        want = doc_position(_state_of(h))
        assert want[2] == 0 and want[1] > R
        assert gm.TORCH_TRACKER.reserve(h, 3, False) == want
        assert gm.TORCH_TRACKER.reserve(g, 1, False) == (13, R, 5)  # the original still reads
        g.set_state(torch.frombuffer(bytearray(written), dtype=torch.uint8))
