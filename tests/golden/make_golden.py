"""Writes tests/golden/stream_v1.json: the lock on noise stream v1.

Generated FROM THE NUMPY REFERENCE ONLY (src/fastrand/reference.py, loaded by path: neither the
compiled module nor torch is imported), for a grid of seeds, streams, offsets, sizes and every
kind/dtype. Each entry holds the SHA-256 of the draw's little-endian bit patterns and the first
8 values as hex bit patterns. tests/test_stream_lock.py checks the compiled CPU paths and the
reference against this file, so a change to either that alters any output of stream v1 fails.

The file is written once, when stream v1 is released; never regenerate it to make a failing
test pass. Run `python tests/golden/make_golden.py --check` to verify that the reference still
reproduces it (the test does the same).
"""

import argparse
import hashlib
import importlib.util
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "stream_v1.json"
U64 = 1 << 64

SEEDS = [0, 1, U64 - 1, 0x9ABCDEF012345678, 12345]  # -1 as torch reads it is U64 - 1
STREAMS = [0, 1, 1 << 63]
OFFSETS = [0, 1, 3, (1 << 32) - 1, U64 - 3]
SIZES = [1, 5, 1000]
KINDS = [
    ("normal", "float32"),
    ("normal", "float16"),
    ("normal", "bfloat16"),
    ("normal", "float64"),
    ("uniform", "float32"),
    ("uniform", "float16"),
    ("uniform", "bfloat16"),
    ("uniform", "float64"),
    ("words", "uint32"),
]
# A few large draws: the compiled code's multi-threaded path, across the 2^64 wrap.
LARGE = [(0x9ABCDEF012345678, 1, U64 - 3, 200_003), (12345, 1 << 63, (1 << 32) - 1, 70_001)]
FIRST = 8


def load_reference():
    path = HERE.parents[1] / "src" / "fastrand" / "reference.py"
    spec = importlib.util.spec_from_file_location("fastrand_reference_golden", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def bit_patterns(a):
    """Values as unsigned little-endian bit patterns (bfloat16 already comes as uint16)."""
    import numpy as np

    a = np.ascontiguousarray(a)
    u = a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])
    return u.astype(u.dtype.newbyteorder("<"), copy=False)


def draw(ref, kind, dtype, seed, stream, offset, n):
    if kind == "normal":
        a = ref.normal(seed, stream, offset, n, dtype)
    elif kind == "uniform":
        a = ref.uniform(seed, stream, offset, n, dtype)
    else:
        a = ref.words(seed, stream, offset, n)
    return bit_patterns(a)


def sha(u):
    return hashlib.sha256(u.tobytes()).hexdigest()


def hexes(u):
    width = 2 * u.dtype.itemsize
    return " ".join(format(int(x), f"0{width}x") for x in u)


def build(ref):
    cases = []
    for seed in SEEDS:
        for stream in STREAMS:
            for offset in OFFSETS:
                for kind, dtype in KINDS:
                    shas = {}
                    first = None
                    for n in SIZES:
                        u = draw(ref, kind, dtype, seed, stream, offset, n)
                        shas[str(n)] = sha(u)
                        if n >= FIRST and first is None:
                            first = hexes(u[:FIRST])
                    cases.append(
                        {
                            "seed": seed,
                            "stream": stream,
                            "offset": offset,
                            "kind": kind,
                            "dtype": dtype,
                            "first8": first,
                            "sha256": shas,
                        }
                    )
    large = []
    for seed, stream, offset, n in LARGE:
        for kind, dtype in KINDS:
            u = draw(ref, kind, dtype, seed, stream, offset, n)
            large.append(
                {
                    "seed": seed,
                    "stream": stream,
                    "offset": offset,
                    "kind": kind,
                    "dtype": dtype,
                    "n": n,
                    "first8": hexes(u[:FIRST]),
                    "last8": hexes(u[-FIRST:]),
                    "sha256": sha(u),
                }
            )
    advance = []
    for offset in OFFSETS:
        for n in [0] + SIZES:
            advance.append(
                {
                    "offset": offset,
                    "n": n,
                    "next": ref.next_offset(offset, n, "float32"),
                    "next_float64": ref.next_offset(offset, n, "float64"),
                    "next_words": ref.next_offset(offset, n, "uint32"),
                }
            )
    return {
        "stream_version": 1,
        "source": "tests/golden/make_golden.py from src/fastrand/reference.py (NumPy only)",
        "format": "sha256 of the draw's values as little-endian unsigned bit patterns "
        "(uint16 for float16/bfloat16, uint32 for float32 and words, uint64 for "
        "float64); first8/last8: the first/last 8 values as hex bit patterns; "
        "a draw of n values of (kind, dtype) at (seed, stream, offset); "
        "advance: the generator offset after a draw",
        "cases": cases,
        "large": large,
        "advance": advance,
    }


def dumps(doc):
    """One case per line: small, and a diff shows which draw changed."""
    head = {k: v for k, v in doc.items() if k not in ("cases", "large", "advance")}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"{json.dumps(k)}: {json.dumps(v)},")
    for key in ("cases", "large", "advance"):
        lines.append(f"{json.dumps(key)}: [")
        items = [json.dumps(c, separators=(",", ":")) for c in doc[key]]
        lines.append(",\n".join(items))
        lines.append("]," if key != "advance" else "]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare with the file, write nothing")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = p.parse_args(argv)
    text = dumps(build(load_reference()))
    if args.check:
        same = OUT.exists() and json.loads(OUT.read_text()) == json.loads(text)
        print("reference reproduces", OUT.name if same else "NOTHING: stream v1 changed")
        return 0 if same else 1
    if OUT.exists() and not args.force:
        print(f"{OUT} exists: stream v1 is frozen (use --check, or --force only before release)")
        return 1
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
