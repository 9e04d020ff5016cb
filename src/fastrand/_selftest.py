"""python -m fastrand selftest: the spec's known answers and cross-device identity, on this
machine. Prints a verdict table; selftest() returns 0 when everything matches, else 1."""

from __future__ import annotations

import random
import sys

import numpy as np

from . import _C
from . import reference as ref

SEED = 0x9ABCDEF012345678
# docs/noise-stream.md: Philox known answers (section 1), golden words and float32 values
# (section 3), float64 values (section 5)
KAT = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (
        [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
        [0xA4093822, 0x299F31D0],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ),
]
GOLDEN_WORDS = [
    0x0279B337,
    0xECB5BD8D,
    0xE611C4F6,
    0x44ECE875,
    0xEB897A36,
    0x4FCDF6B6,
    0xFBA23D8C,
    0x6EED5B47,
    0x207B164B,
    0x5D52B9CA,
    0xBA2C9175,
    0x19DEE812,
]
GOLDEN_F32 = [
    0xBFB1C488,
    0x402D7EBD,
    0x3EEAE647,
    0xBD64490D,
    0x3EC17742,
    0xBE1E1A1A,
    0x3D9A900D,
    0xBE2D8193,
    0x3FC3981B,
    0xBFAB71EA,
    0x3EF261A8,
    0x3F247EBA,
]
GOLDEN_F64 = [
    0xBFB535BC3E7ABED0,
    0x3FBCB34728C1F788,
    0xBFCEC68DD93B3193,
    0x4001E151D33ED4A6,
    0xBFE07FD8BCBA5FB9,
    0xBFB300EAFD931BE5,
]

_KINDS = [
    ("normal", "float32"),
    ("normal", "float16"),
    ("normal", "bfloat16"),
    ("normal", "float64"),
    ("uniform", "float32"),
    ("uniform", "float64"),
    ("words", "uint32"),
]
_NP = {
    "float32": np.float32,
    "float16": np.float16,
    "bfloat16": np.uint16,
    "float64": np.float64,
    "uint32": np.uint32,
}
_CODE = {
    "float32": _C.DT_FLOAT32,
    "float16": _C.DT_FLOAT16,
    "bfloat16": _C.DT_BFLOAT16,
    "float64": _C.DT_FLOAT64,
    "uint32": _C.DT_UINT32,
}
_KIND = {"normal": _C.KIND_NORMAL, "uniform": _C.KIND_UNIFORM, "words": _C.KIND_WORDS}


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def _cpu(kind, dtype, seed, stream, offset, n, threads=2):
    out = np.empty(n, dtype=_NP[dtype])
    if n:
        _C.fill_cpu(out.ctypes.data, n, _KIND[kind], _CODE[dtype], seed, stream, offset, threads)
    return _bits(out)


def _ref(kind, dtype, seed, stream, offset, n):
    if kind == "words":
        return _bits(ref.words(seed, stream, offset, n))
    f = ref.normal if kind == "normal" else ref.uniform
    return _bits(f(seed, stream, offset, n, dtype))


def _cases(rng, count, max_n):
    for _ in range(count):
        yield (
            rng.choice(_KINDS),
            rng.randrange(1 << 64),
            rng.choice([0, 1, rng.randrange(1 << 64)]),
            rng.choice([0, 1, 3, rng.randrange(1 << 64)]),
            rng.randrange(max_n),
        )


def run(out=sys.stdout, seed=20261126):
    rows = []

    def row(check, where, ok, detail=""):
        rows.append((check, where, "ok" if ok else "MISMATCH", detail))

    got = [list(_C.philox(c, k)) == o for c, k, o in KAT]
    row("Philox4x32-10 known answers", "cpu", all(got), f"{sum(got)}/{len(got)}")
    before = _C.cpu_isa_selected()
    rng = random.Random(seed)
    try:
        for isa in _C.cpu_isa_available():
            _C.cpu_isa_select(isa)
            ok = (
                _cpu("words", "uint32", SEED, 0, 0, 12).tolist() == GOLDEN_WORDS
                and _cpu("normal", "float32", SEED, 0, 0, 12).tolist() == GOLDEN_F32
                and _cpu("normal", "float64", SEED, 0, 0, 6).tolist() == GOLDEN_F64
            )
            row("spec golden values", f"cpu/{isa}", ok)
            bad = 0
            cases = list(_cases(rng, 24, 5000))
            for (kind, dtype), s, st, off, n in cases:
                bad += not np.array_equal(
                    _cpu(kind, dtype, s, st, off, n), _ref(kind, dtype, s, st, off, n)
                )
            row(
                "random draws vs NumPy reference",
                f"cpu/{isa}",
                bad == 0,
                f"{len(cases) - bad}/{len(cases)}",
            )
    finally:
        _C.cpu_isa_select(before)

    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and torch.cuda.is_available():
        from . import _api
        from ._generator import Generator

        tdt = {
            "float32": torch.float32,
            "float16": torch.float16,
            "bfloat16": torch.bfloat16,
            "float64": torch.float64,
        }
        for index in range(torch.cuda.device_count()):
            dev = torch.device("cuda", index)
            where = f"{dev} {torch.cuda.get_device_name(index)}"
            bad, total = 0, 0
            for (kind, dtype), s, st, off, n in _cases(rng, 40, 1 << 20):
                g = Generator(s, stream=st, offset=off)
                if kind == "words":
                    t = _api.random_words(n, generator=g, device=dev)
                elif kind == "normal":
                    t = _api.randn(n, generator=g, device=dev, dtype=tdt[dtype])
                else:
                    t = _api.rand(n, generator=g, device=dev, dtype=tdt[dtype])
                width = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
                gpu = _bits(t.view(width).cpu().numpy())
                total += 1
                bad += not np.array_equal(gpu, _cpu(kind, dtype, s, st, off, n))
            from . import _cuda

            kernel = {"aot": "AOT kernel", "nvrtc": "NVRTC kernel"}.get(
                _cuda.device_backend(index), "CPU copy (no native CUDA kernel)"
            )
            row("random draws vs CPU", where, bad == 0, f"{total - bad}/{total}, {kernel}")
    else:
        row("CUDA", "-", True, "no CUDA device visible: skipped")

    width = [
        max(len(r[i]) for r in rows + [("check", "where", "verdict", "detail")]) for i in range(4)
    ]
    line = "  ".join(f"{{:<{w}}}" for w in width)
    print(line.format("check", "where", "verdict", "detail"), file=out)
    print(line.format(*("-" * w for w in width)), file=out)
    for r in rows:
        print(line.format(*r), file=out)
    failed = [r for r in rows if r[2] != "ok"]
    print(
        f"\nselftest: {'FAILED' if failed else 'all checks passed'} "
        f"({len(rows) - len(failed)}/{len(rows)})",
        file=out,
    )
    return 1 if failed else 0


def selftest():
    """Runs the self-test, prints the verdict table; returns 0 on success, 1 on any mismatch."""
    return run()
