"""ComfyUI nodes whose noise is fastrand's: for a seed, the same initial latent noise, ancestral
noise and SDE (Brownian) noise on the CPU, every CUDA GPU and Apple's MPS.

ComfyUI loads them from a folder in ``custom_nodes/`` whose ``__init__.py`` re-exports
``NODE_CLASS_MAPPINGS`` and ``NODE_DISPLAY_NAME_MAPPINGS`` (``python -m fastrand.comfyui install
COMFYUI_DIR`` writes it). This module imports without ComfyUI; the parts that call into ComfyUI
import it when they run.

Written against ComfyUI's call conventions as its public repository (comfyanonymous/ComfyUI,
2025-2026) has them; tests/test_comfyui.py lists the files and versions read:

- a NOISE is an object with ``seed`` and ``generate_noise(latent)``, ``latent`` a dict with
  ``"samples"`` and an optional ``"batch_index"`` (comfy_extras/nodes_custom_sampler.py);
- the k-diffusion samplers build their noise sampler from the module globals
  ``default_noise_sampler(x, seed=seed)`` and ``BrownianTreeNoiseSampler(x, sigma_min, sigma_max,
  seed=seed, cpu=...)`` of comfy/k_diffusion/sampling.py at call time, and call it as
  ``noise_sampler(sigma, sigma_next)``;
- a SAMPLER has ``sample(model_wrap, sigmas, extra_args, callback, noise, latent_image,
  denoise_mask, disable_pbar)``; a model's ``OUTER_SAMPLE`` and ``SAMPLER_SAMPLE`` wrappers
  (comfy.patcher_extension) run around ``CFGGuider.outer_sample(noise, latent_image, sampler,
  sigmas, denoise_mask, callback, disable_pbar, seed, ...)`` and ``sampler.sample(...)``
  (comfy/samplers.py);
- the plain KSampler's noise is ``comfy.sample.prepare_noise(latent, seed, batch_index)``:
  ``torch.manual_seed(seed)``, float32 on the CPU, cast to the latent's dtype (comfy/sample.py,
  nodes.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import logging
import math
import threading
import weakref
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any, Callable

import torch

from .._api import randn_tensor
from .._brownian import BrownianTreeNoiseSampler, default_noise_sampler
from .._generator import Generator, check_seed

__all__ = [
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "FastrandKSamplerNoise",
    "FastrandNoise",
    "FastrandSamplerNoise",
    "Noise",
    "Sampler",
    "latent_noise",
    "sampler_noise",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# initial noise
def _rows(part: torch.Tensor, seed: int, stream: int, batch_index: Any) -> torch.Tensor:
    if not isinstance(part, torch.Tensor) or not part.is_floating_point():
        what = part.dtype if isinstance(part, torch.Tensor) else type(part).__name__
        raise ValueError(f"samples: expected a floating-point latent tensor, got {what}")
    shape, device = tuple(part.shape), part.device
    if batch_index is None:
        g = Generator(seed, stream=stream)
        noise = randn_tensor(shape, generator=g, device=device, dtype=torch.float32)
        return noise.to(part.dtype)
    inds = [_index(i) for i in batch_index]
    if part.dim() == 0 or len(inds) != shape[0]:
        batch = "no batch dimension" if part.dim() == 0 else f"a batch of {shape[0]}"
        raise ValueError(f"batch_index: {len(inds)} entries for a latent with {batch}")
    if not inds:
        return torch.empty(shape, dtype=part.dtype, device=device)
    row, n = (1, *shape[1:]), math.prod(shape[1:])
    drawn: dict[int, torch.Tensor] = {}  # row k of the batch sits at offset k * n of the stream
    for k in inds:
        if k not in drawn:
            g = Generator(seed, stream=stream, offset=k * n)
            drawn[k] = randn_tensor(row, generator=g, device=device, dtype=torch.float32)
    return torch.cat([drawn[k] for k in inds]).to(part.dtype)


def _index(value: Any) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"batch_index: expected integers, got {type(value).__name__}")
    k = int(value.__index__())
    if k < 0:
        raise ValueError(f"batch_index: expected indices >= 0, got {k}")
    return k


def latent_noise(samples: Any, seed: int, batch_index: Sequence[int] | None = None) -> Any:
    """The initial noise of ``Noise (fastrand)`` for a latent's ``samples``: standard normal
    float32 values of ``fastrand.Generator(seed)`` cast to the latent's dtype, shaped like it and
    drawn on its device (the same bits on every device).

    Row ``i`` of a batch holds the stream's values ``[i*n, (i+1)*n)`` (``n`` values per row), so
    it is the same whatever the batch size; ``batch_index`` gives each row the values of its index
    instead, as ``comfy.sample.prepare_noise`` gives rows of its generator. A nested latent
    (ComfyUI's ``NestedTensor``: several latents sampled together) draws part ``j`` from stream
    ``j`` of the seed and returns the same type.
    """
    seed = check_seed(seed, "seed")
    if getattr(samples, "is_nested", False):
        parts = samples.unbind()
        return type(samples)([_rows(p, seed, j, batch_index) for j, p in enumerate(parts)])
    return _rows(samples, seed, 0, batch_index)


class Noise:
    """A ComfyUI ``NOISE`` (the object ``SamplerCustomAdvanced`` takes): ``seed`` and
    ``generate_noise(latent)``, whose noise is :func:`latent_noise`."""

    def __init__(self, seed: int) -> None:
        self.seed = check_seed(seed, "seed")

    def generate_noise(self, input_latent: dict[str, Any]) -> Any:
        return latent_noise(input_latent["samples"], self.seed, input_latent.get("batch_index"))

    def __repr__(self) -> str:
        return f"fastrand.comfyui.Noise(seed={self.seed})"


# --------------------------------------------------------------------------------------------
# ancestral and SDE noise: ComfyUI's samplers look their noise samplers up in the module globals
# of comfy.k_diffusion.sampling on every run. Those two names are bound, once, to dispatchers
# that call fastrand's classes inside sampler_noise() and ComfyUI's own everywhere else: other
# samplers, other workflows and other threads see ComfyUI's behaviour unchanged.
_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("fastrand_sampler_noise")
_INSTALL_LOCK = threading.Lock()
_DISPATCHERS: weakref.WeakSet[Any] = weakref.WeakSet()


def _dispatch_function(theirs: Callable[..., Any], ours: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(theirs)
    def dispatch(*args: Any, **kwargs: Any) -> Any:
        return (ours if _ACTIVE.get(False) else theirs)(*args, **kwargs)

    return dispatch


def _dispatch_class(theirs: type, ours: Callable[..., Any]) -> type:
    # a subclass, so that isinstance and subclassing behave as before outside the scope
    class Dispatch(theirs):
        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            if cls is Dispatch and _ACTIVE.get(False):
                return ours(*args, **kwargs)  # not an instance of cls: __init__ is not run
            new = super().__new__
            return new(cls) if new is object.__new__ else new(cls, *args, **kwargs)

    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(Dispatch, attr, getattr(theirs, attr))
    return Dispatch


def _install(module: ModuleType) -> None:
    with _INSTALL_LOCK:
        for name, ours in (
            ("default_noise_sampler", default_noise_sampler),
            ("BrownianTreeNoiseSampler", BrownianTreeNoiseSampler),
        ):
            theirs = getattr(module, name, None)
            if theirs is None or not callable(theirs):
                raise ValueError(f"module: {module.__name__} has no callable {name}")
            if theirs in _DISPATCHERS:
                continue
            make = _dispatch_class if isinstance(theirs, type) else _dispatch_function
            dispatch = make(theirs, ours)
            _DISPATCHERS.add(dispatch)
            setattr(module, name, dispatch)


@contextlib.contextmanager
def sampler_noise(module: ModuleType | None = None) -> Iterator[None]:
    """Within this block (this thread and context only), the k-diffusion samplers of ComfyUI
    (``module``: ``comfy.k_diffusion.sampling`` by default, or another fork with the same two
    names) get ``fastrand.default_noise_sampler`` and ``fastrand.BrownianTreeNoiseSampler``
    where they build ``default_noise_sampler(x, seed=seed)`` and
    ``BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seed, ...)``. Outside it, those
    names behave exactly as ComfyUI's own. Blocks nest."""
    if module is None:
        module = importlib.import_module("comfy.k_diffusion.sampling")
    _install(module)
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


class Sampler:
    """A ComfyUI ``SAMPLER`` that runs ``sampler`` with fastrand's ancestral and SDE noise
    (:func:`sampler_noise` around its ``sample``); its other attributes are the wrapped
    sampler's."""

    def __init__(self, sampler: Any) -> None:
        if not callable(getattr(sampler, "sample", None)):
            raise TypeError(f"sampler: expected a ComfyUI SAMPLER, got {type(sampler).__name__}")
        self.sampler = sampler

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        with sampler_noise():
            return self.sampler.sample(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "sampler":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.sampler, name)


# --------------------------------------------------------------------------------------------
# model wrappers (comfy.patcher_extension): the plain KSampler's noise
_WRAPPER_KEY = "fastrand"


def _is_comfy_seed_noise(noise: torch.Tensor, seed: int) -> bool:
    """Whether `noise` is comfy.sample.prepare_noise(latent, seed) without a batch_index (the
    KSampler's and RandomNoise's): torch.manual_seed(seed), float32 on the CPU, cast."""
    if noise.device.type != "cpu" or not noise.is_floating_point():
        return False
    g = torch.Generator().manual_seed(seed)  # a generator of its own: torch's default untouched
    comfy = torch.randn(noise.shape, dtype=torch.float32, generator=g).to(noise.dtype)
    return torch.equal(comfy, noise)


def _initial_noise(noise: Any, seed: Any, latent_shapes: Any = None) -> Any:
    if seed is None or not isinstance(noise, torch.Tensor) or noise.is_nested:
        return noise
    if latent_shapes is not None and len(latent_shapes) > 1:
        log.info("KSampler noise (fastrand): nested latents keep ComfyUI's noise")
        return noise
    seed = int(seed)
    if not _is_comfy_seed_noise(noise, seed):
        if bool(noise.any()):
            log.info(
                "KSampler noise (fastrand): the initial noise is not the seed's plain noise (a "
                "batch_index latent, or another noise node); it is left as drawn"
            )
        return noise
    return latent_noise(noise, seed)


def _outer_sample(
    executor: Callable[..., Any],
    noise: Any,
    latent_image: Any,
    sampler: Any,
    sigmas: Any,
    denoise_mask: Any = None,
    callback: Any = None,
    disable_pbar: bool = False,
    seed: Any = None,
    **kwargs: Any,
) -> Any:
    """OUTER_SAMPLE wrapper: ComfyUI's seed noise becomes :func:`latent_noise` of the seed."""
    noise = _initial_noise(noise, seed, kwargs.get("latent_shapes"))
    return executor(
        noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed, **kwargs
    )


def _sampler_sample(executor: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """SAMPLER_SAMPLE wrapper: the sampler runs with fastrand's ancestral and SDE noise."""
    with sampler_noise():
        return executor(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# the nodes (ComfyUI's classic node interface)
_CATEGORY = "sampling/fastrand"


class FastrandNoise:
    DESCRIPTION = (
        "Initial noise for SamplerCustomAdvanced from fastrand: the same latent noise for a seed "
        "on the CPU, every CUDA GPU and MPS, drawn on the latent's device. A batch row does not "
        "depend on the batch size; batch_index is honoured."
    )
    CATEGORY = _CATEGORY
    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        seed = {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True}
        return {"required": {"noise_seed": ("INT", seed)}}

    def get_noise(self, noise_seed: int) -> tuple[Noise]:
        return (Noise(noise_seed),)


class FastrandSamplerNoise:
    DESCRIPTION = (
        "The sampler's ancestral and SDE noise from fastrand (default_noise_sampler and "
        "BrownianTreeNoiseSampler), the same on every device, for this sampler only."
    )
    CATEGORY = _CATEGORY
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"sampler": ("SAMPLER",)}}

    def get_sampler(self, sampler: Any) -> tuple[Sampler]:
        return (Sampler(sampler),)


class FastrandKSamplerNoise:
    DESCRIPTION = (
        "A model whose sampling runs (KSampler, KSamplerAdvanced, SamplerCustom) use fastrand's "
        "noise: initial_noise replaces the seed's initial noise (not a batch_index latent's, "
        "nor another noise node's); sampler_noise gives the ancestral and SDE samplers "
        "fastrand's noise."
    )
    CATEGORY = _CATEGORY
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL",),
                "initial_noise": ("BOOLEAN", {"default": True}),
                "sampler_noise": ("BOOLEAN", {"default": True}),
            }
        }

    def patch(self, model: Any, initial_noise: bool = True, sampler_noise: bool = True) -> tuple:
        wrappers = importlib.import_module("comfy.patcher_extension").WrappersMP
        model = model.clone()
        for kind, on, wrapper in (
            (wrappers.OUTER_SAMPLE, initial_noise, _outer_sample),
            (wrappers.SAMPLER_SAMPLE, sampler_noise, _sampler_sample),
        ):
            model.remove_wrappers_with_key(kind, _WRAPPER_KEY)
            if on:
                model.add_wrapper_with_key(kind, _WRAPPER_KEY, wrapper)
        return (model,)


NODE_CLASS_MAPPINGS = {
    "FastrandNoise": FastrandNoise,
    "FastrandSamplerNoise": FastrandSamplerNoise,
    "FastrandKSamplerNoise": FastrandKSamplerNoise,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "FastrandNoise": "Noise (fastrand)",
    "FastrandSamplerNoise": "Sampler noise (fastrand)",
    "FastrandKSamplerNoise": "KSampler noise (fastrand)",
}
