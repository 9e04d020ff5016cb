"""The rest of reproducibility: torch settings for deterministic algorithms.

fastrand makes the *noise* identical everywhere. The rest of a pipeline is deterministic on a
given machine only with deterministic kernels; these are the settings diffusers'
reproducibility guide lists. They do not make different GPU models or library versions compute
the same bits: matrix products and convolutions still round differently across hardware.
"""

from __future__ import annotations

import os

import torch

_ENV = "CUBLAS_WORKSPACE_CONFIG"


class _Settings:
    """Returned by enable_full_determinism(): also a context manager that restores the previous
    settings on exit (restore() does the same explicitly)."""

    def __init__(self, warn_only):
        self._saved = {
            "env": os.environ.get(_ENV),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        }
        self._restored = False
        os.environ[_ENV] = ":16:8"
        torch.use_deterministic_algorithms(True, warn_only=warn_only)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    def restore(self):
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
        torch.backends.cudnn.allow_tf32 = s["cudnn_tf32"]
        torch.backends.cuda.matmul.allow_tf32 = s["matmul_tf32"]
        self._restored = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()
        return False


def enable_full_determinism(warn_only=False):
    """Sets CUBLAS_WORKSPACE_CONFIG=:16:8, deterministic algorithms on (errors for ops without a
    deterministic implementation unless warn_only), cuDNN deterministic and benchmark off, TF32
    off for matmul and cuDNN. Returns an object that restores the previous settings via
    .restore() or when used as a context manager:

        with fastrand.enable_full_determinism():
            image = pipe(...)

    CUBLAS_WORKSPACE_CONFIG only takes effect if set before cuBLAS initialises (before the first
    CUDA matrix product of the process).
    """
    if not isinstance(warn_only, bool):
        raise TypeError(f"warn_only: expected a bool, got {type(warn_only).__name__}")
    return _Settings(warn_only)
