"""python -m fastrand info | selftest | warmup [--arch ARCH ...]"""

from __future__ import annotations

import json
import sys

USAGE = """usage: python -m fastrand COMMAND
  info       print what this build and machine offer (JSON)
  selftest   check the spec's known answers and CPU/GPU identity; exit 1 on any mismatch
  warmup [--arch ARCH ...] [--device N ...] [--op GROUP ...]
             get the CUDA kernels ready: for the current GPU (or the named devices), load them
             and run the known-answer check (NVRTC kernels are compiled into the cache,
             FASTRAND_CACHE_DIR); or, for the named archs (90 or sm_90; repeated or
             comma-separated), only compile into the cache, which needs no GPU. --op limits the
             NVRTC kernel groups (normal/float32, uniform/bfloat16, words, state, box, probe;
             default all). Exit 1 when NVRTC is missing or an arch is unsupported"""


def _warmup(args: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m fastrand warmup")
    p.add_argument("--arch", action="append", default=None, metavar="ARCH")
    p.add_argument("--device", action="append", default=None, type=int, metavar="N")
    p.add_argument("--op", action="append", default=None, metavar="GROUP")
    try:
        ns = p.parse_args(args)
    except SystemExit as e:
        return 2 if e.code else 0
    from fastrand import _cuda

    try:
        records = _cuda.warmup(ns.arch, devices=ns.device, ops=ns.op)
    except (RuntimeError, ValueError) as e:
        print(f"fastrand warmup: {e}", file=sys.stderr)
        return 1
    nv = _cuda.nvrtc_version()
    unwritten, copied = [], []
    for r in records:
        where = f"cuda:{r['device']} " if r.get("device") is not None else ""
        if r["backend"] == "copy":
            copied.append(f"cuda:{r['device']}: {_cuda.copy_reason(r['device'])}")
            print(f"{where}{r['arch']}: no CUDA kernel (copy backend)")
            continue
        if r["backend"] != "nvrtc":
            print(f"{where}{r['arch']}: {r['backend']} backend, nothing to compile ({r['probe']})")
            continue
        verb = {"compiled": "compiled", "disk": "cached", "memory": "cached"}[r["origin"]]
        what = f"{where}{r['arch']} {r['group']}"
        if r["path"]:
            print(
                f"{what}: {verb} ({r['bytes']} bytes, NVRTC {nv}"
                f"{', %.2f s' % r['seconds'] if r['origin'] == 'compiled' else ''}): {r['path']}"
            )
        else:
            if r["arch"] not in unwritten:
                unwritten.append(r["arch"])
            print(f"{what}: {verb}, in memory only (not written)")
    if copied:
        print("fastrand warmup: nothing to compile: " + "; ".join(copied), file=sys.stderr)
        return 1
    if unwritten:
        print(
            f"fastrand warmup: nothing written for {', '.join(unwritten)}: the cache directory "
            f"{_cuda.cache_dir()} is not usable ({_cuda.cache_error()})",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["info"]:
        from fastrand._api import build_info

        try:
            info = build_info()
        except (RuntimeError, ValueError) as e:  # e.g. a bad FASTRAND_CUDA_BACKEND
            print(f"fastrand info: {e}", file=sys.stderr)
            return 1
        print(json.dumps(info, indent=2))
        return 0
    if argv == ["selftest"]:
        from fastrand._selftest import selftest

        return selftest()
    if argv[:1] == ["warmup"]:
        return _warmup(argv[1:])
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
