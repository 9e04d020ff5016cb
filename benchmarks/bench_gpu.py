"""GPU benchmark: fastrand vs torch.randn vs diffusers' CPU-generator path, against fill_.

Usage (from the repository root, on a machine with a CUDA GPU):
    PYTHONPATH=src python benchmarks/bench_gpu.py [--quick] [--out DIR] [--budget-s S]
    PYTHONPATH=src python benchmarks/bench_gpu.py --backends-only [--out DIR]

The CUDA backends section (issue 10) measures the NVRTC backend in fresh processes: cold
compile + load with an empty cubin cache, warm load (cache hit, new process), the latency of
the first draw (cold, warm, and AOT), and NVRTC vs AOT kernel time at 2^26 float32/bfloat16.

Writes DIR/gpu.json (also rewritten after every configuration, so an interrupted run keeps its
results) and DIR/gpu_throughput.png (default DIR: bench-results/). Without CUDA it prints a note
and exits with status 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402
import torch  # noqa: E402

DEVICE = "cuda"
SHAPES = [
    (1, 4, 128, 128),
    (4, 4, 128, 128),
    (1, 16, 21, 90, 160),
    (1, 16, 33, 90, 160),
    (1 << 26,),
    (1 << 28,),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
F64_SHAPES = [(1 << 26,)]  # float64 only here
NO_DIFFUSERS = [(1 << 28,)]  # the CPU-generator path is skipped here (seconds per call)
SMALL_REF = (1, 4, 128, 128)
VIDEO = [(1, 16, 21, 90, 160), (1, 16, 33, 90, 160)]
HEADLINE = [
    ((1 << 26,), torch.float32),
    ((1 << 28,), torch.float32),
    ((1 << 26,), torch.bfloat16),
    ((1 << 28,), torch.bfloat16),
    ((1 << 26,), torch.float16),
]
LARGE = 1 << 24  # from here on: fewer repeats for the blocking diffusers path
HUGE_BYTES = 1 << 30  # configurations this big need free GPU memory (checked before)
NO_KERNEL_MAX_NUMEL = 1 << 28  # a build without the CUDA kernel skips fastrand from here on
VARIANT_CASES = [
    ((1 << 26,), torch.float32),
    ((1 << 26,), torch.bfloat16),
    ((1 << 28,), torch.float32),
    ((1 << 28,), torch.bfloat16),
    ((1, 4, 128, 128), torch.float32),
]

METHODS = ["fastrand", "torch.randn", "diffusers", "fill_"]


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def configs():
    out = []
    for shape in SHAPES:
        for dt in DTYPES:
            out.append((shape, dt))
        if shape in F64_SHAPES:
            out.append((shape, torch.float64))
    return out


def settings(quick):
    if quick:
        return {
            "target_s": 0.02,
            "min_calls": 5,
            "max_calls": 50,
            "warmup": 2,
            "diff_repeats_small": 3,
            "diff_repeats_large": 1,
        }
    return {
        "target_s": 0.05,
        "min_calls": 10,
        "max_calls": 200,
        "warmup": 3,
        "diff_repeats_small": 5,
        "diff_repeats_large": 2,
    }


def ratio(a, b):
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


# --------------------------------------------------------------------------------------------
# measurement
def measure_async(fn, st, use_sleep=True):
    """Kernel time (CUDA events over back-to-back calls) and wall time per call of fn."""
    est = C.time_cuda_wall(fn, 3, warmup=st["warmup"])
    n = int(min(st["max_calls"], max(st["min_calls"], st["target_s"] / max(est, 1e-7))))
    wall = C.time_cuda_wall(fn, n, warmup=1)
    kern, ev = C.time_cuda_events(fn, n, warmup=1, host_s_per_call=wall, use_sleep=use_sleep)
    return {
        "kernel_us": kern * 1e6,
        "wall_us": wall * 1e6,
        "calls": n,
        "spin": ev["spin"],
        "spin_not_covering": bool(ev.get("spin_not_covering")),
    }


def measure_blocking(fn, repeats, warmup):
    """Per-call wall time of a path that synchronizes anyway (each call then a synchronize)."""
    t = C.time_cuda_sync(fn, warmup=warmup, repeats=repeats)
    return {
        "kernel_us": None,
        "wall_us": t["best"] * 1e6,
        "median_us": t["median"] * 1e6,
        "calls": t["n"],
    }


def make_fns(fastrand, shape, dtype, buf):
    """The callables for one (shape, dtype); buf is the preallocated tensor for fill_."""
    g = fastrand.Generator(0)
    dev = DEVICE
    return {
        "fastrand": lambda: fastrand.randn_tensor(shape, generator=g, device=dev, dtype=dtype),
        "torch.randn": lambda: torch.randn(shape, device=dev, dtype=dtype),
        # diffusers.utils.torch_utils.randn_tensor with a CPU generator and a CUDA target
        "diffusers": lambda: torch.randn(
            shape, generator=torch.Generator("cpu").manual_seed(0), dtype=dtype
        ).to(dev),
        "fill_": lambda: buf.fill_(1.0),
    }


def free_bytes():
    try:
        return torch.cuda.mem_get_info()[0]
    except Exception:  # noqa: BLE001
        return None


def run_config(fastrand, shape, dtype, st, cuda_kernel):
    """Measures every method for one (shape, dtype); returns the result rows."""
    n = numel(shape)
    elem = torch.empty((), dtype=dtype).element_size()
    nbytes = n * elem
    res = {}
    errors = {}
    free = free_bytes()
    if nbytes >= HUGE_BYTES and free is not None and free < 5 * nbytes:
        msg = f"skipped: needs about {5 * nbytes / 2**30:.1f} GiB free, {free / 2**30:.1f} free"
        return [
            {
                "shape": C.fmt_shape(shape),
                "shape_tuple": list(shape),
                "numel": n,
                "dtype": C.dtype_name(dtype),
                "method": m,
                "error": msg,
            }
            for m in METHODS
        ]
    buf = fns = None
    try:
        buf = torch.empty(shape, device=DEVICE, dtype=dtype)
        fns = make_fns(fastrand, shape, dtype, buf)
        for m in ("fill_", "torch.randn", "fastrand"):
            if m == "fastrand" and not cuda_kernel and n >= NO_KERNEL_MAX_NUMEL:
                errors[m] = "skipped: fastrand has no CUDA kernel in this build"
                continue
            try:
                res[m] = measure_async(fns[m], st, use_sleep=(m != "fastrand" or cuda_kernel))
            except Exception as e:  # noqa: BLE001 - recorded, the run goes on
                errors[m] = f"error: {e!r}"
                print(f"  {m} {C.fmt_shape(shape)} {C.dtype_name(dtype)}: {e!r}")
                _sync_quietly()
        if tuple(shape) in [tuple(s) for s in NO_DIFFUSERS]:
            errors["diffusers"] = "skipped (seconds per call)"
        else:
            large = n >= LARGE
            try:
                res["diffusers"] = measure_blocking(
                    fns["diffusers"],
                    repeats=st["diff_repeats_large"] if large else st["diff_repeats_small"],
                    warmup=0 if large else 1,
                )
            except Exception as e:  # noqa: BLE001
                errors["diffusers"] = f"error: {e!r}"
                print(f"  diffusers {C.fmt_shape(shape)} {C.dtype_name(dtype)}: {e!r}")
                _sync_quietly()
    finally:
        buf = fns = None  # drop the preallocated tensor (and the closures holding it)
        if nbytes >= (1 << 28):
            try:
                torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001
                pass

    fill_k = res.get("fill_", {}).get("kernel_us")
    torch_k = res.get("torch.randn", {}).get("kernel_us")
    torch_w = res.get("torch.randn", {}).get("wall_us")
    diff_w = res.get("diffusers", {}).get("wall_us")
    fr_k = res.get("fastrand", {}).get("kernel_us")
    rows = []
    for m in METHODS:
        row = {
            "shape": C.fmt_shape(shape),
            "shape_tuple": list(shape),
            "numel": n,
            "dtype": C.dtype_name(dtype),
            "method": m,
        }
        if m not in res:
            row["error"] = errors.get(m, "not measured")
            rows.append(row)
            continue
        r = res[m]
        row.update(r)
        t_us = r["kernel_us"] if r["kernel_us"] is not None else r["wall_us"]
        row["gelem_s"] = ratio(n, t_us * 1e3)  # elements per ns = G elements/s
        row["gb_s"] = ratio(nbytes, t_us * 1e3)
        row["fill_frac"] = ratio(fill_k, t_us)
        row["vs_torch"] = ratio(torch_k, r["kernel_us"])
        row["vs_torch_wall"] = ratio(torch_w, r["wall_us"])
        row["vs_diffusers"] = ratio(diff_w, r["wall_us"])
        if m == "fastrand":
            row["vs_fastrand"] = 1.0
        elif fr_k is not None and r["kernel_us"] is not None:
            row["vs_fastrand"] = ratio(r["kernel_us"], fr_k)
        rows.append(row)
    return rows


def _sync_quietly():
    try:
        torch.cuda.synchronize()
    except Exception:  # noqa: BLE001
        pass


# --------------------------------------------------------------------------------------------
# extra sections
def identity_check(fastrand):
    """fastrand on the GPU must give the CPU's bits (a correctness guard, not a benchmark)."""
    out = {}
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}
    for dt in DTYPES + [torch.float64]:
        for shape, offset in (((1, 4, 64, 64), 0), ((4097,), 3)):
            key = f"{C.dtype_name(dt)} {C.fmt_shape(shape)} offset {offset}"
            try:
                a = fastrand.randn_tensor(
                    shape, generator=fastrand.Generator(7, offset=offset), device=DEVICE, dtype=dt
                ).cpu()
                b = fastrand.randn_tensor(
                    shape, generator=fastrand.Generator(7, offset=offset), device="cpu", dtype=dt
                )
                iv = ints[a.element_size()]
                out[key] = "identical" if torch.equal(a.view(iv), b.view(iv)) else "DIFFERENT"
            except Exception as e:  # noqa: BLE001
                out[key] = f"error: {e!r}"
    return out


def generator_overhead(fastrand, st):
    """Per-call cost of fastrand with a torch.Generator('cuda') (offset tracking) at the small
    latent shape, next to fastrand.Generator and torch.randn with and without a generator."""
    shape, dtype = SMALL_REF, torch.float32
    dev = DEVICE
    fg = fastrand.Generator(0)
    tg_fr = torch.Generator(device=dev).manual_seed(0)
    tg_torch = torch.Generator(device=dev).manual_seed(0)
    fns = {
        "fastrand, fastrand.Generator(0)": lambda: fastrand.randn_tensor(
            shape, generator=fg, device=dev, dtype=dtype
        ),
        "fastrand, torch.Generator('cuda')": lambda: fastrand.randn_tensor(
            shape, generator=tg_fr, device=dev, dtype=dtype
        ),
        "torch.randn, no generator": lambda: torch.randn(shape, device=dev, dtype=dtype),
        "torch.randn, torch.Generator('cuda')": lambda: torch.randn(
            shape, generator=tg_torch, device=dev, dtype=dtype
        ),
    }
    rows = []
    for name, fn in fns.items():
        row = {"shape": C.fmt_shape(shape), "dtype": C.dtype_name(dtype), "call": name}
        try:
            row.update(measure_async(fn, st))
        except Exception as e:  # noqa: BLE001
            row["error"] = f"error: {e!r}"
            _sync_quietly()
        rows.append(row)
    base = rows[0].get("wall_us")
    for row in rows:
        row["overhead_us"] = (
            (row["wall_us"] - base)
            if (base is not None and row.get("wall_us") is not None)
            else None
        )
    return rows


def variant_sweep(fastrand, st):
    """Kernel time of each CUDA launch shape of fastrand (all give the same bits)."""
    _C = fastrand._C
    if not (hasattr(_C, "cuda_set_variant") and hasattr(_C, "cuda_variant_count")):
        return []
    rows = []
    try:
        count = int(_C.cuda_variant_count())
        for shape, dtype in VARIANT_CASES:
            nbytes = numel(shape) * torch.empty((), dtype=dtype).element_size()
            free = free_bytes()
            if nbytes >= HUGE_BYTES and free is not None and free < 3 * nbytes:
                continue
            g = fastrand.Generator(0)

            def fn(shape=shape, dtype=dtype, g=g):
                return fastrand.randn_tensor(shape, generator=g, device=DEVICE, dtype=dtype)

            try:  # torch in the same sweep, so each variant's ratio has a fresh reference
                torch_us = measure_async(
                    lambda shape=shape, dtype=dtype: torch.randn(shape, device=DEVICE, dtype=dtype),
                    st,
                )["kernel_us"]
            except Exception:  # noqa: BLE001
                torch_us = None
                _sync_quietly()
            for v in range(count):
                row = {"shape": C.fmt_shape(shape), "dtype": C.dtype_name(dtype), "variant": v}
                try:
                    _C.cuda_set_variant(v)
                    row.update(measure_async(fn, st))
                    row["gelem_s"] = ratio(numel(shape), row["kernel_us"] * 1e3)
                    row["torch_us"] = torch_us
                    row["vs_torch"] = ratio(torch_us, row["kernel_us"]) if torch_us else None
                except Exception as e:  # noqa: BLE001
                    row["error"] = f"error: {e!r}"
                    _sync_quietly()
                rows.append(row)
            torch.cuda.empty_cache()
    finally:
        try:
            _C.cuda_set_variant(0)  # the default launch shape
        except Exception:  # noqa: BLE001
            pass
    return rows


# --------------------------------------------------------------------------------------------
# CUDA backends (issue 10): NVRTC load times in fresh processes, NVRTC vs AOT throughput
BACKEND_CASES = [((1 << 26,), torch.float32), ((1 << 26,), torch.bfloat16)]
TARGET_COLD_S, TARGET_WARM_S, TARGET_RATIO = 1.0, 0.050, 1.02


def load_probe(mode):
    """Run in a fresh process (--load-probe MODE): prints one JSON line of timings.

    cold: NVRTC load, compile of the float32 normal group (empty cache expected), then the
    device's setup (the probe group compiled, both loaded, the known-answer checks), timed apart;
    warm: _cuda.prepare() as a draw would call it (cache hits: read + load + checks, NVRTC not
    loaded);
    first: the first randn_tensor on the device, everything included;
    The CUDA context is created before any timing (torch's, not fastrand's cost)."""
    torch.empty(1, device=DEVICE)
    torch.cuda.synchronize()
    fastrand = C.import_fastrand()
    from fastrand import _cuda

    index = torch.cuda.current_device()
    out = {"mode": mode, "backend": _cuda.backend()}
    normal32 = (fastrand._C.KIND_NORMAL, fastrand._C.DT_FLOAT32)
    t0 = time.perf_counter()
    if mode == "cold":
        nv = _cuda.nvrtc()
        t1 = time.perf_counter()
        c = _cuda.cubin(_cuda.target_arch(_cuda._common.capability(index)), "normal/float32")
        t2 = time.perf_counter()
        _cuda.prepare(index, *normal32)
        t3 = time.perf_counter()
        out.update(
            nvrtc=nv.version_string,
            arch=c.arch,
            origin=c.origin,
            cubin_bytes=len(c.image),
            nvrtc_load_s=t1 - t0,
            compile_s=t2 - t1,
            module_load_s=t3 - t2,
            total_s=t3 - t0,
        )
    elif mode == "warm":
        _cuda.prepare(index, *normal32)
        t1 = time.perf_counter()
        out.update(total_s=t1 - t0, nvrtc_loaded="nvrtc" in _cuda._common.STATE)
    else:
        g = fastrand.Generator(0)
        fastrand.randn_tensor(SMALL_REF, generator=g, device=DEVICE, dtype=torch.float32)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        fastrand.randn_tensor(SMALL_REF, generator=g, device=DEVICE, dtype=torch.float32)
        torch.cuda.synchronize()
        out.update(total_s=t1 - t0, second_draw_s=time.perf_counter() - t1)
    print("LOADPROBE " + json.dumps(out))
    return 0


def _probe(mode, backend, cache, timeout=300):
    env = dict(os.environ, FASTRAND_CUDA_BACKEND=backend, FASTRAND_CACHE_DIR=cache)
    p = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--load-probe", mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    for line in p.stdout.splitlines():
        if line.startswith("LOADPROBE "):
            return json.loads(line[len("LOADPROBE ") :])
    return {"mode": mode, "error": (p.stderr.strip().splitlines() or ["no output"])[-1]}


def backend_loads(fastrand):
    """Fresh processes, each with its own cubin cache: cold then warm, module and first draw."""
    res = {}
    with tempfile.TemporaryDirectory(prefix="fastrand-bench-") as tmp:
        a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        res["cold"] = _probe("cold", "nvrtc", a)
        res["warm"] = _probe("warm", "nvrtc", a)
        res["first_cold"] = _probe("first", "nvrtc", b)
        res["first_warm"] = _probe("first", "nvrtc", b)
        if fastrand._C.CUDA:
            res["first_aot"] = _probe("first", "aot", b)
    return res


def backend_throughput(fastrand, st):
    """Kernel time of the same draws through the AOT and the NVRTC backend (same bits)."""
    from fastrand import _cuda

    backends = (["aot"] if fastrand._C.CUDA else []) + ["nvrtc"]
    before = os.environ.get(_cuda.ENV_BACKEND)
    rows = []
    try:
        for shape, dtype in BACKEND_CASES:
            per = {}
            for b in backends:
                os.environ[_cuda.ENV_BACKEND] = b
                _cuda.reset()
                row = {"shape": C.fmt_shape(shape), "dtype": C.dtype_name(dtype), "backend": b}
                g = fastrand.Generator(0)

                def fn(shape=shape, dtype=dtype, g=g):
                    return fastrand.randn_tensor(shape, generator=g, device=DEVICE, dtype=dtype)

                try:
                    fn()  # compile/load outside the timing
                    torch.cuda.synchronize()
                    row.update(measure_async(fn, st))
                    row["gelem_s"] = ratio(numel(shape), row["kernel_us"] * 1e3)
                    per[b] = row["kernel_us"]
                except Exception as e:  # noqa: BLE001
                    row["error"] = f"error: {e!r}"
                    _sync_quietly()
                rows.append(row)
            if "aot" in per and "nvrtc" in per:
                rows[-1]["nvrtc_over_aot"] = per["nvrtc"] / per["aot"]
            torch.cuda.empty_cache()
    finally:
        if before is None:
            os.environ.pop(_cuda.ENV_BACKEND, None)
        else:
            os.environ[_cuda.ENV_BACKEND] = before
        _cuda.reset()
    return rows


def backend_summary(loads, rows):
    """Lines for the summary: each figure against its target (issue 10)."""

    def ms(v):
        return "-" if v is None else f"{v * 1e3:.1f} ms"

    def verdict(ok):
        return "ok" if ok else "OVER TARGET"

    lines = []
    cold, warm = loads.get("cold", {}), loads.get("warm", {})
    if "total_s" in cold:
        lines.append(
            f"  NVRTC {cold.get('nvrtc')} sm_{cold.get('arch')}: cold compile + load "
            f"{ms(cold['total_s'])} (NVRTC load {ms(cold['nvrtc_load_s'])}, compile "
            f"{ms(cold['compile_s'])}, module load {ms(cold['module_load_s'])}; "
            f"{cold.get('cubin_bytes')} bytes) [<= {TARGET_COLD_S:.0f} s: "
            f"{verdict(cold['total_s'] <= TARGET_COLD_S)}]"
        )
    else:
        lines.append(f"  NVRTC cold compile + load: not measured ({cold.get('error')})")
    if "total_s" in warm:
        lines.append(
            f"  NVRTC warm load, new process: {ms(warm['total_s'])} (NVRTC loaded: "
            f"{warm.get('nvrtc_loaded')}) [<= {TARGET_WARM_S * 1e3:.0f} ms: "
            f"{verdict(warm['total_s'] <= TARGET_WARM_S)}]"
        )
    else:
        lines.append(f"  NVRTC warm load: not measured ({warm.get('error')})")
    firsts = [
        f"{name} {ms(loads.get(key, {}).get('total_s'))}"
        for name, key in (
            ("NVRTC cold", "first_cold"),
            ("warm", "first_warm"),
            ("AOT", "first_aot"),
        )
        if key in loads
    ]
    lines.append("  first draw (1,4,128,128) f32 in a new process: " + ", ".join(firsts))
    for r in rows:
        if "nvrtc_over_aot" in r:
            q = r["nvrtc_over_aot"]
            lines.append(
                f"  NVRTC/AOT kernel time {r['dtype']} {r['shape']}: {q:.3f} "
                f"[<= {TARGET_RATIO}: {verdict(q <= TARGET_RATIO)}]"
            )
        elif r.get("error"):
            lines.append(f"  {r['backend']} {r['dtype']} {r['shape']}: {r['error']}")
    return lines


# --------------------------------------------------------------------------------------------
# output
def _x(v):
    return f"x{C.fmt_num(v)}"


def _pct(v):
    return "-" if v is None else f"{100 * v:.0f}%"


COLUMNS = [
    ("shape", "shape"),
    ("dtype", "dtype"),
    ("method", "method"),
    ("kernel_us", "kernel us"),
    ("wall_us", "wall us/call"),
    ("calls", "calls"),
    ("gelem_s", "G elem/s"),
    ("gb_s", "GB/s"),
    ("fill_frac", "of fill_", _pct),
    ("vs_torch", "vs torch (kern)", _x),
    ("vs_torch_wall", "vs torch (wall)", _x),
    ("vs_diffusers", "vs diffusers", _x),
    ("error", "note"),
]
OVERHEAD_COLUMNS = [
    ("call", "call"),
    ("wall_us", "wall us/call"),
    ("overhead_us", "+us"),
    ("kernel_us", "kernel us"),
    ("error", "note"),
]
BACKEND_COLUMNS = [
    ("shape", "shape"),
    ("dtype", "dtype"),
    ("backend", "backend"),
    ("kernel_us", "kernel us"),
    ("gelem_s", "G elem/s"),
    ("nvrtc_over_aot", "nvrtc/aot"),
    ("error", "note"),
]
VARIANT_COLUMNS = [
    ("shape", "shape"),
    ("dtype", "dtype"),
    ("variant", "variant"),
    ("kernel_us", "kernel us"),
    ("gelem_s", "G elem/s"),
    ("torch_us", "torch.randn us"),
    ("vs_torch", "vs torch (kern)", _x),
    ("error", "note"),
]


def _get(rows, shape, dtype_name, method):
    for r in rows:
        if (
            tuple(r["shape_tuple"]) == tuple(shape)
            and r["dtype"] == dtype_name
            and r["method"] == method
        ):
            return r
    return None


def summary(rows, overhead, identity, info):
    s = {"throughput": [], "small": None, "video": [], "identity": None}
    for shape, dt in HEADLINE:
        r = _get(rows, shape, C.dtype_name(dt), "fastrand")
        t = _get(rows, shape, C.dtype_name(dt), "torch.randn")
        s["throughput"].append(
            {
                "shape": C.fmt_shape(shape),
                "dtype": C.dtype_name(dt),
                "vs_torch": r.get("vs_torch") if r else None,
                "fastrand_us": r.get("kernel_us") if r else None,
                "torch_us": t.get("kernel_us") if t else None,
                "fill_frac": r.get("fill_frac") if r else None,
                "torch_fill_frac": t.get("fill_frac") if t else None,
            }
        )
    r = _get(rows, SMALL_REF, "float32", "fastrand")
    t = _get(rows, SMALL_REF, "float32", "torch.randn")
    if r and t:
        s["small"] = {
            "fastrand_wall_us": r.get("wall_us"),
            "torch_wall_us": t.get("wall_us"),
            "fastrand_over_torch": ratio(r.get("wall_us"), t.get("wall_us")),
        }
        tg = next(
            (
                o
                for o in overhead
                if "torch.Generator" in o["call"] and o["call"].startswith("fastrand")
            ),
            None,
        )
        if tg:
            s["small"]["fastrand_torch_generator_wall_us"] = tg.get("wall_us")
    for shape in VIDEO:
        for dt in DTYPES:
            r = _get(rows, shape, C.dtype_name(dt), "fastrand")
            s["video"].append(
                {
                    "shape": C.fmt_shape(shape),
                    "dtype": C.dtype_name(dt),
                    "vs_diffusers": r.get("vs_diffusers") if r else None,
                }
            )
    if identity:
        bad = {k: v for k, v in identity.items() if v != "identical"}
        s["identity"] = {"checks": len(identity), "not_identical": bad}
    return s


def print_summary(s, info):
    g = info.get("gpu") or {}
    fr = info.get("fastrand")
    ver = fr.get("version") if isinstance(fr, dict) else "?"
    print()
    print(
        f"GPU summary: {g.get('name', '?')}, fastrand {ver}, torch {info.get('torch')} "
        "(x>1: fastrand faster)"
    )
    print("  fastrand/torch.randn throughput (kernel time, CUDA events):")
    for e in s["throughput"]:
        if e["vs_torch"] is None:
            print(f"    {e['dtype']:<9} {e['shape']:<5} not measured")
            continue
        print(
            f"    {e['dtype']:<9} {e['shape']:<5} {_x(e['vs_torch'])}  (fastrand "
            f"{C.fmt_num(e['fastrand_us'])} us = {_pct(e['fill_frac'])} of fill_; "
            f"torch {C.fmt_num(e['torch_us'])} us = {_pct(e['torch_fill_frac'])})"
        )
    sm = s["small"]
    if sm:
        line = (
            f"  (1,4,128,128) f32 wall/call: fastrand {C.fmt_num(sm['fastrand_wall_us'])} us"
            f" / torch.randn {C.fmt_num(sm['torch_wall_us'])} us = "
            f"{C.fmt_num(sm['fastrand_over_torch'])}"
        )
        print(line)
        if sm.get("fastrand_torch_generator_wall_us") is not None:
            print(
                f"    fastrand with torch.Generator('cuda'): "
                f"{C.fmt_num(sm['fastrand_torch_generator_wall_us'])} us/call"
            )
    else:
        print("  (1,4,128,128) f32 wall/call: not measured")
    print("  video latents, fastrand speed-up vs diffusers path (CPU generator + .to('cuda')):")
    for shape in VIDEO:
        parts = [
            f"{e['dtype']} {_x(e['vs_diffusers']) if e['vs_diffusers'] else '-'}"
            for e in s["video"]
            if e["shape"] == C.fmt_shape(shape)
        ]
        print(f"    {C.fmt_shape(shape)}: " + ", ".join(parts))
    ident = s["identity"]
    if ident is not None:
        if ident["not_identical"]:
            print(f"  CPU/CUDA bit identity: FAILED {ident['not_identical']}")
        else:
            print(f"  CPU/CUDA bit identity: identical ({ident['checks']} checks)")


def plot(rows, path, info):
    panels = []
    flat_sizes = {numel(s) for s in SHAPES if len(s) == 1}
    for dt in DTYPES + [torch.float64]:
        name = C.dtype_name(dt)
        series = {}
        for r in rows:
            if r["dtype"] != name or r.get("gelem_s") is None:
                continue
            if len(r["shape_tuple"]) > 1 and r["numel"] in flat_sizes:
                continue  # one point per size
            label = r["method"] + (" (wall, blocking)" if r["method"] == "diffusers" else "")
            series.setdefault(label, []).append((r["numel"], r["gelem_s"]))
        if series:
            panels.append((name, series))
    g = info.get("gpu") or {}
    C.plot_panels(
        path,
        panels,
        suptitle=f"fastrand CUDA throughput - {g.get('name', '?')}, torch {info.get('torch')}",
        xlabel="elements (log2)",
        ylabel="G elements/s",
        logy=True,
    )


def run_backends(fastrand, st):
    """The CUDA backends section; never fails the benchmark."""
    from fastrand import _cuda

    out = {"loads": {}, "throughput": [], "summary": []}
    if _cuda.nvrtc_version() is None:
        out["summary"] = ["  NVRTC backend: not measured (NVRTC not found)"]
        print(out["summary"][0])
        return out
    try:
        out["loads"] = backend_loads(fastrand)
        for k, v in out["loads"].items():
            print(f"  load probe {k}: {v}")
    except Exception as e:  # noqa: BLE001
        print(f"backend load probes failed: {e!r}")
    try:
        out["throughput"] = backend_throughput(fastrand, st)
        C.print_table(
            out["throughput"],
            BACKEND_COLUMNS,
            title="AOT vs NVRTC backend, same draws (kernel time, CUDA events)",
        )
        print()
    except Exception as e:  # noqa: BLE001
        print(f"backend throughput failed: {e!r}")
        _sync_quietly()
    out["summary"] = backend_summary(out["loads"], out["throughput"])
    return out


# --------------------------------------------------------------------------------------------
def run(args):
    t_start = time.perf_counter()
    if not torch.cuda.is_available():
        print(
            "bench_gpu: CUDA is not available to torch "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); nothing to measure. "
            "Run this on a machine with an NVIDIA GPU."
        )
        return 0
    try:
        fastrand = C.import_fastrand()
    except Exception as e:  # noqa: BLE001
        print(f"bench_gpu: cannot import fastrand: {e!r}")
        return 1
    info = C.machine_info()
    C.print_machine(info)
    cuda_kernel = bool(fastrand.build_info().get("cuda"))
    if not cuda_kernel:
        print(
            "WARNING: this fastrand build has no CUDA kernel: randn_tensor(device='cuda') "
            "generates on the CPU and copies. Its GPU figures below measure that fallback; "
            "2^28 is skipped for it."
        )
    st = settings(args.quick)
    print(
        f"mode: {'quick' if args.quick else 'full'}; time budget {args.budget_s:.0f} s; "
        f"settings {st}"
    )
    print(
        "kernel us: CUDA events around back-to-back calls (a spin kernel queued first hides "
        "the host); wall us/call: N calls then one synchronize, / N. Ratios >1: the row's "
        "method is faster; vs diffusers compares wall times.\n"
    )

    out_json = os.path.join(args.out, "gpu.json")
    payload = {
        "benchmark": "gpu",
        "mode": "quick" if args.quick else "full",
        "machine": info,
        "settings": st,
        "identity": None,
        "results": [],
        "generator_overhead": [],
        "variants": [],
        "backends": None,
        "skipped": [],
        "summary": None,
        "complete": False,
    }

    def save():
        payload["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        try:
            C.write_json(out_json, payload, quiet=True)
        except Exception as e:  # noqa: BLE001
            print(f"  could not write {out_json}: {e!r}")

    try:
        payload["identity"] = identity_check(fastrand)
        bad = {k: v for k, v in payload["identity"].items() if v != "identical"}
        print(
            f"CPU/CUDA bit identity: {'FAILED ' + str(bad) if bad else 'identical'} "
            f"({len(payload['identity'])} checks)\n"
        )
    except Exception as e:  # noqa: BLE001
        print(f"identity check failed to run: {e!r}")
    save()

    # one small call of every path first (CUDA context, kernel loading, allocator)
    try:
        warm = torch.empty(SMALL_REF, device=DEVICE)
        for fn in make_fns(fastrand, SMALL_REF, torch.float32, warm).values():
            fn()
        torch.cuda.synchronize()
        del warm
    except Exception as e:  # noqa: BLE001
        print(f"warm-up failed: {e!r}")
        _sync_quietly()

    for shape, dtype in [] if args.backends_only else configs():
        elapsed = time.perf_counter() - t_start
        if elapsed > args.budget_s:
            print(
                f"  skipping {C.fmt_shape(shape)} {C.dtype_name(dtype)}: time budget "
                f"({elapsed:.0f} s > {args.budget_s:.0f} s)"
            )
            payload["skipped"].append([C.fmt_shape(shape), C.dtype_name(dtype)])
            continue
        try:
            block = run_config(fastrand, shape, dtype, st, cuda_kernel)
        except Exception as e:  # noqa: BLE001
            print(f"  {C.fmt_shape(shape)} {C.dtype_name(dtype)} failed: {e!r}")
            traceback.print_exc()
            _sync_quietly()
            payload["skipped"].append([C.fmt_shape(shape), C.dtype_name(dtype), repr(e)])
            continue
        payload["results"].extend(block)
        C.print_table(block, COLUMNS)
        print()
        save()

    try:
        if not args.backends_only:
            payload["generator_overhead"] = generator_overhead(fastrand, st)
        C.print_table(
            payload["generator_overhead"],
            OVERHEAD_COLUMNS,
            title="Per-call overhead by generator, (1,4,128,128) float32 "
            "(+us: wall time over fastrand.Generator)",
        )
        print()
    except Exception as e:  # noqa: BLE001
        print(f"generator overhead section failed: {e!r}")
        _sync_quietly()
    save()

    if (
        not (args.no_variants or args.backends_only)
        and cuda_kernel
        and time.perf_counter() - t_start < args.budget_s
    ):
        try:
            payload["variants"] = variant_sweep(fastrand, st)
            if payload["variants"]:
                C.print_table(
                    payload["variants"],
                    VARIANT_COLUMNS,
                    title="fastrand CUDA launch shapes (_C.cuda_set_variant; "
                    "0 = default, all give the same bits)",
                )
                print()
        except Exception as e:  # noqa: BLE001
            print(f"variant sweep failed: {e!r}")
            _sync_quietly()
        save()

    if not args.no_backends:
        payload["backends"] = run_backends(fastrand, st)
        save()

    try:
        payload["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    except Exception:  # noqa: BLE001
        pass
    try:
        payload["summary"] = summary(
            payload["results"], payload["generator_overhead"], payload["identity"], info
        )
    except Exception as e:  # noqa: BLE001
        print(f"summary failed: {e!r}")
        traceback.print_exc()
    payload["complete"] = True
    save()
    print(f"wrote {out_json}")
    try:
        plot(payload["results"], os.path.join(args.out, "gpu_throughput.png"), info)
    except Exception as e:  # noqa: BLE001
        print(f"plot failed: {e!r}")
    if payload["summary"]:
        print_summary(payload["summary"], info)
    if payload["backends"]:
        print("  CUDA backends (issue 10 targets in brackets):")
        for line in payload["backends"]["summary"]:
            print(line)
    print(f"total {time.perf_counter() - t_start:.1f} s")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="bench-results", help="output folder (default bench-results/)")
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument(
        "--budget-s",
        type=float,
        default=75.0,
        help="stop starting new configurations after this many seconds (default 75)",
    )
    p.add_argument(
        "--no-variants",
        action="store_true",
        help="skip the sweep over fastrand's CUDA launch shapes",
    )
    p.add_argument(
        "--no-backends", action="store_true", help="skip the CUDA backends (NVRTC) section"
    )
    p.add_argument(
        "--backends-only",
        action="store_true",
        help="only the CUDA backends section (and the identity check)",
    )
    p.add_argument("--load-probe", choices=["cold", "warm", "first"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.load_probe:
        return load_probe(args.load_probe)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
