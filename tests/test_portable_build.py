"""The portable CPU loop built outside the package: natively with the host compiler, and for
64-bit ARM (aarch64-linux-gnu-g++, run under qemu-aarch64) where those tools are installed.
Each build's output must equal the NumPy reference bit for bit."""

import os
import shutil
import subprocess

import numpy as np
import pytest
from conftest import ref_bits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "tests", "native", "stream_dump.cpp")
FLAGS = [
    "-std=c++17",
    "-O2",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-I" + os.path.join(ROOT, "csrc"),
]
CASES = [  # kind, dtype name, dtype code, seed, stream, offset, n
    ("normal", "float32", 0, 0x9ABCDEF012345678, 0, 0, 37),
    ("normal", "float32", 0, 1, 2**63 + 5, 3, 41),
    ("normal", "float16", 1, 7, 0, 1, 29),
    ("normal", "bfloat16", 2, 8, 1, 2, 30),
    ("normal", "float64", 3, 9, 0, 3, 17),
    ("uniform", "float32", 0, 10, 0, 5, 19),
    ("uniform", "float64", 3, 11, 0, 1, 9),
    ("words", "float32", 4, 12, 3, 2**64 - 6, 12),
]
KIND_CODE = {"normal": 0, "uniform": 1, "words": 2}


def _check(runner):
    for kind, dtype, code, seed, stream, offset, n in CASES:
        out = runner([str(seed), str(stream), str(offset), str(n), str(KIND_CODE[kind]), str(code)])
        got = np.array([int(h, 16) for h in out.split()], dtype=np.uint64)
        want = ref_bits(kind, seed, stream, offset, n, dtype).astype(np.uint64)
        assert np.array_equal(got, want), (kind, dtype, seed, stream, offset, n)


def _build(compiler, tmp_path, extra=()):
    exe = str(tmp_path / ("dump-" + os.path.basename(compiler)))
    subprocess.run([compiler, *FLAGS, *extra, SRC, "-o", exe], check=True, capture_output=True)
    return exe


def test_native_build_matches_reference(tmp_path):
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    exe = _build(cxx, tmp_path)
    _check(
        lambda args: subprocess.run([exe, *args], check=True, capture_output=True, text=True).stdout
    )


def test_aarch64_build_matches_reference(tmp_path):
    cxx, qemu = shutil.which("aarch64-linux-gnu-g++"), shutil.which("qemu-aarch64")
    if cxx is None or qemu is None:
        pytest.skip("aarch64-linux-gnu-g++ and qemu-aarch64 are not installed")
    exe = _build(cxx, tmp_path, ["-static"])
    _check(
        lambda args: (
            subprocess.run([qemu, exe, *args], check=True, capture_output=True, text=True).stdout
        )
    )
