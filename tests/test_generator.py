"""The generator contract: fastrand.Generator, torch.Generator, reseeding, threads."""

import copy
import pickle
import threading

import numpy as np
import pytest
import torch
from conftest import bits, ref_bits

import fastrand

U64 = 1 << 64
R = 1 << 63  # the stream of a torch generator's own sequence (docs/torch-generators.md)
SHAPE = (2, 4, 8, 8)


def _sequence(gen, dtypes=(torch.float32, torch.float16, torch.float64, torch.bfloat16)):
    """A mixed sequence of draws from one generator, as bit arrays."""
    out = []
    for i, dt in enumerate(dtypes):
        out.append(bits(fastrand.randn_tensor((3, i + 5), generator=gen, dtype=dt)))
        out.append(bits(fastrand.rand(7, generator=gen, dtype=dt)))
    out.append(bits(fastrand.random_words(9, generator=gen)))
    return out


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_generator_and_torch_cpu_generator_agree():
    for seed in (0, 1, 12345, 2**63 + 17):
        assert _same(
            _sequence(fastrand.Generator(seed, stream=R)),
            _sequence(torch.Generator().manual_seed(seed)),
        )
        # the torch mapping is not stream 0 (torch's own Philox subsequences are small)
        assert not _same(
            _sequence(fastrand.Generator(seed)), _sequence(torch.Generator().manual_seed(seed))
        )


def test_draws_match_reference_positions():
    g = torch.Generator().manual_seed(42)
    a = fastrand.randn(10, generator=g)
    b = fastrand.randn(6, generator=g)
    c = fastrand.randn(3, generator=g, dtype=torch.float64)
    assert np.array_equal(bits(a), ref_bits("normal", 42, R, 0, 10))
    assert np.array_equal(bits(b), ref_bits("normal", 42, R, 10, 6))
    assert np.array_equal(bits(c), ref_bits("normal", 42, R, 16, 3, "float64"))


def test_reseeding_restarts():
    a = fastrand.randn_tensor(SHAPE, generator=torch.manual_seed(0))
    b = fastrand.randn_tensor(SHAPE, generator=torch.manual_seed(0))
    assert np.array_equal(bits(a), bits(b))
    assert np.array_equal(
        bits(a), bits(fastrand.randn_tensor(SHAPE, generator=fastrand.Generator(0, stream=R)))
    )
    g = torch.Generator().manual_seed(3)
    first = [bits(fastrand.randn(5, generator=g)) for _ in range(3)]
    g.manual_seed(3)
    again = [bits(fastrand.randn(5, generator=g)) for _ in range(3)]
    assert _same(first, again)
    f = fastrand.Generator(3, stream=R)
    fastrand.randn(100, generator=f)
    assert np.array_equal(bits(fastrand.randn(5, generator=f.manual_seed(3))), first[0])


def test_default_generator_is_torch_default():
    torch.manual_seed(11)
    a = fastrand.randn_tensor(SHAPE)
    b = fastrand.randn_tensor(SHAPE)
    torch.manual_seed(11)
    a2 = fastrand.randn_tensor(SHAPE)
    assert np.array_equal(bits(a), bits(a2))
    assert not np.array_equal(bits(a), bits(b))
    g = fastrand.Generator(11, stream=R)
    assert np.array_equal(bits(a), bits(fastrand.randn_tensor(SHAPE, generator=g)))
    assert np.array_equal(bits(b), bits(fastrand.randn_tensor(SHAPE, generator=g)))


def test_torch_ops_in_between_never_repeat():
    g = torch.Generator().manual_seed(0)
    seen = [bits(fastrand.random_words(300, generator=g))]
    for _ in range(4):
        torch.randn(3, generator=g)  # torch's own use of the generator
        seen.append(bits(fastrand.random_words(300, generator=g)))
    allw = np.concatenate(seen)
    assert len(np.unique(allw)) == allw.size  # 1500 distinct words: no window drawn twice


def test_torch_ops_in_between_are_deterministic():
    """The same history of torch and fastrand draws gives the same noise (e.g. in a new process)."""

    def run():
        g = torch.Generator().manual_seed(8)
        out = [bits(fastrand.randn(4, generator=g))]
        torch.rand(2, generator=g)
        out.append(bits(fastrand.randn(4, generator=g)))
        out.append(bits(fastrand.randn(4, generator=g)))
        return out

    a, b = run(), run()
    assert _same(a, b)
    assert np.array_equal(a[0], ref_bits("normal", 8, R, 0, 4))
    # after torch's use: off the seeded sequence, and the two draws are one draw of 8
    g = torch.Generator().manual_seed(8)
    fastrand.randn(4, generator=g)
    torch.rand(2, generator=g)
    assert np.array_equal(np.concatenate(a[1:]), bits(fastrand.randn(8, generator=g)))
    assert not np.array_equal(a[1], ref_bits("normal", 8, R, 4, 4))


def test_reseed_after_draws_restarts_even_from_the_same_state():
    g = torch.Generator().manual_seed(4)
    a = bits(fastrand.randn(6, generator=g))
    g.manual_seed(4)
    assert np.array_equal(bits(fastrand.randn(6, generator=g)), a)
    torch.randn(5, generator=g)  # torch's use after the reseed
    copy_ = torch.Generator()
    copy_.set_state(g.get_state())
    b = bits(fastrand.randn(6, generator=g))
    assert np.array_equal(b, bits(fastrand.randn(6, generator=copy_)))  # the state decides
    assert not np.intersect1d(b, ref_bits("normal", 4, R, 0, 64)).size  # a new window


def test_generator_state_api():
    g = fastrand.Generator(7, offset=3, stream=2)
    assert (g.initial_seed(), g.get_offset(), g.stream) == (7, 3, 2)
    st = g.get_state()
    assert st.dtype == torch.uint8
    a = fastrand.randn(10, generator=g)
    assert g.get_offset() == 13
    assert g.set_state(st) is g
    assert np.array_equal(bits(fastrand.randn(10, generator=g)), bits(a))
    h = g.clone()
    assert np.array_equal(
        bits(fastrand.randn(4, generator=g)), bits(fastrand.randn(4, generator=h))
    )
    assert g.set_offset(0) is g and g.get_offset() == 0
    assert g.manual_seed(9) is g and g.get_offset() == 0 and g.initial_seed() == 9
    s = g.seed()
    assert g.initial_seed() == s and 0 <= s < U64
    assert fastrand.Generator(-1).initial_seed() == U64 - 1
    assert (
        fastrand.Generator(-1).initial_seed()
        == torch.Generator().manual_seed(-1).initial_seed() % U64
    )
    assert np.array_equal(
        bits(fastrand.randn(6, generator=fastrand.Generator(-5, stream=R))),
        bits(fastrand.randn(6, generator=torch.Generator().manual_seed(-5))),
    )
    assert 0 <= fastrand.Generator().initial_seed() < U64
    g.set_state(bytes(st.numpy()))


def test_streams_are_distinct():
    a = fastrand.randn(64, generator=fastrand.Generator(1, stream=0))
    b = fastrand.randn(64, generator=fastrand.Generator(1, stream=1))
    assert not np.array_equal(bits(a), bits(b))
    assert np.array_equal(bits(b), ref_bits("normal", 1, 1, 0, 64))


def test_pickle_and_deepcopy():
    g = fastrand.Generator(5, offset=17, stream=3)
    for h in (pickle.loads(pickle.dumps(g)), copy.deepcopy(g), copy.copy(g)):
        assert (h.initial_seed(), h.get_offset(), h.stream) == (5, 17, 3)
        assert np.array_equal(
            bits(fastrand.randn(5, generator=h)), bits(fastrand.randn(5, generator=g.clone()))
        )


@pytest.mark.parametrize("kind", ["fastrand", "torch"])
def test_threads_share_a_generator_without_overlap(kind):
    gen = fastrand.Generator(21) if kind == "fastrand" else torch.Generator().manual_seed(21)
    sizes = [37, 1000, 5, 4096, 3, 250, 77, 1]
    results, errors = [], []
    barrier = threading.Barrier(8)

    def work(i):
        try:
            barrier.wait()
            for _ in range(20):
                results.append(bits(fastrand.random_words(sizes[i], generator=gen)))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = np.sort(np.concatenate(results))
    total = 20 * sum(sizes)
    want = np.sort(ref_bits("words", 21, 0 if kind == "fastrand" else R, 0, total))
    assert np.array_equal(got, want)  # together they cover exactly positions [0, total)


@pytest.mark.parametrize(
    "bad,exc",
    [
        ("1", TypeError),
        (1.5, TypeError),
        (True, TypeError),
        (None, TypeError),
        (U64, ValueError),
        (-(1 << 63) - 1, ValueError),
    ],
)
def test_bad_seeds(bad, exc):
    with pytest.raises(exc, match="seed"):
        fastrand.Generator(0).manual_seed(bad)


@pytest.mark.parametrize("field", ["offset", "stream"])
@pytest.mark.parametrize("bad,exc", [(-1, ValueError), (U64, ValueError), (2.0, TypeError)])
def test_bad_offsets_and_streams(field, bad, exc):
    with pytest.raises(exc, match=field):
        fastrand.Generator(0, **{field: bad})
    if field == "offset":
        with pytest.raises(exc, match="offset"):
            fastrand.Generator(0).set_offset(bad)


def test_bad_state():
    g = fastrand.Generator(0)
    with pytest.raises(ValueError, match="state"):
        g.set_state(torch.zeros(32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="state"):
        g.set_state(torch.Generator().get_state())
    with pytest.raises(TypeError, match="state"):
        g.set_state("nope")
