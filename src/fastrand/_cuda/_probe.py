"""The known-answer check: before a device trusts a backend's kernels, they run a small set of
requests there and every bit is compared with the CPU path (itself checked against the NumPy
reference by the test suite).

What runs (each group when it is loaded; the AOT build checks all at once: about 350 small
launches and one copy back): every op's plain fill in every launch shape at
aligned and unaligned starts, a misaligned output, a block counter whose low word carries and a
position that wraps past 2^64; the CUDA-graph state fill of every op and the advance it writes;
the box fill of every op with short rows, one-value rows at a wrapping offset and long rows; and
the transform's edge inputs through the math probe (the smallest and largest radius words, the
middle of the range, angles at and beside every multiple of pi/4). The first differing value is
named in the error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .. import _C
from .._generator import next_offset
from . import _cache as K
from ._common import Unusable, _raw_stream

U64 = 1 << 64
SEED = 0x9E3779B97F4A7C15
STREAM = 0x243F6A8885A308D3
# (offset, n, output shift in elements)
FILL_CASES = [
    (0, 4500, 0),  # whole aligned blocks (vector stores, a whole unrolled step) and a tail
    (3, 700, 0),  # a start inside a block
    (0, 333, 1),  # an output not aligned for vector stores
    ((1 << 34) - 37, 150, 0),  # the block counter's low word carries
    (U64 - 41, 120, 0),  # positions wrap past 2^64
]
# launch_plan.cpp's variants that select each of the six launch shapes: n1_256, w1_256, n2_256,
# n1_128, n1_512, n4_256 (the others differ only in the grid)
FILL_VARIANTS = (0, 1, 3, 4, 5, 8)
STATE_CASES = [(5, 257), (U64 - 7, 33)]  # (offset, n)
BOX_CASES = [  # (offset, base, sizes, gstrides)
    (11, 7, [3, 4, 5], [200, 37, 1]),  # short rows
    (U64 - 30, 1, [6, 1], [9, 1]),  # rows of one value, wrapping
    (0, 0, [2, 130], [1000, 1]),  # long rows
]
RADIUS_RANGES = [(0, 64), ((1 << 31) - 32, 64), ((1 << 32) - 64, 64)]
# angle inputs x (w1 = x << 6, 2^26 of them a turn): at and beside each multiple of pi/4
ANGLE_RANGES = [(max(0, k * (1 << 23) - 8), 16) for k in range(8)] + [((1 << 26) - 16, 16)]

_TORCH = {
    _C.DT_FLOAT32: torch.float32,
    _C.DT_FLOAT16: torch.float16,
    _C.DT_BFLOAT16: torch.bfloat16,
    _C.DT_FLOAT64: torch.float64,
    _C.DT_UINT32: torch.int32,
}
_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


class _Launchers:
    """The launch functions of one backend on one device."""

    def __init__(self, backend: str, index: int):
        s = _raw_stream(index)
        self.index = index
        self.device = torch.device("cuda", index)
        if backend == "aot":
            self.fill = lambda p, n, k, c, o, v: _C.fill_cuda(
                p, n, k, c, SEED, STREAM, o, index, s, v
            )
            self.state = lambda p, n, k, c, st: _C.fill_cuda_state(p, n, k, c, st, index, s)
            self.box = lambda p, k, c, o, b, sz, gs: _C.fill_cuda_box(
                p, k, c, SEED, STREAM, o, b, sz, gs, index, s
            )
            self.probe = lambda w, p, f, n: _C.probe_cuda(w, p, f, n, index, s)
        else:
            self.fill = lambda p, n, k, c, o, v: _C.drv_fill(
                p, n, k, c, SEED, STREAM, o, index, s, v
            )
            self.state = lambda p, n, k, c, st: _C.drv_fill_state(p, n, k, c, st, index, s)
            self.box = lambda p, k, c, o, b, sz, gs: _C.drv_fill_box(
                p, k, c, SEED, STREAM, o, b, sz, gs, index, s
            )
            self.probe = lambda w, p, f, n: _C.drv_probe(w, p, f, n, index, s)


def _const(t: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: t


def _i64(v: int) -> int:
    return v - U64 if v >= 1 << 63 else v


def _cases(group: str, L: Any) -> list[tuple[str, torch.Tensor, Callable[[], Any]]]:
    """(name, device output, CPU expectation) of a group's cases, launched (asynchronously)."""
    dev = L.device
    threads = 1
    out: list[tuple[str, torch.Tensor, Callable[[], Any]]] = []

    def cpu_fill(n, kind, code, offset):
        def f():
            host = torch.empty(n, dtype=_TORCH[code])
            _C.fill_cpu(host.data_ptr(), n, kind, code, SEED, STREAM, offset, threads)
            return host

        return f

    if group == K.PROBE:
        for which, ranges, per in (
            (_C.PROBE_RADIUS32, RADIUS_RANGES, 1),
            (_C.PROBE_ANGLE32, ANGLE_RANGES, 2),
        ):
            for first, count in ranges:
                t = torch.empty(count * per, dtype=torch.float32, device=dev)
                L.probe(which, t.data_ptr(), first, count)

                def exp_probe(which=which, first=first, count=count, per=per):
                    host = torch.empty(count * per, dtype=torch.float32)
                    _C.probe_cpu(which, host.data_ptr(), first, count, threads)
                    return host

                out.append((f"probe {which} [{first:#x}, +{count})", t, exp_probe))
        return out
    if group == K.STATE:
        for kind, code in K.OPS:
            for offset, n in STATE_CASES:
                t = torch.empty(n, dtype=_TORCH[code], device=dev)
                st = torch.tensor(
                    [_i64(SEED), _i64(STREAM), _i64(offset)], dtype=torch.int64, device=dev
                )
                L.state(t.data_ptr(), n, kind, code, st.data_ptr())
                name = f"state {K.op_group(kind, code)} offset {offset:#x} n {n}"
                out.append((name, t, cpu_fill(n, kind, code, offset)))
                end = next_offset(offset, n, code == _C.DT_FLOAT64)
                want = torch.tensor([_i64(end)], dtype=torch.int64)
                out.append((name + " (new offset)", st[2:], _const(want)))
        return out
    if group == K.BOX:
        for kind, code in K.OPS:
            for offset, base, sizes, gstrides in BOX_CASES:
                n = 1
                for s in sizes:
                    n *= s
                t = torch.empty(n, dtype=_TORCH[code], device=dev)
                L.box(t.data_ptr(), kind, code, offset, base, sizes, gstrides)

                def exp(n=n, kind=kind, code=code, offset=offset, b=base, sz=sizes, gs=gstrides):
                    host = torch.empty(n, dtype=_TORCH[code])
                    _C.fill_box_cpu(
                        host.data_ptr(), kind, code, SEED, STREAM, offset, b, sz, gs, threads
                    )
                    return host

                name = f"box {K.op_group(kind, code)} offset {offset:#x} sizes {sizes}"
                out.append((name, t, exp))
        return out
    kind, code = K.OPS[[K.op_group(k, d) for k, d in K.OPS].index(group)]
    for variant in FILL_VARIANTS:
        for offset, n, shift in FILL_CASES:
            buf = torch.empty(n + shift, dtype=_TORCH[code], device=dev)
            t = buf[shift:]
            L.fill(t.data_ptr(), n, kind, code, offset, variant)
            name = f"{group} variant {variant} offset {offset:#x} n {n} shift {shift}"
            out.append((name, t, cpu_fill(n, kind, code, offset)))
    return out


def _value(b: torch.Tensor, i: int, width: int) -> int:
    """Value i of a byte tensor of `width`-byte values, as an unsigned integer."""
    return int.from_bytes(bytes(b[i * width : (i + 1) * width].tolist()), "little")


def check(index: int, backend: str, groups: list[str], launchers: Any = None) -> int:
    """Runs the known-answer cases of `groups` on cuda:index through `backend`'s launchers
    ("aot" or "nvrtc"; or `launchers`, an object like _Launchers, for tests) and compares every
    bit with the CPU; returns the number of cases, or raises Unusable naming the first
    differing value (or the failed launch)."""
    L = launchers or _Launchers(backend, index)
    try:
        if L.device.type == "cuda":
            with torch.cuda.device(index):
                cases = [c for g in groups for c in _cases(g, L)]
                torch.cuda.synchronize(index)
        else:
            cases = [c for g in groups for c in _cases(g, L)]
        # one copy back: every output's bytes side by side
        flat = torch.cat([t.reshape(-1).view(torch.uint8) for _, t, _ in cases]).cpu()
    except RuntimeError as e:
        raise Unusable(f"a known-answer launch failed: {e}") from None
    at = 0
    for name, t, exp in cases:
        width = t.element_size()
        got = flat[at : at + t.numel() * width]
        at += len(got)
        want = exp().reshape(-1).view(torch.uint8)
        if not torch.equal(got, want):
            bad = int((got != want).nonzero()[0]) // width
            g, w = (_value(x, bad, width) for x in (got, want))
            raise Unusable(
                f"known-answer check failed: {name}: value {bad} is {g:0{2 * width}x}, "
                f"the CPU gives {w:0{2 * width}x}"
            )
    return len(cases)
