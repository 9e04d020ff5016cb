"""The lock on noise stream v1: tests/golden/stream_v1.json.

The file was generated once from the NumPy reference alone (tests/golden/make_golden.py). Every
CPU path of the compiled module must reproduce every entry bit for bit (SHA-256 of the whole
draw, its first values, the generator's offset afterwards), and the reference must still
reproduce the whole file. So a change to the compiled code, to the reference, or to the Python
layer that alters any output of stream v1 fails here. Never regenerate the file to make this
pass: a different output is a new stream version.
"""

import hashlib
import importlib.util
import json
import pathlib

import pytest
import torch
from conftest import TORCH_DTYPES, bits

import fastrand
from fastrand import _C
from fastrand import reference as ref

GOLDEN_DIR = pathlib.Path(__file__).resolve().parent / "golden"
GOLDEN = GOLDEN_DIR / "stream_v1.json"
U64 = 1 << 64
ISAS = list(_C.cpu_isa_available())


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text())


def _make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN_DIR / "make_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _le(u):
    return u.astype(u.dtype.newbyteorder("<"), copy=False)


def _sha(u):
    return hashlib.sha256(_le(u).tobytes()).hexdigest()


def _hexes(u):
    width = 2 * u.dtype.itemsize
    return " ".join(format(int(x), f"0{width}x") for x in u)


def _draw(kind, dtype, n, gen):
    if kind == "normal":
        t = fastrand.randn(n, generator=gen, dtype=TORCH_DTYPES[dtype])
    elif kind == "uniform":
        t = fastrand.rand(n, generator=gen, dtype=TORCH_DTYPES[dtype])
    else:
        t = fastrand.random_words(n, generator=gen)
    return bits(t).ravel()


def _advance_table(golden):
    return {(a["offset"], a["n"]): a for a in golden["advance"]}


def _next_key(kind, dtype):
    return "next_words" if kind == "words" else ("next_float64" if dtype == "float64" else "next")


def test_file_is_stream_v1_and_small(golden):
    assert golden["stream_version"] == 1 == fastrand.STREAM_VERSION == _C.STREAM_VERSION
    assert GOLDEN.stat().st_size < 300_000
    assert len(golden["cases"]) == 5 * 3 * 5 * 9
    assert len(golden["large"]) == 2 * 9
    kinds = {(c["kind"], c["dtype"]) for c in golden["cases"]}
    assert kinds == {(k, d) for k in ("normal", "uniform") for d in TORCH_DTYPES} | {
        ("words", "uint32")
    }


def test_reference_still_reproduces_the_file(golden):
    """The NumPy reference (the oracle) has not changed either: the one the tests import, and
    the one in the source tree that make_golden.py reads."""
    mg = _make_golden()
    rebuilt = json.loads(mg.dumps(mg.build(ref)))
    assert rebuilt["advance"] == golden["advance"]
    for key in ("cases", "large"):
        changed = [
            (c["seed"], c["stream"], c["offset"], c["kind"], c["dtype"])
            for c, r in zip(golden[key], rebuilt[key])
            if c != r
        ]
        assert len(golden[key]) == len(rebuilt[key]) and not changed, changed[:10]
    assert rebuilt == golden
    src_ref = GOLDEN_DIR.parents[1] / "src" / "fastrand" / "reference.py"
    if src_ref.exists() and src_ref.resolve() != pathlib.Path(ref.__file__).resolve():
        assert json.loads(mg.dumps(mg.build(mg.load_reference()))) == golden


def test_file_agrees_with_the_spec_golden_values(golden):
    """docs/noise-stream.md sections 3 and 5 print values of seed 0x9abcdef012345678."""
    by = {(c["seed"], c["stream"], c["offset"], c["kind"], c["dtype"]): c for c in golden["cases"]}
    seed = 0x9ABCDEF012345678
    assert by[(seed, 0, 0, "words", "uint32")]["first8"] == (
        "0279b337 ecb5bd8d e611c4f6 44ece875 eb897a36 4fcdf6b6 fba23d8c 6eed5b47"
    )
    assert by[(seed, 0, 0, "normal", "float32")]["first8"] == (
        "bfb1c488 402d7ebd 3eeae647 bd64490d 3ec17742 be1e1a1a 3d9a900d be2d8193"
    )
    assert by[(seed, 0, 0, "normal", "float64")]["first8"].split()[:6] == [
        "bfb535bc3e7abed0",
        "3fbcb34728c1f788",
        "bfcec68dd93b3193",
        "4001e151d33ed4a6",
        "bfe07fd8bcba5fb9",
        "bfb300eafd931be5",
    ]


@pytest.mark.parametrize("isa", ISAS)
def test_compiled_cpu_path_reproduces_the_file(isa, golden, cpu_isa):
    assert cpu_isa(isa) and _C.cpu_isa_selected() == isa
    adv = _advance_table(golden)
    bad = []
    for c in golden["cases"]:
        seed, stream, offset, kind, dtype = (
            c["seed"],
            c["stream"],
            c["offset"],
            c["kind"],
            c["dtype"],
        )
        for n_str, want in c["sha256"].items():
            n = int(n_str)
            g = fastrand.Generator(seed, stream=stream, offset=offset)
            u = _draw(kind, dtype, n, g)
            if _sha(u) != want or _hexes(u[:8]) != " ".join(c["first8"].split()[:n]):
                bad.append((seed, stream, offset, kind, dtype, n))
            if g.get_offset() != adv[(offset, n)][_next_key(kind, dtype)]:
                bad.append((seed, stream, offset, kind, dtype, n, "advance"))
    assert not bad, f"{len(bad)} draws of stream v1 changed on {isa}: {bad[:10]}"


@pytest.mark.parametrize("isa", ISAS)
def test_compiled_large_draws_reproduce_the_file(isa, golden, cpu_isa, num_threads):
    """Draws large enough for the compiled code's threads, on 1, 2 and 3 threads."""
    assert cpu_isa(isa)
    bad = []
    for threads in (1, 2, 3):
        num_threads(threads)
        for c in golden["large"]:
            g = fastrand.Generator(c["seed"], stream=c["stream"], offset=c["offset"])
            u = _draw(c["kind"], c["dtype"], c["n"], g)
            if (
                _sha(u) != c["sha256"]
                or _hexes(u[:8]) != c["first8"]
                or _hexes(u[-8:]) != c["last8"]
            ):
                bad.append((threads, c["seed"], c["offset"], c["kind"], c["dtype"], c["n"]))
    assert not bad, f"large draws of stream v1 changed on {isa}: {bad}"


def test_torch_generators_reproduce_the_file(golden):
    """torch.Generator('cpu').manual_seed(s) reads as (s, stream 2^63, offset 0) and
    fastrand.Generator(s) as (s, stream 0, offset 0); negative seeds as torch takes them (-1 is
    2^64 - 1)."""
    bad = []
    for c in golden["cases"]:
        if c["stream"] not in (0, 1 << 63) or c["offset"]:
            continue
        seeds = [c["seed"]] + ([-1] if c["seed"] == U64 - 1 else [])
        for s in seeds:
            if c["stream"]:
                gens = (torch.Generator().manual_seed(s), fastrand.Generator(s, stream=1 << 63))
            else:
                gens = (fastrand.Generator(s),)
            for gen in gens:
                u = _draw(c["kind"], c["dtype"], 1000, gen)
                if _sha(u) != c["sha256"]["1000"]:
                    bad.append((s, type(gen).__module__, c["kind"], c["dtype"]))
    assert not bad, bad


def test_lists_of_generators_reproduce_the_file(golden):
    """Rows of a batch drawn from a list of generators are the file's draws too."""
    cases = [c for c in golden["cases"] if c["kind"] == "normal" and c["stream"] == 1]
    for c in cases[:40]:
        gens = [fastrand.Generator(c["seed"], stream=1, offset=c["offset"]) for _ in range(2)]
        out = fastrand.randn_tensor((2, 5), generator=gens, dtype=TORCH_DTYPES[c["dtype"]])
        for row in out:
            assert _sha(bits(row).ravel()) == c["sha256"]["5"]
