"""CPU benchmark: fastrand vs torch.randn vs diffusers' CPU-generator path vs NumPy Philox, and
for float64 vs Intel MKL's Philox Box-Muller when ``mkl_random`` is importable (optional). First,
the per-call cost of small draws with each generator kind (fastrand.Generator, torch.Generator)
against torch.randn, in one run.

Usage (from the repository root):
    PYTHONPATH=src python benchmarks/bench_cpu.py [--quick] [--small-only] [--out DIR]

Writes DIR/cpu.json and DIR/cpu_throughput.png (default DIR: bench-results/).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

fastrand = C.import_fastrand()
_C = fastrand._C

LATENTS = [(1, 4, 64, 64), (1, 4, 128, 128), (1, 16, 21, 90, 160)]
FLAT = [(1 << 16,), (1 << 20,), (1 << 22,), (1 << 24,), (1 << 26,)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
F64_SHAPES = [(1 << 20,), (1 << 22,)]  # float64 only here (torch.randn float64 is slow)
REF_SHAPE = (1 << 22,)
LATENT_REF = (1, 4, 128, 128)
# small draws, per call: a sampler's per-step noise and SD-size latents
SMALL = [(1, 4), (1, 4, 64, 64), (1, 4, 128, 128)]
SMALL_METHODS = ("torch.randn", "fastrand.Generator", "torch.Generator")
SMALL_BATCH = 20  # calls per timed sample


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def configs(quick):
    """(shape, dtype) pairs to measure."""
    if quick:
        return [
            (REF_SHAPE, torch.float32),
            (LATENT_REF, torch.float32),
            (REF_SHAPE, torch.float16),
            (REF_SHAPE, torch.bfloat16),
            (REF_SHAPE, torch.float64),
        ]
    out = [(s, dt) for dt in DTYPES for s in LATENTS + FLAT]
    out += [(s, torch.float64) for s in F64_SHAPES]
    return out


# --------------------------------------------------------------------------------------------
# the methods
def m_torch(shape, dtype):
    return lambda: torch.randn(shape, dtype=dtype)


def m_diffusers(shape, dtype):
    # diffusers.utils.torch_utils.randn_tensor with a CPU generator and device='cpu'
    return lambda: torch.randn(
        shape, generator=torch.Generator("cpu").manual_seed(0), device="cpu", dtype=dtype
    )


def m_fastrand(shape, dtype):
    g = fastrand.Generator(0)
    return lambda: fastrand.randn_tensor(shape, generator=g, device="cpu", dtype=dtype)


def m_small(method, shape):
    """float32 noise of `shape` on the CPU: torch.randn, or fastrand.randn_tensor with a
    fastrand.Generator or a CPU torch.Generator (which, as in a sampler loop, draws on from the
    state its previous draw wrote); SMALL_BATCH calls per sample."""
    if method == "torch.randn":

        def one():
            return torch.randn(shape)

    else:
        g = fastrand.Generator(0) if method == "fastrand.Generator" else torch.Generator()
        g.manual_seed(0)

        def one():
            return fastrand.randn_tensor(shape, generator=g)

    def batch():
        for _ in range(SMALL_BATCH):
            one()

    return batch


def small_calls(quick):
    """Per-call cost (us) of SMALL draws by each SMALL_METHODS entry, interleaved in one run;
    ratios of best times (and of medians for the torch.Generator overhead)."""
    tkw = dict(rounds=4, warmup=2, min_repeats=20, max_repeats=400, budget_s=0.2 if quick else 0.4)
    rows = []
    for shape in SMALL:
        times = C.time_cpu_interleaved({m: m_small(m, shape) for m in SMALL_METHODS}, **tkw)
        best = {m: t["best"] / SMALL_BATCH * 1e6 for m, t in times.items()}
        med = {m: t["median"] / SMALL_BATCH * 1e6 for m, t in times.items()}
        fg, tg, tr = (best[m] for m in ("fastrand.Generator", "torch.Generator", "torch.randn"))
        rows.append(
            {
                "shape": C.fmt_shape(shape),
                "shape_tuple": list(shape),
                "threads": torch.get_num_threads(),
                "best_us": best,
                "median_us": med,
                "torch_randn_us": tr,
                "fastrand_gen_us": fg,
                "torch_gen_us": tg,
                "torch_gen_overhead": tg / fg - 1,
                "torch_gen_overhead_median": med["torch.Generator"] / med["fastrand.Generator"] - 1,
                "fastrand_gen_vs_torch": tr / fg,
                "torch_gen_vs_torch": tr / tg,
            }
        )
    return rows


def _pct(x):
    return f"{100 * x:+.0f}%"


SMALL_COLUMNS = [
    ("shape", "shape"),
    ("threads", "threads"),
    ("torch_randn_us", "torch.randn (us)"),
    ("fastrand_gen_us", "fastrand.Generator (us)"),
    ("torch_gen_us", "torch.Generator (us)"),
    ("torch_gen_overhead", "torch gen vs fastrand gen", _pct),
    ("torch_gen_overhead_median", "(medians)", _pct),
    ("fastrand_gen_vs_torch", "vs torch.randn: fastrand gen"),
    ("torch_gen_vs_torch", "torch gen"),
]


def m_fastrand_numpy(n, threads):
    # the NumPy front end: a NumPy array, allocated as MKL's and NumPy's draws are
    import fastrand.numpy as frnp

    return lambda: frnp.randn(n, 0, dtype=np.float64, threads=threads)


def m_words(shape):
    g = fastrand.Generator(0)
    return lambda: fastrand.random_words(shape, generator=g)


def m_numpy(n, np_dtype):
    rng = np.random.Generator(np.random.Philox(0))
    return lambda: rng.standard_normal(n, dtype=np_dtype)


def mkl_random_module():
    """Intel MKL's random module (``pip install mkl_random``), or None: an optional comparison,
    never a dependency."""
    try:
        import mkl_random
    except ImportError:
        return None
    return mkl_random


def m_mkl(n, mkl_random):
    # MKL's PHILOX4X32X10 engine with its BoxMuller2 Gaussian method, float64 (single-threaded:
    # one VSL stream); a fresh array each call, as fastrand's and torch's draws
    rs = mkl_random.RandomState(0, brng="PHILOX4X32X10")
    return lambda: rs.standard_normal(n, method="BoxMuller2")


def with_isa(isa, fn, default_isa):
    """fn run with fastrand's CPU path ``isa`` selected (the default restored after)."""

    def call():
        _C.cpu_isa_select(isa)
        try:
            return fn()
        finally:
            _C.cpu_isa_select(default_isa)

    return call


# --------------------------------------------------------------------------------------------
def check_isa_consistency(isas):
    """Every CPU path must give the same bits (a cheap sanity check, not a benchmark)."""
    ref = None
    res = {}
    for isa in isas:
        if not _C.cpu_isa_select(isa):
            res[isa] = "not selectable"
            continue
        x = fastrand.randn_tensor(
            (3, 1000, 7), generator=fastrand.Generator(123), dtype=torch.float32
        )
        if ref is None:
            ref = x
            res[isa] = "reference"
        else:
            res[isa] = (
                "identical"
                if torch.equal(ref.view(torch.int32), x.view(torch.int32))
                else "DIFFERENT"
            )
    return res


def run(args):
    info = C.machine_info()
    C.print_machine(info)
    isas = list(_C.cpu_isa_available())
    default_isa = _C.cpu_isa_selected()
    default_threads = torch.get_num_threads()
    thread_counts = [1] if default_threads <= 1 else [1, default_threads]
    if args.quick:
        tkw = dict(rounds=2, warmup=1, min_repeats=4, max_repeats=20, budget_s=0.15)
    else:
        tkw = dict(rounds=3, warmup=1, min_repeats=6, max_repeats=60, budget_s=0.3)
    print(
        f"mode: {'quick' if args.quick else 'full'}; fastrand CPU paths {isas} "
        f"(default {default_isa}); threads {thread_counts}"
    )
    print(
        "times are the best of the timed calls; ratio = torch.randn time / method time "
        "(same shape, dtype and threads; >1 means faster than torch.randn)\n"
    )

    small = small_calls(args.quick)
    C.print_table(
        small,
        SMALL_COLUMNS,
        title="Small draws, float32, per call (best of samples of "
        f"{SMALL_BATCH} calls; ratios: x>1 faster than torch.randn)",
    )
    print()
    if args.small_only:
        return _write(args, info, {"small_calls": small})

    mkl_random = mkl_random_module()
    print(
        "MKL comparison (float64 rows): "
        + (
            f"mkl_random {getattr(mkl_random, '__version__', '?')}, PHILOX4X32X10 + BoxMuller2"
            if mkl_random
            else "mkl_random not importable, skipped"
        )
    )
    rows = []
    consistency = {}
    try:
        consistency = check_isa_consistency(isas)
        _C.cpu_isa_select(default_isa)
        selectable = [k for k in isas if consistency.get(k) != "not selectable"]
        for shape, dtype in configs(args.quick):
            n = numel(shape)
            dname = C.dtype_name(dtype)
            np_dtype = {torch.float32: np.float32, torch.float64: np.float64}.get(dtype)
            for threads in thread_counts:
                torch.set_num_threads(threads)
                # (method, isa, kind) -> callable; fastrand paths switch the ISA around the call
                fns = {
                    ("torch.randn", None, "normal"): m_torch(shape, dtype),
                    ("diffusers(cpu gen)", None, "normal"): m_diffusers(shape, dtype),
                }
                for isa in selectable:
                    fns[(f"fastrand[{isa}]", isa, "normal")] = with_isa(
                        isa, m_fastrand(shape, dtype), default_isa
                    )
                    if dtype == torch.float32:  # raw words do not depend on the dtype
                        fns[(f"fastrand words[{isa}]", isa, "words")] = with_isa(
                            isa, m_words(shape), default_isa
                        )
                if np_dtype is not None and threads == thread_counts[0]:
                    fns[(f"numpy philox {np.dtype(np_dtype).name}", None, "normal")] = m_numpy(
                        n, np_dtype
                    )
                if dtype == torch.float64:
                    fns[(FRNP_METHOD, None, "normal")] = m_fastrand_numpy(n, threads)
                    if mkl_random and threads == thread_counts[0]:
                        fns[(MKL_METHOD, None, "normal")] = m_mkl(n, mkl_random)
                times = C.time_cpu_interleaved(fns, **tkw)
                block = []
                for (method, isa, kind), t in times.items():
                    block.append(
                        {
                            "shape": C.fmt_shape(shape),
                            "shape_tuple": list(shape),
                            "numel": n,
                            "dtype": dname,
                            "method": method,
                            "isa": isa,
                            "kind": kind,
                            "threads": threads,
                            "time_ms": t["best"] * 1e3,
                            "median_ms": t["median"] * 1e3,
                            "repeats": t["n"],
                            "gvals": n / t["best"] / 1e9,
                            "ns_per_value": t["best"] * 1e9 / n,
                        }
                    )
                ref = next(r["time_ms"] for r in block if r["method"] == "torch.randn")
                for r in block:
                    r["vs_torch"] = ref / r["time_ms"]
                rows.extend(block)
                C.print_table(block, COLUMNS)
                print()
    finally:
        _C.cpu_isa_select(default_isa)
        torch.set_num_threads(default_threads)

    stages = stage_table(rows, isas)
    if stages:
        C.print_table(
            stages,
            STAGE_COLUMNS,
            title="Stage cost (ns per value): raw Philox words vs full normals; "
            "transform = normals - words",
        )
        print()

    paths = path_table(rows, isas)
    if paths:
        C.print_table(paths, PATH_COLUMNS, title=PATH_TITLE)
        print()

    summary = make_summary(rows, isas, thread_counts, default_isa)
    _write(
        args,
        info,
        {
            "isa_consistency": consistency,
            "timing": tkw,
            "small_calls": small,
            "results": rows,
            "stages": stages,
            "paths": paths,
            "summary": summary,
        },
    )
    plot(rows, isas, thread_counts, os.path.join(args.out, "cpu_throughput.png"), info)
    print_summary(summary, consistency, info, small)
    return 0


def _write(args, info, parts):
    os.makedirs(args.out, exist_ok=True)
    mode = "quick" if args.quick else "full"
    C.write_json(
        os.path.join(args.out, "cpu.json"),
        {"benchmark": "cpu", "mode": mode, "machine": info, **parts},
    )
    return 0


COLUMNS = [
    ("shape", "shape"),
    ("dtype", "dtype"),
    ("method", "method"),
    ("threads", "threads"),
    ("time_ms", "time (ms)"),
    ("median_ms", "median (ms)"),
    ("gvals", "G values/s"),
    ("ns_per_value", "ns/value"),
    ("vs_torch", "vs torch.randn"),
]
STAGE_COLUMNS = [
    ("shape", "shape"),
    ("isa", "path"),
    ("threads", "threads"),
    ("words", "words"),
    ("float32", "float32"),
    ("transform", "transform f32"),
    ("float16", "float16"),
    ("bfloat16", "bfloat16"),
    ("float64", "float64"),
]
MKL_METHOD = "mkl philox BoxMuller2"
FRNP_METHOD = "fastrand.numpy"


def stage_table(rows, isas):
    out = []
    keyed = {}
    for r in rows:
        if r["isa"] is None:
            continue
        k = (r["shape"], r["isa"], r["threads"])
        d = keyed.setdefault(
            k, {"shape": r["shape"], "isa": r["isa"], "threads": r["threads"], "numel": r["numel"]}
        )
        d["words" if r["kind"] == "words" else r["dtype"]] = r["ns_per_value"]
    for d in keyed.values():
        if "words" not in d:
            continue
        if "float32" in d:
            d["transform"] = d["float32"] - d["words"]
        out.append(d)
    out.sort(
        key=lambda d: (
            d["numel"],
            d["shape"],
            isas.index(d["isa"]) if d["isa"] in isas else 0,
            d["threads"],
        )
    )
    return out


# Each CPU path on one thread against the portable scalar loop: on ARM the NEON rows, whose
# ns/value times the clock (GHz) compares with the README's llvm-mca estimate in cycles/value.
PATH_TITLE = "CPU paths, 2^22 normals, 1 thread (x scalar: the portable loop's time / the path's)"
PATH_COLUMNS = [
    ("isa", "path"),
    ("arch", "arch"),
    ("dtype", "dtype"),
    ("ns_per_value", "ns/value"),
    ("vs_scalar", "x scalar"),
]


def path_table(rows, isas):
    out = []
    for dtype in ("float32", "float64"):
        ns = {
            r["isa"]: r["ns_per_value"]
            for r in rows
            if r["isa"]
            and r["kind"] == "normal"
            and r["dtype"] == dtype
            and r["threads"] == 1
            and tuple(r["shape_tuple"]) == REF_SHAPE
        }
        for isa in isas:
            if isa in ns:
                scalar = ns.get("scalar")
                out.append(
                    {
                        "isa": isa,
                        "arch": platform.machine(),
                        "dtype": dtype,
                        "ns_per_value": ns[isa],
                        "vs_scalar": scalar / ns[isa] if scalar else None,
                    }
                )
    return out


def _find(rows, shape, dtype, method, threads):
    for r in rows:
        if (
            tuple(r["shape_tuple"]) == tuple(shape)
            and r["dtype"] == dtype
            and r["method"] == method
            and r["threads"] == threads
        ):
            return r
    return None


def make_summary(rows, isas, thread_counts, default_isa):
    tmax = thread_counts[-1]
    # best path: fastest fastrand CPU path at float32 2^22 with all threads
    cands = [
        r
        for r in rows
        if r["isa"]
        and r["kind"] == "normal"
        and r["dtype"] == "float32"
        and tuple(r["shape_tuple"]) == REF_SHAPE
        and r["threads"] == tmax
    ]
    best = min(cands, key=lambda r: r["time_ms"])["isa"] if cands else default_isa
    fr = f"fastrand[{best}]"

    def entry(label, shape, dtype, threads, method=fr):
        r = _find(rows, shape, dtype, method, threads)
        if r is None:
            return {"label": label, "measured": False}
        e = {
            "label": label,
            "measured": True,
            "shape": C.fmt_shape(shape),
            "dtype": dtype,
            "threads": threads,
            "fastrand_ms": r["time_ms"],
            "fastrand_gvals": r["gvals"],
            "vs_torch": r["vs_torch"],
        }
        d = _find(rows, shape, dtype, "diffusers(cpu gen)", threads)
        if d:
            e["vs_diffusers"] = d["time_ms"] / r["time_ms"]
        npr = [
            x
            for x in rows
            if tuple(x["shape_tuple"]) == tuple(shape)
            and x["method"].startswith("numpy")
            and x["dtype"] == dtype
        ]
        if npr:
            e["vs_numpy"] = npr[0]["time_ms"] / r["time_ms"]
        mkl = _find(rows, shape, dtype, MKL_METHOD, thread_counts[0])
        if mkl:
            e["vs_mkl"] = mkl["time_ms"] / r["time_ms"]
        return e

    return {
        "best_path": best,
        "default_path": default_isa,
        "threads_all": tmax,
        "entries": [
            entry(f"float32 2^22, {tmax} threads", REF_SHAPE, "float32", tmax),
            entry("float32 2^22, 1 thread", REF_SHAPE, "float32", 1),
            entry(f"float32 (1,4,128,128), {tmax} threads", LATENT_REF, "float32", tmax),
            entry(f"float16 2^22, {tmax} threads", REF_SHAPE, "float16", tmax),
            entry(f"bfloat16 2^22, {tmax} threads", REF_SHAPE, "bfloat16", tmax),
            entry("float64 2^22, 1 thread", REF_SHAPE, "float64", 1),
            entry(f"float64 2^22, {tmax} threads", REF_SHAPE, "float64", tmax),
            entry("float64 2^22, NumPy API, 1 thread", REF_SHAPE, "float64", 1, FRNP_METHOD),
        ],
    }


def print_summary(s, consistency, info, small):
    print()
    print(
        f"Summary (fastrand best CPU path: {s['best_path']}; default path "
        f"{s['default_path']}; {info.get('cpu_model')}, {s['threads_all']} threads available)"
    )
    for e in s["entries"]:
        if not e["measured"]:
            print(f"  {e['label']:<32} not measured in this mode")
            continue
        extra = ""
        if "vs_diffusers" in e:
            extra += f", x{e['vs_diffusers']:.2f} vs diffusers path"
        if "vs_numpy" in e:
            extra += f", x{e['vs_numpy']:.2f} vs numpy philox (1 thread)"
        if "vs_mkl" in e:
            extra += f", x{e['vs_mkl']:.2f} vs MKL philox BoxMuller2 (1 thread)"
        print(
            f"  {e['label']:<32} {e['fastrand_ms']:8.3f} ms  {e['fastrand_gvals']:6.3f} G/s  "
            f"x{e['vs_torch']:.2f} vs torch.randn{extra}"
        )
    for r in small:
        print(
            f"  {r['shape'] + ' per call':<32} fastrand.Generator {r['fastrand_gen_us']:.1f} us, "
            f"torch.Generator {r['torch_gen_us']:.1f} us ({_pct(r['torch_gen_overhead'])}), "
            f"torch.randn {r['torch_randn_us']:.1f} us"
        )
    bad = [k for k, v in consistency.items() if v == "DIFFERENT"]
    if bad:
        print(f"  WARNING: CPU paths {bad} gave different bits from {list(consistency)[0]}")
    print("  (x>1: fastrand faster. Timings on a shared machine vary; compare within one run.)")


def plot(rows, isas, thread_counts, path, info):
    panels = []
    dtypes = []
    for r in rows:
        if r["dtype"] not in dtypes:
            dtypes.append(r["dtype"])
    tmax = thread_counts[-1]
    flat_sizes = {numel(s) for s in FLAT}
    for dt in dtypes:
        series = {}
        for r in rows:
            if r["dtype"] != dt or r["kind"] != "normal":
                continue
            if len(r["shape_tuple"]) > 1 and r["numel"] in flat_sizes:
                continue  # same size as a flat point, e.g. (1,4,128,128) = 2^16: one point each
            single = r["method"].startswith("numpy") or r["method"] == MKL_METHOD
            if r["isa"] is None and r["threads"] != tmax and not single:
                continue  # torch.randn / diffusers: the all-threads run only
            label = r["method"] if r["isa"] is None else f"{r['method']} {r['threads']}T"
            if r["isa"] is not None and r["threads"] not in (1, tmax):
                continue
            series.setdefault(label, []).append((r["numel"], r["gvals"]))
        panels.append((dt, series))
    C.plot_panels(
        path,
        panels,
        suptitle=f"fastrand CPU throughput - {info.get('cpu_model')}, torch {info.get('torch')}",
        xlabel="elements (log2)",
        ylabel="G values/s",
        style=lambda label: {"linestyle": "--"} if label.endswith(" 1T") else None,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="bench-results", help="output folder (default bench-results/)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="only float32 2^22, float32 (1,4,128,128) and bfloat16 2^22, fewer repeats",
    )
    p.add_argument(
        "--small-only",
        action="store_true",
        help="only the per-call costs of small draws (both generator kinds and torch.randn)",
    )
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
