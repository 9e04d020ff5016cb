"""Cold NVRTC compile of the run-time backend's kernel groups (no GPU needed).

Each group is compiled into an empty cache directory in this process, for one arch (default
sm_90); the figures are the process CPU time (all threads; NVRTC's --split-compile runs the
optimizer on several) and the wall time of each compile. The first CUDA draw of a float32 randn
on a device with nothing cached compiles the "probe" and "normal/float32" groups.

    python benchmarks/bench_nvrtc.py [--arch 90] [--out bench-results]
"""

import argparse
import json
import os
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, help="the arch to compile for (default 90)")
    ap.add_argument("--out", default=None, help="folder for nvrtc_compile.json")
    args = ap.parse_args()
    os.environ["FASTRAND_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastrand-bench-nvrtc-")
    from fastrand import _cuda

    try:
        nv = _cuda.nvrtc()
    except _cuda.NvrtcNotFoundError as e:
        print(f"bench_nvrtc: {e}")
        return 1
    rows = []
    print(f"NVRTC {nv.version_string} ({nv.path}), sm_{args.arch}, {os.cpu_count()} CPUs")
    for g in _cuda.groups():
        c0, w0 = time.process_time(), time.perf_counter()
        c = _cuda.cubin(args.arch, g)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        rows.append(
            {"group": g, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "bytes": len(c.image)}
        )
        print(f"{g:18s} cpu {cpu:6.2f} s  wall {wall:6.2f} s  {len(c.image):7d} bytes")
    first = sum(r["cpu_s"] for r in rows if r["group"] in ("probe", "normal/float32"))
    total = sum(r["cpu_s"] for r in rows)
    print(
        f"first float32 randn (probe + normal/float32): cpu {first:.2f} s; every group: cpu {total:.2f} s"
    )
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "nvrtc_compile.json"), "w") as f:
            json.dump({"nvrtc": nv.version_string, "arch": args.arch, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
