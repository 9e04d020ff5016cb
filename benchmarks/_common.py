"""Shared helpers for the fastrand benchmarks: timing, tables, JSON, plots, machine info.

Imported by bench_cpu.py and bench_gpu.py (run them as ``python benchmarks/bench_cpu.py``; the
script's own folder is on sys.path, so ``import _common`` works). Nothing here needs a GPU.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_SRC = os.path.join(os.path.dirname(_HERE), "src")


def import_fastrand():
    """Imports fastrand: the installed package, else the in-tree build under ../src."""
    try:
        import fastrand  # noqa: F401
    except ImportError:
        if os.path.isdir(_SRC) and _SRC not in sys.path:
            sys.path.insert(0, _SRC)
        import fastrand  # noqa: F401
    return fastrand


# --------------------------------------------------------------------------------------------
# CPU timing
def time_cpu(fn, *, warmup=1, min_repeats=5, max_repeats=50, budget_s=0.25):
    """Times fn() with time.perf_counter.

    ``warmup`` untimed calls, then timed calls until at least ``min_repeats`` were made and
    either ``max_repeats`` were made or ``budget_s`` seconds were spent. Returns a dict of
    seconds per call: best, median, mean, and the number of timed calls ``n``.
    """
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= max_repeats:
            break
        if len(times) >= min_repeats and time.perf_counter() - start >= budget_s:
            break
    return {
        "best": min(times),
        "median": statistics.median(times),
        "mean": statistics.fmean(times),
        "n": len(times),
        "samples": times,
    }


def time_cpu_interleaved(fns, *, rounds=3, warmup=1, min_repeats=5, max_repeats=50, budget_s=0.25):
    """Times several callables in ``rounds`` round-robin passes (each pass gives every callable
    1/rounds of the repeats and budget), so that a slow moment of a shared machine or a
    first-call effect does not land on one method only. ``fns``: dict name -> callable.
    Returns name -> {best, median, mean, n} over all passes (seconds per call).
    """
    rounds = max(1, rounds)
    samples = {k: [] for k in fns}
    for i in range(rounds):
        for k, fn in fns.items():
            t = time_cpu(
                fn,
                warmup=warmup if i == 0 else 0,
                min_repeats=max(1, math.ceil(min_repeats / rounds)),
                max_repeats=max(1, math.ceil(max_repeats / rounds)),
                budget_s=budget_s / rounds,
            )
            samples[k].extend(t["samples"])
    return {
        k: {
            "best": min(v),
            "median": statistics.median(v),
            "mean": statistics.fmean(v),
            "n": len(v),
        }
        for k, v in samples.items()
    }


# --------------------------------------------------------------------------------------------
# CUDA timing (torch imported lazily so that this module imports without CUDA)
_SLEEP_CYCLES_PER_S = None


def _sleep_cycles_per_s(torch):
    """Calibrates torch.cuda._sleep (spin cycles per second); None when unavailable."""
    global _SLEEP_CYCLES_PER_S
    if _SLEEP_CYCLES_PER_S is not None:
        return _SLEEP_CYCLES_PER_S or None
    rate = 0.0
    try:
        sleep = torch.cuda._sleep
        cycles = 2_000_000
        sleep(cycles)  # warm-up
        torch.cuda.synchronize()
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        sleep(cycles)
        b.record()
        b.synchronize()
        secs = a.elapsed_time(b) / 1e3
        if secs > 0:
            rate = cycles / secs
    except Exception:  # noqa: BLE001 - optional helper, any failure means "not available"
        rate = 0.0
    _SLEEP_CYCLES_PER_S = rate
    return rate or None


def time_cuda_wall(fn, n_calls, *, warmup=3):
    """Wall time per call: n_calls back-to-back calls, one synchronize at the end, / n_calls.

    Includes Python, argument handling, allocation and launch overhead (and the GPU time when
    the GPU is the bottleneck). Returns seconds per call.
    """
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n_calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n_calls


def time_cuda_events(fn, n_calls, *, warmup=3, host_s_per_call=None, use_sleep=True):
    """GPU time per call from torch.cuda.Event around n_calls back-to-back calls.

    When the host is slower than the kernels (small tensors), plain events would measure the
    launch rate rather than the kernels. So, when ``use_sleep`` and torch.cuda._sleep works, a
    spin kernel long enough to cover the host's enqueue time (``host_s_per_call * n_calls``,
    from time_cuda_wall) is queued first: the start event fires when it ends, and the n_calls
    queued kernels then run back to back. If the host took longer than the spin to enqueue the
    calls (or fn synchronizes), the spin did not hide it and the measurement is repeated without
    it. Returns (seconds per call, info dict: spin used, spin and host enqueue seconds).
    """
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    info = {"spin": False}
    if use_sleep and host_s_per_call:
        rate = _sleep_cycles_per_s(torch)
        if rate:
            cover_s = min(2.0, 1.5 * host_s_per_call * n_calls + 1e-3)
            torch.cuda._sleep(int(rate * cover_s))
            info = {"spin": True, "spin_s": cover_s}
    t0 = time.perf_counter()
    start.record()
    for _ in range(n_calls):
        fn()
    end.record()
    host_s = time.perf_counter() - t0
    end.synchronize()
    info["host_enqueue_s"] = host_s
    if info["spin"] and host_s >= 0.9 * info["spin_s"]:
        # the spin did not cover the host: measure again without it (plain back-to-back events)
        t, info2 = time_cuda_events(fn, n_calls, warmup=0, use_sleep=False)
        info2["spin_not_covering"] = True
        return t, info2
    return start.elapsed_time(end) / 1e3 / n_calls, info


def time_cuda_sync(fn, *, warmup=1, repeats=5):
    """Wall time of single calls, each followed by a synchronize (for paths that block anyway,
    such as generating on the CPU and copying to the GPU). Returns best/median/n in seconds."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"best": min(times), "median": statistics.median(times), "n": len(times)}


# --------------------------------------------------------------------------------------------
# formatting
def fmt_shape(shape):
    shape = tuple(shape)
    if len(shape) == 1:
        n = shape[0]
        if n > 0 and n & (n - 1) == 0:
            return f"2^{n.bit_length() - 1}"
        return str(n)
    return "(" + ",".join(str(d) for d in shape) + ")"


def dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def fmt_num(x, digits=3):
    """A number with ``digits`` significant digits; '-' for None/NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, str):
        return x
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    return f"{x:.{decimals}f}"


def print_table(rows, columns, *, title=None, file=None):
    """Prints rows (dicts) as aligned plain-text columns.

    columns: list of (key, header) or (key, header, formatter); numbers are right-aligned.
    """
    file = file or sys.stdout
    cols = []
    for c in columns:
        key, header = c[0], c[1]
        fmt = c[2] if len(c) > 2 else None
        cols.append((key, header, fmt))
    cells = []
    for r in rows:
        line = []
        for key, _, fmt in cols:
            v = r.get(key)
            if fmt is not None and v is not None:
                s = fmt(v)
            elif isinstance(v, float):
                s = fmt_num(v)
            elif v is None:
                s = "-"
            else:
                s = str(v)
            line.append((s, isinstance(v, (int, float)) and not isinstance(v, bool)))
        cells.append(line)
    widths = [len(h) for _, h, _ in cols]
    for line in cells:
        for i, (s, _) in enumerate(line):
            widths[i] = max(widths[i], len(s))
    if title:
        print(title, file=file)
    print("  ".join(h.ljust(w) for (_, h, _), w in zip(cols, widths)).rstrip(), file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for line in cells:
        print(
            "  ".join(
                s.rjust(w) if num else s.ljust(w) for (s, num), w in zip(line, widths)
            ).rstrip(),
            file=file,
        )
    file.flush()


# --------------------------------------------------------------------------------------------
# output files
def _json_default(o):
    try:
        import torch

        if isinstance(o, (torch.dtype, torch.device)):
            return str(o)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


def write_json(path, obj, *, quiet=False):
    """Writes obj as indented JSON (atomically: a temporary file, then a rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)
    if not quiet:
        print(f"wrote {path}")
    return path


def _bar_panel(ax, title, series, colors, xs, ylabel):
    """One bar per label, its value printed on top (a panel measured at a single size)."""
    items = [(k, pts[0][1]) for k, pts in series.items() if pts and pts[0][1] is not None]
    names = [k for k, _ in items]
    vals = [v for _, v in items]
    bars = ax.bar(range(len(items)), vals, color=[colors[k] for k in names])
    for b, v in zip(bars, vals):
        ax.annotate(
            fmt_num(v),
            (b.get_x() + b.get_width() / 2, b.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(range(len(items)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    size = f" ({int(next(iter(xs))):,} elements)" if xs else ""
    ax.set_title(title + size)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)


def plot_panels(
    path,
    panels,
    *,
    suptitle=None,
    xlabel="elements",
    ylabel="G values/s",
    logx=True,
    logy=False,
    style=None,
):
    """Line plots, one panel per entry of ``panels``: a list of (title, {label: [(x, y), ...]}).

    A label keeps its colour in every panel; ``style(label)`` may return extra matplotlib line
    keywords (e.g. a dashed linestyle). Uses matplotlib's Agg backend; when matplotlib is
    missing, prints a note and returns None.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            f"note: matplotlib is not installed, skipping the plot {path} (pip install matplotlib)"
        )
        return None
    panels = [p for p in panels if any(p[1].values())]
    if not panels:
        print(f"note: nothing to plot for {path}")
        return None
    labels = []
    for _, series in panels:
        labels += [k for k in series if k not in labels]
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    colors = {k: cmap(i % cmap.N) for i, k in enumerate(labels)}
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.0 * nrows), squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels):
        xs_all = {p[0] for pts in series.values() for p in pts if p[1] is not None}
        if len(xs_all) <= 1:  # a single size (e.g. --quick): bars read at a glance, points don't
            _bar_panel(ax, title, series, colors, xs_all, ylabel)
            continue
        for label, pts in series.items():
            pts = sorted(p for p in pts if p[1] is not None)
            if not pts:
                continue
            xs, ys = zip(*pts)
            kw = {"marker": "o", "markersize": 3, "color": colors[label]}
            if style is not None:
                kw.update(style(label) or {})
            ax.plot(xs, ys, label=label, **kw)
        if logx:
            ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return path


# --------------------------------------------------------------------------------------------
# machine description
def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info():
    """What ran the benchmark: CPU, cores, torch, fastrand build, GPU when present."""
    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        pass
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        info["numpy"] = None
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        info["torch_threads"] = torch.get_num_threads()
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            idx = torch.cuda.current_device()
            props = torch.cuda.get_device_properties(idx)
            info["gpu"] = {
                "name": torch.cuda.get_device_name(idx),
                "index": idx,
                "capability": list(torch.cuda.get_device_capability(idx)),
                "total_memory_gib": round(props.total_memory / 2**30, 1),
                "multiprocessors": getattr(props, "multi_processor_count", None),
                "device_count": torch.cuda.device_count(),
            }
    except ImportError:
        info["torch"] = None
    try:
        fastrand = import_fastrand()
        info["fastrand_file"] = fastrand.__file__
        info["fastrand"] = fastrand.build_info()
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        info["fastrand"] = f"unavailable: {e!r}"
    return info


def print_machine(info):
    fr = info.get("fastrand")
    print(
        f"CPU: {info.get('cpu_model')} ({info.get('cpu_count')} logical CPUs, "
        f"affinity {info.get('cpu_affinity', '?')}, load avg {info.get('loadavg', '?')})"
    )
    print(
        f"torch {info.get('torch')} (CUDA {info.get('torch_cuda')}), "
        f"threads {info.get('torch_threads')}, numpy {info.get('numpy')}"
    )
    if isinstance(fr, dict):
        print(
            f"fastrand {fr.get('version')} stream v{fr.get('stream_version')}: "
            f"cuda kernel {fr.get('cuda')} archs {fr.get('cuda_archs')}, "
            f"cpu isa {fr.get('cpu_isa')} (selected {fr.get('cpu_isa_selected')})"
        )
    else:
        print(f"fastrand: {fr}")
    if info.get("gpu"):
        g = info["gpu"]
        print(
            f"GPU: {g['name']} (sm_{g['capability'][0]}{g['capability'][1]}, "
            f"{g['total_memory_gib']} GiB, {g['multiprocessors']} SMs)"
        )
