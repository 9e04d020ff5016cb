"""A few fastrand CUDA launches for a profiler to capture (e.g. Nsight Compute):

    ncu --kernel-name regex:fill_kernel --launch-skip 2 --launch-count 1 \\
        --section SpeedOfLight --section ComputeWorkloadAnalysis --section SchedulerStats \\
        --section WarpStateStats --section InstructionStats python3 benchmarks/profile_gpu.py

Options: --dtype float32|float16|bfloat16|float64, --log2n 26, --calls 4.
"""

import argparse

import torch

import fastrand


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--log2n", type=int, default=26)
    ap.add_argument("--calls", type=int, default=4)
    args = ap.parse_args()
    dt = getattr(torch, args.dtype)
    g = fastrand.Generator(0)
    for _ in range(args.calls):
        fastrand.randn(1 << args.log2n, generator=g, device="cuda", dtype=dt)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
