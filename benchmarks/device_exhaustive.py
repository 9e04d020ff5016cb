"""GPU vs CPU, exhaustively where the inputs are finite and at volume elsewhere.

1. radius32 for every one of the 2^32 radius words, and sin/cos for every one of the 2^26
   angle inputs (quadrant + 24 bits), GPU kernel vs CPU build of the same header.
2. >= 10^8 values per dtype (normals float32/float16/bfloat16/float64, uniforms, raw words) at
   random (seed, stream, odd offset), GPU vs CPU.
Runs on the backend FASTRAND_CUDA_BACKEND selects (aot or nvrtc: the NVRTC kernels get the
same comparison through the probe group's kernel). Prints one line per check and exits non-zero
on any mismatch. Writes JSON with --out.
"""

import argparse
import json
import os
import random
import sys
import time

import torch

import fastrand
from fastrand import _C, _cuda

U64 = 1 << 64
PROBE = _C.probe_cuda if _C.CUDA else None  # set in main() to the backend's probe launcher


def _cpu_threads():
    return os.cpu_count() or 1


def check_radius(chunk=1 << 28):
    """All 2^32 radius words; returns (mismatches, seconds)."""
    t0 = time.perf_counter()
    dev = torch.cuda.current_device()
    stream = torch.cuda.current_stream().cuda_stream
    gpu = torch.empty(chunk, dtype=torch.float32, device="cuda")
    cpu = torch.empty(chunk, dtype=torch.float32).pin_memory()
    bad = 0
    for first in range(0, 1 << 32, chunk):
        PROBE(_C.PROBE_RADIUS32, gpu.data_ptr(), first, chunk, dev, stream)
        _C.probe_cpu(_C.PROBE_RADIUS32, cpu.data_ptr(), first, chunk, _cpu_threads())
        other = cpu.to("cuda", non_blocking=True)
        bad += int((gpu.view(torch.int32) != other.view(torch.int32)).sum())
    return bad, time.perf_counter() - t0


def check_angles():
    t0 = time.perf_counter()
    count = 1 << 26
    gpu = torch.empty(2 * count, dtype=torch.float32, device="cuda")
    cpu = torch.empty(2 * count, dtype=torch.float32)
    PROBE(
        _C.PROBE_ANGLE32,
        gpu.data_ptr(),
        0,
        count,
        torch.cuda.current_device(),
        torch.cuda.current_stream().cuda_stream,
    )
    _C.probe_cpu(_C.PROBE_ANGLE32, cpu.data_ptr(), 0, count, _cpu_threads())
    bad = int((gpu.view(torch.int32) != cpu.to("cuda").view(torch.int32)).sum())
    return bad, time.perf_counter() - t0


def check_volume(total=100_000_000, pieces=4, seed=2024):
    rng = random.Random(seed)
    rows = []
    cases = [("normal", d) for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64)]
    cases += [("uniform", torch.float32), ("uniform", torch.float64), ("words", torch.int32)]
    for kind, dt in cases:
        t0 = time.perf_counter()
        bad = 0
        for _ in range(pieces):
            s, st, off = (
                rng.randrange(U64),
                rng.choice([0, rng.randrange(U64)]),
                rng.randrange(U64) | 1,
            )
            n = total // pieces + rng.randrange(7)
            outs = []
            for device in ("cuda", "cpu"):
                g = fastrand.Generator(s, stream=st, offset=off)
                if kind == "normal":
                    outs.append(fastrand.randn(n, generator=g, dtype=dt, device=device))
                elif kind == "uniform":
                    outs.append(fastrand.rand(n, generator=g, dtype=dt, device=device))
                else:
                    outs.append(fastrand.random_words(n, generator=g, device=device))
            a, b = outs
            width = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[
                a.element_size()
            ]
            bad += int((a.view(width) != b.to("cuda").view(width)).sum())
            del a, b, outs
        rows.append(
            {
                "check": f"{kind} {str(dt).replace('torch.', '')} x{total:.0e}",
                "mismatches": bad,
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--values", type=int, default=100_000_000)
    args = ap.parse_args()
    global PROBE
    if not torch.cuda.is_available():
        print("device_exhaustive: needs a CUDA device")
        return 1
    dev = torch.cuda.current_device()
    backend = _cuda.prepare(dev, _C.KIND_NORMAL, _C.DT_FLOAT32)  # readies and checks the kernels
    print(f"device_exhaustive: cuda:{dev} on the {backend} backend", flush=True)
    if backend == "copy":
        print(f"device_exhaustive: no native kernel ({_cuda.copy_reason(dev)})")
        return 1
    PROBE = _C.probe_cuda if backend == "aot" else _C.drv_probe
    rows = []
    bad, sec = check_radius()
    rows.append({"check": "radius32, all 2^32 words", "mismatches": bad, "seconds": round(sec, 2)})
    print(rows[-1], flush=True)
    bad, sec = check_angles()
    rows.append(
        {"check": "sin/cos32, all 2^26 angle inputs", "mismatches": bad, "seconds": round(sec, 2)}
    )
    print(rows[-1], flush=True)
    for r in check_volume(args.values):
        rows.append(r)
        print(r, flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, f"exhaustive_{backend}.json"), "w") as f:
            json.dump(
                {"device": torch.cuda.get_device_name(), "backend": backend, "rows": rows},
                f,
                indent=1,
            )
    total_bad = sum(r["mismatches"] for r in rows)
    print("EXHAUSTIVE:", "PASS" if total_bad == 0 else f"FAIL ({total_bad} mismatches)")
    return 0 if total_bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
