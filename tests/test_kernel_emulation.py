"""The CUDA kernels run on the CPU (tests/native/kernel_emu.cpp): the kernel source compiled by
the host compiler, every thread of each planned launch run in turn, with the kernel, grid and
parameter array of the launch plan the CUDA launchers use. Checks the kernels' index arithmetic,
every launch shape, the CUDA-graph state kernels and the box (region) kernel against the NumPy
reference, with no GPU. Skipped without a C++ compiler."""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import numpy as np
import pytest
from conftest import CSRC_INCLUDES, ref_bits

from fastrand import _C
from fastrand import reference as ref

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "tests", "native", "kernel_emu.cpp")
KIND_CODE = {"normal": 0, "uniform": 1, "words": 2}
DTYPE_CODE = {"float32": 0, "float16": 1, "bfloat16": 2, "float64": 3}
WIDTH = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
OPS = (
    [("normal", d) for d in DTYPE_CODE]
    + [("uniform", d) for d in DTYPE_CODE]
    + [("words", "float32")]  # the words' reference ignores the dtype; the code is uint32
)
U64 = 1 << 64


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    exe = str(tmp_path_factory.mktemp("emu") / "kernel_emu")
    flags = ["-std=c++17", "-O1", "-ffp-contract=off", "-fno-math-errno", "-Wno-unknown-pragmas"]
    subprocess.run(
        [cxx, *flags, *CSRC_INCLUDES, SRC, "-o", exe],
        check=True,
        capture_output=True,
    )
    return exe


def _codes(kind, dtype):
    return KIND_CODE[kind], (4 if kind == "words" else DTYPE_CODE[dtype])


def run(emu, mode, kind, dtype, seed, stream, offset, n, variant=0, sms=2, misalign=0, box=None):
    k, d = _codes(kind, dtype)
    args = [mode, k, d, seed, stream, offset, n, variant, sms, misalign]
    if box is not None:
        base, sizes, gstrides = box
        args += [base, ",".join(map(str, sizes)), ",".join(map(str, gstrides))]
    out = subprocess.run([emu, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (out.returncode, out.stderr, args)  # 4: a write out of bounds
    return np.array([int(h, 16) for h in out.stdout.split()], dtype=np.uint64)


def want(kind, dtype, seed, stream, offset, n):
    return ref_bits(kind, seed, stream, offset, n, dtype).astype(np.uint64)


def test_kernel_names_match_the_plan():
    assert len(_C.KERNEL_NAMES) == 74 and _C.cuda_variant_count() == 9  # with fr_probe


@pytest.mark.parametrize("kind,dtype", OPS)
def test_every_launch_shape(emu, kind, dtype):
    rng = random.Random(f"{kind}{dtype}")
    for variant in range(_C.cuda_variant_count()):
        for n, offset, misalign in (
            (0, 0, 0),
            (1, 3, 0),
            (7, 1, 0),
            (4109, 0, 0),  # whole blocks then a partial step and tail
            (4114, 2, 0),
            (1031, 0, WIDTH[dtype]),  # unaligned output: checked stores only
            (40, (1 << 34) - 16, 0),  # the block counter's low word carries: 64-bit path
            (33, U64 - 5, 0),  # positions wrap
        ):
            seed, stream = rng.randrange(U64), rng.choice([0, rng.randrange(U64)])
            got = run(emu, "fill", kind, dtype, seed, stream, offset, n, variant, 2, misalign)
            exp = want(kind, dtype, seed, stream, offset, n)
            assert np.array_equal(got, exp), (kind, dtype, variant, n, offset, misalign)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_large_default_two_blocks_per_step(emu, dtype):
    # sms=1: the default switches to 2 blocks per step from 65536 whole blocks
    n = 4 * 65536 * 2 + 5
    got = run(emu, "fill", "normal", dtype, 77, 3, 0, n, 0, 1)
    assert np.array_equal(got, want("normal", dtype, 77, 3, 0, n))


@pytest.mark.parametrize("kind,dtype", OPS)
def test_state_kernels(emu, kind, dtype):
    for n, offset in ((0, 0), (0, 1), (5, 3), (1000, 2), (4099, U64 - 9)):
        seed, stream = 1234567, 89
        out = run(emu, "state", kind, dtype, seed, stream, offset, n)
        assert np.array_equal(out[:n], want(kind, dtype, seed, stream, offset, n))
        ref_dtype = "float32" if kind == "words" else dtype
        assert int(out[n]) == ref.next_offset(offset, n, ref_dtype) % U64, (kind, dtype, n, offset)


def _box_case(rng, shape):
    """A random box of a global row-major tensor: (base, sizes, gstrides, index)."""
    index, sizes, base = [], [], 0
    gstrides = [int(np.prod(shape[d + 1 :])) for d in range(len(shape))]
    for d, dim in enumerate(shape):
        lo = rng.randrange(dim + 1)
        hi = rng.randrange(lo, dim + 1)
        index.append(slice(lo, hi))
        sizes.append(hi - lo)
        base += lo * gstrides[d]
    return base, sizes, gstrides, tuple(index)


@pytest.mark.parametrize("kind,dtype", OPS)
def test_box_kernel(emu, kind, dtype):
    rng = random.Random(f"box{kind}{dtype}")
    shapes = [(37,), (5, 9), (3, 4, 7), (2, 3, 5, 6), (2, 2, 2, 3, 2, 3, 2, 5), (1, 1, 1, 1)]
    for shape in shapes:
        for _ in range(4):
            base, sizes, gstrides, index = _box_case(rng, shape)
            seed, stream = rng.randrange(U64), rng.randrange(4)
            offset = rng.choice([0, 1, 2, 3, rng.randrange(U64)])
            full = want(kind, dtype, seed, stream, offset, int(np.prod(shape))).reshape(shape)
            exp = full[index].ravel()
            box = (base, sizes, gstrides)
            for mode, sms in (("box", 1), ("box", 3), ("box64", 2)):
                got = run(emu, mode, kind, dtype, seed, stream, offset, 0, 0, sms, 0, box)
                assert np.array_equal(got, exp), (mode, kind, dtype, shape, index, offset, sms)
    # boxes that are one run of global values (plain fills after merging), or not
    seed, stream, offset = 5, 6, 7
    full = want(kind, dtype, seed, stream, offset, 4 * 6 * 10).reshape(4, 6, 10)
    for box, index in (
        ((60, [2, 60], [60, 1]), np.s_[1:3]),
        ((60, [2, 6, 10], [60, 10, 1]), np.s_[1:3]),
        ((63, [1, 1, 5], [60, 10, 1]), np.s_[1:2, 0:1, 3:8]),
        ((63, [2, 1, 5], [60, 10, 1]), np.s_[1:3, 0:1, 3:8]),
        ((3, [4, 6, 1], [60, 10, 1]), np.s_[:, :, 3:4]),
    ):
        for mode in ("box", "box64"):
            got = run(emu, mode, kind, dtype, seed, stream, offset, 0, box=box)
            assert np.array_equal(got, full[index].ravel()), (mode, box)
