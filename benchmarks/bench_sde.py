"""SDE noise benchmark: fastrand.BrownianTreeNoiseSampler vs diffusers' torchsde sampler.

The workload is diffusers' DPMSolverSDEScheduler with 25 steps on a (1,4,128,128) latent: the
exact sequence of (sigma, sigma_next) calls its step() makes to the noise sampler (recorded by
running the real scheduler with a recording sampler when diffusers is installed; otherwise the
same pattern computed from the scheduler's formulas). One measured run = building the sampler
(seed 0) and making all of those calls, so every run starts with a cold cache.

Usage (from the repository root):
    PYTHONPATH=src python benchmarks/bench_sde.py [--quick] [--out DIR] [--steps N] [--threads T ...]

Writes DIR/sde.json (default DIR: bench-results/).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402
import torch  # noqa: E402

fastrand = C.import_fastrand()
SHAPE = (1, 4, 128, 128)


def query_pattern(steps):
    """(sigma_min, sigma_max, [(sigma, sigma_next), ...]) of DPMSolverSDEScheduler's noise."""
    try:
        import diffusers.schedulers.scheduling_dpmsolver_sde as sde
        from diffusers import DPMSolverSDEScheduler
    except ImportError:
        sde = None
    if sde is not None:
        calls = []

        class Recorder:
            def __init__(self, x, sigma_min, sigma_max, seed=None, transform=None):
                calls.append((float(sigma_min), float(sigma_max)))

            def __call__(self, sigma, sigma_next):
                calls.append((sigma, sigma_next))
                return torch.zeros(SHAPE)

        saved = sde.BrownianTreeNoiseSampler
        sde.BrownianTreeNoiseSampler = Recorder
        try:
            scheduler = DPMSolverSDEScheduler()
            scheduler.set_timesteps(steps)
            x = torch.zeros(SHAPE)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for t in scheduler.timesteps:
                    x = scheduler.step(torch.zeros(SHAPE), t, x).prev_sample
        finally:
            sde.BrownianTreeNoiseSampler = saved
        (smin, smax), queries = calls[0], calls[1:]
        return smin, smax, queries, "recorded from diffusers' DPMSolverSDEScheduler"
    # the same pattern from the scheduler's formulas (its default scaled-linear betas)
    import numpy as np

    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float32) ** 2
    alphas = np.cumprod(1 - betas)
    all_sigmas = ((1 - alphas) / alphas) ** 0.5
    timesteps = np.linspace(0, 999, steps)[::-1]
    sig = torch.from_numpy(np.interp(timesteps, np.arange(1000), all_sigmas)).float()
    queries = []
    for s, sn in zip(sig, sig[1:]):
        t, tn = -s.log(), -sn.log()
        mid = (-(t + (tn - t) * 0.5)).exp()
        queries += [(s, mid), (s, sn)]
    return float(sig.min()), float(sig.max()), queries, "computed (diffusers not installed)"


def run_sampler(cls, x, smin, smax, queries, sync=None):
    def run():
        sampler = cls(x, smin, smax, 0)
        out = None
        for s, sn in queries:
            out = sampler(s, sn)
        if sync is not None:
            sync()
        return out

    return run


def measure(methods, repeats):
    """Interleaved rounds (one run of each method per round, after one warm-up run each): wall
    time (perf_counter) and process CPU time (process_time) per run."""
    for fn in methods.values():
        fn()
    wall = {k: [] for k in methods}
    cpu = {k: [] for k in methods}
    for _ in range(repeats):
        for k, fn in methods.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    return {
        k: {
            "best": min(wall[k]),
            "median": statistics.median(wall[k]),
            "cpu_median": statistics.median(cpu[k]),
            "n": len(wall[k]),
        }
        for k in methods
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument(
        "--threads",
        type=int,
        nargs="*",
        help="torch thread counts to measure (default: 1 and torch's default)",
    )
    args = ap.parse_args()

    info = C.machine_info()
    C.print_machine(info)
    smin, smax, queries, how = query_pattern(args.steps)
    print(
        f"workload: {args.steps}-step DPM-SDE, {len(queries)} noise calls on {SHAPE} float32, "
        f"sigma in [{smin:.4g}, {smax:.4g}] ({how})"
    )

    methods = {}
    try:
        import torchsde  # noqa: F401
        from diffusers.schedulers.scheduling_dpmsolver_sde import (
            BrownianTreeNoiseSampler as TorchsdeSampler,
        )
    except ImportError as e:
        TorchsdeSampler = None
        print(f"torchsde sampler unavailable ({e}); only fastrand is measured")
    x_cpu = torch.zeros(SHAPE)
    if TorchsdeSampler is not None:
        methods["torchsde cpu"] = run_sampler(TorchsdeSampler, x_cpu, smin, smax, queries)
    methods["fastrand cpu"] = run_sampler(
        fastrand.BrownianTreeNoiseSampler, x_cpu, smin, smax, queries
    )
    if torch.cuda.is_available():
        x_gpu = torch.zeros(SHAPE, device="cuda")
        sync = torch.cuda.synchronize
        methods["fastrand cuda"] = run_sampler(
            fastrand.BrownianTreeNoiseSampler, x_gpu, smin, smax, queries, sync
        )
        if TorchsdeSampler is not None:
            methods["torchsde cuda"] = run_sampler(
                TorchsdeSampler, x_gpu, smin, smax, queries, sync
            )

    repeats = 2 if args.quick else 5
    rows = []
    saved_threads = torch.get_num_threads()
    thread_counts = sorted(set(args.threads or [1, saved_threads]))
    try:
        for threads in thread_counts:
            torch.set_num_threads(threads)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torchsde warns on every clamped query
                times = measure(methods, repeats)
            base = times.get("torchsde cpu")
            for name, t in times.items():
                rows.append(
                    {
                        "method": name,
                        "threads": threads,
                        "best_ms": t["best"] * 1e3,
                        "median_ms": t["median"] * 1e3,
                        "cpu_ms": t["cpu_median"] * 1e3,
                        "per_call_us": t["median"] / len(queries) * 1e6,
                        "speedup": (base["median"] / t["median"]) if base else None,
                        "speedup_best": (base["best"] / t["best"]) if base else None,
                        "speedup_cpu": (base["cpu_median"] / t["cpu_median"]) if base else None,
                        "n": t["n"],
                    }
                )
    finally:
        torch.set_num_threads(saved_threads)

    C.print_table(
        rows,
        [
            ("method", "method"),
            ("threads", "threads"),
            ("best_ms", "best ms/run"),
            ("median_ms", "median ms/run"),
            ("cpu_ms", "cpu ms/run"),
            ("per_call_us", "us/call"),
            ("speedup", "vs torchsde (median)", lambda v: f"{v:.1f}x"),
            ("speedup_best", "(best)", lambda v: f"{v:.1f}x"),
            ("speedup_cpu", "(cpu time)", lambda v: f"{v:.1f}x"),
            ("n", "runs"),
        ],
        title=f"\n{args.steps}-step DPM-SDE noise, one sampler per run (cold cache)",
    )
    C.write_json(
        os.path.join(args.out, "sde.json"),
        {
            "machine": info,
            "workload": {
                "steps": args.steps,
                "shape": SHAPE,
                "calls": len(queries),
                "sigma_min": smin,
                "sigma_max": smax,
                "pattern": how,
            },
            "rows": rows,
            "time": time.time(),
            "note": "speedups: torchsde cpu / row at the same thread count, of the median and best "
            "wall times and of the median process CPU time (robust to other load on a shared "
            "machine)",
        },
    )
    return 0 if all(math.isfinite(r["median_ms"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
