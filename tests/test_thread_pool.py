"""The persistent CPU worker pool behind multi-threaded fills (csrc/cpu/parallel.cpp).

Golden values come from the independent NumPy reference (``fastrand.reference``), or from
threads=1 draws (themselves checked against the reference elsewhere) with the values at the
thread pieces' edges checked against the reference here. No timing assertions: a hang fails
through a timeout, and the pool's threads are counted in /proc/self/task where that exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from conftest import TORCH_DTYPES, bits, child_env, ref_bits

import fastrand
import fastrand.numpy as frnp
from fastrand import reference as ref

PIECE = 1 << 16  # values a thread takes at least (cpu.cpp / cpu_box.cpp)
HAVE_PROC_TASKS = os.path.isdir("/proc/self/task")


def _run(code: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _ref_rows(seed, stream, offset, shape, rows, dtype="float32"):
    """The reference of randn(*shape)[rows] for a 2-d shape: only the rows are computed."""
    width = shape[1]
    start = rows.start * width
    n = (rows.stop - rows.start) * width
    return bits(ref.normal(seed, stream, offset + start, n, dtype))


def want_for(seed, offset, n, kind="normal", dtype="float32"):
    return ref_bits(kind, seed, 0, offset, n, dtype)


# --------------------------------------------------------------------------------------------
# Many consecutive multi-threaded fills through every front end reuse the pool: every result is
# the reference's bits.
@pytest.mark.parametrize("threads", [2, 3, 4])
def test_consecutive_numpy_fills(threads):
    n = 4 * PIECE + 77  # a partial last piece
    want = ref_bits("normal", 21, 5, 9, n)
    for i in range(25):
        got = frnp.randn((n,), 21, offset=9, stream=5, threads=threads)
        assert np.array_equal(bits(got), want), i
    # other sizes in between use the same workers for other piece counts
    for n2, t in ((2 * PIECE, 4), (3 * PIECE + 1, 3), (PIECE * 4, 2), (5 * PIECE, threads)):
        got = frnp.randn((n2,), 4, offset=1, threads=t)
        assert np.array_equal(bits(got), want_for(4, 1, n2)), (n2, t)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_consecutive_torch_fills(dtype, num_threads):
    num_threads(4)
    n = 4 * PIECE + 5
    want_n = want_for(8, 3, n, "normal", dtype)
    want_u = want_for(8, 3, n, "uniform", dtype)
    for i in range(8):
        a = fastrand.randn(n, generator=fastrand.Generator(8, offset=3), dtype=TORCH_DTYPES[dtype])
        b = fastrand.rand(n, generator=fastrand.Generator(8, offset=3), dtype=TORCH_DTYPES[dtype])
        assert np.array_equal(bits(a), want_n), i
        assert np.array_equal(bits(b), want_u), i


@pytest.mark.parametrize("threads", [2, 4])
def test_consecutive_region_draws(threads, num_threads):
    num_threads(threads)
    shape = (64, 8 * 1024)  # 2^19 values; an 1/8 row block is 2^16
    cases = [slice(0, 8), slice(8, 40), slice(33, 64), slice(0, 64)]
    for rep in range(3):
        for rows in cases:
            g = fastrand.Generator(17, stream=2, offset=11)
            got = fastrand.randn_slice(shape, (rows,), generator=g)
            assert np.array_equal(bits(got).ravel(), _ref_rows(17, 2, 11, shape, rows)), (
                rep,
                rows,
            )
    # a column box: many short rows split over the workers
    g = fastrand.Generator(17, offset=11)
    got = fastrand.randn_slice((4096, 160), (slice(None), slice(20, 52)), generator=g)
    full = ref.normal(17, 0, 11, 4096 * 160, "float32").reshape(4096, 160)[:, 20:52]
    assert np.array_equal(bits(got), bits(full))


# --------------------------------------------------------------------------------------------
# Concurrent callers: one of them owns the pool at a time, the others start threads of their own.
def test_concurrent_python_threads(num_threads):
    num_threads(3)
    jobs = []
    for j in range(6):
        threads = 2 + j % 3
        n = threads * PIECE + 64 * j + 3
        jobs.append((100 + j, threads, n, want_for(100 + j, j, n)))
    shape = (32, 16 * 1024)
    rows = slice(5, 29)
    box_want = _ref_rows(55, 0, 0, shape, rows)
    errors: list[str] = []
    start = threading.Barrier(len(jobs) + 1)

    def worker(seed, threads, n, want):
        try:
            start.wait(timeout=30)
            for i in range(10):
                got = frnp.randn((n,), seed, offset=seed - 100, threads=threads)
                if not np.array_equal(bits(got), want):
                    errors.append(f"numpy seed={seed} threads={threads} rep={i}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    def slicer():
        try:
            start.wait(timeout=30)
            for i in range(10):
                got = fastrand.randn_slice(shape, (rows,), generator=fastrand.Generator(55))
                if not np.array_equal(bits(got).ravel(), box_want):
                    errors.append(f"slice rep={i}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=worker, args=job, daemon=True) for job in jobs[1:]]
    ts.append(threading.Thread(target=slicer, daemon=True))
    ts.append(threading.Thread(target=worker, args=jobs[0], daemon=True))
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in ts), "a drawing thread hung"
    assert errors == []


# --------------------------------------------------------------------------------------------
# Thread counts beyond the cores, and beyond what the pool had before
def test_many_threads():
    n = 64 * PIECE  # 64 pieces
    want = frnp.randn((n,), 11, offset=3, threads=1)
    for first in (0, PIECE - 1, n // 2 - 1, n - 2):  # pieces' edges against the reference
        r = ref.normal(11, 0, 3 + first, 2, "float32")
        assert np.array_equal(bits(want[first : first + 2]), bits(r)), first
    for threads in (64, 7, 64, 300):
        got = frnp.randn((n,), 11, offset=3, threads=threads)
        assert np.array_equal(bits(got), bits(want)), threads


# --------------------------------------------------------------------------------------------
# Child processes. Threads are counted in /proc/self/task: torch's own thread pools are not
# started by these scripts (only fastrand.numpy draws), so the count moves with the pool alone.
_REUSE = """
import os, json
import numpy as np
import fastrand.numpy as frnp
from fastrand import reference as ref

def tasks():
    return len(os.listdir("/proc/self/task"))

n = 4 * 65536 + 9
want = ref.normal(3, 0, 0, n, "float32").view(np.uint32)
before = tasks()
counts, ok = [], True
for i in range(30):
    ok &= bool(np.array_equal(frnp.randn((n,), 3, threads=4).view(np.uint32), want))
    counts.append(tasks())
print(json.dumps({"before": before, "counts": sorted(set(counts)), "ok": ok}))
"""


@pytest.mark.skipif(not HAVE_PROC_TASKS, reason="counts threads in /proc/self/task")
def test_workers_are_reused():
    r = _run(_REUSE)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    assert got["ok"]
    # three workers started by the first call, the same three for the 29 calls after it
    assert got["counts"] == [got["before"] + 3], got


_IDLE_CPU = """
import os, json, time
import fastrand.numpy as frnp

def cpu_ticks():  # user + system clock ticks of every thread but this one
    me = str(threading_native())
    total = {}
    for tid in os.listdir("/proc/self/task"):
        if tid == me:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total[tid] = int(fields[11]) + int(fields[12])
    return total

def threading_native():
    import threading
    return threading.get_native_id()

for _ in range(20):
    frnp.randn((4 * 65536,), 5, threads=4)
time.sleep(0.2)  # past any spin
a = cpu_ticks()
time.sleep(1.0)
b = cpu_ticks()
print(json.dumps({"workers": len(a), "ticks": sum(b[t] - a[t] for t in a if t in b),
                  "hz": os.sysconf("SC_CLK_TCK")}))
"""


@pytest.mark.skipif(not HAVE_PROC_TASKS, reason="reads thread CPU times in /proc/self/task")
def test_idle_workers_burn_no_cpu():
    r = _run(_IDLE_CPU)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    assert got["workers"] >= 3, got
    # a second idle: a spinning worker would add about hz ticks each; parked ones add none
    assert got["ticks"] <= got["hz"] // 10, got


_FORK = """
import os, sys, json, threading, multiprocessing as mp
import numpy as np
import fastrand.numpy as frnp
from fastrand import reference as ref

N = 4 * 65536 + 9
WANT = ref.normal(7, 1, 5, N, "float32").view(np.uint32)

def tasks():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1

def child(q):
    before = tasks()
    ok = all(np.array_equal(frnp.randn((N,), 7, 5, 1, threads=t).view(np.uint32), WANT)
             for t in (4, 2, 3, 4))
    q.put({"ok": bool(ok), "new_threads": tasks() - before if before >= 0 else None})

def fork_and_check(ctx):
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    p.join(timeout=60)
    if p.is_alive():
        p.kill()
        return {"hung": True}
    return dict(q.get(timeout=10), exitcode=p.exitcode)

assert np.array_equal(frnp.randn((N,), 7, 5, 1, threads=4).view(np.uint32), WANT)
ctx = mp.get_context("fork")
res = {"idle": fork_and_check(ctx)}

# fork while another thread keeps the pool busy (its lock taken, its workers mid-job)
stop = threading.Event()
def busy():
    while not stop.is_set():
        frnp.randn((8 * 65536,), 1, threads=4)
t = threading.Thread(target=busy)
t.start()
res["busy"] = [fork_and_check(ctx) for _ in range(8)]
stop.set()
t.join()
# and with os.fork directly
pid = os.fork()
if pid == 0:
    ok = np.array_equal(frnp.randn((N,), 7, 5, 1, threads=3).view(np.uint32), WANT)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
res["os_fork"] = os.waitstatus_to_exitcode(status)
print(json.dumps(res))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_draws_multithreaded():
    r = _run(_FORK, timeout=150)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    for got in [res["idle"], *res["busy"]]:
        assert not got.get("hung"), res
        assert got["ok"] and got["exitcode"] == 0, res
        if HAVE_PROC_TASKS:
            # the child started workers of its own: the parent's do not exist in it
            assert got["new_threads"] == 3, res
    assert res["os_fork"] == 0, res


_EXIT_IDLE = """
import sys
import numpy as np
import fastrand.numpy as frnp
from fastrand import reference as ref
n = 3 * 65536
ok = np.array_equal(frnp.randn((n,), 9, threads=3).view(np.uint32),
                    ref.normal(9, 0, 0, n, "float32").view(np.uint32))
print("ok" if ok else "wrong")
sys.exit(0)  # parked workers at interpreter shutdown and process exit
"""

_EXIT_BUSY = """
import os, sys, threading, time
import fastrand.numpy as frnp
started = threading.Event()
def draw():
    while True:
        frnp.randn((16 * 65536,), 1, threads=4)
        started.set()
for _ in range(2):
    threading.Thread(target=draw, daemon=True).start()
started.wait(30)
time.sleep(0.05)
print("ok", flush=True)
os._exit(0)  # the pool's workers (and a caller's own threads) in the middle of a job
"""

_EXIT_SHUTDOWN = """
import sys, threading, time
import numpy as np
import fastrand.numpy as frnp
from fastrand import _C, _slice
started = threading.Barrier(4)
def loop(draw):
    started.wait()
    while True:
        draw()
box = _slice._collapse((64, 65536), [3, 0], [47, 65536])
out = np.empty(47 * 65536, np.float32)
draws = [
    lambda: frnp.randn((16 * 65536,), 1, threads=4),
    lambda: frnp.rand((8 * 65536,), 2, threads=3),
    lambda: _C.fill_box_cpu(out.ctypes.data, _C.KIND_NORMAL, _C.DT_FLOAT32, 1, 0, 0, *box, 4),
]
for d in draws:  # daemon threads (a prefetcher, say) still drawing at exit
    threading.Thread(target=loop, args=(d,), daemon=True).start()
started.wait()
time.sleep(0.1)
print("ok", flush=True)
sys.exit(0)  # interpreter shutdown while the daemon threads are inside fills
"""


@pytest.mark.parametrize(
    "code", [_EXIT_IDLE, _EXIT_BUSY, _EXIT_SHUTDOWN], ids=["idle", "busy", "shutdown"]
)
def test_process_exits_cleanly(code):
    # shutdown: fastrand's own calls only. A torch op in a daemon thread at shutdown aborts the
    # same way inside torch (its bindings release the GIL with py::gil_scoped_release too), so
    # the torch front end, which allocates with torch.empty, cannot be covered here.
    r = _run(code, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.strip() == "ok"


def test_torch_threads_match_single_thread(num_threads):
    # torch front end: every thread count gives the threads=1 bits (large draw, 2-9 pieces)
    n = 9 * PIECE + 123
    num_threads(1)
    want = bits(fastrand.randn(n, generator=fastrand.Generator(31)))
    assert np.array_equal(want[:64], want_for(31, 0, 64))
    assert np.array_equal(want[-64:], bits(ref.normal(31, 0, n - 64, 64, "float32")))
    for t in (2, 5, 9, 3, 16):
        num_threads(t)
        got = bits(fastrand.randn(n, generator=fastrand.Generator(31)))
        assert np.array_equal(got, want), t
