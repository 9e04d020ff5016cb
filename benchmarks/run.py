"""The main job: every benchmark this machine can run, results under one folder.

    python benchmarks/run.py [--quick] [--out bench-results]

Runs the CPU benchmark always, the GPU benchmark when torch sees a CUDA device, and the cost of
fastrand.patch_torch() (on the CPU, and on the GPU when there is one); each writes its JSON (and
PNG) into --out and prints its own table; the summaries are printed last.
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    import torch

    jobs = [("cpu", "bench_cpu.py")]
    if torch.cuda.is_available():
        jobs.append(("gpu", "bench_gpu.py"))
    else:
        print("no CUDA device visible to torch: GPU benchmark skipped")
    jobs.append(("torch patch", "bench_torch_patch.py"))
    summaries, rc = [], 0
    for k, (name, script) in enumerate(jobs, 1):
        cmd = [sys.executable, os.path.join(HERE, script), "--out", args.out]
        if args.quick:
            cmd.append("--quick")
        print(f"=== [{k}/{len(jobs)}] {name}: {' '.join(cmd)}", flush=True)
        # Stream the job's output as it comes (long runs show their progress), keep it for the
        # summary, and show the elapsed time of each job.
        t0 = time.monotonic()
        lines = []
        with subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                lines.append(line.rstrip("\n"))
        rc = rc or proc.returncode
        print(f"=== [{k}/{len(jobs)}] {name} done in {time.monotonic() - t0:.0f} s", flush=True)
        start = next(
            (i for i, line in enumerate(lines) if line.startswith(("Summary", "GPU summary"))), None
        )
        if start is not None:
            summaries.append("\n".join(lines[start:]))
    print("\n" + "=" * 30 + " summary " + "=" * 30)
    for s in summaries:
        print(s)
    print(f"results in {os.path.abspath(args.out)}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
