"""CPU code built outside the package: the portable loop natively with the host compiler, and the
CPU core for 64-bit ARM (aarch64-linux-gnu-g++, run under qemu-aarch64) where those tools are
installed. Each build's output must equal the NumPy reference (and the committed goldens of
stream v1) bit for bit.

The aarch64 core is the package's own dispatch, worker pool, fill and box loops
(tests/native/cpu_core_run.cpp drives backend.h), with its NEON and scalar paths, compiled with
setup.py's host flags. A negative control recompiles the NEON and scalar loops with
-ffp-contract=fast (g++'s default, even with -std=c++17) and requires these tests to see it."""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import CSRC_INCLUDES, bits, child_env, csrc_file, ref_bits

from fastrand import reference as ref

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE = os.path.join(ROOT, "tests", "native")
SRC = os.path.join(NATIVE, "stream_dump.cpp")
FLAGS = [
    "-std=c++17",
    "-O2",
    "-ffp-contract=off",
    "-fno-math-errno",
    *CSRC_INCLUDES,
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


# --------------------------------------------------------------------------------------------
# The aarch64 CPU core under qemu: NEON and scalar paths

U64 = 1 << 64
ARM_ISAS = ("neon", "scalar")
KINDS = [  # kind, dtype, kind code, dtype code
    ("normal", "float32", 0, 0),
    ("normal", "float16", 0, 1),
    ("normal", "bfloat16", 0, 2),
    ("normal", "float64", 0, 3),
    ("uniform", "float32", 1, 0),
    ("uniform", "float16", 1, 1),
    ("uniform", "bfloat16", 1, 2),
    ("uniform", "float64", 1, 3),
    ("words", "uint32", 2, 4),
]
# setup.py's host flags (no -fPIC / visibility: a static test executable)
CORE_FLAGS = ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno", *CSRC_INCLUDES]
CORE_SOURCES = [  # the slowest to compile first
    csrc_file(name)
    for name in (
        "cpu_box_neon.cpp",
        "cpu_neon.cpp",
        "cpu_box_scalar.cpp",
        "cpu_scalar.cpp",
        "cpu.cpp",
        "cpu_box.cpp",
        "parallel.cpp",
    )
] + [os.path.join(NATIVE, "cpu_core_run.cpp")]
# the negative control: these fill loops again with contraction on
CONTRACTED = ("cpu_neon.cpp", "cpu_scalar.cpp")


class Core:
    """The aarch64 executables: `normal` (setup.py's flags) and `contracted`."""

    def __init__(self, qemu, normal, contracted, tmp):
        self.qemu, self.exes, self.tmp = qemu, {"normal": normal, "contracted": contracted}, tmp

    def run(self, lines, build="normal"):
        """Runs cpu_core_run on the case lines; returns the bytes it wrote."""
        cases, out = self.tmp / "cases.txt", self.tmp / "out.bin"
        cases.write_text("\n".join(lines) + "\n")
        p = subprocess.run(
            [self.qemu, self.exes[build], str(cases), str(out)], capture_output=True, text=True
        )
        assert p.returncode == 0, p.stderr
        return out.read_bytes()


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    cxx, qemu = shutil.which("aarch64-linux-gnu-g++"), shutil.which("qemu-aarch64")
    if cxx is None or qemu is None:
        pytest.skip("aarch64-linux-gnu-g++ and qemu-aarch64 are not installed")
    tmp = tmp_path_factory.mktemp("aarch64-core")
    jobs = [(src, "", []) for src in CORE_SOURCES]
    jobs[2:2] = [(csrc_file(name), "fast-", ["-ffp-contract=fast"]) for name in CONTRACTED]

    def compile_one(job):
        src, tag, extra = job
        obj = str(tmp / (tag + os.path.basename(src) + ".o"))
        p = subprocess.run(
            [cxx, *CORE_FLAGS, *extra, "-c", src, "-o", obj], capture_output=True, text=True
        )
        assert p.returncode == 0, p.stderr
        return obj

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as ex:
        objs = list(ex.map(compile_one, jobs))
    normal = [o for o in objs if not os.path.basename(o).startswith("fast-")]
    fast = {os.path.basename(o)[5:]: o for o in objs if os.path.basename(o).startswith("fast-")}
    contracted = [fast.get(os.path.basename(o), o) for o in normal]
    exes = []
    for name, objects in (("core", normal), ("core-contracted", contracted)):
        exe = str(tmp / name)
        subprocess.run([cxx, "-static", "-pthread", *objects, "-o", exe], check=True)
        exes.append(exe)
    return Core(qemu, *exes, tmp)


def test_aarch64_path_choice(core):
    """NEON is chosen by itself on aarch64; FASTRAND_CPU_ISA=neon and =scalar select those paths
    without a warning, an x86 name falls back to scalar quietly, a name of no path says so."""

    def info(value):
        env = {k: v for k, v in os.environ.items() if k != "FASTRAND_CPU_ISA"}
        if value is not None:
            env["FASTRAND_CPU_ISA"] = value
        p = subprocess.run(
            [core.qemu, core.exes["normal"], "info"], env=env, capture_output=True, text=True
        )
        assert p.returncode == 0, p.stderr
        available, selected, warning = p.stdout.split("\n")[:3]
        return available.split(), selected, warning

    assert info(None) == (["scalar", "neon"], "neon", "")
    assert info("neon") == (["scalar", "neon"], "neon", "")
    assert info("scalar") == (["scalar", "neon"], "scalar", "")
    assert info("avx512") == (["scalar", "neon"], "scalar", "")
    _, selected, warning = info("sve")
    assert selected == "scalar" and "FASTRAND_CPU_ISA=sve" in warning and "neon" in warning


def test_neon_is_a_known_path_name():
    """On any build, FASTRAND_CPU_ISA=neon is a path name (no warning): NEON where the build
    has it, else scalar."""
    code = (
        "import json, warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    from fastrand import _C\n"
        "print(json.dumps([_C.cpu_isa_available(), _C.cpu_isa_selected(), len(w)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(FASTRAND_CPU_ISA="neon"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    available, selected, warnings = json.loads(out)
    assert selected == ("neon" if "neon" in available else "scalar") and warnings == 0


def _ref(kind, dtype, seed, stream, offset, n):
    return ref_bits(kind, seed, stream, offset, n, dtype)


class Expect:
    """Case lines for cpu_core_run and the bytes each must produce."""

    def __init__(self):
        self.lines, self.want, self.labels = [], [], []

    def add(self, line, want, label):
        self.lines.append(line)
        self.want.append(np.ascontiguousarray(want).astype(want.dtype.newbyteorder("<")).tobytes())
        self.labels.append(label)

    def mismatches(self, got):
        """The labels of the cases whose bytes differ (all of them past a length mismatch)."""
        if len(got) != sum(len(w) for w in self.want):
            return list(self.labels)
        bad, at = [], 0
        for want, label in zip(self.want, self.labels):
            if got[at : at + len(want)] != want:
                bad.append(label)
            at += len(want)
        return bad

    def check(self, core, build="normal"):
        bad = self.mismatches(core.run(self.lines, build))
        assert not bad, f"{len(bad)} of {len(self.lines)} cases differ: {bad[:8]}"


def _fill(isa, threads, kc, dc, seed, stream, offset, n, misalign=0):
    return f"fill {isa} {threads} {kc} {dc} {seed} {stream} {offset} {n} {misalign}"


# offsets: inside a block, a SIMD group whose block index carries into the high counter word,
# and positions that wrap past 2^64 (block indices past 2^62) inside the request
TAIL_OFFSETS = [0, 1, 2, 3, 4 * (2**32 - 5) + 1, U64 - 4 * 5 - 2]


def test_aarch64_fill_tails_and_offsets(core):
    """Every length 1..67 (past the widest NEON step of 16 blocks, then the 8- and 4-block steps
    and the scalar tail) from every start inside a block, across the carry and the 2^64 wrap,
    output off 64-byte alignment, every kind and dtype, NEON and scalar."""
    e = Expect()
    for i, (kind, dtype, kc, dc) in enumerate(KINDS):
        for j, offset in enumerate(TAIL_OFFSETS):
            seed, stream = 0x9E3779B97F4A7C15 * (i + 1) % U64, (j << 61) + i
            want = _ref(kind, dtype, seed, stream, offset, 67)
            for isa in ARM_ISAS:
                for n in range(1, 68):
                    e.add(
                        _fill(isa, 1, kc, dc, seed, stream, offset, n, n % 3),
                        want[:n],
                        (isa, kind, dtype, offset, n),
                    )
    e.check(core)


def test_aarch64_fill_thread_splits(core):
    """1, 2 and 3 threads (pieces of 2^16 values and more, rounded to 64) from an odd offset."""
    n = (1 << 17) + 67
    e = Expect()
    for kind, dtype, kc, dc in KINDS:
        want = _ref(kind, dtype, 41, 2**63 + 3, 3, n)
        for isa in ARM_ISAS:
            for threads in (1, 2, 3):
                e.add(_fill(isa, threads, kc, dc, 41, 2**63 + 3, 3, n), want, (isa, kind, dtype))
    e.check(core)


# (global shape, box as (start, stop) per dimension): the box loop's paths for float32 and float64
BOXES = [
    ((40, 12), ((0, 40), (0, 4))),  # rows of whole blocks back to back: the lanes store directly
    ((64, 8), ((0, 64), (3, 4))),  # one value a row, rows whole blocks apart
    ((64, 7), ((0, 64), (2, 3))),  # one value a row, four phase classes (a strided copy)
    ((50, 13), ((1, 49), (2, 7))),  # short rows in four phase classes, through the buffer
    ((80, 18), ((0, 80), (1, 18))),  # rows two positions apart modulo 4: two classes
    ((700, 37), ((0, 700), (3, 30))),  # rows that straddle the buffer's chunks
    ((4, 9, 11), ((1, 4), (2, 8), (3, 6))),  # 3-D: runs along the inner dimension
    ((3, 1100), ((0, 3), (5, 1090))),  # long rows: plain requests
    ((300,), ((7, 290),)),  # one dimension
]


def _box(shape, spans):
    """(base, sizes, global strides) of a box of a row-major tensor."""
    strides = [int(np.prod(shape[d + 1 :])) for d in range(len(shape))]
    base = sum(lo * s for (lo, _), s in zip(spans, strides))
    return base, [hi - lo for lo, hi in spans], strides


def _box_line(isa, threads, kc, dc, seed, stream, offset, shape, spans, misalign=0):
    base, sizes, strides = _box(shape, spans)
    dims = " ".join(str(x) for x in [len(shape), base, *sizes, *strides])
    return f"box {isa} {threads} {kc} {dc} {seed} {stream} {offset} {dims} {misalign}"


def _box_want(kind, dtype, seed, stream, offset, shape, spans):
    full = _ref(kind, dtype, seed, stream, offset, int(np.prod(shape))).reshape(shape)
    return full[tuple(slice(lo, hi) for lo, hi in spans)].ravel()


def test_aarch64_box_fills(core):
    """Region draws with short rows (each path of the box loop), a 3-D box, long rows and a 1-D
    box, from an offset inside a block and one whose positions wrap past 2^64, every kind and
    dtype, NEON and scalar: the values of the full draw at the box."""
    e = Expect()
    for kind, dtype, kc, dc in KINDS:
        for offset in (7, U64 - 4 * 1000 - 1):
            for k, (shape, spans) in enumerate(BOXES):
                want = _box_want(kind, dtype, 5, 9, offset, shape, spans)
                for isa in ARM_ISAS:
                    line = _box_line(isa, 1, kc, dc, 5, 9, offset, shape, spans, k % 3)
                    e.add(line, want, (isa, kind, dtype, offset, shape, spans))
    e.check(core)


def test_aarch64_box_thread_splits(core):
    """A box of 518 x 297 values split across 1, 2 and 3 threads (pieces start inside rows)."""
    shape, spans = (520, 300), ((1, 519), (2, 299))
    e = Expect()
    for kind, dtype, kc, dc in KINDS:
        want = _box_want(kind, dtype, 6, 1, 2**33 + 1, shape, spans)
        for isa in ARM_ISAS:
            for threads in (1, 2, 3):
                line = _box_line(isa, threads, kc, dc, 6, 1, 2**33 + 1, shape, spans)
                e.add(line, want, (isa, kind, dtype, threads))
    e.check(core)


def test_aarch64_golden_file(core):
    """Every draw of tests/golden/stream_v1.json, the lock on stream v1 that the x86 paths
    reproduce too: SHA-256 of the first 1, 5 and 1000 values, and the large draws on 3 threads."""
    golden = json.loads(GOLDEN.read_text())
    lines, checks = [], []  # checks: (bytes a value, {values: sha256}, label)
    for c in golden["cases"]:
        for isa in ARM_ISAS:
            lines.append(_fill(isa, 1, *_codes(c), c["seed"], c["stream"], c["offset"], 1000))
            checks.append((WIDTH.get(c["dtype"], 4), c["sha256"], (isa, c)))
    for c in golden["large"]:
        for isa in ARM_ISAS:
            lines.append(_fill(isa, 3, *_codes(c), c["seed"], c["stream"], c["offset"], c["n"]))
            checks.append((WIDTH.get(c["dtype"], 4), {str(c["n"]): c["sha256"]}, (isa, c)))
    got, at, bad = core.run(lines), 0, []
    for width, shas, label in checks:
        size = width * max(int(m) for m in shas)
        for m, sha in shas.items():
            if hashlib.sha256(got[at : at + int(m) * width]).hexdigest() != sha:
                bad.append((m, label))
        at += size
    assert at == len(got) and not bad, f"{len(bad)} draws differ: {bad[:4]}"


GOLDEN = pathlib.Path(ROOT) / "tests" / "golden" / "stream_v1.json"
WIDTH = {"float16": 2, "bfloat16": 2, "float64": 8}


def _codes(case):
    """(kind code, dtype code) of a golden case."""
    return next((kc, dc) for k, d, kc, dc in KINDS if k == case["kind"] and d == case["dtype"])


def _transform_lines(core, isa, kind_dtypes, words, tag):
    path = core.tmp / f"words-{tag}.bin"
    np.ascontiguousarray(words, dtype="<u4").tofile(path)
    return [f"transform {isa} {kc} {dc} {path}" for kc, dc in kind_dtypes]


def test_aarch64_transform_edges(core):
    """The normals' transform at the regime edges the x86 paths are tested at (test_stream_cpu's
    radius windows with angle edges in every quadrant; test_float64_simd's float64 radius, angle
    and uniform edge sets), each block through the NEON lanes (whole groups) and the scalar
    path: float32, float16 (its subnormals included), bfloat16 and float64."""
    from test_float64_simd import _angle_case, _radius_case, _uniform_case
    from test_stream_cpu import _radius_windows

    w0 = np.concatenate([np.arange(f, f + c, dtype=np.uint64) for f, c in _radius_windows()])
    t = [(q << 24) + lo + np.arange(2048) for q in range(4) for lo in (0, (1 << 23) - 1024)]
    t += [(q << 24) + (1 << 24) - 1024 + np.arange(1024) for q in range(4)]
    w1 = (np.concatenate(t).astype(np.uint64) << np.uint64(6)) | np.uint64(0x2A)
    w1 = np.resize(w1, len(w0))  # every angle word, repeated along the radius words
    m = len(w0) // 2 * 2
    w32 = np.stack([w0[:m:2], w1[:m:2], w0[1:m:2], w1[1:m:2]], axis=1).astype(np.uint32)
    w32 = np.concatenate([w32, w32[: (-len(w32)) % 16]])  # whole NEON groups
    r0, r2 = ref.radius32(w32[:, 0]), ref.radius32(w32[:, 2])
    (s1, c1), (s3, c3) = ref.angle32(w32[:, 1]), ref.angle32(w32[:, 3])
    f32 = np.stack([r0 * s1, r0 * c1, r2 * s3, r2 * c3], axis=1).ravel()
    assert int((np.abs(f32) < 2.0**-14).sum()) > 1000  # float16 subnormals
    cases = [
        ((0, 0), bits(f32)),
        ((0, 1), bits(f32.astype(np.float16))),
        ((0, 2), ref._bf16_bits(f32)),
    ]
    e = Expect()
    for isa in ARM_ISAS:
        for codes, want in cases:
            [line] = _transform_lines(core, isa, [codes], w32, "f32")
            e.add(line, want, (isa, codes))
        for k, (words, want, *_) in enumerate((_radius_case(), _angle_case())):
            [line] = _transform_lines(core, isa, [(0, 3)], words, f"f64-{k}")
            e.add(line, want, (isa, "normal float64", k))
        words, want = _uniform_case()
        [line] = _transform_lines(core, isa, [(1, 3)], words, "u64")
        e.add(line, want, (isa, "uniform float64"))
    e.check(core)


def test_aarch64_contraction_is_caught(core):
    """Negative control: the NEON and scalar fill loops built with -ffp-contract=fast (g++'s
    default for C++, which fuses a * b + c into one fma on aarch64) give other float64
    normals, and these tests see it on both paths; with setup.py's -ffp-contract=off the same
    cases pass. (GCC finds nothing to fuse in the float32 math: every product there feeds a
    multiply or an explicit fma, so those bits do not change.)"""
    e = Expect()
    for seed in range(1, 4):
        want = _ref("normal", "float64", seed, 0, 1, 4096)
        for isa in ARM_ISAS:
            e.add(_fill(isa, 1, 0, 3, seed, 0, 1, 4096), want, (isa, seed))
    e.check(core)
    bad = e.mismatches(core.run(e.lines, "contracted"))
    assert {isa for isa, _ in bad} == set(ARM_ISAS), bad
