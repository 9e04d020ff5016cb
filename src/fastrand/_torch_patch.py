"""torch's own Gaussian and uniform draws answered by fastrand: ``patch_torch()``.

While a patch is in force in a thread, these calls made in that thread draw fastrand's noise
(the same bits on every device) instead of torch's:

- ``torch.randn``, ``torch.rand``, ``torch.randn_like``, ``torch.rand_like``;
- ``torch.normal(mean, std, size)`` with a number for ``mean`` and ``std``;
- ``Tensor.normal_(mean=0, std=1)`` and ``Tensor.uniform_(from=0, to=1)``;
- the torch functions that dispatch ``__torch_function__`` as a whole and make those calls
  inside (``torch.nn.init.*``, ``F.fractional_max_pool2d/3d``), so their inner draws are seen.

for float32, float16, bfloat16 and float64, on every device. ``generator=`` means what it means
for fastrand's draws (a ``torch.Generator`` is read from its state, docs/torch-generators.md;
``None`` reads torch's default CPU generator, so ``torch.manual_seed(s)`` fixes the noise on
every device). Every other call, and a covered call with an argument fastrand does not cover
(another dtype, ``out=``, ``names=``, a non-strided layout, a tensor ``mean``/``std``, a tensor
subclass, a meta tensor filled in place, CUDA graph capture, the local draws of
``torch.distributed.tensor.randn/rand``), goes to torch unchanged.

Affine parameters (the tensor dtype ``D``; ``C`` is float64 when ``D`` is float64, else float32;
each operation below is one correctly rounded IEEE operation in ``C``, never fused):

- ``normal``: ``z * std + mean`` with ``z`` fastrand's standard normal in ``C`` and ``std``,
  ``mean`` rounded to ``C``, then rounded to ``D``. The product is skipped when ``std == 1`` and
  the sum when ``mean == 0``, so ``normal_(0, 1)`` is exactly ``randn`` (sign of zero included).
- ``uniform_(a, b)``: ``a_D + (b_D - a_D) * u`` with ``a_D``, ``b_D`` the bounds rounded to
  ``D`` (as torch does) and ``u`` fastrand's uniform in ``D`` (exact in ``C``), then rounded to
  ``D``. ``(0, 1)`` is exactly ``rand``. The values lie in ``[a_D, b_D]``; rounding can reach
  ``b_D`` (as with torch's CPU kernel).

Implemented as a ``torch.overrides.TorchFunctionMode``: torch function modes are thread-local, so
a patch covers the thread that made it (and threads started there do not inherit it).

Inside ``torch.compile``, each call that reaches the mode runs eagerly at a graph break
(``torch.compiler.disable``), so compiled code gets exactly the eager values and advances the
generator as eager does; with ``fullgraph=True`` compiling a region that makes such a call fails
with torch's graph-break error. torch.compile does not hand ``torch.randn_like``,
``torch.rand_like`` and ``torch.normal`` to torch function modes (torch 2.13): in a compiled
region those stay torch's draws (tests/test_torch_patch.py pins this).
"""

from __future__ import annotations

import numbers
import sys
import threading
import warnings
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

import torch
from torch.overrides import (
    TorchFunctionMode,
    _get_current_function_mode_stack,
    _pop_mode,
    _push_mode,
)

from . import _api
from ._patch_handle import PatchHandle

__all__ = ["patch_torch", "unpatch_torch"]

_FLOATS = frozenset(_api._FLOAT_CODES)  # float32, float16, bfloat16, float64
_PLAIN = (torch.Tensor, torch.nn.Parameter)  # tensor types filled or followed here
_PASS = object()  # a handler's answer: not covered, torch answers the call
# call a function skipping one level of __torch_function__ (so it does not come back to the
# mode that re-enters itself around it); absent on old torch, where such inner draws stay torch's
_redispatch = getattr(torch.overrides, "redispatch_function", None)
if _redispatch is None and hasattr(torch._C, "_skip_one_hop_torch_function"):
    _redispatch = torch._C._skip_one_hop_torch_function


# --------------------------------------------------------------------------------------------
# arguments
def _number(x):
    """A real number (not a bool, not a tensor) as a float, else None (left to torch)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return None
    try:
        return float(x)
    except OverflowError:
        return None


def _bind(args, kwargs, names, defaults):
    """torch's positional-or-keyword parameters ``names`` -> values, the other keywords, or None
    when the call does not bind (more positionals than names, a name given twice, one missing)."""
    if len(args) > len(names):
        return None
    bound = dict(zip(names, args))
    rest = {}
    for k, v in kwargs.items():
        if k in names:
            if k in bound:
                return None
            bound[k] = v
        else:
            rest[k] = v
    for k, v in defaults.items():
        bound.setdefault(k, v)
    if len(bound) != len(names):
        return None
    return bound, rest


def _round(x, dtype):
    """The Python float ``x`` rounded to ``dtype`` (to nearest even; beyond its range: inf)."""
    return torch.tensor(x, dtype=dtype).item()


def _capturing(device):
    """A draw fixed on the host would be frozen into a CUDA graph being captured: torch's own
    graph-safe generator answers calls made during capture."""
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        warnings.warn(
            "fastrand.patch_torch: a random draw during CUDA graph capture is left to torch "
            "(fastrand would fix its noise into the graph); draw with a "
            "fastrand.CudaGraphGenerator for graph-safe fastrand noise",
            RuntimeWarning,
            stacklevel=4,
        )
        return True
    return False


def _device(device):
    """The device fastrand draws on, or None where it cannot (a device torch lacks, a wrong
    type): torch then raises its own error."""
    try:
        return _api._device_arg(device)
    except (TypeError, ValueError):
        return None


def _compute_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------------------------
# draws
def _normal_values(shape, generator, dtype, device, mean, std):
    """``z * std + mean`` (see the module docstring), contiguous, on ``device``."""
    if mean == 0 and std == 1:
        return _api.randn(shape, generator=generator, dtype=dtype, device=device)
    compute = _compute_dtype(dtype)
    z = _api.randn(shape, generator=generator, dtype=compute, device=device)
    if std != 1:
        z.mul_(_round(std, compute))
    if mean != 0:
        z.add_(_round(mean, compute))
    return z if compute == dtype else z.to(dtype)


def _uniform_values(shape, generator, dtype, device, low, high):
    """``a_D + (b_D - a_D) * u`` (see the module docstring), contiguous, on ``device``."""
    if low == 0 and high == 1:
        return _api.rand(shape, generator=generator, dtype=dtype, device=device)
    compute = _compute_dtype(dtype)
    low_c = torch.tensor(_round(low, dtype), dtype=compute)
    width = (torch.tensor(_round(high, dtype), dtype=compute) - low_c).item()
    u = _api.rand(shape, generator=generator, dtype=dtype, device=device)
    v = u.to(compute).mul_(width).add_(low_c.item())
    return v if compute == dtype else v.to(dtype)


# --------------------------------------------------------------------------------------------
# handlers: (args, kwargs) of the torch call -> the result, or _PASS
_FACTORY_KEYWORDS = frozenset(
    {"generator", "dtype", "layout", "device", "requires_grad", "pin_memory", "names", "out"}
)


def _factory(size, kw, kind, mean=0.0, std=1.0):
    """torch.randn / torch.rand / torch.normal(mean, std, size): ``size`` as torch got it (the
    tuple of positionals, or the ``size=`` value wrapped in a tuple)."""
    if not _FACTORY_KEYWORDS.issuperset(kw):
        return _PASS
    if kw.get("out") is not None or kw.get("names") is not None:
        return _PASS
    if kw.get("layout") not in (None, torch.strided):
        return _PASS
    dtype = kw.get("dtype")
    if dtype is None:
        dtype = torch.get_default_dtype()
    if dtype not in _FLOATS:
        return _PASS
    shape = _api._size_args(size)
    device = _device(_api._factory_device(kw.get("device")))
    if device is None:
        return _PASS
    pin = kw.get("pin_memory")
    if (pin and device.type != "cpu") or _capturing(device):
        return _PASS  # torch refuses pinned memory off the CPU; capture: see _capturing
    buffer = torch.empty(shape, dtype=dtype, pin_memory=True) if pin else None  # fails early
    generator = kw.get("generator")
    if kind == "uniform":
        out = _api.rand(shape, generator=generator, dtype=dtype, device=device)
    else:
        out = _normal_values(shape, generator, dtype, device, mean, std)
    if buffer is not None:
        out = buffer.copy_(out)
    if kw.get("requires_grad"):
        out.requires_grad_(True)
    return out


def _dtensor_shard_draw():
    """Whether torch.distributed.tensor.randn / rand is drawing a rank's local shard: its
    _dtensor_init_helper calls torch.randn / torch.rand with the local shape inside DTensor's
    offset-based RNG region. Answered by fastrand, every rank would draw the same values: those
    calls stay torch's (fastrand.distributed.randn / rand are fastrand's sharded draws)."""
    api = sys.modules.get("torch.distributed.tensor._api")
    code = getattr(getattr(api, "_dtensor_init_helper", None), "__code__", None)
    if code is None:
        return False
    frame: FrameType | None = sys._getframe(2)
    for _ in range(16):  # the handler, torch.compiler.disable's wrapper, the mode, the caller
        if frame is None:
            return False
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


def _sized(args, kwargs, kind):
    """torch.randn / torch.rand: the size as positionals, or as ``size=``."""
    if _dtensor_shard_draw():
        return _PASS
    if "size" in kwargs:
        if args:
            return _PASS
        kwargs = dict(kwargs)
        args = (kwargs.pop("size"),)
    return _factory(args, kwargs, kind)


def _normal(args, kwargs):
    """torch.normal(mean: number, std: number, size, ...); the tensor overloads go to torch."""
    b = _bind(args, kwargs, ("mean", "std", "size"), {})
    if b is None:
        return _PASS
    bound, rest = b
    mean, std = _number(bound["mean"]), _number(bound["std"])
    if mean is None or std is None or not std >= 0:  # torch refuses std < 0 and NaN
        return _PASS
    return _factory((bound["size"],), rest, "normal", mean, std)


_LIKE_KEYWORDS = frozenset(
    {"generator", "dtype", "layout", "device", "requires_grad", "memory_format"}
)


def _like(args, kwargs, kind):
    b = _bind(args, kwargs, ("input",), {})
    if b is None:
        return _PASS
    bound, kw = b
    t = bound["input"]
    if type(t) not in _PLAIN or t.layout != torch.strided or not _LIKE_KEYWORDS.issuperset(kw):
        return _PASS
    if kw.get("layout") not in (None, torch.strided):
        return _PASS
    dtype = kw.get("dtype")
    if (t.dtype if dtype is None else dtype) not in _FLOATS:
        return _PASS
    device = kw.get("device")
    device = t.device if device is None else _device(device)
    if device is None or _capturing(device):
        return _PASS
    draw = _api.randn_like if kind == "normal" else _api.rand_like
    out = draw(
        t,
        generator=kw.get("generator"),
        dtype=dtype,
        device=device,
        memory_format=kw.get("memory_format", torch.preserve_format),
    )
    if kw.get("requires_grad"):
        out.requires_grad_(True)
    return out


def _fillable(t):
    """Whether fastrand fills ``t`` in place; otherwise torch does (or raises its own error)."""
    return (
        type(t) in _PLAIN
        and t.layout == torch.strided
        and t.dtype in _FLOATS
        and t.device.type != "meta"  # torch draws nothing there
        and not (t.requires_grad and t.is_leaf and torch.is_grad_enabled())  # torch refuses
        and not (t.is_inference() and not torch.is_inference_mode_enabled())  # torch refuses
        and torch._debug_has_internal_overlap(t) != 1  # torch refuses overlapping elements
        and not _capturing(t.device)
    )


def _in_place_args(args, kwargs, names, defaults):
    """(tensor, first number, second number, generator) of ``normal_`` / ``uniform_``, or None
    where the call is not covered."""
    b = _bind(args, kwargs, names, defaults)
    if b is None:
        return None
    bound, kw = b
    if not set(kw) <= {"generator"}:
        return None
    t, p, q = (bound[n] for n in names)
    p, q = _number(p), _number(q)
    if p is None or q is None:
        return None
    return t, p, q, kw.get("generator")


def _normal_(args, kwargs):
    a = _in_place_args(args, kwargs, ("self", "mean", "std"), {"mean": 0.0, "std": 1.0})
    if a is None:
        return _PASS
    t, mean, std, generator = a
    if not std >= 0 or not _fillable(t):  # torch refuses std < 0 and NaN
        return _PASS
    return t.copy_(_normal_values(tuple(t.shape), generator, t.dtype, t.device, mean, std))


def _uniform_(args, kwargs):
    a = _in_place_args(args, kwargs, ("self", "from", "to"), {"from": 0.0, "to": 1.0})
    if a is None:
        return _PASS
    t, low, high, generator = a
    if not _fillable(t):
        return _PASS
    top = torch.finfo(t.dtype).max
    if not (-top <= low <= high <= top and high - low <= top):  # torch refuses the rest
        return _PASS
    return t.copy_(_uniform_values(tuple(t.shape), generator, t.dtype, t.device, low, high))


_HANDLERS: dict[Any, Callable[[tuple, dict], Any]] = {
    torch.randn: partial(_sized, kind="normal"),
    torch.rand: partial(_sized, kind="uniform"),
    torch.randn_like: partial(_like, kind="normal"),
    torch.rand_like: partial(_like, kind="uniform"),
    torch.normal: _normal,
    torch.Tensor.normal_: _normal_,
    torch.Tensor.uniform_: _uniform_,
}


def _draws_inside():
    """torch functions that dispatch ``__torch_function__`` as a whole (so the mode sees them and
    not the calls they make) and draw through covered calls inside: the mode re-enters itself
    around them."""
    import torch.nn.functional as F
    import torch.nn.init as init

    found = [getattr(init, n) for n in dir(init) if not n.startswith("_")]
    found += [
        getattr(F, n, None)
        for n in (
            "fractional_max_pool2d",
            "fractional_max_pool2d_with_indices",
            "fractional_max_pool3d",
            "fractional_max_pool3d_with_indices",
        )
    ]
    return {f for f in found if callable(f) and not isinstance(f, type)}


_DRAWS_INSIDE = frozenset(_draws_inside())
_INTERCEPTED = frozenset(_HANDLERS) | _DRAWS_INSIDE


# --------------------------------------------------------------------------------------------
# the mode
class _FastrandMode(TorchFunctionMode):
    """One per thread, on that thread's torch function mode stack while it holds patches."""

    def __init__(self, state):
        super().__init__()
        self._state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        if func in _INTERCEPTED:
            return _intercept(self, func, types, args, kwargs)
        return func(*args, **kwargs)


@torch.compiler.disable
def _intercept(mode, func, types, args, kwargs):
    """A covered call. Never traced by torch.compile: met while tracing, it runs as in eager mode
    at a graph break."""
    if mode._state.tokens:  # else undone from another thread: inert until removed
        handler = _HANDLERS.get(func)
        if handler is not None:
            out = handler(args, kwargs)
            if out is not _PASS:
                return out
        elif _redispatch is not None:
            with mode:  # the draws inside come back to this mode
                return _redispatch(func, types, args, kwargs)
    return func(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# patches: counted per thread, like patch_diffusers()'s (all state below under _LOCK, except a
# state's mode, which only its own thread touches)
_LOCK = threading.RLock()
_LOCAL = threading.local()
_LIVE: set[_ThreadState] = set()  # the states of the threads holding patches


class _ThreadState:
    __slots__ = ("tokens", "mode", "__weakref__")

    def __init__(self):
        self.tokens: set[_Token] = set()
        self.mode: _FastrandMode | None = None  # on this thread's mode stack when set


class _Token:
    """One patch in force, in the thread of ``state``."""

    __slots__ = ("state",)

    def __init__(self, state):
        self.state = state


def _thread_state():
    state = getattr(_LOCAL, "state", None)
    if state is None:
        state = _LOCAL.state = _ThreadState()
    return state


def _acquire():
    """Puts a new patch in force in this thread (pushing the mode if it is the first)."""
    state = _thread_state()
    token = _Token(state)
    with _LOCK:
        state.tokens.add(token)
        _LIVE.add(state)
    if state.mode is None:
        mode = _FastrandMode(state)
        _push_mode(mode)
        state.mode = mode
    return token


def _release(tokens):
    """Takes tokens out of force; this thread's mode leaves its stack once it holds none. (A
    token of another thread makes that thread's mode inert at once; it leaves that thread's
    stack the next time that thread takes or releases a patch.)"""
    with _LOCK:
        for token in tokens:
            if token is None:
                continue
            state = token.state
            state.tokens.discard(token)
            if not state.tokens:
                _LIVE.discard(state)
    _sync()


def _sync():
    state = getattr(_LOCAL, "state", None)
    if state is None or state.mode is None:
        return
    with _LOCK:
        if state.tokens:
            return
    _remove_mode(state.mode)
    state.mode = None


def _remove_mode(mode):
    """Takes ``mode`` off this thread's stack, leaving the modes above it in their order."""
    if not any(m is mode for m in _get_current_function_mode_stack()):
        return
    above = []
    while True:
        top = _pop_mode()
        if top is mode:
            break
        above.append(top)
    for m in reversed(above):
        _push_mode(m)


def _in_force(token: _Token) -> bool:
    return token in token.state.tokens


def _claimable(token: _Token) -> bool:
    # the handle's own patch is in force in the thread that made it: only a block there owns it
    return token in token.state.tokens and token.state is _thread_state()


class _TorchPatch(PatchHandle):
    """The handle ``patch_torch()`` returns: in force in the calling thread, a context manager,
    undoable.

    Patches are counted per thread: torch's draws in a thread go through fastrand while any patch
    of that thread is in force. The handle's own patch belongs to the first ``with`` block entered
    on it in its thread (that is ``with patch_torch():``), which releases it on exit. Any further
    ``with`` on the same handle (nested, later, or in another thread) takes a patch of its own in
    its thread and releases only that one on exit. ``undo()`` releases everything this handle
    holds (a second call does nothing); ``unpatch_torch()`` releases every patch.
    """

    __slots__ = ()
    _WHAT = "torch patch"
    _LOCK = _LOCK
    _acquire = staticmethod(_acquire)
    _release = staticmethod(_release)  # takes _LOCK itself, outside the handle's
    _in_force = staticmethod(_in_force)
    _claimable = staticmethod(_claimable)


def patch_torch() -> _TorchPatch:
    """Makes torch's Gaussian and uniform draws in this thread fastrand's (see the module
    docstring for exactly which calls and arguments).

    Returns a handle already in force: call ``.undo()`` on it, or use it as a context manager
    (``with fastrand.patch_torch(): ...``) to patch for a block only. Patches nest and are
    counted; ``unpatch_torch()`` undoes every one. torch function modes are thread-local, so the
    patch covers the calling thread only (call it in each thread that draws).
    """
    return _TorchPatch()._apply()


def unpatch_torch() -> None:
    """Undoes every ``patch_torch()`` in every thread. Does nothing if nothing is patched."""
    with _LOCK:
        tokens = [t for state in _LIVE for t in state.tokens]
    _release(tokens)
