"""Sphinx configuration of fastrand's documentation site.

Tool: Sphinx with MyST (Markdown pages), autodoc (the API reference from the docstrings) and
the furo theme, because torch and most of its ecosystem document themselves with Sphinx and
autodoc, and the frozen specifications stay plain Markdown files that are included unchanged.

Build (fastrand must be importable: installed, or the in-place build with PYTHONPATH=src):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

CI builds it with warnings as errors and nitpicky references, so a renamed function, a
docstring that no longer parses, a public name left out of the reference or a broken link
fails the build. There is no network at build time: no intersphinx; references to torch,
NumPy and the standard library are left unresolved by name in ``nitpick_ignore`` below.
"""

from __future__ import annotations

import importlib

import fastrand

project = "fastrand"
author = "the fastrand authors"
copyright = "the fastrand authors"
release = fastrand.__version__
version = ".".join(release.split(".")[:2])

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
root_doc = "index"

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links, checked at build time

html_theme = "furo"
html_title = f"fastrand {release}"

nitpicky = True
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True  # defaults as written (np.float32, 64 << 20), not their repr
autodoc_default_options = {"exclude-members": "__init__, __new__"}
# The annotations of the torch front end name aliases that exist only for type checkers
# (src/fastrand/_api.py); the API page documents them as types of their own.
autodoc_type_aliases = {
    "GeneratorArg": "fastrand.GeneratorArg",
    "DeviceArg": "fastrand.DeviceArg",
    "SizeArg": "fastrand.SizeArg",
    "_Shape": "fastrand.numpy.Shape",
    "ArrayLike": "numpy.typing.ArrayLike",
    "DTypeLike": "numpy.typing.DTypeLike",
}

# Types from other packages, which no inventory resolves offline: named one by one, so that a
# typo in a fastrand name still fails the build.
_EXTERNAL = {
    "py:class": [
        "torch.Tensor",
        "torch.dtype",
        "torch.device",
        "torch.layout",
        "torch.memory_format",
        "torch.Generator",
        "torch.Size",
        "torch.distributed.device_mesh.DeviceMesh",
        "torch.distributed.tensor.DTensor",
        "torch.distributed.tensor._api.DTensor",
        "DeviceMesh",
        "DTensor",
        "numpy.ndarray",
        "np.ndarray",
        "numpy.dtype",
        "numpy.typing.ArrayLike",
        "numpy.typing.DTypeLike",
        "ArrayLike",
        "DTypeLike",
        "SupportsIndex",
        "typing.SupportsIndex",
        "Sequence",
        "collections.abc.Sequence",
        "collections.abc.Iterable",
        "Iterator",
        "collections.abc.Iterator",
        "Callable",
        "collections.abc.Callable",
        "ModuleType",
        "types.ModuleType",
        "TextIO",
        "Path",
        "pathlib.Path",
    ],
}
nitpick_ignore = [(role, name) for role, names in _EXTERNAL.items() for name in names]

# Every public name must have an entry in the reference: (module, names). The lazy names of
# `fastrand` are its __all__; the submodules list theirs.
_PUBLIC = {
    "fastrand": [n for n in fastrand.__all__ if n not in ("__version__",)],
    "fastrand.functional": None,
    "fastrand.numpy": None,
    "fastrand.distributed": None,
    "fastrand.reference": None,
    "fastrand.comfyui": None,
}


def _check_reference(app, env):
    """Warn (an error under -W) for each public name the API reference does not document."""
    from sphinx.util import logging

    documented = set(env.get_domain("py").objects)
    for module, names in _PUBLIC.items():
        if names is None:
            names = importlib.import_module(module).__all__
        for name in names:
            if f"{module}.{name}" not in documented:
                logging.getLogger(__name__).warning(
                    "public name %s.%s has no entry in the API reference", module, name
                )


def setup(app):
    app.connect("env-check-consistency", _check_reference)
