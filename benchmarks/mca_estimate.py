"""Static estimate of the CPU fill loops' cost in cycles per value, with llvm-mca.

For machines that are not at hand (ARM: Apple M1, Neoverse V2; x86 models too): compiles the
per-ISA fill loop (csrc/cpu/cpu_neon.cpp with an aarch64 compiler, csrc/cpu/cpu_avx2.cpp with the
host x86-64 compiler) to assembly with setup.py's flags, takes the main SIMD loop of one op
(simd_groups over four lane groups: 16 blocks a step on NEON, 32 on AVX2), and asks llvm-mca
for the cycles of its steady state: the loop body around the Philox rounds once, plus the
rounds' inner loop times 10 (the compilers keep the rounds as a loop). Divided by the values a
step makes, that is cycles per value on one core, ignoring stores leaving the cache, the tail
and the threads. llvm-mca's models are approximations (LLVM has no scheduling model of its
own for Apple's big cores: apple-m1 uses an older Apple core's), so the figures are estimates
to compare paths, not measurements; benchmarks/bench_cpu.py measures on a real machine.

    python benchmarks/mca_estimate.py [--op NormalF32] [--llvm-mca llvm-mca-19]
"""

import argparse
import os
import re
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
# csrc/ and its folders (the sources include each other by bare file name, as setup.py builds them)
INCLUDES = ["-I" + CSRC] + sorted("-I" + d.path for d in os.scandir(CSRC) if d.is_dir())
FLAGS = ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno", *INCLUDES]
# path: (compiler candidates, extra flags, source, llvm-mca triple, CPUs, blocks a step)
PATHS = {
    "neon": (
        ["aarch64-linux-gnu-g++"],
        [],
        "cpu/cpu_neon.cpp",
        "aarch64",
        ["apple-m1", "neoverse-v2", "neoverse-n1"],
        16,
    ),
    "avx2": (
        ["g++"],
        ["-mavx2", "-mfma", "-mf16c"],
        "cpu/cpu_avx2.cpp",
        "x86_64",
        ["znver3", "skylake"],
        32,
    ),
}
VALUES_PER_BLOCK = {
    "NormalF32": 4,
    "NormalF16": 4,
    "NormalBF16": 4,
    "UniformF32": 4,
    "RawWords": 4,
    "NormalF64": 2,
    "UniformF64": 2,
}
ROUNDS = 10  # Philox rounds: the inner loop of every main loop
F64_STEPS = 2  # float64: eval_words64's loop runs twice a step (16 blocks of 8, or 32 of 16)


def functions(asm):
    """name -> its lines, for every function of a GCC assembly listing."""
    lines, out, name = asm.split("\n"), {}, None
    for line in lines:
        m = re.match(r"^(_Z\w+):", line)
        if m:
            name = m.group(1)
            out[name] = []
        elif name is not None:
            out[name].append(line)
            if line.strip() == ".cfi_endproc":
                name = None
    return out


def insns(lines):
    return [x for x in lines if x.startswith("\t") and not x.strip().startswith(".")]


def loops(lines):
    """(first, last) line of each loop closed by a backward branch, outermost first."""
    labels, found = {}, []
    for i, line in enumerate(lines):
        m = re.match(r"^(\.L\w+):", line)
        if m:
            labels[m.group(1)] = i
        m = re.match(r"^\s+(b\.?\w*|j\w+|cbn?z|tbn?z)\s.*?(\.L\w+)\s*$", line)
        if m and labels.get(m.group(2), i) < i:
            found.append((labels[m.group(2)], i))
    return sorted(found, key=lambda r: r[0] - r[1])


def steady_state(lines, inner_trip):
    """[(instructions, repeats)]: the outermost loop's body outside its inner loop, once, and
    the inner loop inner_trip times (no loop: the whole function once)."""
    found = loops(lines)
    if not found:
        return [(insns(lines), 1)]
    (a, b), inner = found[0], [r for r in found[1:] if found[0][0] <= r[0] and r[1] <= found[0][1]]
    if not inner:
        return [(insns(lines[a : b + 1]), 1)]
    if len(inner) != 1:
        raise RuntimeError(f"expected one inner loop, found {len(inner)}")
    (c, d) = inner[0]
    rest = [
        x for x in insns(lines[a:c] + lines[d + 1 : b + 1]) if not re.match(r"\s+(bl|call)\s", x)
    ]
    return [(rest, 1), (insns(lines[c : d + 1]), inner_trip)]


def main_loop_parts(asm, op):
    """[(instructions, repeats)] of one step of the main SIMD loop of op (four lane groups)."""
    funcs = functions(asm)
    groups = "13simd_groups64I" if VALUES_PER_BLOCK[op] == 2 else "11simd_groupsI"
    pat = re.compile(groups + r"\w*PairLanesINS4_INS3_9SimdLanesE\w*" + op + "E")
    [name] = [n for n in funcs if pat.search(n)]
    parts = steady_state(funcs[name], ROUNDS)
    if VALUES_PER_BLOCK[op] == 2:  # the float64 math: eval_words64's loop, F64_STEPS times
        pat = re.compile(r"12eval_words64I\w*PairLanes64INS4_INS3_11SimdLanes64E\w*" + op + "E")
        [ev] = [n for n in funcs if pat.search(n)]
        steps = F64_STEPS if loops(funcs[ev]) else 1  # unrolled: both steps in the body
        parts += [(body, k * steps) for body, k in steady_state(funcs[ev], 1)]
    return parts


def mca_cycles(mca, triple, cpu, body, tmp):
    path = os.path.join(tmp, "body.s")
    with open(path, "w") as f:
        f.write("\n".join(body) + "\n")
    out = subprocess.run(
        [mca, f"-mtriple={triple}", f"-mcpu={cpu}", "-iterations=200", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    iters = int(re.search(r"Iterations:\s+(\d+)", out).group(1))
    return int(re.search(r"Total Cycles:\s+(\d+)", out).group(1)) / iters


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--op", default="NormalF32", choices=sorted(VALUES_PER_BLOCK))
    ap.add_argument("--llvm-mca", default=shutil.which("llvm-mca-19") or "llvm-mca")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, (cxxs, flags, src, triple, cpus, blocks) in PATHS.items():
            cxx = next((c for c in cxxs if shutil.which(c)), None)
            if cxx is None:
                print(f"{name}: no compiler ({', '.join(cxxs)})")
                continue
            asm = os.path.join(tmp, name + ".s")
            subprocess.run(
                [cxx, *FLAGS, *flags, "-S", os.path.join(CSRC, src), "-o", asm], check=True
            )
            with open(asm) as f:
                parts = main_loop_parts(f.read(), args.op)
            values = blocks * VALUES_PER_BLOCK[args.op]
            count = sum(len(body) * k for body, k in parts)
            for cpu in cpus:
                step = sum(k * mca_cycles(args.llvm_mca, triple, cpu, b, tmp) for b, k in parts)
                print(
                    f"{name:5s} {cpu:12s} {args.op}: {count} instructions, {step:.0f} cycles a "
                    f"step of {values} values: {step / values:.2f} cycles/value"
                )


if __name__ == "__main__":
    main()
