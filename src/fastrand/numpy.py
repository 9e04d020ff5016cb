"""NumPy front end: stream v1 noise as NumPy arrays from the compiled core, without torch::

    import fastrand.numpy as frnp
    x = frnp.randn((2, 3), seed=0)                  # float32 normals at positions 0..5
    y = frnp.randn((4,), seed=0, offset=frnp.next_offset(0, 6))   # continues after x

Values are bit-identical to the torch API at the same (seed, stream, offset): `randn(shape,
seed, offset=o, stream=s, dtype=d)` equals `fastrand.randn(*shape, generator=
fastrand.Generator(seed, offset=o, stream=s), dtype=d)`. Importing this module does not import
torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import SupportsIndex, Union

import numpy as np
from numpy.typing import DTypeLike

from . import _C
from ._generator import _as_int, check_seed, check_shape, check_u64
from ._generator import next_offset as _next_offset

_Shape = Union[SupportsIndex, Sequence[SupportsIndex]]

__all__ = ["randn", "rand", "random_words", "next_offset"]

_CODES = {
    np.dtype(np.float32): _C.DT_FLOAT32,
    np.dtype(np.float16): _C.DT_FLOAT16,
    np.dtype(np.float64): _C.DT_FLOAT64,
}


def _bfloat16():
    try:
        import ml_dtypes  # optional: NumPy has no bfloat16 of its own

        return np.dtype(ml_dtypes.bfloat16)
    except ImportError:
        return None


def _dtype_arg(dtype):
    if dtype is None:
        # float32, the default, as in the torch API (np.dtype(None) would be float64)
        return np.dtype(np.float32), _C.DT_FLOAT32
    if isinstance(dtype, str) and dtype == "bfloat16":
        bf = _bfloat16()
        if bf is None:
            raise ValueError(
                "dtype: bfloat16 arrays need the ml_dtypes package (pip install ml_dtypes)"
            )
        return bf, _C.DT_BFLOAT16
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected a NumPy floating dtype, got {dtype!r}") from None
    bf = _bfloat16()
    if bf is not None and dt == bf:
        return dt, _C.DT_BFLOAT16
    code = _CODES.get(dt)
    if code is None:
        raise ValueError(
            f"dtype: expected float32, float16, float64 (or bfloat16 with ml_dtypes), got {dt}"
        )
    return dt, code


def _shape_arg(shape):
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    return check_shape(shape)


_MAX_THREADS = (1 << 31) - 1  # the compiled core takes a C int


def _threads(threads):
    if threads is None:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            return os.cpu_count() or 1
    t = _as_int(threads, "threads")  # refuses bool (and 0-d bool tensors/arrays) and non-ints
    if not 1 <= t <= _MAX_THREADS:
        raise ValueError(f"threads: expected an integer in [1, 2^31 - 1], got {t}")
    return t


def _draw(kind, shape, seed, offset, stream, dt, code, threads):
    # every argument is checked, whatever the size (an empty request included)
    shape = _shape_arg(shape)
    seed = check_seed(seed)
    stream = check_u64(stream, "stream")
    offset = check_u64(offset, "offset")
    threads = _threads(threads)
    out = np.empty(shape, dtype=dt)
    n = out.size
    if n:
        _C.fill_cpu(out.ctypes.data, n, kind, code, seed, stream, offset, threads)
    return out


def randn(
    shape: _Shape,
    seed: SupportsIndex,
    offset: SupportsIndex = 0,
    stream: SupportsIndex = 0,
    dtype: DTypeLike = np.float32,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Standard normals of stream v1 at (seed, stream, offset), as a NumPy array of `dtype`
    (None: float32).

    >>> import numpy as np, fastrand.numpy as frnp
    >>> x = frnp.randn((2, 3), seed=0)
    >>> x.shape, x.dtype
    ((2, 3), dtype('float32'))
    >>> y = frnp.randn(4, seed=0, offset=frnp.next_offset(0, x.size))  # continues after x
    >>> whole = frnp.randn(10, seed=0)
    >>> np.array_equal(np.concatenate([x.ravel(), y]).view(np.uint32), whole.view(np.uint32))
    True
    """
    dt, code = _dtype_arg(dtype)
    return _draw(_C.KIND_NORMAL, shape, seed, offset, stream, dt, code, threads)


def rand(
    shape: _Shape,
    seed: SupportsIndex,
    offset: SupportsIndex = 0,
    stream: SupportsIndex = 0,
    dtype: DTypeLike = np.float32,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Uniform [0, 1) values of stream v1 at (seed, stream, offset), as a NumPy array of
    `dtype` (None: float32)."""
    dt, code = _dtype_arg(dtype)
    return _draw(_C.KIND_UNIFORM, shape, seed, offset, stream, dt, code, threads)


def random_words(
    shape: _Shape,
    seed: SupportsIndex,
    offset: SupportsIndex = 0,
    stream: SupportsIndex = 0,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """The raw 32-bit Philox words of stream v1 (np.uint32)."""
    return _draw(
        _C.KIND_WORDS, shape, seed, offset, stream, np.dtype(np.uint32), _C.DT_UINT32, threads
    )


def next_offset(offset: SupportsIndex, n: SupportsIndex, dtype: DTypeLike = np.float32) -> int:
    """The offset after drawing n values of `dtype` (None: float32) at `offset` (float64 takes
    two positions per value, starting at an even position)."""
    o = check_u64(offset, "offset")
    count = _as_int(n, "n")
    if count < 0:
        raise ValueError(f"n: expected a non-negative integer, got {count}")
    if dtype is None or (isinstance(dtype, str) and dtype == "bfloat16"):
        return _next_offset(o, count, False)  # None: float32, as in randn
    try:
        two_words = np.dtype(dtype) == np.float64
    except TypeError:
        raise TypeError(f"dtype: expected a NumPy dtype, got {dtype!r}") from None
    return _next_offset(o, count, two_words)
