"""Scale and the ends of the position range.

* A CPU draw of more than 2^31 float16 values (about 4 GiB) equals the NumPy reference at its
  start, around every piece boundary of the compiled code's threads, across element 2^31 and
  position 2^31, at random places, and at its end; the generator advances by the element count.
* Draws near position 2^64 wrap as the spec says (section 2: the stream continues at position 0,
  and the generator's offset wraps with it), for every kind and dtype, including float64's
  even-start rule (section 5) and the multi-threaded compiled path.
"""

import gc
import random

import numpy as np
import pytest
import torch
from conftest import TORCH_DTYPES, bits

import fastrand
from fastrand import reference as ref

U64 = 1 << 64
KINDS = (
    [("normal", d) for d in TORCH_DTYPES]
    + [("uniform", d) for d in TORCH_DTYPES]
    + [("words", "uint32")]
)


def _mem_available_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / (1 << 20)  # kB -> GiB
    except OSError:
        pass
    return None


def _draw(kind, dtype, n, gen):
    if kind == "normal":
        return fastrand.randn(n, generator=gen, dtype=TORCH_DTYPES[dtype])
    if kind == "uniform":
        return fastrand.rand(n, generator=gen, dtype=TORCH_DTYPES[dtype])
    dt = torch.uint32 if (dtype == "uint32" and hasattr(torch, "uint32")) else torch.int32
    return fastrand.random_words(n, generator=gen, dtype=dt)


def _ref(kind, dtype, seed, stream, offset, n):
    if kind == "normal":
        return bits(ref.normal(seed, stream, offset, n, dtype))
    if kind == "uniform":
        return bits(ref.uniform(seed, stream, offset, n, dtype))
    return bits(ref.words(seed, stream, offset, n))


def _piece_boundaries(n, max_threads=8):
    """Where csrc/cpu/cpu.cpp splits a request between threads (pieces of multiples of 64)."""
    out = set()
    for t in range(2, max_threads + 1):
        piece = ((n + t - 1) // t + 63) & ~63
        out.update(k * piece for k in range(1, t) if k * piece < n)
    return sorted(out)


BIG_N = (1 << 31) + 8


def test_more_than_2_31_float16_values():
    avail = _mem_available_gib()
    if avail is None or avail < 10:
        pytest.skip(
            f"needs 10 GiB of available memory for a 4 GiB tensor, "
            f"/proc/meminfo MemAvailable says {avail if avail is None else round(avail, 1)}"
            " GiB"
        )
    seed, stream, offset = 3, 0, 5
    gen = fastrand.Generator(seed, offset=offset)
    big = fastrand.randn(BIG_N, generator=gen, dtype=torch.float16)
    try:
        assert big.shape == (BIG_N,) and big.dtype == torch.float16
        assert gen.get_offset() == offset + BIG_N
        flat = big.view(torch.int16)
        k = 64
        starts = {
            0,
            BIG_N - k,
            (1 << 31) - k // 2,
            (1 << 31) - offset - k // 2,
            (1 << 30) - k // 2,
            (1 << 31) - 1 - k // 2,
        }
        starts.update(b - k // 2 for b in _piece_boundaries(BIG_N))
        rng = random.Random(31)
        starts.update(rng.randrange(BIG_N - k) for _ in range(24))
        for s in sorted(starts):
            s = min(max(s, 0), BIG_N - k)
            got = flat[s : s + k].numpy().view(np.uint16)
            want = bits(ref.normal(seed, stream, offset + s, k, "float16"))
            assert np.array_equal(got, want), f"window at element {s}"
        # the last element sits at position offset + 2^31 + 7
        last = flat[BIG_N - 1 :].numpy().view(np.uint16)
        assert np.array_equal(
            last, bits(ref.normal(seed, stream, offset + BIG_N - 1, 1, "float16"))
        )
        # nothing was left unwritten (fresh pages read as zeros): every +-0 of the tensor must
        # be a +-0 of the reference (about 50 are expected: |N| < 2^-25 rounds to zero)
        zeros = []
        chunk = 1 << 27
        for c in range(0, BIG_N, chunk):
            hit = torch.nonzero((flat[c : c + chunk] & 0x7FFF) == 0).flatten()
            zeros.extend(int(i) + c for i in hit)
        assert len(zeros) < 1000, len(zeros)
        for i in zeros:
            want = bits(ref.normal(seed, stream, offset + i, 1, "float16"))
            assert int(want[0]) & 0x7FFF == 0, f"element {i} is 0, the stream has {want[0]:#x}"
    finally:
        del big, flat
        gc.collect()


@pytest.mark.parametrize("kind,dtype", KINDS)
def test_draws_straddling_2_64_wrap(kind, dtype):
    seed, stream = 0x9ABCDEF012345678, 1 << 63
    two = dtype == "float64"
    for back in range(1, 10):
        for n in (1, 2, 3, 8, 17):
            o = U64 - back
            g = fastrand.Generator(seed, stream=stream, offset=o)
            got = bits(_draw(kind, dtype, n, g)).ravel()
            assert np.array_equal(got, _ref(kind, dtype, seed, stream, o, n)), (o, n)
            # the offset wraps with the draw (section 2; float64 per section 5)
            start = (o + (o & 1)) % U64 if two else o
            want_next = (start + (2 * n if two else n)) % U64
            assert g.get_offset() == want_next
            assert want_next == ref.next_offset(o, n, "uint32" if kind == "words" else dtype)


@pytest.mark.parametrize("kind,dtype", KINDS)
def test_wrap_continues_at_position_0_of_the_same_stream(kind, dtype):
    """A draw across 2^64 equals the draw up to 2^64 followed by a draw from position 0."""
    seed, stream = 12345, 7
    two = dtype == "float64"
    per = 2 if two else 1
    before = 4  # values before the wrap
    g = fastrand.Generator(seed, stream=stream, offset=U64 - per * before)
    whole = bits(_draw(kind, dtype, 10, g)).ravel()
    assert g.get_offset() == per * 6
    head = bits(
        _draw(
            kind, dtype, before, fastrand.Generator(seed, stream=stream, offset=U64 - per * before)
        )
    )
    tail = bits(_draw(kind, dtype, 6, fastrand.Generator(seed, stream=stream, offset=0)))
    assert np.array_equal(whole, np.concatenate([head.ravel(), tail.ravel()]))
    # and consecutive draws concatenate across the wrap
    g = fastrand.Generator(seed, stream=stream, offset=U64 - per * before)
    parts = [bits(_draw(kind, dtype, m, g)).ravel() for m in (3, 1, 2, 4)]
    assert np.array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("o", [U64 - 1, U64 - 3])
def test_float64_even_start_at_the_wrap(o):
    """float64 at an odd offset starts at the next even position, modulo 2^64."""
    seed = 99
    start = (o + 1) % U64
    for fn in (
        lambda g: fastrand.randn(3, generator=g, dtype=torch.float64),
        lambda g: fastrand.rand(3, generator=g, dtype=torch.float64),
    ):
        g = fastrand.Generator(seed, offset=o)
        got = bits(fn(g))
        g_even = fastrand.Generator(seed, offset=start)
        assert np.array_equal(got, bits(fn(g_even)))
        assert g.get_offset() == g_even.get_offset() == (start + 6) % U64
    # n = 0 still moves an odd offset to the next even position
    g = fastrand.Generator(seed, offset=o)
    assert fastrand.randn(0, generator=g, dtype=torch.float64).numel() == 0
    assert g.get_offset() == start


@pytest.mark.parametrize("kind,dtype", KINDS)
def test_multithreaded_draw_across_the_wrap(kind, dtype, num_threads):
    """Large enough for the compiled code's threads, and straddling 2^64."""
    seed, stream = 0xFEEDFACECAFEBEEF, 3
    n = (1 << 17) + 5
    o = U64 - (1 << 16) - 3
    want = _ref(kind, dtype, seed, stream, o, n)
    for threads in (1, 2, 3):
        num_threads(threads)
        g = fastrand.Generator(seed, stream=stream, offset=o)
        got = bits(_draw(kind, dtype, n, g)).ravel()
        assert np.array_equal(got, want), threads
        assert g.get_offset() == ref.next_offset(o, n, "uint32" if kind == "words" else dtype)


def test_lists_of_generators_near_the_wrap():
    gens = [fastrand.Generator(s, offset=U64 - 3) for s in (1, 2)]
    out = fastrand.randn_tensor((2, 5), generator=gens, dtype=torch.float64)
    for i, s in enumerate((1, 2)):
        assert np.array_equal(bits(out[i]), bits(ref.normal(s, 0, U64 - 3, 5, "float64")))
        assert gens[i].get_offset() == (U64 - 2 + 10) % U64
