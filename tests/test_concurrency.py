"""Threads, copies and DataLoader workers.

Seeding fastrand in ``torch.utils.data.DataLoader`` workers (recommended recipe)
--------------------------------------------------------------------------------
A generator created in the main process is *copied* into every worker, so every worker would
draw the same noise. Give each worker its own generator in ``worker_init_fn`` instead, from the
seed the DataLoader hands the worker, and make the run reproducible by passing the DataLoader a
seeded ``generator``::

    import torch, fastrand
    from torch.utils.data import DataLoader, get_worker_info

    class NoisyDataset(torch.utils.data.Dataset):
        gen = None                                   # set per worker by worker_init_fn
        def __getitem__(self, i):
            return fastrand.randn(4, 64, 64, generator=self.gen)   # self.gen None: num_workers=0
        ...

    def worker_init_fn(worker_id):
        info = get_worker_info()
        # info.seed == base_seed + worker_id; base_seed is drawn from the DataLoader's generator
        # anew for every epoch (every iterator), so workers and epochs get different noise.
        info.dataset.gen = fastrand.Generator(info.seed)
        # or, one seed and one stream per worker:
        # info.dataset.gen = fastrand.Generator(info.seed - info.id, stream=info.id)

    loader = DataLoader(NoisyDataset(), batch_size=8, num_workers=4,
                        worker_init_fn=worker_init_fn,
                        generator=torch.Generator().manual_seed(1234))   # reproducible runs

With ``persistent_workers=True`` the workers, and their generators, live across epochs: each
epoch continues each worker's generator (still new noise, but no longer a new seed per epoch).
Without a ``worker_init_fn``, ``generator=None`` inside a worker also works: it reads torch's
default generator, which the DataLoader seeds with ``info.seed`` in every worker, so the noise
equals ``fastrand.Generator(info.seed, stream=2**63)``'s (a torch generator's sequence). Either way the noise a sample gets depends on which
worker loads it and in which order; if it must not depend on ``num_workers`` at all, derive the
generator from the sample instead: ``fastrand.Generator(seed, stream=epoch * len(dataset) + i)``
in ``__getitem__``.

What this file checks: 8 threads sharing one fastrand.Generator or one torch.Generator draw
disjoint windows that tile exactly the positions consumed (float64's even start the only gap);
generators survive pickle and copy.deepcopy with their state; the recipe above is reproducible
across runs with the same DataLoader seed, distinct across workers, and equals the NumPy
reference at the positions it claims.
"""

import copy
import pickle
import random
import threading

import numpy as np
import pytest
import torch
from conftest import bits
from torch.utils.data import DataLoader, Dataset, get_worker_info

import fastrand
from fastrand import reference as ref

U64 = 1 << 64
R = 1 << 63  # the stream of a torch generator's own sequence (docs/torch-generators.md)
HAS_UINT32 = hasattr(torch, "uint32")


# --------------------------------------------------------------------------------------------
# threads sharing one generator
# Each op: (name, kind, dtype, positions per value, draw(gen) -> list of row tensors)
def _op(name, n):
    f = fastrand
    if name == "words32":
        return "words", lambda g: [f.random_words(n, generator=g)]
    if name == "wordsu32":
        dt = torch.uint32 if HAS_UINT32 else torch.int32
        return "words", lambda g: [f.random_words(n, generator=g, dtype=dt)]
    if name == "normal32":
        return "normal32", lambda g: [f.randn(n, generator=g)]
    if name == "normal32-2d":  # (k, 3) shape, row-major
        return "normal32", lambda g: [f.randn_tensor((max(n // 3, 1), 3), generator=g)]
    if name == "normal64":
        return "normal64", lambda g: [f.randn(n, generator=g, dtype=torch.float64)]
    if name == "normal16":
        return "normal16", lambda g: [f.randn(n, generator=g, dtype=torch.float16)]
    if name == "normalbf16":
        return "normalbf16", lambda g: [
            f.randn_like(torch.empty(n, dtype=torch.bfloat16), generator=g)
        ]
    if name == "uniform32":
        return "uniform32", lambda g: [f.rand(n, generator=g)]
    if name == "uniform64":
        return "uniform64", lambda g: [f.rand(n, generator=g, dtype=torch.float64)]
    if name == "rows":  # a list of the same shared generator twice: two reservations
        return "normal32", lambda g: list(f.randn_tensor((2, n), generator=[g, g]))
    raise AssertionError(name)


# kinds whose values take two positions each (start at an even position)
TWO_WORDS = {"normal64", "uniform64"}
# smallest size per op so that a window is found at exactly one place of the reference (a
# single 32-bit word recurs by chance among ~3e5 reference words: ~10 expected repeats)
MIN_N = {
    "words32": 2,
    "wordsu32": 2,
    "normal32": 2,
    "normal32-2d": 6,
    "normal64": 1,
    "normal16": 16,
    "normalbf16": 24,
    "uniform32": 3,
    "uniform64": 1,
    "rows": 2,
}
SIZES = [1, 2, 3, 5, 7, 16, 33, 100, 257, 1000, 4099]


def _plan(thread, count=30):
    rng = random.Random(1000 + thread)
    ops = []
    for k in range(count):
        name = rng.choice(sorted(MIN_N))
        n = max(rng.choice(SIZES), MIN_N[name])
        if k == 0 and thread < 2:
            n = 70_001  # large enough for the compiled code's own threads
        ops.append((name, n))
    return ops


def _reference_tables(seed, npos, stream=0):
    """Reference bits of every kind over positions [0, npos) (two-word kinds: even positions)."""
    half = npos // 2 + 1
    return {
        "words": bits(ref.words(seed, stream, 0, npos)),
        "normal32": bits(ref.normal(seed, stream, 0, npos, "float32")),
        "normal16": bits(ref.normal(seed, stream, 0, npos, "float16")),
        "normalbf16": bits(ref.normal(seed, stream, 0, npos, "bfloat16")),
        "uniform32": bits(ref.uniform(seed, stream, 0, npos, "float32")),
        "normal64": bits(ref.normal(seed, stream, 0, half, "float64")),
        "uniform64": bits(ref.uniform(seed, stream, 0, half, "float64")),
    }


def _locate(kind, values, tables):
    """The position of a drawn window in the reference; fails unless found exactly once."""
    table = tables[kind]
    n = values.size
    found = [
        int(c)
        for c in np.flatnonzero(table == values[0])
        if c + n <= table.size and np.array_equal(table[c : c + n], values)
    ]
    assert len(found) == 1, f"{kind} window of {n} found at {len(found)} places of the reference"
    step = 2 if kind in TWO_WORDS else 1
    return found[0] * step, n * step


def _run_threads(gen, plans):
    results, errors = [[] for _ in plans], []
    barrier = threading.Barrier(len(plans))

    def work(i):
        try:
            barrier.wait()
            for name, n in plans[i]:
                kind, fn = _op(name, n)
                for row in fn(gen):
                    results[i].append((kind, bits(row).ravel().copy()))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(plans))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return [r for per_thread in results for r in per_thread]


def _check_tiling(draws, tables):
    """The located windows tile [0, end) without overlap; returns end."""
    spans = sorted((*_locate(kind, v, tables), kind) for kind, v in draws if v.size)
    cur = 0
    for start, length, kind in spans:
        if start != cur:
            # the only gap allowed: a two-word draw moving an odd offset to the next even one
            assert kind in TWO_WORDS and cur % 2 == 1 and start == cur + 1, (
                f"{'overlap' if start < cur else 'gap'} at position {cur}: next window "
                f"({kind}) starts at {start}"
            )
        cur = start + length
    return cur


@pytest.mark.parametrize("which", ["fastrand", "torch"])
def test_threads_share_a_generator_without_overlap_mixed_dtypes(which):
    seed = 0x5EED + (which == "torch")
    gen = fastrand.Generator(seed) if which == "fastrand" else torch.Generator().manual_seed(seed)
    plans = [_plan(t) for t in range(8)]
    npos = sum(
        (2 * n + 1) * (2 if name == "rows" else 1)
        if name in ("normal64", "uniform64")
        else n * (2 if name == "rows" else 1)
        for plan in plans
        for name, n in plan
    )
    draws = _run_threads(gen, plans)
    assert len(draws) == sum(len(p) + sum(name == "rows" for name, _ in p) for p in plans)
    tables = _reference_tables(seed, npos + 8, 0 if which == "fastrand" else R)
    end = _check_tiling(draws, tables)
    # the generator stands exactly at the end of what the threads consumed
    nxt = bits(fastrand.random_words(3, generator=gen))
    assert np.array_equal(nxt, tables["words"][end : end + 3])
    if which == "fastrand":
        assert gen.get_offset() == end + 3


@pytest.mark.parametrize("which", ["fastrand", "torch"])
def test_threads_words_are_a_permutation_of_the_reference(which):
    """Raw words only (int32, uint32, 2-D shapes): the multiset of all words drawn equals the
    reference words of positions [0, total)."""
    seed = 77
    gen = fastrand.Generator(seed) if which == "fastrand" else torch.Generator().manual_seed(seed)
    shapes = [(37,), (1000,), (5,), (64, 64), (3,), (250,), (7, 11), (1,)]
    reps = 25
    out, errors = [[] for _ in shapes], []
    barrier = threading.Barrier(len(shapes))

    def work(i):
        try:
            barrier.wait()
            dt = torch.uint32 if (HAS_UINT32 and i % 2) else torch.int32
            for _ in range(reps):
                out[i].append(
                    bits(fastrand.random_words(shapes[i], generator=gen, dtype=dt)).ravel()
                )
        except Exception as e:  # pragma: no cover
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(shapes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    total = reps * sum(int(np.prod(s)) for s in shapes)
    got = np.sort(np.concatenate([w for per in out for w in per]))
    stream = 0 if which == "fastrand" else R
    assert np.array_equal(got, np.sort(ref.words(seed, stream, 0, total)))
    if which == "fastrand":
        assert gen.get_offset() == total


def test_threads_sharing_generators_in_lists():
    """Two threads draw batches from lists [a, b] and [b, a]: each generator's rows tile."""
    a, b = fastrand.Generator(1), fastrand.Generator(2)
    rows = {1: [], 2: []}
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def work(gens):
        barrier.wait()
        for k in range(200):
            out = fastrand.randn_tensor((2, 5 + k % 3), generator=gens)
            with lock:
                for g, row in zip(gens, out):
                    rows[g.initial_seed()].append(bits(row).copy())

    ts = [threading.Thread(target=work, args=(g,)) for g in ([a, b], [b, a])]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for seed, g in ((1, a), (2, b)):
        total = g.get_offset()
        assert total == sum(r.size for r in rows[seed])
        got = np.sort(np.concatenate(rows[seed]))
        assert np.array_equal(got, np.sort(bits(ref.normal(seed, 0, 0, total, "float32"))))


# --------------------------------------------------------------------------------------------
# copies
def _mixed_sequence(gen):
    out = [bits(fastrand.randn(3, generator=gen, dtype=torch.float64))]
    out.append(bits(fastrand.rand(5, generator=gen, dtype=torch.float16)))
    out.append(bits(fastrand.randn_tensor((2, 3), generator=gen, dtype=torch.bfloat16)))
    out.append(bits(fastrand.random_words(4, generator=gen)))
    out.append(bits(fastrand.randn(7, generator=gen)))
    return out


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize(
    "seed,stream,offset", [(5, 0, 0), (U64 - 1, 1 << 63, 7), (0x9ABCDEF012345678, 3, U64 - 5)]
)
def test_generator_survives_pickle_and_deepcopy(seed, stream, offset):
    g = fastrand.Generator(seed, stream=stream, offset=offset)
    fastrand.randn(3, generator=g)  # some use first: the copies carry the advanced offset
    fastrand.rand(1, generator=g, dtype=torch.float64)
    fastrand.random_words(1, generator=g)  # odd offset now (when it started even)
    state = (g.initial_seed(), g.stream, g.get_offset())
    copies = [
        pickle.loads(pickle.dumps(g, protocol=p)) for p in range(2, pickle.HIGHEST_PROTOCOL + 1)
    ]
    copies += [copy.deepcopy(g), copy.copy(g), copy.deepcopy([g, g])[0], g.clone()]
    for h in copies:
        assert h is not g and type(h) is fastrand.Generator
        assert (h.initial_seed(), h.stream, h.get_offset()) == state
        assert torch.equal(h.get_state(), g.get_state())
    want = _mixed_sequence(g.clone())
    for h in copies:
        assert _same(_mixed_sequence(h), want)
    # the copies were independent: g has not moved
    assert (g.initial_seed(), g.stream, g.get_offset()) == state
    assert _same(_mixed_sequence(g), want)
    # deepcopy keeps identity inside one structure
    pair = copy.deepcopy({"a": g, "b": g})
    assert pair["a"] is pair["b"]


def test_torch_generator_copies_continue_the_sequence():
    """A pickled / deep-copied / state-copied torch.Generator continues where the original is
    (torch's own semantics for its draws): its next fastrand draw equals the original's, and
    never repeats noise the original already gave."""
    g = torch.Generator().manual_seed(5)
    first = bits(fastrand.randn(4, generator=g))
    copies = {"deepcopy": copy.deepcopy(g), "pickle": pickle.loads(pickle.dumps(g))}
    h = torch.Generator()
    h.set_state(g.get_state())
    copies["set_state"] = h
    expected = bits(ref.normal(5, R, 4, 4, "float32"))
    bad = {}
    for name, c in copies.items():
        got = bits(fastrand.randn(4, generator=c))
        if not np.array_equal(got, expected):
            bad[name] = "repeats the first draw" if np.array_equal(got, first) else "differs"
    assert not bad, bad
    assert np.array_equal(bits(fastrand.randn(4, generator=g)), expected)


# --------------------------------------------------------------------------------------------
# DataLoader workers
SAMPLE = 4  # values per sample


class _Noisy(Dataset):
    """Draws SAMPLE normals per item; reports who drew them."""

    def __init__(self, n=16, mode="worker-seed"):
        self.n, self.mode, self.gen = n, mode, None

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        info = get_worker_info()
        if self.mode == "per-sample":
            gen = fastrand.Generator(2024, stream=i)
        elif self.mode == "default":
            gen = None  # torch's default generator, seeded by the DataLoader in each worker
        else:
            gen = self.gen
        x = fastrand.randn(SAMPLE, generator=gen)
        wid = -1 if info is None else info.id
        wseed = -1 if info is None else info.seed
        return torch.tensor(i), torch.tensor(wid), torch.tensor(wseed % (1 << 63)), x


def _init_worker_seed(worker_id):
    info = get_worker_info()
    info.dataset.gen = fastrand.Generator(info.seed)


def _init_worker_seed_torch(worker_id):
    info = get_worker_info()
    info.dataset.gen = fastrand.Generator(info.seed, stream=R)


def _init_worker_stream(worker_id):
    info = get_worker_info()
    info.dataset.gen = fastrand.Generator(info.seed - info.id, stream=info.id)


INIT = {
    "worker-seed": _init_worker_seed,
    "worker-seed-torch": _init_worker_seed_torch,
    "worker-stream": _init_worker_stream,
    "default": None,
    "per-sample": None,
}


def _load(mode, base, num_workers=2, epochs=1):
    ds = _Noisy(mode=mode)
    loader = DataLoader(
        ds,
        batch_size=2,
        num_workers=num_workers,
        worker_init_fn=INIT[mode],
        generator=torch.Generator().manual_seed(base),
    )
    out = []
    for _ in range(epochs):
        rows = {}
        for idx, wid, wseed, x in loader:
            for k in range(idx.numel()):
                rows[int(idx[k])] = (int(wid[k]), int(wseed[k]), bits(x[k]).copy())
        out.append(rows)
    return out


def _check_against_reference(mode, rows):
    """Within a worker, samples draw consecutive windows of that worker's generator."""
    per_worker = {}
    for i in sorted(rows):
        wid, wseed, x = rows[i]
        per_worker.setdefault(wid, []).append((wseed, x))
    assert sorted(per_worker) == [0, 1]
    for wid, items in per_worker.items():
        seeds = {s for s, _ in items}
        assert len(seeds) == 1
        wseed = seeds.pop()
        seed, stream = {
            "worker-seed": (wseed, 0),
            "worker-seed-torch": (wseed, R),
            "default": (wseed, R),
            "worker-stream": (wseed - wid, wid),
        }[mode]
        got = np.concatenate([x for _, x in items])
        assert np.array_equal(got, bits(ref.normal(seed, stream, 0, got.size, "float32"))), (
            mode,
            wid,
        )


@pytest.mark.parametrize("mode", ["worker-seed", "worker-stream", "default"])
def test_dataloader_workers_reproducible_and_distinct(mode):
    run1 = _load(mode, base=1234, epochs=2)
    run2 = _load(mode, base=1234, epochs=2)
    other = _load(mode, base=4321)
    for e in range(2):
        assert sorted(run1[e]) == list(range(16))
        # reproducible: the same base seed gives the same noise for every sample, every epoch
        for i in range(16):
            assert run1[e][i][:2] == run2[e][i][:2]
            assert np.array_equal(run1[e][i][2], run2[e][i][2]), (mode, e, i)
        _check_against_reference(mode, run1[e])
        # distinct: no two samples (in particular none of two workers) share noise
        allx = np.stack([run1[e][i][2] for i in range(16)])
        assert len({r.tobytes() for r in allx}) == 16
        assert len(np.unique(allx)) == allx.size
    # a new epoch draws new noise, and so does another base seed
    assert not any(np.array_equal(run1[0][i][2], run1[1][i][2]) for i in range(16))
    assert not any(np.array_equal(run1[0][i][2], other[0][i][2]) for i in range(16))


def test_dataloader_default_generator_equals_worker_seed_recipe():
    a = _load("default", base=99)[0]
    b = _load("worker-seed-torch", base=99)[0]
    for i in range(16):
        assert a[i][:2] == b[i][:2] and np.array_equal(a[i][2], b[i][2])


def test_dataloader_per_sample_generators_ignore_worker_count():
    runs = [_load("per-sample", base=7, num_workers=w)[0] for w in (0, 2)]
    for i in range(16):
        want = bits(ref.normal(2024, i, 0, SAMPLE, "float32"))
        assert all(np.array_equal(r[i][2], want) for r in runs)
