"""fastrand: reproducible Gaussian noise for PyTorch.

The same (seed, stream, offset) gives bit-identical noise on the CPU and on every CUDA GPU,
generated directly on the target device (noise stream v1, docs/noise-stream.md).

Importing fastrand does not import torch; the torch API below is loaded on first use, so
`fastrand.numpy` (NumPy arrays from the compiled core) works in processes without torch.
"""

from ._version import __version__

STREAM_VERSION = 1

from ._generator import Generator  # noqa: E402  (torch-free)

# public name -> submodule that defines it (imported on first access)
_LAZY = {
    "randn_tensor": "_api",
    "randn": "_api",
    "rand": "_api",
    "randn_like": "_api",
    "rand_like": "_api",
    "random_words": "_api",
    "build_info": "_api",
    "randn_slice": "_slice",
    "rand_slice": "_slice",
    "CudaGraphGenerator": "_graph",
    "BrownianTree": "_brownian",
    "BrownianTreeNoiseSampler": "_brownian",
    "default_noise_sampler": "_brownian",
    "patch_diffusers": "_diffusers_patch",
    "unpatch_diffusers": "_diffusers_patch",
    "patch_torch": "_torch_patch",
    "unpatch_torch": "_torch_patch",
    "enable_full_determinism": "_determinism",
    "selftest": "_selftest",
    "warmup": "_cuda",
}

__all__ = ["Generator", "STREAM_VERSION", "__version__", *sorted(_LAZY)]


# submodules reachable as attributes (fastrand._C, fastrand.numpy, ...) before being imported
_SUBMODULES = {"_C", "reference", "numpy", "functional", "distributed", "comfyui"}


def __getattr__(name):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastrand' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
