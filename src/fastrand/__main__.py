"""python -m fastrand {info,selftest,warmup,help}: see `python -m fastrand --help`."""

from __future__ import annotations

import argparse
import json
import sys

_PROG = "python -m fastrand"


def _parser() -> argparse.ArgumentParser:
    """The command line: one subparser per command, each option with its help."""
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="fastrand: reproducible Gaussian noise for PyTorch, bit-identical on the CPU "
        "and every CUDA GPU.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)
    sub.add_parser(
        "info",
        help="print what this build and machine offer (JSON)",
        description="Print build_info() as JSON: the version, the CPU paths, the CUDA backend, "
        "NVRTC and the cubin cache directory.",
    )
    sub.add_parser(
        "selftest",
        help="check the spec's known answers and CPU/GPU identity; exit 1 on any mismatch",
        description="Check the spec's known answers, every CPU path against the NumPy "
        "reference, and each visible GPU against the CPU; exit 1 on any mismatch.",
    )
    w = sub.add_parser(
        "warmup",
        help="get the CUDA kernels ready (compiled, cached, loaded and checked) ahead of time",
        description="Get the CUDA kernels ready ahead of time: on the current GPU (and GPUs "
        "whose context exists), or the devices named with --device, choose the backend, "
        "compile the NVRTC kernels into the cache (FASTRAND_CACHE_DIR) or read them from it, "
        "load them and run the known-answer check; or, for the archs named with --arch, only "
        "compile into the cache, which needs no GPU. Exit 1 when NVRTC is missing, an arch is "
        "unsupported or nothing could be written.",
    )
    w.add_argument(
        "--arch",
        action="append",
        metavar="ARCH",
        help="a compute capability to compile for, such as 90 or sm_90 (repeat the option or "
        "separate archs with commas); no GPU needed",
    )
    w.add_argument(
        "--device",
        action="append",
        type=int,
        metavar="N",
        help="a CUDA device index to get ready (repeat the option); default: the current "
        "device, and devices whose context already exists",
    )
    w.add_argument(
        "--op",
        action="append",
        metavar="GROUP",
        help="an NVRTC kernel group to compile and load: normal/float32 (any of normal, uniform "
        "with float32, float16, bfloat16, float64), words, state, box, probe or all (repeat "
        "the option or separate groups with commas); default: all",
    )
    h = sub.add_parser(
        "help", help="show this help, or a command's, and exit", description="Show the help."
    )
    h.add_argument("topic", nargs="?", metavar="COMMAND", help="the command to describe")
    return p


def _warmup(ns: argparse.Namespace) -> int:
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


def _info(ns: argparse.Namespace) -> int:
    from fastrand._api import build_info

    try:
        info = build_info()
    except (RuntimeError, ValueError) as e:  # e.g. a bad FASTRAND_CUDA_BACKEND
        print(f"fastrand info: {e}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2))
    return 0


def _selftest(ns: argparse.Namespace) -> int:
    from fastrand._selftest import selftest

    return selftest()


def main(argv: list[str] | None = None) -> int:
    """Runs a command; returns the exit status (0 after help, 2 for a usage error, as argparse
    exits)."""
    parser = _parser()
    try:
        ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
        if ns.command == "help":
            # `help COMMAND` prints that command's help as `COMMAND --help` does
            parser.parse_args([ns.topic, "--help"] if ns.topic else ["--help"])
    except SystemExit as e:  # --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else 2
    return {"info": _info, "selftest": _selftest, "warmup": _warmup}[ns.command](ns)


if __name__ == "__main__":
    sys.exit(main())
