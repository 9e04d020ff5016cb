"""fastrand: reproducible Gaussian noise for PyTorch.

The same (seed, stream, offset) gives bit-identical noise on the CPU and on every CUDA GPU,
generated directly on the target device (noise stream v1, docs/noise-stream.md).
"""

__version__ = "0.1.0"

from ._api import (  # noqa: E402
    build_info,
    rand,
    rand_like,
    randn,
    randn_like,
    randn_tensor,
    random_words,
)
from ._generator import Generator  # noqa: E402

STREAM_VERSION = 1

__all__ = [
    "Generator",
    "STREAM_VERSION",
    "build_info",
    "rand",
    "rand_like",
    "randn",
    "randn_like",
    "randn_tensor",
    "random_words",
]
