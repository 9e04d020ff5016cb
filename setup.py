"""Build of fastrand's compiled core (fastrand._C).

The core is plain C++17 (and CUDA when nvcc is found) bound with pybind11; it never includes
torch headers, so the build needs only setuptools and pybind11 and one build works with any
torch. Each source gets its own flags: the per-ISA CPU kernels their -m flags, the CUDA kernel
nvcc. Stream math is never compiled with fast-math or floating-point contraction.

Every build, with or without nvcc, holds the CUDA kernel source (csrc/cuda/fastrand_kernels.cuh
and the headers it includes, embedded byte for byte so the run-time backend compiles them with
NVRTC) and the driver-API launcher (plain C++, libcuda opened at run time).

Environment:
  FASTRAND_CUDA=0|1          force the CUDA kernel off / on (default: on when nvcc is found)
  FASTRAND_CUDA_ARCHS        e.g. "90" or "75;80;90+PTX" (else TORCH_CUDA_ARCH_LIST, else every
                             arch the local nvcc supports from sm_75 up, plus PTX of the newest)
  CUDA_HOME / CUDA_PATH      CUDA toolkit root (else /usr/local/cuda, else nvcc on PATH)
"""

import os
import platform
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _read_version():
    """The version from src/fastrand/_version.py (its one source), read without importing."""
    with open(os.path.join(HERE, "src", "fastrand", "_version.py"), encoding="utf-8") as f:
        m = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.M)
    if m is None:
        raise RuntimeError("src/fastrand/_version.py: no __version__ line")
    return m.group(1)


HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = _read_version()
CSRC = "csrc"
# csrc/ by part: backend.h at the top (the interface between the bindings and the backends), the
# stream math (host and device), the CPU backend, the CUDA backend, the Python bindings. Every
# file includes the others by bare name (#include "x.h") with -I for each folder, as NVRTC sees
# the kernel source (files named by bare name), so a name is in one folder only (csrc_file).
CSRC_DIRS = [CSRC] + [os.path.join(CSRC, d) for d in ("stream", "cpu", "cuda", "bindings")]

# Host flags for every translation unit: exact IEEE arithmetic, no contraction, no errno calls
# around sqrt (a correctly rounded sqrt either way).
HOST_FLAGS = [
    "-std=c++17",
    "-O3",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fvisibility=hidden",
    "-fPIC",
]
# Per-ISA CPU sources, by target architecture: each is compiled only for its architecture, with
# its own flags. The x86-64 paths are chosen at run time by CPUID; NEON (Advanced SIMD) is part of
# every AArch64 core, so its sources need no flag (the baseline -march keeps the build portable).
_X86_AVX2 = ["-mavx2", "-mfma", "-mf16c"]
_X86_AVX512 = _X86_AVX2 + ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl"]
ISA_SOURCES = {
    "x86_64": {
        "cpu_avx2.cpp": _X86_AVX2,
        "cpu_avx512.cpp": _X86_AVX512,
        "cpu_box_avx2.cpp": _X86_AVX2,  # the region-draw loops
        "cpu_box_avx512.cpp": _X86_AVX512,
    },
    "aarch64": {"cpu_neon.cpp": [], "cpu_box_neon.cpp": []},
}
ISA_FLAGS = {name: flags for srcs in ISA_SOURCES.values() for name, flags in srcs.items()}
# pieces of the flags that would break bit-identity (GCC/Clang and nvcc fast-math, -O fast,
# fast contraction): no compile command may contain them
FORBIDDEN = ("fast-math", "Ofast", "fast_math", "fp-contract=fast")


def log(msg):
    print(f"fastrand build: {msg}", file=sys.stderr, flush=True)


def macos_arch_flags():
    """macOS: ["-arch", A] for the one architecture to build (ARCHFLAGS, else the running
    Python's), for the compiles and the link (which would otherwise take the interpreter's
    universal2 -arch pair). The per-ISA kernels differ by architecture, so a universal2 build
    is refused with a clear message. Elsewhere: no flags (the compiler's own target)."""
    if sys.platform != "darwin":
        return []
    archs = set(re.findall(r"-arch\s+(\S+)", os.environ.get("ARCHFLAGS", "")))
    if len(archs) > 1:
        raise RuntimeError(
            f"ARCHFLAGS names several architectures ({' '.join(sorted(archs))}); fastrand builds "
            "one at a time: set ARCHFLAGS='-arch arm64' or ARCHFLAGS='-arch x86_64'"
        )
    return ["-arch", archs.pop() if archs else platform.machine()]


def target_arch(cxx, arch_flags):
    """'x86_64', 'aarch64' or another name: the architecture `cxx` compiles for, read from its
    predefined macros (right for cross compilers and -arch), else from this machine."""
    try:
        macros = subprocess.run(
            [cxx, *arch_flags, "-dM", "-E", "-x", "c++", os.devnull],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        macros = ""
    if re.search(r"^#define __x86_64__ ", macros, re.M):
        return "x86_64"
    if re.search(r"^#define __aarch64__ ", macros, re.M):
        return "aarch64"
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def _toolkit_nvcc():
    """(cuda_root, nvcc) of the CUDA toolkit, or (None, None)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return root, os.path.join(root, "bin", "nvcc")
    if os.path.isfile("/usr/local/cuda/bin/nvcc"):
        return "/usr/local/cuda", "/usr/local/cuda/bin/nvcc"
    nvcc = shutil.which("nvcc")
    if nvcc:
        # nvcc on PATH may be a wrapper outside the toolkit: accept it only where the toolkit's
        # static runtime sits beside it.
        root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if _cudart_dir(root):
            return root, nvcc
    return None, None


def _cudart_dir(root):
    for sub in (
        "lib64",
        "lib",
        os.path.join("targets", "x86_64-linux", "lib"),
        os.path.join("targets", "sbsa-linux", "lib"),
    ):
        d = os.path.join(root, sub)
        if os.path.isfile(os.path.join(d, "libcudart_static.a")):
            return d
    return None


def _parse_archs(spec):
    """'7.5;8.6+PTX sm_90' -> ([75, 86, 90], {86})."""
    archs, ptx = [], set()
    for tok in re.split(r"[;,\s]+", spec.strip()):
        if not tok:
            continue
        m = re.fullmatch(r"(?:sm_|compute_)?(\d+)\.?(\d*)([a-z]?)(\+PTX)?", tok, re.IGNORECASE)
        if not m:
            raise ValueError(f"FASTRAND_CUDA_ARCHS/TORCH_CUDA_ARCH_LIST: cannot read {tok!r}")
        num = int(m.group(1) + m.group(2)) if m.group(2) else int(m.group(1))
        if num < 10:  # "9" style major-only
            num *= 10
        if num not in archs:
            archs.append(num)
        if m.group(4):
            ptx.add(num)
    if not archs:
        raise ValueError("FASTRAND_CUDA_ARCHS/TORCH_CUDA_ARCH_LIST names no architecture")
    return archs, ptx


def _default_archs(nvcc):
    out = subprocess.run(
        [nvcc, "--list-gpu-arch"], capture_output=True, text=True, check=True
    ).stdout
    nums = sorted({int(m) for m in re.findall(r"compute_(\d+)\b", out) if int(m) >= 75})
    if not nums:
        raise RuntimeError("nvcc --list-gpu-arch lists no architecture >= 75")
    return nums, {nums[-1]}


def cuda_config():
    """None when the CUDA kernel is not built, else a dict of what to build it with."""
    want = os.environ.get("FASTRAND_CUDA", "").strip()
    if want not in ("", "0", "1"):
        raise ValueError(f"FASTRAND_CUDA must be 0 or 1, not {want!r}")
    if want == "0":
        log("CUDA kernel off (FASTRAND_CUDA=0)")
        return None
    root, nvcc = _toolkit_nvcc()
    if nvcc is None or _cudart_dir(root) is None:
        if want == "1":
            raise RuntimeError(
                "FASTRAND_CUDA=1 but no CUDA toolkit (nvcc + libcudart_static.a) "
                "was found; set CUDA_HOME"
            )
        log("no CUDA toolkit found: building the CPU core only")
        return None
    spec = os.environ.get("FASTRAND_CUDA_ARCHS") or os.environ.get("TORCH_CUDA_ARCH_LIST")
    archs, ptx = _parse_archs(spec) if spec else _default_archs(nvcc)
    archs = sorted(archs)
    gencode = []
    for a in archs:
        gencode += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
        if a in ptx:
            gencode += ["-gencode", f"arch=compute_{a},code=compute_{a}"]
    names = ",".join([f"sm_{a}" for a in archs] + [f"compute_{a}" for a in sorted(ptx)])
    log(f"CUDA kernel on: {nvcc}, {names}")
    return {
        "root": root,
        "nvcc": nvcc,
        "gencode": gencode,
        "names": names,
        "libdir": _cudart_dir(root),
    }


def csrc_file(name):
    """The path (from the project root) of csrc's file `name`, in whichever of CSRC_DIRS holds
    it. Every name must be in one folder only (a bare-name include would be ambiguous)."""
    found = [
        os.path.join(d, name) for d in CSRC_DIRS if os.path.isfile(os.path.join(HERE, d, name))
    ]
    if not found:
        raise RuntimeError(f"csrc file {name!r} is in none of {', '.join(CSRC_DIRS)}")
    if len(found) > 1:
        raise RuntimeError(
            f"csrc file {name!r} is in several folders ({', '.join(found)}): the sources include "
            "each other by bare name, so a name must be in one folder only"
        )
    return found[0]


def check_csrc_names():
    """Refuses a file name found in two csrc folders (see csrc_file)."""
    for d in CSRC_DIRS:
        for name in os.listdir(os.path.join(HERE, d)):
            if os.path.isfile(os.path.join(HERE, d, name)):
                csrc_file(name)


KERNEL_MAIN = "fastrand_kernels.cuh"


def kernel_source_files():
    """The NVRTC program's files: KERNEL_MAIN and every csrc file it includes with #include "x"
    (transitively), bare name -> bytes. System includes (<...>) are not followed: the source
    keeps them out of NVRTC's way (see fastrand_stream.h)."""
    files, todo = {}, [KERNEL_MAIN]
    while todo:
        name = todo.pop()
        if name in files:
            continue
        with open(os.path.join(HERE, csrc_file(name)), "rb") as f:
            data = f.read()
        files[name] = data
        for inc in re.findall(rb'^\s*#\s*include\s*"([^"]+)"', data, re.MULTILINE):
            todo.append(inc.decode())
    return files


def write_kernel_sources(path):
    """Writes the C++ include that embeds kernel_source_files() (bindings_cuda.cpp)."""
    lines = ["// Generated by setup.py: the CUDA kernel source files, byte for byte.", ""]
    entries = []
    for i, (name, data) in enumerate(sorted(kernel_source_files().items())):
        body = ",".join(str(b) for b in data)
        lines.append(f"static const unsigned char kKernelSource{i}[] = {{{body}}};")
        entries.append(f'  {{"{name}", kKernelSource{i}, {len(data)}}},')
    lines += [
        "struct KernelSourceFile {",
        "  const char* name;",
        "  const unsigned char* bytes;",
        "  unsigned long size;",
        "};",
        "static const KernelSourceFile kKernelSources[] = {",
        *entries,
        "};",
        f'#define FASTRAND_KERNEL_MAIN "{KERNEL_MAIN}"',
        "",
    ]
    text = "\n".join(lines)
    old = None
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    if old != text:
        with open(path, "w") as f:
            f.write(text)


class BuildExt(build_ext):
    """Compiles each source with its own flags (.cu through nvcc), then links them."""

    def build_extension(self, ext):
        check_csrc_names()
        cuda = cuda_config()
        import pybind11

        csrc_includes = [f"-I{os.path.join(HERE, d)}" for d in CSRC_DIRS]
        includes = [pybind11.get_include()]
        import sysconfig

        includes.append(sysconfig.get_paths()["include"])
        defines = [("FASTRAND_VERSION", f'"{VERSION}"')]
        if cuda:
            defines.append(("FASTRAND_WITH_CUDA", "1"))
        os.makedirs(self.build_temp, exist_ok=True)
        gen = os.path.join(self.build_temp, "generated")
        os.makedirs(gen, exist_ok=True)
        write_kernel_sources(os.path.join(gen, "fastrand_kernel_sources.inc"))
        includes.append(gen)
        cxx = os.environ.get("CXX") or self.compiler.compiler_so[0]
        if cxx in ("gcc", "cc"):
            cxx = "g++"
        arch_flags = macos_arch_flags()
        arch = target_arch(cxx, arch_flags)
        isa_sources = ISA_SOURCES.get(arch, {})
        log(f"CPU target {arch}: per-ISA sources {', '.join(isa_sources) or 'none (scalar only)'}")

        jobs = []
        for src in ext.sources:
            name = os.path.basename(src)
            if name.endswith(".cu"):
                continue
            if name in ISA_FLAGS and name not in isa_sources:
                continue  # another architecture's path
            obj = os.path.join(self.build_temp, name + ".o")
            cmd = (
                [cxx]
                + HOST_FLAGS
                + arch_flags
                + isa_sources.get(name, [])
                + [f"-D{k}={v}" for k, v in defines]
                + csrc_includes
                + [f"-I{i}" for i in includes]
                + ["-c", src, "-o", obj]
            )
            jobs.append((cmd, obj))
        if cuda:
            for src in ext.sources:
                if src.endswith(".cu"):
                    obj = os.path.join(self.build_temp, os.path.basename(src) + ".o")
                    cmd = (
                        [
                            cuda["nvcc"],
                            "-std=c++17",
                            "-O3",
                            "--fmad=false",
                            "--threads",
                            "0",
                            "-Xcompiler",
                            "-fPIC,-ffp-contract=off,-fvisibility=hidden",
                            f'-DFASTRAND_CUDA_ARCHS="{cuda["names"]}"',
                            "-DFASTRAND_WITH_CUDA=1",
                        ]
                        + csrc_includes
                        + cuda["gencode"]
                        + ["-c", src, "-o", obj]
                    )
                    jobs.append((cmd, obj))
        for cmd, _ in jobs:
            bad = [f for f in cmd if any(word in f for word in FORBIDDEN)]
            if bad:
                raise RuntimeError(f"refusing to compile stream math with {bad}")

        def run(job):
            cmd, obj = job
            log(" ".join(cmd))
            subprocess.run(cmd, check=True)
            return obj

        with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as ex:
            objects = list(ex.map(run, jobs))

        libs, libdirs, extra = [], [], []
        extra += arch_flags  # macOS: the linker drops its own -arch flags for these
        if cuda:
            libdirs.append(cuda["libdir"])
            libs += ["cudart_static", "dl", "rt", "pthread"]
        else:
            libs += ["dl", "pthread"]  # dlopen of the CUDA driver
        out = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        self.compiler.link_shared_object(
            objects,
            out,
            libraries=libs,
            library_dirs=libdirs,
            extra_postargs=extra,
            target_lang="c++",
        )


SOURCES = [
    csrc_file(f)
    for f in (
        "bindings.cpp",
        "bindings_cuda.cpp",
        "driver.cpp",
        "launch_plan.cpp",
        "cpu.cpp",
        "cpu_box.cpp",
        "parallel.cpp",
        "torch_state.cpp",
        "cpu_box_scalar.cpp",
        "cpu_box_avx2.cpp",
        "cpu_box_avx512.cpp",
        "cpu_box_neon.cpp",
        "cpu_scalar.cpp",
        "cpu_avx2.cpp",
        "cpu_avx512.cpp",
        "cpu_neon.cpp",
        "cuda_kernel.cu",
    )
]

setup(
    version=VERSION,
    ext_modules=[Extension("fastrand._C", sources=SOURCES, language="c++")],
    cmdclass={"build_ext": BuildExt},
)
