"""The CUDA kernel source as NVRTC sees it (no GPU needed).

- The sources embedded in fastrand._C are csrc's files byte for byte, and the main translation
  unit includes only them.
- They compile with NVRTC, with no include path, for every architecture NVRTC supports from
  sm_75, without errors or warnings, and each cubin holds every kernel the driver path looks up.
- The fast-math guard stops an NVRTC compile with --use_fast_math.
- The NVRTC cubin for sm_90 has the same machine code mix, kernel by kernel, as nvcc's build of
  the same source (as setup.py compiles it), and neither holds hardware log/sin/cos/exp (MUFU).

Skipped where NVRTC (pip install nvidia-cuda-nvrtc), cuobjdump/nvdisasm (nvidia-cuda-cuobjdump,
nvidia-cuda-nvdisasm) or nvcc are missing.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import csrc_file
from nvrtc_util import OPTIONS, Nvrtc, compile_in_child, find_nvrtc, find_tool

from fastrand import _C

SASS_ARCH = 90  # the architecture of the machine-code comparison
# Hardware approximations of transcendental functions: the stream computes these with its own
# polynomials (MUFU.RSQ/RCP seeds of correctly rounded sqrt and division are expected).
FORBIDDEN_MUFU = ("MUFU.LG2", "MUFU.EX2", "MUFU.SIN", "MUFU.COS", "MUFU.TANH")


@pytest.fixture(scope="module")
def nvrtc() -> Nvrtc:
    path = find_nvrtc()
    if path is None:
        pytest.skip("NVRTC not found (pip install nvidia-cuda-nvrtc)")
    return Nvrtc(path)


# Full optimisation, as the run-time backend compiles, in this process: the oldest arch
# (software bfloat16 rounding) and the arch of the machine-code comparison. Every other arch is
# compiled with NVRTC's --Ofast-compile=max (12.8+; 4-5x faster), which still runs the front end,
# the inline PTX and ptxas for that arch (what could fail or warn per arch), in a child process:
# NVRTC 13.5 carries that option's settings over to later compiles in the same process.
FULL_ARCHS = (75, SASS_ARCH)


@pytest.fixture(scope="module")
def archs(nvrtc: Nvrtc) -> list[int]:
    found = [a for a in nvrtc.supported_archs() if a >= 75]
    assert 75 in found and SASS_ARCH in found, found
    return found


@pytest.fixture(scope="module")
def cubins(nvrtc: Nvrtc, archs) -> dict[int, tuple[bytes, str]]:
    """arch -> (cubin, log) of FULL_ARCHS, two at a time (NVRTC releases the GIL and compiles
    separate programs concurrently)."""
    sources, main = _C.kernel_sources(), _C.KERNEL_MAIN
    with ThreadPoolExecutor(max_workers=2) as ex:
        outs = list(ex.map(lambda a: nvrtc.compile(sources, main, f"sm_{a}"), FULL_ARCHS))
    return dict(zip(FULL_ARCHS, outs))


def test_embedded_sources_are_csrc_files():
    sources = _C.kernel_sources()
    assert _C.KERNEL_MAIN in sources
    assert set(sources) == {"fastrand_kernels.cuh", "fastrand_stream.h", "math_probe.h"}
    for name, text in sources.items():
        with open(csrc_file(name), encoding="utf-8", newline="") as f:
            assert f.read() == text, f"{name}: the build embedded other bytes (rebuild _C)"
    # every quoted include of the program is one of the embedded files
    for text in sources.values():
        for inc in re.findall(r'^\s*#\s*include\s*"([^"]+)"', text, re.MULTILINE):
            assert inc in sources


def test_kernel_names():
    names = list(_C.KERNEL_NAMES)
    assert len(names) == len(set(names)) == 74  # 73 stream kernels and the math probe
    assert names[-1] == "fr_probe"
    src = _C.kernel_sources()[_C.KERNEL_MAIN]
    assert "fr_advance_state" in names
    for op in ("normal_f32", "normal_bf16", "normal_f64", "uniform_f16", "words_u32"):
        assert f"fr_fill_state_{op}" in names and f"fr_fill_box_{op}" in names
        assert f"fr_fill_{op}_n1_256" in names and f"fr_fill_{op}_w1_256" in names
    assert 'extern "C"' in src


def test_every_supported_arch_compiles_cleanly(nvrtc: Nvrtc, archs, cubins):
    names = list(_C.KERNEL_NAMES)
    for arch, (cubin, log) in cubins.items():
        assert log == "", f"sm_{arch}: NVRTC said:\n{log}"
        assert cubin[:4] == b"\x7fELF", f"sm_{arch}: not a cubin"
        for name in names:
            assert name.encode() + b"\0" in cubin, f"sm_{arch}: no kernel {name}"
    rest = [a for a in archs if a not in FULL_ARCHS]
    fast = ("--Ofast-compile=max",) if nvrtc.version() >= (12, 8) else ()
    res = compile_in_child(
        nvrtc.path, _C.kernel_sources(), _C.KERNEL_MAIN, rest, (*OPTIONS, *fast), names
    )
    assert sorted(res) == rest
    for arch, (log, problems) in res.items():
        assert log == "", f"sm_{arch}: NVRTC said:\n{log}"
        assert problems == "", f"sm_{arch}: the cubin lacks {problems}"


def test_fast_math_guard_stops_nvrtc(nvrtc: Nvrtc):
    with pytest.raises(RuntimeError, match="fast-math"):
        nvrtc.compile(
            _C.kernel_sources(), _C.KERNEL_MAIN, "compute_75", (*OPTIONS, "--use_fast_math"), True
        )


# ---------------------------------------------------------------------------------------------
# machine code


def _sass_tool() -> list[str]:
    for name, args in (("cuobjdump", ["-sass"]), ("nvdisasm", [])):
        path = find_tool(name)
        if path:
            return [path, *args]
    pytest.skip("neither cuobjdump nor nvdisasm found (pip install nvidia-cuda-cuobjdump)")


def sass_opcodes(path: str, arch: int | None = None) -> dict[str, collections.Counter]:
    """Kernel name -> opcode histogram (opcode with its modifiers for MUFU, base otherwise) of a
    cubin, or of the sm_<arch> code in a host binary (cuobjdump only)."""
    tool = _sass_tool()
    if arch is not None:
        if os.path.basename(tool[0]) != "cuobjdump":
            pytest.skip("reading a host binary needs cuobjdump")
        tool = [*tool, "-arch", f"sm_{arch}"]
    out = subprocess.run([*tool, path], capture_output=True, text=True, check=True).stdout
    kernels: dict[str, collections.Counter] = {}
    cur = None
    for line in out.splitlines():
        m = re.search(r"Function : (\S+)", line) or re.match(r"\.text\.(\S+):\s*$", line)
        if m:
            cur = m.group(1)
            kernels[cur] = collections.Counter()
            continue
        if line.lstrip().startswith(".section"):
            cur = None
            continue
        m = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if m and cur is not None:
            op = m.group(1)
            kernels[cur][op if op.startswith("MUFU") else op.split(".")[0]] += 1
    return kernels


def _math_ops(h: collections.Counter) -> dict[str, int]:
    """The floating-point arithmetic, conversions and special functions of a histogram."""
    return {
        op: n
        for op, n in h.items()
        if (op[0] in "FD" and op not in ("FLO", "DEPBAR")) or op.startswith(("MUFU", "I2F"))
    }


def _nvcc_version(nvcc: str) -> tuple[int, int]:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _aot_code(tmp_path) -> tuple[dict[str, collections.Counter], tuple[int, int]]:
    """The nvcc build's sm_90 machine code: the built extension's when it holds sm_90, else
    nvcc's cubin of the embedded kernel source with the build's device flags."""
    nvcc = find_tool("nvcc")
    if _C.CUDA and f"sm_{SASS_ARCH}" in _C.CUDA_ARCHS.split(",") and find_tool("cuobjdump"):
        ver = _nvcc_version(nvcc) if nvcc else (0, 0)  # the build's nvcc, as far as known
        return sass_opcodes(_C.__file__, SASS_ARCH), ver
    if nvcc is None:
        pytest.skip("no nvcc (CUDA toolkit): nothing to compare the NVRTC cubin with")
    src = tmp_path / "src"
    src.mkdir()
    for name, text in _C.kernel_sources().items():
        (src / name).write_bytes(text.encode())
    out = str(tmp_path / "aot.cubin")
    cmd = [nvcc, "-std=c++17", "-O3", "--fmad=false", "-x", "cu", "-cubin"]
    cmd += [f"-gencode=arch=compute_{SASS_ARCH},code=sm_{SASS_ARCH}"]
    cmd += [str(src / _C.KERNEL_MAIN), "-o", out]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return sass_opcodes(out), _nvcc_version(nvcc)


def test_nvrtc_machine_code_matches_nvcc(nvrtc: Nvrtc, cubins, tmp_path):
    aot, nvcc_ver = _aot_code(tmp_path)
    rtc_path = str(tmp_path / "nvrtc.cubin")
    with open(rtc_path, "wb") as f:
        f.write(cubins[SASS_ARCH][0])
    rtc = sass_opcodes(rtc_path)
    same_compiler = nvcc_ver == nvrtc.version()
    for name in _C.KERNEL_NAMES:
        assert name in aot and name in rtc, name
        a, r = aot[name], rtc[name]
        assert sum(a.values()) > 0
        for h in (a, r):
            bad = [op for op in h if op.startswith(FORBIDDEN_MUFU)]
            assert not bad, f"{name}: hardware transcendental instructions {bad}"
        # The arithmetic that makes the values: always the same.
        assert _math_ops(a) == _math_ops(r), name
        if same_compiler:
            assert a == r, f"{name}: {a} vs {r}"
        else:
            # Another compiler release may schedule the integer/index code differently.
            na, nr = sum(a.values()), sum(r.values())
            assert abs(na - nr) <= 0.05 * na, f"{name}: {na} vs {nr} instructions"
