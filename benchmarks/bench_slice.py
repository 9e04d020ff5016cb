"""Region draws: the cost of a shard (fastrand.randn_slice) against the full draw.

A 1/8 shard should cost at most 1/8 x 1.1 of the full draw plus the call overhead (a call of
one value). The unit of generation is a Philox block (4 float32 or 2 float64 values): a shard
whose rows start or end inside blocks must evaluate those blocks whole, so the table also gives
the share of the full draw's blocks the shard touches ("blocks share"), the shard's cost per block
against the full draw's ("per block": 1.0 is the same cost per block) and a second budget, 1.1 x
that share of the full draw plus the overhead. For a shard of whole blocks both budgets agree.

"full ms", "shard ms" and "shard/full" time the public calls (randn, randn_slice), each of which
allocates its output: how much of that is page faults on fresh memory depends on the allocator
(a large float64 full draw pays most, which flatters its ratio), so the verdicts judge the fills
alone. On the CPU those are the same compiled fills into buffers allocated once ("fills:
shard/full"; the overhead is a one-value fill); on a GPU, the device times of the public calls
(CUDA events; the overhead is the host time of a one-value call).

Shards (each one rank's of 8, rank 1 where ranks differ): one contiguous run (Shard(0)), rows of
the last dimension (Shard(-1)), a video latent's rows (1x16x21x90x160 on its last dimension:
rows of 20 values), rows that cut blocks (a last dimension of 90 values, rows of 12 whose row
step of 90 values puts every other row at the middle of a block), a box halved in three
dimensions, and rows of one value (the worst case: a block a value).

Usage (from the repository root):
    PYTHONPATH=src python benchmarks/bench_slice.py [--quick] [--out DIR]

Writes DIR/slice.json (default DIR: bench-results/). CPU always, CUDA when available.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402
import torch  # noqa: E402

fastrand = C.import_fastrand()

BOUND = 1.1 / 8  # the budget of a 1/8 shard, as a fraction of the full draw


def cases(quick):
    """(name, global shape, index) of 1/8 shards."""
    big = (8, 32, 64, 256) if quick else (8, 64, 64, 512)
    latent = (1, 16, 21, 90, 160)
    # (every global numel a multiple of 4: the generator, shared by all calls, stays at whole
    # blocks, so the blocks each shard touches are the same at every call)
    cut = ((1 << 22) // 360 * 4, 90) if quick else ((1 << 24) // 360 * 4, 90)
    rows = (1 << 19, 8) if quick else (1 << 21, 8)
    return [
        ("Shard(0): one run", big, (slice(1, 2),)),
        ("Shard(-1): rows", big, (..., slice(big[-1] // 8, big[-1] // 4))),
        ("latent Shard(-1): rows of 20", latent, (..., slice(20, 40))),
        ("rows cutting blocks", cut, (slice(None), slice(12, 24))),
        ("box halved in 3 dims", big, (slice(4, 8), slice(0, big[1] // 2), slice(32, 64))),
        ("rows of 1 value", rows, (slice(None), slice(3, 4))),
    ]


def blocks_share(shape, index, dtype):
    """The share of the full draw's Philox blocks that the shard's values lie in (offset 0)."""
    per = 2 if dtype == torch.float64 else 4  # values a block
    flat = torch.arange(math.prod(shape), dtype=torch.int64).reshape(shape)[index]
    touched = torch.unique(flat.reshape(-1) // per).numel()
    return touched / -(-math.prod(shape) // per)


def _cpu_methods(g, shape, index, dtype):
    return {
        "full": lambda: fastrand.randn(shape, generator=g, dtype=dtype),
        "shard": lambda: fastrand.randn_slice(shape, index, generator=g, dtype=dtype),
    }


def _cpu_kernels(shape, index, dtype):
    """The same two fills into buffers allocated once: the compiled calls randn and randn_slice
    make (fastrand._C), without the allocation and first touch of a fresh output (which a
    large full draw pays in page faults, float64 most of all)."""
    from fastrand import _C, _api, _slice

    starts, lengths, _ = _slice._index_arg(index, tuple(shape))
    base, sizes, gstrides = _slice._collapse(shape, starts, lengths)
    n = math.prod(shape)
    full = torch.empty(n, dtype=dtype)
    shard = torch.empty(math.prod(sizes), dtype=dtype)
    code, kind, th = _api._FLOAT_CODES[dtype], _api._NORMAL, torch.get_num_threads()
    return {
        "full": lambda: _C.fill_cpu(full.data_ptr(), n, kind, code, 1, 0, 0, th),
        "shard": lambda: _C.fill_box_cpu(
            shard.data_ptr(), kind, code, 1, 0, 0, base, sizes, gstrides, th
        ),
    }


def _cuda_methods(g, shape, index, dtype):
    return (
        lambda: fastrand.randn(shape, generator=g, dtype=dtype, device="cuda"),
        lambda: fastrand.randn_slice(shape, index, generator=g, dtype=dtype, device="cuda"),
    )


def _measure_cpu(quick):
    from fastrand import _C, _api

    rows = []
    g = fastrand.Generator(0)
    overhead = C.time_cpu(lambda: fastrand.randn_slice((1,), (), generator=g), min_repeats=20)
    one = torch.empty(1)
    code, th = _api._FLOAT_CODES[torch.float32], torch.get_num_threads()
    k_overhead = C.time_cpu(
        lambda: _C.fill_box_cpu(one.data_ptr(), _api._NORMAL, code, 1, 0, 0, 0, [1], [1], th),
        min_repeats=20,
    )
    budget_s = 0.6 if quick else 2.0
    for name, shape, index in cases(quick):
        for dtype in (torch.float32, torch.float64):
            t = C.time_cpu_interleaved(_cpu_methods(g, shape, index, dtype), budget_s=budget_s)
            k = C.time_cpu_interleaved(_cpu_kernels(shape, index, dtype), budget_s=budget_s)
            row = _row(
                "cpu",
                name,
                shape,
                dtype,
                (t["full"]["median"], t["shard"]["median"]),
                (k["full"]["median"], k["shard"]["median"]),
                k_overhead["median"],
                blocks_share(shape, index, dtype),
            )
            rows.append(row)
    return rows, overhead["median"], k_overhead["median"]


def _measure_cuda(quick):
    rows = []
    g = fastrand.Generator(0)
    dev = "cuda"
    overhead = C.time_cuda_wall(
        lambda: fastrand.randn_slice((1,), (), generator=g, device=dev), 200
    )
    for name, shape, index in cases(quick):
        for dtype in (torch.float32, torch.float64):
            full, shard = _cuda_methods(g, shape, index, dtype)
            n = 20 if quick else 100
            host_full = C.time_cuda_wall(full, n)
            host_shard = C.time_cuda_wall(shard, n)
            t_full, _ = C.time_cuda_events(full, n, host_s_per_call=host_full)
            t_shard, _ = C.time_cuda_events(shard, n, host_s_per_call=host_shard)
            share = blocks_share(shape, index, dtype)
            # the device times (events) are the fills themselves; the budget's overhead is the
            # host time of a one-value call
            times = (t_full, t_shard)
            rows.append(_row("cuda", name, shape, dtype, times, times, overhead, share))
    return rows, overhead


def _row(device, name, shape, dtype, api, fill, overhead, share):
    """api: (full, shard) seconds of the public calls; fill: (full, shard) of the fills alone,
    which the budgets judge (overhead: a one-value fill)."""
    full, shard = fill
    budget = BOUND * full + overhead
    blocks_budget = 1.1 * share * full + overhead
    return {
        "device": device,
        "case": name,
        "shape": C.fmt_shape(shape),
        "dtype": C.dtype_name(dtype),
        "full_ms": api[0] * 1e3,
        "shard_ms": api[1] * 1e3,
        "ratio": api[1] / api[0],
        "fill_full_ms": full * 1e3,
        "fill_shard_ms": shard * 1e3,
        "fill_ratio": shard / full,
        "budget_ms": budget * 1e3,
        "within": "yes" if shard <= budget else "NO",
        "blocks_share": share,
        "per_block": (shard / full) / share,
        "blocks_budget_ms": blocks_budget * 1e3,
        "within_blocks": "yes" if shard <= blocks_budget else "NO",
    }


def run(args):
    torch.manual_seed(0)
    out = {
        "machine": C.machine_info(),
        "bound": "shard <= 1.1/8 x full + overhead",
        "blocks_bound": "shard <= 1.1 x blocks share x full + overhead",
        "threads": torch.get_num_threads(),
        "results": [],
    }
    cpu_rows, cpu_overhead, cpu_fill_overhead = _measure_cpu(args.quick)
    out["results"] += cpu_rows
    out["overhead_ms"] = {"cpu": cpu_overhead * 1e3, "cpu fill": cpu_fill_overhead * 1e3}
    if torch.cuda.is_available():
        cuda_rows, cuda_overhead = _measure_cuda(args.quick)
        out["results"] += cuda_rows
        out["overhead_ms"]["cuda"] = cuda_overhead * 1e3
    cols = [
        ("device", "device"),
        ("case", "1/8 shard"),
        ("shape", "global shape"),
        ("dtype", "dtype"),
        ("full_ms", "full ms"),
        ("shard_ms", "shard ms"),
        ("ratio", "shard/full"),
        ("fill_ratio", "fills: shard/full"),
        ("within", "<= 1.1/8"),
        ("blocks_share", "blocks share"),
        ("per_block", "per block"),
        ("within_blocks", "<= 1.1 x blocks"),
    ]
    title = (
        "randn_slice: a 1/8 shard against the full draw; the verdicts judge the fills alone "
        "(budget: 1.1/8 x full + a one-value call: "
        + ", ".join(f"{k} {v * 1e3:.1f} us" for k, v in out["overhead_ms"].items())
        + ")"
    )
    C.print_table(out["results"], cols, title=title)
    C.write_json(os.path.join(args.out, "slice.json"), out)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="bench-results", help="output folder (default bench-results/)")
    p.add_argument(
        "--quick", action="store_true", help="global tensors of 2^22 values, fewer repeats"
    )
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
