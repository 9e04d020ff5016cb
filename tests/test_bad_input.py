"""Refused input, table-driven, for every public entry point.

Every case of the table runs in ONE child process (a small driver fed the table as JSON), so a
crash in the compiled code (a segfault, an abort) fails these tests instead of killing pytest;
each case's verdict comes back as one JSON line and is asserted here, one test per case.

The policy (README, "dtypes"): a value of the right type but outside what fastrand accepts
raises ValueError, an argument of the wrong type raises TypeError, and the message names the
argument. A refused call must also leave every generator it was given untouched (a failed
call must not consume noise).
"""

import json
import re
import subprocess
import sys

import pytest
import torch
from conftest import child_env

U64 = 1 << 64
T, V = "TypeError", "ValueError"

# (id, expression, expected exception, regex the message must contain)
# Names in the expressions: fastrand, F (= fastrand), torch, np, G (= fastrand.Generator),
# U64, g / h (fresh fastrand.Generator(7) / (8) per case), tg (fresh torch CPU generator seeded 7).
REFUSED = [
    # ---- sizes: negative, non-integer, wrong container -------------------------------------
    ("shape-negative", "F.randn_tensor((2, -1), generator=g)", V, "shape"),
    ("shape-float", "F.randn_tensor((2, 1.5), generator=g)", T, "shape"),
    ("shape-float-integral", "F.randn_tensor((2.0, 3), generator=g)", T, "shape"),
    ("shape-str-dim", "F.randn_tensor((2, '3'), generator=g)", T, "shape"),
    ("shape-bool-dim", "F.randn_tensor((True, 2), generator=g)", T, "shape"),
    ("shape-none-dim", "F.randn_tensor((None,), generator=g)", T, "shape"),
    ("shape-numpy-float-dim", "F.randn_tensor((np.float32(2),), generator=g)", T, "shape"),
    ("shape-float-tensor-dim", "F.randn_tensor((torch.tensor(2.0),), generator=g)", T, "shape"),
    ("shape-nested", "F.randn_tensor([[2], [3]], generator=g)", T, "shape"),
    ("shape-int", "F.randn_tensor(5, generator=g)", T, "shape"),
    ("shape-str", "F.randn_tensor('23', generator=g)", T, "shape"),
    ("shape-set", "F.randn_tensor({2, 3}, generator=g)", T, "shape"),
    ("shape-none", "F.randn_tensor(None, generator=g)", T, "shape"),
    ("randn-negative", "F.randn(-1, generator=g)", V, "size"),
    ("randn-negative-2nd", "F.randn(2, -3, generator=g)", V, "size"),
    ("randn-negative-list", "F.randn([2, -1], generator=g)", V, "size"),
    ("randn-float", "F.randn(2.0, generator=g)", T, "size"),
    ("randn-str", "F.randn('3', generator=g)", T, "size"),
    ("randn-none", "F.randn(None, generator=g)", T, "size"),
    ("randn-mixed", "F.randn((2, 3), 4, generator=g)", T, "size"),
    ("rand-negative", "F.rand(-1, generator=g)", V, "size"),
    ("rand-float", "F.rand(2.5, generator=g)", T, "size"),
    ("words-negative", "F.random_words(3, -1, generator=g)", V, "size"),
    ("words-float", "F.random_words(1.0, generator=g)", T, "size"),
    # ---- element counts beyond 64 bits (and tensors whose byte size overflows) -------------
    ("shape-numel-2^64", "F.randn_tensor((1 << 32, 1 << 32), generator=g)", V, "shape"),
    ("shape-dim-2^64", "F.randn_tensor((U64,), generator=g)", V, "shape"),
    ("shape-dim-2^63", "F.randn_tensor((1 << 63,), generator=g)", V, "shape"),
    ("shape-numel-2^120", "F.randn_tensor((1 << 40, 1 << 40, 1 << 40), generator=g)", V, "shape"),
    ("randn-numel-2^64", "F.randn(1 << 32, 1 << 32, generator=g)", V, "size"),
    ("rand-numel-2^64", "F.rand(1 << 33, 1 << 31, generator=g)", V, "size"),
    ("words-numel-2^64", "F.random_words(1 << 32, 1 << 32, generator=g)", V, "size"),
    # fewer than 2^63 elements, but more than 2^63 - 1 bytes: torch cannot describe the tensor
    ("shape-bytes-2^63-1-elements", "F.randn_tensor(((1 << 63) - 1,), generator=g)", V, "shape"),
    ("shape-bytes-2^62-float32", "F.randn_tensor((1 << 62,), generator=g)", V, "shape"),
    ("shape-bytes-2^61-float32", "F.randn_tensor((1 << 61,), generator=g)", V, "shape"),
    (
        "shape-bytes-2^60-float64",
        "F.randn_tensor((1 << 60,), generator=g, dtype=torch.float64)",
        V,
        "shape",
    ),
    ("words-bytes-2^62", "F.random_words(1 << 62, generator=g)", V, "size"),
    # a zero-sized tensor whose other dimensions multiply past 2^63: torch refuses it too
    (
        "shape-zero-with-overflowing-dims",
        "F.randn_tensor((1 << 40, 1 << 40, 0), generator=g)",
        V,
        "shape",
    ),
    # ---- dtypes ----------------------------------------------------------------------------
    ("dtype-int32", "F.randn_tensor((2,), generator=g, dtype=torch.int32)", V, "dtype"),
    ("dtype-int64", "F.randn(2, generator=g, dtype=torch.int64)", V, "dtype"),
    ("dtype-uint8", "F.randn(2, generator=g, dtype=torch.uint8)", V, "dtype"),
    ("dtype-bool", "F.randn_tensor((2,), generator=g, dtype=torch.bool)", V, "dtype"),
    ("dtype-complex64", "F.randn_tensor((2,), generator=g, dtype=torch.complex64)", V, "dtype"),
    ("dtype-complex128", "F.randn(2, generator=g, dtype=torch.complex128)", V, "dtype"),
    ("dtype-float8", "F.randn(2, generator=g, dtype=torch.float8_e4m3fn)", V, "dtype"),
    ("dtype-str", "F.randn_tensor((2,), generator=g, dtype='float32')", T, "dtype"),
    ("dtype-numpy", "F.randn(2, generator=g, dtype=np.float32)", T, "dtype"),
    ("dtype-python-float", "F.randn(2, generator=g, dtype=float)", T, "dtype"),
    ("rand-dtype-int32", "F.rand(2, generator=g, dtype=torch.int32)", V, "dtype"),
    ("rand-dtype-bool", "F.rand(2, generator=g, dtype=torch.bool)", V, "dtype"),
    ("rand-dtype-complex", "F.rand(2, generator=g, dtype=torch.complex128)", V, "dtype"),
    ("rand-dtype-str", "F.rand(2, generator=g, dtype='float16')", T, "dtype"),
    (
        "randn_like-int-input",
        "F.randn_like(torch.zeros(3, dtype=torch.int64), generator=g)",
        V,
        "dtype",
    ),
    (
        "randn_like-uint8-input",
        "F.randn_like(torch.zeros(3, dtype=torch.uint8), generator=g)",
        V,
        "dtype",
    ),
    (
        "randn_like-dtype-int",
        "F.randn_like(torch.zeros(3), generator=g, dtype=torch.int32)",
        V,
        "dtype",
    ),
    (
        "randn_like-dtype-str",
        "F.randn_like(torch.zeros(3), generator=g, dtype='float32')",
        T,
        "dtype",
    ),
    (
        "rand_like-bool-input",
        "F.rand_like(torch.zeros(3, dtype=torch.bool), generator=g)",
        V,
        "dtype",
    ),
    (
        "rand_like-complex-input",
        "F.rand_like(torch.zeros(3, dtype=torch.complex64), generator=g)",
        V,
        "dtype",
    ),
    ("words-dtype-float32", "F.random_words(3, generator=g, dtype=torch.float32)", V, "dtype"),
    ("words-dtype-int64", "F.random_words(3, generator=g, dtype=torch.int64)", V, "dtype"),
    ("words-dtype-int16", "F.random_words(3, generator=g, dtype=torch.int16)", V, "dtype"),
    ("words-dtype-bool", "F.random_words(3, generator=g, dtype=torch.bool)", V, "dtype"),
    ("words-dtype-complex", "F.random_words(3, generator=g, dtype=torch.complex64)", V, "dtype"),
    ("words-dtype-str", "F.random_words(3, generator=g, dtype='int32')", T, "dtype"),
    ("words-dtype-none", "F.random_words(3, generator=g, dtype=None)", T, "dtype"),
    # ---- layouts ---------------------------------------------------------------------------
    (
        "layout-sparse_coo",
        "F.randn_tensor((2,), generator=g, layout=torch.sparse_coo)",
        V,
        "layout",
    ),
    (
        "layout-sparse_csr",
        "F.randn_tensor((2, 2), generator=g, layout=torch.sparse_csr)",
        V,
        "layout",
    ),
    ("layout-sparse_csc", "F.randn(2, 2, generator=g, layout=torch.sparse_csc)", V, "layout"),
    ("layout-sparse_bsr", "F.randn(2, 2, generator=g, layout=torch.sparse_bsr)", V, "layout"),
    ("layout-mkldnn", "F.randn(2, generator=g, layout=torch._mkldnn)", V, "layout"),
    ("layout-str", "F.randn_tensor((2,), generator=g, layout='strided')", T, "layout"),
    ("rand-layout-sparse_coo", "F.rand(2, generator=g, layout=torch.sparse_coo)", V, "layout"),
    ("rand-layout-str", "F.rand(2, generator=g, layout='sparse')", T, "layout"),
    # a sparse `input` must not silently produce dense noise
    (
        "randn_like-sparse-input",
        "F.randn_like(torch.zeros(3).to_sparse(), generator=g)",
        V,
        "input|layout",
    ),
    (
        "rand_like-sparse-csr-input",
        "F.rand_like(torch.zeros(2, 2).to_sparse_csr(), generator=g)",
        V,
        "input|layout",
    ),
    # ---- devices torch cannot parse, and wrong types ----------------------------------------
    *[
        (f"{fn}-device-{name}", f"{call}, device={dev!r})", V, "device")
        for fn, call in [
            ("randn_tensor", "F.randn_tensor((2,), generator=g"),
            ("randn", "F.randn(2, generator=g"),
            ("rand", "F.rand(2, generator=g"),
            ("random_words", "F.random_words(2, generator=g"),
            ("randn_like", "F.randn_like(torch.zeros(2), generator=g"),
            ("rand_like", "F.rand_like(torch.zeros(2), generator=g"),
        ]
        for name, dev in [
            ("nonsense", "nonsense"),
            ("empty", ""),
            ("cuda-abc", "cuda:abc"),
            ("gpu", "gpu"),
            ("cpu-x", "cpu:x"),
            ("space", " cpu"),
            ("cuda-0-1", "cuda:0:1"),
            ("negative-int", -1),
        ]
    ],
    ("device-float", "F.randn_tensor((2,), generator=g, device=1.5)", T, "device"),
    ("device-bool", "F.randn(2, generator=g, device=True)", T, "device"),
    ("device-list", "F.rand(2, generator=g, device=['cpu'])", T, "device"),
    ("device-dtype", "F.random_words(2, generator=g, device=torch.float32)", T, "device"),
    # ---- generators of the wrong type -------------------------------------------------------
    *[
        (f"{fn}-generator-{name}", f"{call}, generator={gen})", T, "generator")
        for fn, call in [
            ("randn_tensor", "F.randn_tensor((2, 3)"),
            ("randn", "F.randn(2, 3"),
            ("rand", "F.rand(2, 3"),
            ("random_words", "F.random_words(2, 3"),
            ("randn_like", "F.randn_like(torch.zeros(2, 3)"),
            ("rand_like", "F.rand_like(torch.zeros(2, 3)"),
        ]
        for name, gen in [
            ("int", "5"),
            ("str", "'x'"),
            ("float", "1.5"),
            ("numpy-rng", "np.random.default_rng(0)"),
            ("object", "object()"),
            ("class", "G"),
            ("torch-class", "torch.Generator"),
            ("state-tensor", "tg.get_state()"),
        ]
    ],
    # ---- lists of generators: wrong length, wrong element types ------------------------------
    ("list-short", "F.randn_tensor((3, 2), generator=[g, h])", V, "generator"),
    ("list-empty", "F.randn_tensor((2, 2), generator=[])", V, "generator"),
    ("list-for-0d-shape", "F.randn_tensor((), generator=[g, h])", V, "generator"),
    ("randn-list-short", "F.randn(3, 2, generator=[g, h])", V, "generator"),
    ("rand-list-empty", "F.rand(3, 2, generator=[])", V, "generator"),
    ("words-list-short", "F.random_words(4, generator=[g, h, tg])", V, "generator"),
    ("randn_like-list-short", "F.randn_like(torch.zeros(3, 2), generator=(g, h))", V, "generator"),
    ("list-of-one-int", "F.randn_tensor((2, 2), generator=[5])", T, "generator"),
    # the wrong element comes AFTER valid ones: the valid ones must not have been advanced
    ("list-2nd-str", "F.randn_tensor((2, 3), generator=[g, 'x'])", T, "generator"),
    ("list-2nd-int", "F.randn(2, 3, generator=[g, 3])", T, "generator"),
    ("list-2nd-float", "F.rand(2, 3, generator=[g, 3.0])", T, "generator"),
    ("list-nested", "F.randn_tensor((2, 3), generator=[g, [h]])", T, "generator"),
    ("list-3rd-object", "F.random_words(3, 2, generator=[g, tg, object()])", T, "generator"),
    ("list-torch-then-bad", "F.randn_tensor((2, 3), generator=[tg, 'x'])", T, "generator"),
    ("tuple-2nd-bad", "F.randn_like(torch.zeros(2, 3), generator=(h, 1))", T, "generator"),
    # ---- Generator(...) ----------------------------------------------------------------------
    ("ctor-seed-str", "G('1')", T, "seed"),
    ("ctor-seed-float", "G(1.0)", T, "seed"),
    ("ctor-seed-bool", "G(True)", T, "seed"),
    ("ctor-seed-complex", "G(1 + 0j)", T, "seed"),
    ("ctor-seed-numpy-float", "G(np.float64(1))", T, "seed"),
    ("ctor-seed-float-tensor", "G(torch.tensor(1.0))", T, "seed"),
    ("ctor-seed-2^64", "G(U64)", V, "seed"),
    ("ctor-seed-below-int64", "G(-(1 << 63) - 1)", V, "seed"),
    ("ctor-offset-negative", "G(0, offset=-1)", V, "offset"),
    ("ctor-offset-2^64", "G(0, offset=U64)", V, "offset"),
    ("ctor-offset-2^70", "G(0, offset=1 << 70)", V, "offset"),
    ("ctor-offset-float", "G(0, offset=1.0)", T, "offset"),
    ("ctor-offset-str", "G(0, offset='0')", T, "offset"),
    ("ctor-offset-none", "G(0, offset=None)", T, "offset"),
    ("ctor-offset-bool", "G(0, offset=True)", T, "offset"),
    ("ctor-stream-negative", "G(0, stream=-1)", V, "stream"),
    ("ctor-stream-2^64", "G(0, stream=U64)", V, "stream"),
    ("ctor-stream-float", "G(0, stream=0.0)", T, "stream"),
    ("ctor-stream-none", "G(0, stream=None)", T, "stream"),
    ("ctor-stream-bool", "G(0, stream=False)", T, "stream"),
    # ---- Generator.manual_seed / set_offset / set_state (state must stay as it was) ----------
    ("manual_seed-str", "g.manual_seed('1')", T, "seed"),
    ("manual_seed-float", "g.manual_seed(0.5)", T, "seed"),
    ("manual_seed-none", "g.manual_seed(None)", T, "seed"),
    ("manual_seed-bool", "g.manual_seed(True)", T, "seed"),
    ("manual_seed-2^64", "g.manual_seed(U64)", V, "seed"),
    ("manual_seed-below-int64", "g.manual_seed(-(1 << 63) - 1)", V, "seed"),
    ("set_offset-negative", "g.set_offset(-1)", V, "offset"),
    ("set_offset-2^64", "g.set_offset(U64)", V, "offset"),
    ("set_offset-2^70", "g.set_offset(1 << 70)", V, "offset"),
    ("set_offset-float", "g.set_offset(1.0)", T, "offset"),
    ("set_offset-str", "g.set_offset('5')", T, "offset"),
    ("set_offset-none", "g.set_offset(None)", T, "offset"),
    ("set_offset-bool", "g.set_offset(True)", T, "offset"),
    ("set_state-str", "g.set_state('FRG1')", T, "state"),
    ("set_state-none", "g.set_state(None)", T, "state"),
    ("set_state-list", "g.set_state(list(g.get_state().tolist()))", T, "state"),
    ("set_state-int", "g.set_state(0)", T, "state"),
    ("set_state-empty-bytes", "g.set_state(b'')", V, "state"),
    ("set_state-short-bytes", "g.set_state(bytes(h.get_state().numpy())[:31])", V, "state"),
    ("set_state-long-bytes", "g.set_state(bytes(h.get_state().numpy()) + b'\\0')", V, "state"),
    ("set_state-bad-magic", "g.set_state(b'XXXX' + bytes(h.get_state().numpy())[4:])", V, "state"),
    ("set_state-int64-tensor", "g.set_state(h.get_state().to(torch.int64))", V, "state"),
    ("set_state-2d-tensor", "g.set_state(h.get_state().view(4, 8))", V, "state"),
    ("set_state-zeros", "g.set_state(torch.zeros(32, dtype=torch.uint8))", V, "state"),
    ("set_state-torch-state", "g.set_state(tg.get_state())", V, "state"),
    ("randn_like-not-a-tensor", "F.randn_like([1.0, 2.0], generator=g)", T, "input"),
    ("rand_like-numpy", "F.rand_like(np.zeros(3), generator=g)", T, "input"),
]

# Parseable devices whose backend this machine lacks (skipped where the backend is present).
UNAVAILABLE = [
    *[
        (f"{fn}-device-{name}", f"{call}, device={dev})", V, "device", "cuda")
        for fn, call in [
            ("randn_tensor", "F.randn_tensor((2,), generator=g"),
            ("randn", "F.randn(2, generator=g"),
            ("rand", "F.rand(2, generator=g"),
            ("random_words", "F.random_words(2, generator=g"),
            ("randn_like", "F.randn_like(torch.zeros(2), generator=g"),
            ("rand_like", "F.rand_like(torch.zeros(2), generator=g"),
        ]
        for name, dev in [
            ("cuda", "'cuda'"),
            ("cuda0", "'cuda:0'"),
            ("cuda-device-obj", "torch.device('cuda', 1)"),
            ("int-0", "0"),
        ]
    ],
    (
        "randn_tensor-torch-cuda-tensor-device",
        "F.randn_tensor((2,), generator=g, device=torch.device('cuda'))",
        V,
        "device",
        "cuda",
    ),
    ("randn-device-mps", "F.randn(2, generator=g, device='mps')", V, "device", "mps"),
    (
        "randn_tensor-device-xla",
        "F.randn_tensor((2,), generator=g, device='xla')",
        V,
        "device",
        "xla",
    ),
]

# Inputs that are valid: each expression must evaluate to True.
HANDLED = [
    ("size-0", "tuple(F.randn(0, generator=g).shape) == (0,) and g.get_offset() == 0"),
    ("shape-0x3", "tuple(F.randn_tensor((0, 3), generator=g).shape) == (0, 3)"),
    ("rand-3x0", "tuple(F.rand(3, 0, generator=g).shape) == (3, 0) and g.get_offset() == 0"),
    ("words-0", "tuple(F.random_words(0, generator=g).shape) == (0,)"),
    ("like-empty", "tuple(F.randn_like(torch.zeros(0, 5), generator=g).shape) == (0, 5)"),
    (
        "shape-()",
        "tuple(F.randn_tensor((), generator=g).shape) == () and g.get_offset() == 1 "
        "and eq(F.randn_tensor((), generator=G(7)), ref.normal(7, 0, 0, 1, 'float32'))",
    ),
    ("randn-no-size", "tuple(F.randn(generator=g).shape) == ()"),
    ("list-of-one-for-()", "tuple(F.randn_tensor((), generator=[g]).shape) == ()"),
    ("list-for-empty-batch", "tuple(F.randn_tensor((0, 3), generator=[]).shape) == (0, 3)"),
    (
        "float64-size-0-odd-offset",
        "F.randn(0, generator=G(7, offset=3), dtype=torch.float64).numel() == 0",
    ),
    ("numpy-int-size", "tuple(F.randn(np.int64(3), np.uint8(2), generator=g).shape) == (3, 2)"),
    ("torch-size", "tuple(F.rand(torch.Size([2, 3]), generator=g).shape) == (2, 3)"),
    ("int-tensor-dim", "tuple(F.randn_tensor((torch.tensor(2),), generator=g).shape) == (2,)"),
    ("device-cpu-0", "F.randn(2, generator=g, device='cpu:0').device.type == 'cpu'"),
    ("seed-2^64-1", "G(U64 - 1).initial_seed() == U64 - 1"),
    ("seed-min-int64", "G(-(1 << 63)).initial_seed() == 1 << 63"),
    (
        "seed-negative",
        "G(-1).initial_seed() == U64 - 1 and "
        "eq(F.randn(4, generator=G(-1)), ref.normal(U64 - 1, 0, 0, 4, 'float32'))",
    ),
    ("seed-numpy-uint64", "G(np.uint64(U64 - 1)).initial_seed() == U64 - 1"),
    ("offset-2^64-1", "G(0, offset=U64 - 1).get_offset() == U64 - 1"),
    ("stream-2^64-1", "G(0, stream=U64 - 1).stream == U64 - 1"),
    ("set_offset-2^64-1", "g.set_offset(U64 - 1) is g and g.get_offset() == U64 - 1"),
    (
        "draw-at-2^64-1-wraps",
        "eq(F.randn(3, generator=g.set_offset(U64 - 1)), ref.normal(7, 0, U64 - 1, 3, 'float32')) "
        "and g.get_offset() == 2",
    ),
    (
        "float64-at-2^64-1-wraps",
        "eq(F.randn(2, generator=g.set_offset(U64 - 1), dtype=torch.float64), "
        "ref.normal(7, 0, U64 - 1, 2, 'float64')) and g.get_offset() == 4",
    ),
    (
        "words-at-2^64-1-stream-2^64-1",
        "eq(F.random_words(5, generator=G(U64 - 1, stream=U64 - 1, offset=U64 - 1)), "
        "ref.words(U64 - 1, U64 - 1, U64 - 1, 5))",
    ),
    (
        "set_state-bytes-roundtrip",
        "g.set_state(bytes(G(3, offset=U64 - 1, stream=5).get_state().numpy())) is g and "
        "(g.initial_seed(), g.stream, g.get_offset()) == (3, 5, U64 - 1)",
    ),
]

DRIVER = r"""
import json, sys, traceback
import numpy as np
import torch
import fastrand
import fastrand as F
from fastrand import Generator as G
from fastrand import reference as ref

U64 = 1 << 64

def bitsof(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().contiguous()
        w = x.element_size()
        return x.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[w]).numpy().view(
            {2: np.uint16, 4: np.uint32, 8: np.uint64}[w]).ravel()
    x = np.ascontiguousarray(x)
    return x.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[x.dtype.itemsize]).ravel()

def eq(a, b):
    return bool(np.array_equal(bitsof(a), bitsof(b)))

def gstate(x):
    return (x.initial_seed(), x.stream, x.get_offset())

table = json.load(sys.stdin)
for case in table:
    cid, expr, mode = case["id"], case["expr"], case["mode"]
    sys.stderr.write("START " + cid + "\n"); sys.stderr.flush()
    g, h = G(7), G(8)
    tg = torch.Generator().manual_seed(7)
    before = (gstate(g), gstate(h), tg.get_state().clone())
    out = {"id": cid}
    try:
        value = eval(expr)
        out["raised"] = None
        out["value"] = value if isinstance(value, bool) else repr(value)[:200]
    except BaseException as e:
        out["raised"] = type(e).__name__
        out["message"] = str(e)[:500]
        out["bases"] = [c.__name__ for c in type(e).__mro__]
        out["untouched"] = (gstate(g), gstate(h)) == before[:2] and torch.equal(
            tg.get_state(), before[2])
    sys.stdout.write(json.dumps(out) + "\n"); sys.stdout.flush()
sys.stderr.write("DONE\n")
"""


def _table():
    rows = [dict(id=c[0], expr=c[1], mode="refused") for c in REFUSED]
    rows += [dict(id=c[0], expr=c[1], mode="refused") for c in UNAVAILABLE]
    rows += [dict(id=c[0], expr=c[1], mode="handled") for c in HANDLED]
    return rows


def test_table_ids_are_unique():
    ids = [r["id"] for r in _table()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.fixture(scope="module")
def verdicts():
    """Runs the whole table in one child process; {case id: verdict} plus the run's record."""
    env = child_env()
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER],
        input=json.dumps(_table()),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    results = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            d = json.loads(line)
            results[d["id"]] = d
    started = [ln[6:] for ln in proc.stderr.splitlines() if ln.startswith("START ")]
    return dict(
        results=results,
        rc=proc.returncode,
        last=started[-1] if started else None,
        stderr=proc.stderr[-3000:],
    )


def _verdict(verdicts, cid):
    d = verdicts["results"].get(cid)
    if d is None:
        pytest.fail(
            f"the driver gave no verdict for {cid!r}: it exited with {verdicts['rc']} "
            f"(negative: killed by that signal) while running {verdicts['last']!r}\n"
            f"{verdicts['stderr']}"
        )
    return d


def test_driver_survived(verdicts):
    """No case crashed the process (a crash would be a negative return code)."""
    assert verdicts["rc"] == 0, (verdicts["rc"], verdicts["last"], verdicts["stderr"])
    assert set(verdicts["results"]) == {r["id"] for r in _table()}


def _check_refused(verdicts, cid, exc, pattern):
    d = _verdict(verdicts, cid)
    assert d["raised"] is not None, f"{cid}: accepted, returned {d['value']}"
    assert d["raised"] == exc or exc in d["bases"], (
        f"{cid}: raised {d['raised']}, expected {exc}: {d['message']}"
    )
    assert re.search(pattern, d["message"]), (
        f"{cid}: the message does not name the argument ({pattern}): {d['message']}"
    )
    assert d["untouched"], f"{cid}: the refused call changed a generator's state"


@pytest.mark.parametrize("cid,expr,exc,pattern", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(verdicts, cid, expr, exc, pattern):
    _check_refused(verdicts, cid, exc, pattern)


@pytest.mark.parametrize(
    "cid,expr,exc,pattern,backend", UNAVAILABLE, ids=[c[0] for c in UNAVAILABLE]
)
def test_refused_unavailable_device(verdicts, cid, expr, exc, pattern, backend):
    if backend == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    if backend == "mps" and torch.backends.mps.is_available():
        pytest.skip("MPS is available here")
    _check_refused(verdicts, cid, exc, pattern)


@pytest.mark.parametrize("cid,expr", HANDLED, ids=[c[0] for c in HANDLED])
def test_handled(verdicts, cid, expr):
    d = _verdict(verdicts, cid)
    assert d["raised"] is None, f"{cid}: raised {d['raised']}: {d['message']}"
    assert d["value"] is True, f"{cid}: {expr} gave {d['value']}"
