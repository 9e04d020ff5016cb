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
# a key holding "none" follows its parent, op -> (backend, "all") -> ("generic", "all"). Next to
# these keys torch keeps the legacy state: the cuDNN TF32 flag and the matmul precision
# ("highest", "high", "medium"), and its legacy getters (torch.backends.cudnn.allow_tf32,
# torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision) raise when the two
# disagree. So inside the block both are set, consistently: the legacy setters first (they also
# write the op keys: cuDNN conv and rnn to "none", CUDA and oneDNN matmul to "ieee"), then
# ("cuda", "all") to "ieee", which conv and rnn then follow. On exit the legacy state is put back
# the same way, then every key the block wrote gets back the value it held itself.
# One state has no setter: torch starts with cuDNN conv and rnn following their parents but
# reading "tf32" where every parent holds "none". Where they are in it, they are put back to
# hold what they read ("tf32"; "none", following, under a parent holding a value): the same
# readings, but a later change of the parents can read differently than in torch's initial
# state (as after torch.backends.cudnn.allow_tf32 = True).
_GET: Any = getattr(torch._C, "_get_fp32_precision_getter", None)
_SET: Any = getattr(torch._C, "_set_fp32_precision_setter", None)
_ROOT = ("generic", "all")
_CUDA_ALL = ("cuda", "all")
_CUDNN = (("cuda", "conv"), ("cuda", "rnn"))
_MATMUL = (("cuda", "matmul"), ("mkldnn", "matmul"))


def _held(key):
    """The value `key` holds itself, "none" where it follows its parent (its getter then reports
    the parent's value): read under two different parent values, the parent put back."""
    if key == _ROOT:
        return _GET(*key)  # the root reports its own value
    parent = _ROOT if key[1] == "all" else (key[0], "all")
    own = _held(parent)
    try:
        _SET(*parent, "ieee")
        under_ieee = _GET(*key)
        _SET(*parent, "tf32")
        under_tf32 = _GET(*key)
    finally:
        _SET(*parent, own)
    return under_ieee if under_ieee == under_tf32 else "none"


def _read_legacy(getter, keys, value):
    """A legacy getter's value; where torch refuses to read it (it disagrees with `keys`), read
    with `keys` set to `value` (the caller puts them back)."""
    try:
        return getter()
    except RuntimeError:
        for key in keys:
            _SET(*key, value)
        return getter()


def _save_precisions():
    """The legacy state and what the keys the block writes hold themselves."""
    held = {key: _held(key) for key in (_CUDA_ALL, *_CUDNN, *_MATMUL)}
    parents_none = held[_CUDA_ALL] == "none" and _GET(*_ROOT) == "none"
    for key in _CUDNN:
        if held[key] == "none" and parents_none and _GET(*key) == "tf32":
            held[key] = "tf32"  # torch's initial state (see above): put back as it reads
    try:
        # (with conv and rnn at tf32 the cuDNN flag reads, or raises where it is off)
        try:
            cudnn_tf32 = _read_legacy(torch._C._get_cudnn_allow_tf32, _CUDNN, "tf32")
        except RuntimeError:
            cudnn_tf32 = False
        matmul = _read_legacy(torch.get_float32_matmul_precision, _MATMUL, "ieee")
    finally:
        for key in (*_CUDNN, *_MATMUL):
            _SET(*key, held[key])
    return cudnn_tf32, matmul, held


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
            self._saved["precisions"] = _save_precisions()
        else:  # torch < 2.9: the legacy flags are the whole state
            self._saved["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
            self._saved["matmul_tf32"] = torch.backends.cuda.matmul.allow_tf32
        self._restored = False
        os.environ[_ENV] = ":16:8"
        torch.use_deterministic_algorithms(True, warn_only=warn_only)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        if _GET is not None:
            # TF32 off for cuDNN and matmul, in the legacy state and the keys alike (above)
            torch.set_float32_matmul_precision("highest")
            torch._C._set_cudnn_allow_tf32(False)
            _SET(*_CUDA_ALL, "ieee")
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
            cudnn_tf32, matmul, held = s["precisions"]
            torch.set_float32_matmul_precision(matmul)
            torch._C._set_cudnn_allow_tf32(cudnn_tf32)
            for key, value in held.items():
                _SET(*key, value)
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
    off for CUDA matmul and cuDNN (float32 matmul precision "highest"). On torch >= 2.9 the
    fp32_precision keys and torch's legacy flags are set alike, so both APIs read and set as
    usual inside (``torch.backends.cudnn.conv.fp32_precision`` etc. read "ieee",
    ``torch.backends.cudnn.allow_tf32`` and ``torch.backends.cuda.matmul.allow_tf32`` False).
    Returns an object that restores the previous settings (exactly, but for torch's initial
    cuDNN state, which no setter restores: see the note above _held) via .restore() or when
    used as a context manager:

        with fastrand.enable_full_determinism():
            image = pipe(...)

    CUBLAS_WORKSPACE_CONFIG only takes effect if set before cuBLAS initialises (before the first
    CUDA matrix product of the process).
    """
    if not isinstance(warn_only, bool):
        raise TypeError(f"warn_only: expected a bool, got {type(warn_only).__name__}")
    return _Settings(warn_only)
