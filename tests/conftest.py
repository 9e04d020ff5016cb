"""Shared helpers: bit views, the independent NumPy reference, child-process environments, the
paths of csrc's files for the native test builds."""

import os

import numpy as np
import pytest
import torch

import fastrand
from fastrand import _C
from fastrand import reference as ref

TORCH_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
_UNSIGNED = {1: None, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_SIGNED = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def bits(t):
    """A tensor's (or array's) values as unsigned integer bit patterns in a NumPy array."""
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().contiguous()
        width = t.element_size()
        return t.view(_SIGNED[width]).numpy().view(_UNSIGNED[width])
    a = np.ascontiguousarray(t)
    return a.view(_UNSIGNED[a.dtype.itemsize])


def ref_bits(kind, seed, stream, offset, n, dtype="float32"):
    """Bits of the NumPy reference for a request (kind: normal, uniform, words)."""
    if kind == "normal":
        return bits(ref.normal(seed, stream, offset, n, dtype))
    if kind == "uniform":
        return bits(ref.uniform(seed, stream, offset, n, dtype))
    return bits(ref.words(seed, stream, offset, n))


def draw(kind, n, seed=0, stream=0, offset=0, dtype="float32", device="cpu"):
    """The compiled path's draw of n values at (seed, stream, offset)."""
    g = fastrand.Generator(seed, stream=stream, offset=offset)
    if kind == "normal":
        return fastrand.randn(n, generator=g, dtype=TORCH_DTYPES[dtype], device=device)
    if kind == "uniform":
        return fastrand.rand(n, generator=g, dtype=TORCH_DTYPES[dtype], device=device)
    return fastrand.random_words(n, generator=g, device=device)


@pytest.fixture
def cpu_isa():
    """Yields a function selecting a CPU path; restores the path in use afterwards."""
    before = _C.cpu_isa_selected()
    yield _C.cpu_isa_select
    _C.cpu_isa_select(before)


@pytest.fixture
def num_threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


# the directory holding the fastrand this process imported (src/ or an installed
# site-packages): child processes put it first on their path and import the same build
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastrand.__file__)))


def child_env(base=None, **extra):
    """The environment for a child process (``base`` or os.environ, plus ``extra``) that imports
    the same fastrand as this process."""
    env = dict(os.environ if base is None else base)
    env.update({k: str(v) for k, v in extra.items()})
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = PKG_PARENT + (os.pathsep + old if old else "")
    return env


# csrc/ and its folders: the include path of the native test builds (the sources include each
# other by bare file name, as setup.py compiles them with -I for each folder)
CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")
CSRC_DIRS = [CSRC] + sorted(d.path for d in os.scandir(CSRC) if d.is_dir())
CSRC_INCLUDES = ["-I" + d for d in CSRC_DIRS]


def csrc_file(name):
    """The path of csrc's file `name`, in whichever of its folders holds it."""
    found = [os.path.join(d, name) for d in CSRC_DIRS if os.path.isfile(os.path.join(d, name))]
    assert len(found) == 1, f"csrc file {name!r} is in {len(found)} folders: {found}"
    return found[0]
