"""A torch.Generator draw is a function of the generator's state (and device type) alone.

docs/torch-generators.md: right after manual_seed(s) a torch generator of any device stands at
fastrand (s, stream 2^63, offset 0); a fastrand draw writes back a state that encodes where it
ended, so copies, set_state restores, fork_rng, checkpoint recompute and pickles continue; any
other state draws at positions derived from the state. Philox (CUDA) generators are tested on
the CPU through `PhiloxGen`, a torch.Generator whose (seed, offset) state behaves like CUDA's
(set_offset refuses offsets that are not multiples of 4; torch ops reserve offsets in multiples
of 4); the real CUDA generator is tested at the end (skipped without a GPU).
"""

import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from conftest import bits, ref_bits

import fastrand
from fastrand import _generator as gm
from fastrand import reference as ref

U64 = 1 << 64
R = 1 << 63  # the stream of a torch generator's own sequence
HAS_CUDA = torch.cuda.is_available()


class PhiloxGen(torch.Generator):
    """A CPU stand-in for a CUDA generator: state (seed, offset), offsets multiples of 4."""

    def __init__(self, seed=0):
        super().__init__()
        self._seed, self._offset = seed % U64, 0

    @property
    def device(self):
        return torch.device("cuda")

    def manual_seed(self, seed):
        self._seed, self._offset = seed % U64, 0
        return self

    def initial_seed(self):
        return self._seed

    def get_offset(self):
        return self._offset

    def set_offset(self, offset):
        if not 0 <= offset < U64 or offset % 4:
            raise RuntimeError("offset must be a multiple of 4")
        self._offset = offset

    def torch_op(self, increment=4):
        """What a torch CUDA kernel does to the state: reserve `increment` offsets (a multiple
        of 4) per thread; returns the offset its threads start from."""
        start = self._offset
        self._offset = (start + (increment + 3) // 4 * 4) % U64
        return start

    def copy(self):
        h = PhiloxGen(self._seed)
        h._offset = self._offset
        return h


@pytest.fixture
def no_capture(monkeypatch):
    """PhiloxGen reports device cuda; on a machine without CUDA, torch cannot be asked whether
    a capture is under way, so answer for it: no."""
    if not HAS_CUDA:
        monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)


def _words(gen, n):
    return bits(fastrand.random_words(n, generator=gen))


def _mixed(gen):
    """A mixed sequence of draws from one generator, as bit arrays."""
    out = []
    for i, dt in enumerate((torch.float32, torch.float16, torch.float64, torch.bfloat16)):
        out.append(bits(fastrand.randn_tensor((3, i + 5), generator=gen, dtype=dt)))
        out.append(bits(fastrand.rand(7, generator=gen, dtype=dt)))
    out.append(bits(fastrand.random_words(9, generator=gen)))
    return out


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------------------------
# the mapping after manual_seed, on every device type
@pytest.mark.parametrize("seed", [0, 1, 12345, 2**63 + 17, -5])
def test_seeded_generators_draw_the_reserved_stream(seed, no_capture):
    want = _mixed(fastrand.Generator(seed, stream=R))
    assert _same(_mixed(torch.Generator().manual_seed(seed)), want)
    assert _same(_mixed(PhiloxGen().manual_seed(seed)), want)
    g = torch.Generator().manual_seed(seed)
    a, b = fastrand.randn(10, generator=g), fastrand.randn(6, generator=g)
    assert np.array_equal(bits(torch.cat([a, b])), ref_bits("normal", seed % U64, R, 0, 16))


@pytest.mark.parametrize("make", [lambda: torch.Generator(), PhiloxGen])
def test_n1_plus_n2_equals_one_draw(make, no_capture):
    for n1, n2 in [(1, 1), (3, 5), (7, 1000), (4099, 2)]:
        g = make().manual_seed(9)
        two = np.concatenate([_words(g, n1), _words(g, n2)])
        assert np.array_equal(two, _words(make().manual_seed(9), n1 + n2))
        g = make().manual_seed(9)
        a = bits(fastrand.randn(n1, generator=g, dtype=torch.float64))
        b = bits(fastrand.randn(n2, generator=g, dtype=torch.float64))
        whole = bits(fastrand.randn(n1 + n2, generator=make().manual_seed(9), dtype=torch.float64))
        assert np.array_equal(np.concatenate([a, b]), whole)


# --------------------------------------------------------------------------------------------
# reruns, restores and copies (these failed with the history-based tracker)
def test_rerun_after_reseed_and_torch_use_default_generator():
    def cell():
        torch.manual_seed(0)
        torch.nn.Linear(4, 4)  # torch's own use of the default generator
        return bits(fastrand.randn_tensor((4,)))

    assert np.array_equal(cell(), cell())


@pytest.mark.parametrize("make", [lambda: torch.Generator(), PhiloxGen])
def test_rerun_after_reseed_and_torch_use_explicit_generator(make, no_capture):
    g = make()

    def cell():
        g.manual_seed(7)
        if isinstance(g, PhiloxGen):
            g.torch_op(8)
        else:
            torch.randn(3, generator=g)
        return _words(g, 16), _words(g, 5)

    first, second = cell(), cell()
    assert _same(first, second)
    # and the torch use moved it off the seeded sequence
    assert not np.array_equal(first[0], _words(make().manual_seed(7), 16))


@pytest.mark.parametrize("make", [lambda: torch.Generator(), PhiloxGen])
def test_set_state_on_the_same_object_replays(make, no_capture):
    g = make().manual_seed(3)
    _words(g, 5)
    if isinstance(g, PhiloxGen):
        saved, restore = g.get_offset(), g.set_offset
    else:
        saved, restore = g.get_state(), g.set_state
    a = _mixed(g)
    restore(saved)
    assert _same(_mixed(g), a)
    restore(saved)
    assert _same(_mixed(g), a)


def test_checkpoint_recompute_gives_the_forward_noise():
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(1)
    x = torch.randn(64, requires_grad=True)
    noises = []

    def f(t):
        n = fastrand.randn_like(t)
        noises.append(n.detach().clone())
        return t * n

    y = checkpoint(f, x, use_reentrant=False)
    y.sum().backward()
    assert len(noises) == 2  # forward and recompute
    assert np.array_equal(bits(noises[1]), bits(noises[0]))
    assert np.array_equal(bits(x.grad), bits(noises[0]))  # d(x * n)/dx = n, bitwise


def test_fork_rng_restores():
    torch.manual_seed(5)
    fastrand.randn(3)
    with torch.random.fork_rng(devices=[]):
        inside = bits(fastrand.randn(8))
        torch.randn(2)
    after = bits(fastrand.randn(8))
    assert np.array_equal(inside, after)
    assert np.array_equal(after, ref_bits("normal", 5, R, 3, 8))


def test_history_of_other_generators_does_not_matter():
    seed = 98765

    def job():
        g = torch.Generator().manual_seed(seed)
        torch.empty((), dtype=torch.int64).random_(generator=g)  # torch's own use
        return _words(g, 8)

    alone = job()
    other = torch.Generator().manual_seed(seed)  # another generator, same seed, used first
    _words(other, 100)
    assert np.array_equal(job(), alone)


def test_copies_continue_deepcopy_set_state_pickle():
    import copy

    g = torch.Generator().manual_seed(5)
    _words(g, 4)
    h = torch.Generator()
    h.set_state(g.get_state())
    copies = [copy.deepcopy(g), pickle.loads(pickle.dumps(g)), h]
    want = ref_bits("words", 5, R, 4, 6)
    for c in copies:
        assert np.array_equal(_words(c, 6), want)
    assert np.array_equal(_words(g, 6), want)


def test_pickle_into_another_process_continues(tmp_path):
    g = torch.Generator().manual_seed(11)
    first = _words(g, 7)
    path = tmp_path / "g.pkl"
    path.write_bytes(pickle.dumps(g))
    code = (
        "import pickle, sys, numpy as np, torch, fastrand\n"
        f"g = pickle.loads(open({str(path)!r}, 'rb').read())\n"
        "w = fastrand.random_words(5, generator=g).numpy().view(np.uint32)\n"
        "print(','.join(str(int(v)) for v in w))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()
    got = np.array([int(v) for v in out.split(",")], dtype=np.uint32)
    assert np.array_equal(first, ref_bits("words", 11, R, 0, 7))
    assert np.array_equal(got, ref_bits("words", 11, R, 7, 5))


def test_meta_default_device():
    before = torch.get_default_device()
    try:
        torch.set_default_device("meta")
        g = torch.Generator().manual_seed(2)
        a = fastrand.randn(5, generator=g, device="cpu")
        h = torch.Generator()  # a copy made under the meta default device continues
        h.set_state(g.get_state())
        b = fastrand.randn(5, generator=g, device="cpu")
        c = fastrand.randn(5, generator=h, device="cpu")
    finally:
        torch.set_default_device(before)
    assert a.device.type == "cpu"
    assert np.array_equal(bits(c), bits(b)) and not np.array_equal(bits(c), bits(a))
    assert np.array_equal(bits(torch.cat([a, b])), ref_bits("normal", 2, R, 0, 10))


# --------------------------------------------------------------------------------------------
# states torch touched: deterministic, distinct, never repeating a draw
def test_cpu_torch_touched_state_draws_a_hashed_stream():
    g = torch.Generator().manual_seed(4)
    torch.randn(5, generator=g)
    raw = g.get_state().numpy().tobytes()
    import hashlib

    h = int.from_bytes(
        hashlib.blake2b(raw, digest_size=8, person=b"fastrand-torch", salt=b"cpu").digest(),
        "little",
    )
    assert np.array_equal(_words(g, 6), ref_bits("words", 4, R | (h >> 1), 0, 6))
    assert np.array_equal(_words(g, 3), ref_bits("words", 4, R | (h >> 1), 6, 3))


@pytest.mark.parametrize("make", [lambda: torch.Generator(), PhiloxGen])
def test_interleaved_torch_use_never_repeats_within_a_run(make, no_capture):
    g = make().manual_seed(0)
    seen = [_words(g, 300)]
    for k in range(40):
        if isinstance(g, PhiloxGen):
            g.torch_op(4 * (1 + k % 3))
        else:
            torch.randn(1 + k % 3, generator=g)
        seen.append(_words(g, 300))
        seen.append(_words(g, 1 + k))  # a continuation without torch use in between
    allw = np.concatenate(seen)
    assert len(np.unique(allw)) == allw.size


@pytest.mark.parametrize("make", [lambda: torch.Generator(), PhiloxGen])
def test_different_states_draw_disjoint_noise(make, no_capture):
    """Histories that differ in torch's use reach different states, whose draws never share a
    window (nor with the seeded sequence)."""
    draws, states = [_words(make().manual_seed(1), 2000)], set()
    for first in (0, 50):
        for steps in range(1, 6):
            for size in (1, 2, 7, 100):
                g = make().manual_seed(1)
                if first:
                    _words(g, first)
                for _ in range(steps):
                    if isinstance(g, PhiloxGen):
                        g.torch_op(4 * size)
                    else:
                        torch.randn(size, generator=g)
                # (torch reaches some states by two paths, e.g. randn(1) twice and randn(2):
                # the same state must give the same noise, tested elsewhere)
                st = g.get_offset() if isinstance(g, PhiloxGen) else g.get_state().numpy().tobytes()
                if st not in states:
                    states.add(st)
                    draws.append(_words(g, 200))
    assert len(states) >= 25
    allw = np.concatenate(draws)
    assert len(np.unique(allw)) == allw.size


def test_cpu_state_after_a_draw_serves_torch():
    """The state a draw writes is a valid mt19937 state: torch draws from it, deterministically,
    and different positions give torch different numbers."""
    outs = []
    for n in (1, 2):
        g = torch.Generator().manual_seed(6)
        _words(g, n)
        assert g.initial_seed() == 6
        outs.append(torch.randn(1000, generator=g))
        g2 = torch.Generator().manual_seed(6)
        _words(g2, n)
        assert torch.equal(torch.randn(1000, generator=g2), outs[-1])
    assert not torch.equal(outs[0], outs[1])
    assert abs(float(outs[0].mean())) < 0.15 and 0.85 < float(outs[0].std()) < 1.15


def test_cpu_state_layout_from_the_reference():
    """The state a draw writes, built here from the documented layout and the NumPy reference:
    torch's header with left = 1, next = 0; words 0-4 the tag and (stream, position) halves;
    words 5-623 the reference words of a blake2b-keyed stream; no cached normals."""
    import hashlib
    import struct

    seed, stream, pos = 2**64 - 3, R + 0x123456789, 2**40 + 7
    key = int.from_bytes(
        hashlib.blake2b(
            struct.pack("<QQQ", seed, stream, pos),
            digest_size=8,
            person=b"fastrand-torch",
            salt=b"cpu-fill",
        ).digest(),
        "little",
    )
    words = [0x46524731, stream & 0xFFFFFFFF, stream >> 32, pos & 0xFFFFFFFF, pos >> 32]
    words += [int(w) for w in ref.words(key, 0, 0, 619)]
    want = struct.pack("<QiiQ", seed, 1, 1, 0) + struct.pack("<624Q", *words) + bytes(40)
    assert gm._cpu_state(seed, stream, pos) == want
    g = torch.Generator().manual_seed(seed)
    g.set_state(torch.frombuffer(bytearray(want), dtype=torch.uint8))
    assert g.get_state().numpy().tobytes() == want  # torch keeps it as it is
    assert np.array_equal(_words(g, 3), ref_bits("words", seed, stream, pos, 3))


def test_cpu_wrapped_positions_continue():
    """The CPU state carries full 64-bit positions: a chain that wraps modulo 2^64 goes on."""
    g = torch.Generator().manual_seed(8)
    g.set_state(torch.frombuffer(bytearray(gm._cpu_state(8, R + 5, U64 - 3)), dtype=torch.uint8))
    a = _words(g, 5)
    assert np.array_equal(a, ref_bits("words", 8, R + 5, U64 - 3, 5))
    assert np.array_equal(_words(g, 2), ref_bits("words", 8, R + 5, 2, 2))


def test_cpu_forged_state_is_not_taken_for_a_draw():
    """A state whose words claim a position but whose other words differ is read as a foreign
    state (hashed stream, position 0)."""
    raw = bytearray(gm._cpu_state(3, R, 1000))
    raw[24 + 8 * 100] ^= 1
    g = torch.Generator().manual_seed(3)
    g.set_state(torch.frombuffer(raw, dtype=torch.uint8))
    assert not np.array_equal(_words(g, 4), ref_bits("words", 3, R, 1000, 4))


# --------------------------------------------------------------------------------------------
# Philox generators: the offset is the carrier
def test_philox_offsets_stay_in_torch_units(no_capture):
    """Offsets fastrand writes are multiples of 4 in [2^62, 2^63): a positive int64, as
    torch.cuda.get_rng_state() shows it (bit 63 once made it negative there)."""
    g = PhiloxGen().manual_seed(2)
    for n in (1, 3, 1000):
        _words(g, n)
        off = g.get_offset()
        assert off % 4 == 0 and 1 << 62 <= off < 1 << 63
    # the positions drawn are the documented ones: consecutive draws concatenate
    g = PhiloxGen().manual_seed(5)
    a, b = _words(g, 3), _words(g, 5)
    assert np.array_equal(np.concatenate([a, b]), ref_bits("words", 5, R, 0, 8))


def test_philox_torch_use_starts_a_new_generation_past_the_cursor(no_capture):
    g = PhiloxGen().manual_seed(2)
    _words(g, 100)
    g.torch_op(12)
    off = g.get_offset()
    gen, pos = gm._px_position(2, off)
    assert gen == 1 and 100 < pos <= 100 + (1 << 24)
    assert np.array_equal(_words(g, 4), ref_bits("words", 2, R + 1, pos, 4))


def test_philox_cursor_overflow_moves_on(no_capture):
    g = PhiloxGen().manual_seed(2)
    g.set_offset(gm._px_encode(2, 0, (1 << 41) - 3))
    a = _words(g, 5)
    assert np.array_equal(a, ref_bits("words", 2, R, (1 << 41) - 3, 5))
    gen, pos = gm._px_position(2, g.get_offset())
    assert gen == 1 and pos < 1 << 40
    assert np.array_equal(_words(g, 3), ref_bits("words", 2, R + 1, pos, 3))


def test_philox_fastrand_and_torch_blocks_are_disjoint(no_capture):
    """Blocks fastrand reads: (stream >= 2^63, block). Blocks a torch kernel reads after it:
    (subsequence = thread index < 2^40, blocks from the offset it reserved)."""
    g = PhiloxGen().manual_seed(3)
    n = 1000
    got = _words(g, n)
    assert np.array_equal(got, ref_bits("words", 3, R, 0, n))
    fast_blocks = {(R, b) for b in range(0, (n + 3) // 4)}
    start = g.torch_op(4 * 3)
    torch_blocks = {(t, start // 4 + k) for t in (0, 1, 2**40 - 1) for k in range(3)}
    assert not fast_blocks & torch_blocks
    assert all(s >= R for s, _ in fast_blocks) and all(t < 1 << 40 for t, _ in torch_blocks)


@pytest.mark.parametrize("which", ["cpu", "philox"])
def test_threads_sharing_a_torch_generator_tile(which, no_capture):
    g = torch.Generator().manual_seed(21) if which == "cpu" else PhiloxGen().manual_seed(21)
    sizes = [37, 1000, 5, 4096, 3, 250, 77, 1]
    results, errors = [], []
    barrier = threading.Barrier(8)

    def work(i):
        try:
            barrier.wait()
            for _ in range(15):
                results.append(_words(g, sizes[i]))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    total = 15 * sum(sizes)
    got = np.sort(np.concatenate(results))
    assert np.array_equal(got, np.sort(ref_bits("words", 21, R, 0, total)))
    assert np.array_equal(_words(g, 3), ref_bits("words", 21, R, total, 3))


def test_capture_refused_with_a_pointer_to_cuda_graph_generator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    g = PhiloxGen().manual_seed(4)
    with pytest.raises(ValueError, match="generator.*CudaGraphGenerator"):
        fastrand.randn(8, generator=g)
    assert g.get_offset() == 0  # the refused call advanced nothing
    cpu = torch.Generator().manual_seed(4)  # a CPU generator's state is no CUDA state
    assert np.array_equal(_words(cpu, 3), ref_bits("words", 4, R, 0, 3))


def test_capture_refused_in_a_list_before_any_row_draws(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    first, cpu = fastrand.Generator(1), torch.Generator().manual_seed(2)
    cpu_state = cpu.get_state().clone()
    g = PhiloxGen().manual_seed(4)
    with pytest.raises(ValueError, match="generator.*CudaGraphGenerator"):
        fastrand.randn_tensor((3, 2), generator=[first, cpu, g])
    assert first.get_offset() == 0 and g.get_offset() == 0  # no row drew
    assert torch.equal(cpu.get_state(), cpu_state)


def test_generator_without_offset_is_refused():
    class NoOffset(torch.Generator):
        @property
        def device(self):
            return torch.device("xpu")

        def get_offset(self):
            raise RuntimeError("no offset")

    with pytest.raises(ValueError, match="generator"):
        fastrand.randn(2, generator=NoOffset())


# --------------------------------------------------------------------------------------------
# the real CUDA generator (skipped without a GPU)
cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")


@cuda
def test_cuda_generator_equals_cpu_generator_and_continues():
    want = _mixed(torch.Generator().manual_seed(31))
    assert _same(_mixed(torch.Generator("cuda").manual_seed(31)), want)
    g = torch.Generator("cuda").manual_seed(31)
    _words(g, 10)
    off = g.get_offset()
    h = torch.Generator("cuda")
    h.set_state(g.get_state())
    assert h.get_offset() == off
    assert np.array_equal(_words(h, 4), ref_bits("words", 31, R, 10, 4))
    g.set_offset(off)
    assert np.array_equal(_words(g, 4), ref_bits("words", 31, R, 10, 4))


@cuda
def test_cuda_fastrand_draw_then_torch_randn_share_no_philox_block():
    """torch's CUDA kernels read Philox counters (block = offset / 4 + k, subsequence = thread
    index) under key = seed; fastrand's draws on the same generator read (block, stream) with
    stream >= 2^63. Both sets are computed from the reference, then compared."""
    seed, n = 5, 4096
    g = torch.Generator("cuda").manual_seed(seed)
    got = fastrand.random_words(n, generator=g, device="cuda")
    assert np.array_equal(bits(got), ref_bits("words", seed, R, 0, n))
    fast = {(R, b) for b in range((n + 3) // 4)}  # (stream, block) fastrand read
    # torch's own draws right after: element i < 256 of an int32 random_ is thread i's first
    # word, i.e. the reference word at (seed, stream i, position = the offset torch reserved)
    before = g.get_offset()
    t = torch.empty(1 << 16, dtype=torch.int32, device="cuda").random_(generator=g)
    x = torch.randn(1 << 20, generator=g, device="cuda")
    after = g.get_offset()
    first = bits(t[:256])
    want = np.array([ref.words(seed, i, before, 1)[0] & 0x7FFFFFFF for i in range(256)])
    assert np.array_equal(first.astype(np.int64), want.astype(np.int64))
    threads = (1 << 16) + (1 << 20)  # no more threads than elements
    torch_streams = range(threads)
    torch_blocks = range(before // 4, after // 4 + 1)
    assert not any(s in torch_streams and b in torch_blocks for s, b in fast)
    assert min(s for s, _ in fast) >= R and threads < 1 << 40
    assert torch.isfinite(x).all()
    # the next fastrand draw comes from the state torch left
    gen, pos = gm._px_position(seed, g.get_offset())
    nxt = bits(fastrand.random_words(4, generator=g))
    assert np.array_equal(nxt, ref_bits("words", seed, R + gen, pos, 4))


@cuda
def test_cuda_generator_in_capture_is_refused():
    g = torch.Generator("cuda").manual_seed(6)
    static = torch.empty(8, device="cuda")
    fastrand.randn(8, device="cuda", generator=fastrand.Generator(0))  # warm up outside
    graph = torch.cuda.CUDAGraph()
    err = None
    with torch.cuda.graph(graph):
        static.zero_()  # something to capture
        try:
            static.copy_(fastrand.randn(8, generator=g, device="cuda"))
        except ValueError as e:
            err = e
    assert err is not None and "CudaGraphGenerator" in str(err)
    assert g.get_offset() == 0
    assert np.array_equal(_words(g, 3), ref_bits("words", 6, R, 0, 3))


@cuda
def test_cuda_default_device_cpu_generator():
    """Internal allocations do not follow torch.set_default_device."""
    before = torch.get_default_device()
    try:
        torch.set_default_device("cuda")
        g = torch.Generator(device="cpu").manual_seed(2)
        a = fastrand.randn(5, generator=g, device="cpu")
        h = torch.Generator(device="cpu")
        h.set_state(g.get_state())
        b = fastrand.randn(5, generator=g, device="cpu")
        c = fastrand.randn(5, generator=h, device="cpu")
    finally:
        torch.set_default_device(before)
    assert np.array_equal(bits(c), bits(b))
    assert np.array_equal(bits(torch.cat([a, b])), ref_bits("normal", 2, R, 0, 10))


def test_reference_is_independent():
    """The expectations above come from the NumPy reference at stream 2^63."""
    assert np.array_equal(
        ref_bits("words", 0, R, 0, 4), bits(ref.words(0, R, 0, 4))
    ) and not np.array_equal(ref_bits("words", 0, R, 0, 4), ref_bits("words", 0, 0, 0, 4))


# ---- the compiled reader of CPU generators (_C.TorchCpuReader) -----------------------------
class _StateOnly:
    """Not a torch.Generator: get_state/set_state only, as the reader calls them."""

    def __init__(self, state, on_get=None):
        self.state, self.on_get, self.written = state, on_get, None

    def get_state(self):
        if self.on_get is not None:
            self.on_get()
        return self.state

    def set_state(self, s):
        self.written = s.clone()


def _reader():
    buf = torch.empty(5056, dtype=torch.uint8)
    return fastrand._C.TorchCpuReader(4, buf, gm.TORCH_TRACKER._fresh_state, torch.Generator)


def test_reader_draws_what_the_document_says():
    """get_state, the read, the write, set_state in one call: a seeded generator draws at
    (s, 2^63, 0), then goes on where the draw ended, as a fresh reader sees it too."""
    r = _reader()
    g = torch.Generator().manual_seed(77)
    assert r.reserve(g, 5, False) == (77, R, 0)
    # float64 reads from the first even position at or after 5, and ends at 6 + 2 * 3
    assert r.reserve(g, 3, True) == (77, R, 5)
    assert _reader().reserve(g, 1, False) == (77, R, 12)
    assert gm.TORCH_TRACKER.reserve(g, 1, False) == (77, R, 13)


def test_reader_refuses_a_state_of_another_layout():
    r = _reader()
    with pytest.raises(ValueError, match=r"generator: .*16 bytes, not the 5056"):
        r.reserve(_StateOnly(torch.zeros(16, dtype=torch.uint8)), 1, False)
    with pytest.raises(ValueError, match="5056"):
        fastrand._C.TorchCpuReader(
            4, torch.empty(16, dtype=torch.uint8), lambda s: b"", torch.Generator
        )
    # a state of 5056 elements that is not 5056 bytes of its own: never read past its memory
    good = torch.Generator().manual_seed(3).get_state()
    for bad in (
        torch.zeros(1, dtype=torch.uint8).expand(5056),  # one byte of memory
        torch.zeros(2 * 5056, dtype=torch.uint8)[::2],
        good.to(torch.int32),
        good.numpy(),
        bytes(good.numpy()),
    ):
        with pytest.raises(ValueError, match="generator: get_state.. returned"):
            r.reserve(_StateOnly(bad), 1, False)
    # the reader still works (its lock was released)
    assert r.reserve(torch.Generator().manual_seed(3), 1, False) == (3, R, 0)


def test_reader_refuses_a_draw_inside_a_draw_instead_of_hanging():
    """A draw that starts on the thread already drawing (a finalizer, a get_state hook) is an
    error: the reader's lock is not re-entrant, and waiting for it would never end."""
    code = """
import torch, fastrand
from fastrand import _generator as gm
r = gm.TORCH_TRACKER.cpu_reader()
inner = torch.Generator().manual_seed(1)
errors = []
class Hooked:
    def get_state(self):
        try:
            r.reserve(inner, 1, False)
        except RuntimeError as e:
            errors.append(str(e))
        return torch.Generator().manual_seed(2).get_state()
    def set_state(self, s):
        pass
assert r.reserve(Hooked(), 4, False) == (2, 1 << 63, 0)
assert len(errors) == 1 and "inside another one" in errors[0], errors
assert r.reserve(inner, 1, False) == (1, 1 << 63, 0)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_reader_threads_wait_for_each_other():
    """Threads drawing from one CPU generator through the reader (randn_tensor's cached call)
    take disjoint, consecutive positions: the lock covers get_state .. set_state."""
    g = torch.Generator().manual_seed(9)
    starts, lock = [], threading.Lock()

    def work():
        for _ in range(200):
            x = fastrand.randn_tensor((1, 7), generator=g, dtype=torch.float32)
            got = bits(x).reshape(7)
            with lock:
                starts.append(got)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    want = ref_bits("normal", 9, R, 0, 7 * 800).reshape(800, 7)
    got = np.stack(starts)
    # every draw is one of the 800 consecutive 7-value pieces, and each piece is drawn once
    order = sorted(range(800), key=lambda i: got[i].tobytes())
    ref_order = sorted(range(800), key=lambda i: want[i].tobytes())
    assert np.array_equal(got[order], want[ref_order])
    assert gm.TORCH_TRACKER.reserve(g, 1, False) == (9, R, 7 * 800)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork")
def test_forked_child_gets_a_new_reader():
    code = """
import os, torch, fastrand
from fastrand import _generator as gm
g = torch.Generator().manual_seed(4)
fastrand.randn_tensor((3,), generator=g, dtype=torch.float32)
parent = gm.TORCH_TRACKER._cpu
pid = os.fork()
if pid == 0:
    ok = gm.TORCH_TRACKER._cpu is None
    ok = ok and gm.TORCH_TRACKER.reserve(g, 2, False) == (4, 1 << 63, 3)
    ok = ok and gm.TORCH_TRACKER._cpu is not parent
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "0", out.stderr


def test_a_generators_device_is_asked_once_and_forgotten_with_it():
    import gc

    from fastrand import _sources

    g = torch.Generator().manual_seed(1)
    fastrand.randn_tensor((2,), generator=g, dtype=torch.float32)
    key = id(g)
    assert _sources._CPU_GENERATORS[key][1] is True
    del g
    gc.collect()
    assert key not in _sources._CPU_GENERATORS
    # a stand-in CUDA generator (PhiloxGen) goes to the Philox reader, not the CPU one
    p = PhiloxGen().manual_seed(5)
    assert _sources._on_cpu(p) is False
    assert _sources.direct_reserve(p).func == gm.TORCH_TRACKER.reserve


def test_randn_tensor_without_dtype_follows_the_default_dtype():
    """randn_tensor(dtype=None) is served from its cache of checked calls, which must follow
    torch.set_default_dtype between calls."""
    g = fastrand.Generator(11)
    for _ in range(3):
        a = fastrand.randn_tensor((2, 3), generator=g)
    assert a.dtype == torch.float32
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        h = fastrand.Generator(11)
        b = fastrand.randn_tensor((2, 3), generator=h)
        assert b.dtype == torch.float64
        assert np.array_equal(bits(b).ravel(), ref_bits("normal", 11, 0, 0, 6, "float64"))
        c = fastrand.randn_tensor((2, 3), generator=h)  # now cached under float64
        assert np.array_equal(bits(c).ravel(), ref_bits("normal", 11, 0, 12, 6, "float64"))
    finally:
        torch.set_default_dtype(old)
    d = fastrand.randn_tensor((2, 3), generator=fastrand.Generator(11))
    assert d.dtype == torch.float32
    assert np.array_equal(bits(d).ravel(), ref_bits("normal", 11, 0, 0, 6))


def test_compiled_philox_mapping_equals_the_python_one():
    """The compiled core's Philox read and write (_C.torch_philox_draw) against the mapping
    written out in Python (_px_position, _px_after): seeded, written, touched by torch (small
    and large increments), foreign and wrapping states, both value widths."""
    import random

    rnd = random.Random(5)
    cursor_max = (1 << 41) - 1
    seeds = [0, 1, 2**63, U64 - 1] + [rnd.getrandbits(64) for _ in range(20)]
    cases = 0
    for seed in seeds:
        offsets = [0, 4, 1 << 62, (1 << 62) | 3, U64 - 4, rnd.getrandbits(64) & ~3]
        for generation in range(8):
            for cursor in (0, 1, 12345, cursor_max - 2, cursor_max):
                written = gm._px_encode(seed, generation, cursor)
                offsets += [written, written + 4, written + (1 << 17), written + (1 << 20)]
        for offset in offsets:
            for n, two in ((0, False), (1, False), (5, True), (1 << 20, False), (3, True)):
                generation, pos = gm._px_position(seed, offset)
                end = gm.next_offset(pos, n, two)
                want = (generation, pos, gm._px_after(seed, generation, end))
                assert fastrand._C.torch_philox_draw(seed, offset, n, two) == want
                cases += 1
    assert cases > 5000
    # rules 2, 3 and 4 and the wrap were all met
    assert gm._px_position(0, gm._px_encode(0, 3, 7)) == (3, 7)
    assert gm._px_position(0, gm._px_encode(0, 3, 7) + 4)[0] == 4
    assert fastrand._C.torch_philox_draw(0, gm._px_encode(0, 7, cursor_max), 2, False)[2] >> 59 == (
        (1 << 3) | 1
    )
