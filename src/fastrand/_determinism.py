"""The rest of reproducibility: torch settings for deterministic algorithms.

fastrand makes the *noise* identical everywhere. The rest of a pipeline is deterministic on a
given machine only with deterministic kernels; these are the settings diffusers'
reproducibility guide lists. They do not make different GPU models or library versions compute
the same bits: matrix products and convolutions still round differently across hardware.
"""

from __future__ import annotations

import os
from typing import Any

import torch

_ENV = "CUBLAS_WORKSPACE_CONFIG"

# torch >= 2.9 keeps the float32 precision per (backend, op) ("ieee", "tf32", "bf16" or "none"):
# a key holding no value of its own follows its parent, op -> (backend, "all") -> ("generic",
# "all"), and cuDNN's conv/rnn keys start out following it with a TF32 default at the end of the
# chain that no setter can put back. The legacy flags (torch.backends.cuda.matmul.allow_tf32,
# torch.backends.cudnn.allow_tf32, set_float32_matmul_precision) are separate state that torch
# compares against these keys; mixing the two APIs is what makes its getters raise. On such a
# torch only the new API is used, and only keys that can be put back exactly are touched.
_GET: Any = getattr(torch._C, "_get_fp32_precision_getter", None)
_SET: Any = getattr(torch._C, "_set_fp32_precision_setter", None)
_CUDA_OPS = ("matmul", "conv", "rnn")


def _own_value(key, parent):
    """The value `key` holds itself, or None where it follows `parent` (its getter then reports
    the parent's value): read under two different parent values, the parent's setting put back
    by the caller."""
    _SET(*parent, "ieee")
    under_ieee = _GET(*key)
    _SET(*parent, "tf32")
    under_tf32 = _GET(*key)
    return under_ieee if under_ieee == under_tf32 else None


def _save_cuda_precisions():
    """What enable_full_determinism changes: ("cuda", "all")'s own value and the CUDA ops that
    hold TF32 themselves (those the "all" key would not turn off)."""
    generic = _GET("generic", "all")  # the root: its getter reports its own value
    try:
        cuda_all = _own_value(("cuda", "all"), ("generic", "all"))
    finally:
        _SET("generic", "all", generic)
    cuda_all = "none" if cuda_all is None else cuda_all
    pinned = {}
    try:
        for op in _CUDA_OPS:
            if _own_value(("cuda", op), ("cuda", "all")) == "tf32":
                pinned[op] = "tf32"
    finally:
        _SET("cuda", "all", cuda_all)
    return cuda_all, pinned


class _Settings:
    """Returned by enable_full_determinism(): also a context manager that restores the previous
    settings on exit (restore() does the same explicitly)."""

    def __init__(self, warn_only):
        self._saved: dict[str, Any] = {
            "env": os.environ.get(_ENV),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
        }
        if _GET is not None:
            self._saved["cuda_precisions"] = _save_cuda_precisions()
        else:  # torch < 2.9: the legacy flags are the whole state
            self._saved["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
            self._saved["matmul_tf32"] = torch.backends.cuda.matmul.allow_tf32
        self._restored = False
        os.environ[_ENV] = ":16:8"
        torch.use_deterministic_algorithms(True, warn_only=warn_only)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        if _GET is not None:
            # TF32 off for every CUDA op: the backend's "all" key, and the ops that hold TF32
            # themselves (which "all" would not reach)
            _SET("cuda", "all", "ieee")
            for op in self._saved["cuda_precisions"][1]:
                _SET("cuda", op, "ieee")
        else:
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False

    def restore(self) -> None:
        if self._restored:
            return
        s = self._saved
        if s["env"] is None:
            os.environ.pop(_ENV, None)
        else:
            os.environ[_ENV] = s["env"]
        torch.use_deterministic_algorithms(s["deterministic_algorithms"], warn_only=s["warn_only"])
        torch.backends.cudnn.deterministic = s["cudnn_deterministic"]
        torch.backends.cudnn.benchmark = s["cudnn_benchmark"]
        if _GET is not None:
            cuda_all, pinned = s["cuda_precisions"]
            _SET("cuda", "all", cuda_all)
            for op, value in pinned.items():
                _SET("cuda", op, value)
        else:
            torch.backends.cudnn.allow_tf32 = s["cudnn_tf32"]
            torch.backends.cuda.matmul.allow_tf32 = s["matmul_tf32"]
        self._restored = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()
        return False


def enable_full_determinism(warn_only: bool = False) -> _Settings:
    """Sets CUBLAS_WORKSPACE_CONFIG=:16:8, deterministic algorithms on (errors for ops without a
    deterministic implementation unless warn_only), cuDNN deterministic and benchmark off, TF32
    off for CUDA matmul and cuDNN. On torch >= 2.9 this uses only the fp32_precision API
    (``torch.backends.cuda.matmul.fp32_precision`` etc. read "ieee" inside); torch's legacy
    ``allow_tf32`` getters may then report a mix of APIs, as torch documents, while
    ``torch.get_float32_matmul_precision()`` keeps working. Returns an object that restores
    exactly the previous settings via .restore() or when used as a context manager:

        with fastrand.enable_full_determinism():
            image = pipe(...)

    CUBLAS_WORKSPACE_CONFIG only takes effect if set before cuBLAS initialises (before the first
    CUDA matrix product of the process).
    """
    if not isinstance(warn_only, bool):
        raise TypeError(f"warn_only: expected a bool, got {type(warn_only).__name__}")
    return _Settings(warn_only)
