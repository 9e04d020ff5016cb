"""The per-call cost of fastrand.patch_torch(): a patched torch.randn against torch.randn and
against fastrand.randn, on a (1,4,64,64) float32 draw.

Rows, each the time per call of a loop of calls (interleaved rounds):
  torch.randn                 torch's own draw (no patch)
  fastrand.randn              fastrand's draw from torch's default generator (generator=None),
                              what a patched torch.randn draws
  torch.randn, patched        torch.randn(1, 4, 64, 64) under `with fastrand.patch_torch():`
  fastrand.randn(Generator)   fastrand's draw from a fastrand.Generator (no torch generator read)
  torch.add, (un)patched      an op the patch does not cover: what every other torch call pays
Columns: wall time (best and median of the rounds) and, on the CPU, the CPU time of the calling
thread (best), which other processes on a shared machine disturb far less. torch runs with one
thread, so the thread's CPU time is the whole cost of a CPU call. The summary gives the patch's
own cost: patched torch.randn minus fastrand.randn (argument handling and the torch function
mode), and patched torch.add minus torch.add, from the thread CPU times on the CPU and from the
best wall times on a GPU.

Usage (from the repository root):
    PYTHONPATH=src python benchmarks/bench_torch_patch.py [--quick] [--out DIR]

Writes DIR/torch_patch.json (default DIR: bench-results/). CPU always, CUDA when available.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402
import torch  # noqa: E402

fastrand = C.import_fastrand()

SHAPE = (1, 4, 64, 64)


def _methods(device, calls):
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    x = torch.zeros(SHAPE, device=device)
    gen = fastrand.Generator(0)

    def loop(call, patched=False):
        def fn():
            if patched:
                with fastrand.patch_torch():
                    for _ in range(calls):
                        call()
            else:
                for _ in range(calls):
                    call()
            sync()

        return fn

    return {
        "torch.randn": loop(lambda: torch.randn(SHAPE, device=device)),
        "fastrand.randn": loop(lambda: fastrand.randn(SHAPE, device=device)),
        "torch.randn, patched": loop(lambda: torch.randn(SHAPE, device=device), patched=True),
        "fastrand.randn(Generator)": loop(
            lambda: fastrand.randn(SHAPE, device=device, generator=gen)
        ),
        "torch.add": loop(lambda: torch.add(x, 1)),
        "torch.add, patched": loop(lambda: torch.add(x, 1), patched=True),
    }


def _measure(device, quick):
    calls, rounds = (50, 10) if quick else (100, 40)
    methods = _methods(device, calls)
    for fn in methods.values():  # warm-up
        fn()
    wall = {k: [] for k in methods}
    cpu = {k: [] for k in methods}
    for _ in range(rounds):
        for k, fn in methods.items():
            w0, c0 = time.perf_counter(), time.thread_time()
            fn()
            cpu[k].append((time.thread_time() - c0) / calls)
            wall[k].append((time.perf_counter() - w0) / calls)
    return [
        {
            "device": device,
            "method": k,
            "best_us": min(wall[k]) * 1e6,
            "median_us": statistics.median(wall[k]) * 1e6,
            "thread_cpu_us": min(cpu[k]) * 1e6 if device == "cpu" else None,
        }
        for k in methods
    ]


def run(args):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    out = {
        "machine": C.machine_info(),
        "shape": list(SHAPE),
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "results": [],
    }
    for device in devices:
        out["results"] += _measure(device, args.quick)
    cols = [
        ("device", "device"),
        ("method", "method"),
        ("best_us", "best us/call"),
        ("median_us", "median us/call"),
        ("thread_cpu_us", "thread CPU us/call"),
    ]
    C.print_table(out["results"], cols, title=f"patch_torch: per call, {C.fmt_shape(SHAPE)} f32")
    C.write_json(os.path.join(args.out, "torch_patch.json"), out)
    print("Summary (patch_torch)")
    for device in devices:
        key = "thread_cpu_us" if device == "cpu" else "best_us"
        t = {r["method"]: r[key] for r in out["results"] if r["device"] == device}
        print(
            f"  {device}: patched torch.randn {t['torch.randn, patched']:.1f} us/call "
            f"(torch.randn {t['torch.randn']:.1f}, fastrand.randn {t['fastrand.randn']:.1f}, "
            f"with a fastrand.Generator {t['fastrand.randn(Generator)']:.1f}); "
            f"the patch's own cost {t['torch.randn, patched'] - t['fastrand.randn']:+.1f} us "
            f"per covered call, {t['torch.add, patched'] - t['torch.add']:+.1f} us per other "
            f"call (torch.add); {'thread CPU' if device == 'cpu' else 'best wall'} times"
        )
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="bench-results", help="output folder (default bench-results/)")
    p.add_argument("--quick", action="store_true", help="fewer calls and repeats")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
