"""A diffusers drop-in: route diffusers' ``randn_tensor`` through ``fastrand.randn_tensor``.

``patch_diffusers()`` replaces diffusers' ``randn_tensor`` in every loaded ``diffusers*`` module
that holds it (``diffusers.utils.torch_utils`` itself, pipelines, schedulers, models, and
``diffusers_modules.*``, diffusers' dynamically loaded custom pipelines) and, while active, in
every such module imported later (a ``sys.meta_path`` hook patches each one right after it
executes). Called plainly it patches for the rest of the process; as ``with patch_diffusers():``
it patches for the block. ``unpatch_diffusers()`` (or ``.undo()`` on the returned object) puts
back exactly the (module, attribute) pairs it replaced.

It also replaces diffusers' ``BrownianTreeNoiseSampler`` (defined in
``diffusers.schedulers.scheduling_dpmsolver_sde`` and bound by name in
``scheduling_cosine_dpmsolver_multistep``) by ``fastrand.BrownianTreeNoiseSampler``, so
``DPMSolverSDEScheduler`` and ``CosineDPMSolverMultistepScheduler`` take their Brownian noise
from fastrand's tree instead of torchsde (diffusers still imports torchsde for these modules).

diffusers modules bind these objects by name (``from ...utils.torch_utils import randn_tensor``),
which is why patching the one definition is not enough and each module is patched. Every
diffusers definition of these names is replaced, not only the latest: after
``importlib.reload`` of the defining module, other modules still hold the definition from
before the reload (recognised by its module and qualified name). A module re-executed by
``importlib.reload`` while a patch is in force is patched again. Undoing puts back in each
module exactly the object it held; a module that bound the replacement by name while patched
gets the defining module's current definition, as an unpatched import would have.

Code that calls ``torch.randn``/``torch.rand``/``randn_like`` directly (a few schedulers do,
e.g. the uniform draws of ``scheduling_amused``) keeps torch's numbers.
"""

from __future__ import annotations

import sys
import threading
import types
import warnings
from typing import Any

from ._patch_handle import PatchHandle

__all__ = ["patch_diffusers", "unpatch_diffusers"]

_TORCH_UTILS = "diffusers.utils.torch_utils"
_SDE_MODULE = "diffusers.schedulers.scheduling_dpmsolver_sde"
_KNOWN_KEYWORDS = ("generator", "device", "dtype", "layout")
# attribute replaced -> the diffusers module that defines it
_DEFINED_IN = {"randn_tensor": _TORCH_UTILS, "BrownianTreeNoiseSampler": _SDE_MODULE}

# All state below is guarded by _LOCK (re-entrant: a module imported by an import that happens
# while the lock is held may run the post-import hook on the same thread).
_LOCK = threading.RLock()
_ACTIVE: set[object] = set()  # tokens of the patches in force (handles and their blocks)
_ORIGINAL = [None]  # diffusers' own randn_tensor (the last one seen; kept after undo)
# patched name -> the object its defining module holds (the last one seen; kept after undo)
_ORIGINALS: dict[str, Any] = {}
# id -> (patched name, object) for every original seen in a defining module (kept alive here)
_KNOWN: dict[int, tuple[str, Any]] = {}
_REPLACEMENTS: dict[str, Any] = {}  # patched name -> fastrand's replacement
# id(module) -> (module, {attribute: the object it held before the patch})
_REPLACED: dict[int, tuple[types.ModuleType, dict[str, Any]]] = {}
_FINDER: list[Any] = [None]  # the installed _PatchingFinder, or None


def _is_diffusers_module(name):
    return isinstance(name, str) and name.startswith("diffusers")


# --------------------------------------------------------------------------------------------
# the replacement
def randn_tensor(
    shape: Any,
    generator: Any = None,
    device: Any = None,
    dtype: Any = None,
    layout: Any = None,
    **kwargs: Any,
) -> Any:
    """diffusers' ``randn_tensor`` signature, answered by ``fastrand.randn_tensor``.

    ``shape``, ``generator``, ``device``, ``dtype`` and ``layout`` are the arguments every
    diffusers release up to 0.42.1 passes (0.42.1's source passes no other keyword). Any other
    keyword argument (one a later diffusers may add) cannot be honoured by fastrand: such a call
    goes to diffusers' own ``randn_tensor`` unchanged, with a ``RuntimeWarning`` naming the
    keywords, so the pipeline keeps working but that draw is torch's noise, not fastrand's.

    Unlike diffusers', the noise is generated directly on ``device`` (no CPU detour for a CPU
    generator) and is bit-identical on every device; a CUDA generator may fill a CPU tensor.
    """
    if kwargs:
        original = _ORIGINAL[0]
        if original is None:  # pragma: no cover - only reachable if diffusers was never patched
            raise TypeError(f"randn_tensor() got unexpected keyword arguments {sorted(kwargs)}")
        warnings.warn(
            f"fastrand.patch_diffusers: randn_tensor() was called with keyword arguments "
            f"{sorted(kwargs)} that fastrand does not know; this draw uses diffusers' "
            "own randn_tensor (torch noise, not fastrand's)",
            RuntimeWarning,
            stacklevel=2,
        )
        return original(
            shape, generator=generator, device=device, dtype=dtype, layout=layout, **kwargs
        )
    from . import _api  # lazily: fastrand/__init__ imports this module

    return _api.randn_tensor(shape, generator=generator, device=device, dtype=dtype, layout=layout)


_REPLACEMENT = randn_tensor
_REPLACEMENTS["randn_tensor"] = _REPLACEMENT


def _sampler_replacement():
    """fastrand's BrownianTreeNoiseSampler under diffusers' name (a subclass, so that undoing
    recognises exactly what the patch put in place)."""
    with _LOCK:
        cls = _REPLACEMENTS.get("BrownianTreeNoiseSampler")
        if cls is None:
            from ._brownian import BrownianTreeNoiseSampler as base

            cls = type(
                "BrownianTreeNoiseSampler",
                (base,),
                {
                    "__module__": __name__,
                    "__doc__": "diffusers' BrownianTreeNoiseSampler answered by fastrand's "
                    "(same arguments); installed by fastrand.patch_diffusers().",
                },
            )
            _REPLACEMENTS["BrownianTreeNoiseSampler"] = cls
        return cls


def __getattr__(name: str) -> Any:
    # the replacement class is made on first use (this module does not import torch); pickle
    # finds it here by its qualified name, so a patched scheduler's sampler pickles
    if name == "BrownianTreeNoiseSampler":
        return _sampler_replacement()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------------
# patching modules (call with _LOCK held)
def _learn_originals(module):
    """Records diffusers' own definitions held by their defining module (at patch time, on
    first import, and again when importlib.reload re-executes the module)."""
    name = getattr(module, "__name__", None)
    d = getattr(module, "__dict__", None)
    if not isinstance(d, dict):
        return
    for attr, home in _DEFINED_IN.items():
        if name != home:
            continue
        value = d.get(attr)
        if value is None or value is _REPLACEMENTS.get(attr) or not callable(value):
            continue
        _ORIGINALS[attr] = value
        _KNOWN[id(value)] = (attr, value)
        if attr == "randn_tensor":
            _ORIGINAL[0] = value


def _original_name(value):
    """The patched name of which value is a diffusers definition, or None: an object seen in
    its defining module, or a function or class defined there under that name (one from
    before an importlib.reload of that module, still bound by name elsewhere)."""
    known = _KNOWN.get(id(value))
    if known is not None and known[1] is value:
        return known[0]
    if isinstance(value, (types.FunctionType, type)):
        name = value.__qualname__
        if _DEFINED_IN.get(name) == value.__module__:
            return name
    return None


def _replacement_name(value):
    for name, replacement in _REPLACEMENTS.items():
        if value is replacement:
            return name
    return None


def _patch_module(module):
    """Replaces diffusers' originals in one module; records what each attribute held."""
    d = getattr(module, "__dict__", None)
    if not isinstance(d, dict):
        return
    for attr, value in list(d.items()):
        name = _original_name(value)
        if name is not None:
            replacement = _REPLACEMENTS.get(name)
            if replacement is None:
                continue
            setattr(module, attr, replacement)
            _REPLACED.setdefault(id(module), (module, {}))[1][attr] = value
            continue
        name = _replacement_name(value)
        original = None if name is None else _ORIGINALS.get(name)
        if original is not None:
            # bound by name from an already patched module (e.g. `from ...utils.torch_utils
            # import randn_tensor` after torch_utils was patched): undo gives it the current
            # definition, unless it was recorded holding another one before
            _REPLACED.setdefault(id(module), (module, {}))[1].setdefault(attr, original)


def _unpatch_module(module, held=None):
    """Puts diffusers' originals back where this module holds a replacement: what it held
    (``held``: attribute -> object), else the defining module's current definition."""
    d = getattr(module, "__dict__", None)
    if not isinstance(d, dict):
        return
    if held is None:
        held = {}
        for attr, value in d.items():
            name = _replacement_name(value)
            if name is not None and _ORIGINALS.get(name) is not None:
                held[attr] = _ORIGINALS[name]
    for attr, original in held.items():
        # only where the replacement still is (something else put there since: left alone)
        if _replacement_name(d.get(attr)) is not None:
            setattr(module, attr, original)


def _diffusers_modules():
    for name, module in list(sys.modules.items()):
        if _is_diffusers_module(name) and isinstance(module, types.ModuleType):
            yield module


def _after_import(name, module):
    """Runs right after a diffusers module executed (from the import hook)."""
    with _LOCK:
        targets = [module]
        current = sys.modules.get(name)
        if current is not None and current is not module:  # e.g. replaced by a _LazyModule
            targets.append(current)
        for m in targets:
            _learn_originals(m)
            # (re-)executed: what it held before is gone; a reload binds afresh
            _REPLACED.pop(id(m), None)
            if _ACTIVE:
                _patch_module(m)
            else:  # undone while this module was executing
                _unpatch_module(m)


# --------------------------------------------------------------------------------------------
# import hook
class _PatchingLoader:
    """Wraps a loader: runs it, then patches the module it executed.

    The wrapper is visible only between find_spec and the start of exec_module: it puts the
    original loader back on the spec and the module before running it, so nothing that outlives
    the import (``__loader__``, ``__spec__.loader``, reloads, resource readers) sees it.
    """

    def __init__(self, spec, loader):
        self._spec = spec
        self._loader = loader

    def __getattr__(self, name):  # get_code, get_source, is_package, get_resource_reader, ...
        return getattr(self._loader, name)

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module):
        loader = self._loader
        if self._spec.loader is self:
            self._spec.loader = loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec is not self._spec and getattr(spec, "loader", None) is self:
            spec.loader = loader
        loader.exec_module(module)
        _after_import(self._spec.name, module)


class _PatchingFinder:
    """A sys.meta_path entry that wraps the loader of every ``diffusers*`` module."""

    def __init__(self):
        self._busy = threading.local()

    def find_spec(self, fullname, path=None, target=None):
        if not _is_diffusers_module(fullname) or getattr(self._busy, "on", False):
            return None
        self._busy.on = True
        try:
            spec = None
            for finder in list(sys.meta_path):
                if finder is self or isinstance(finder, _PatchingFinder):
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._busy.on = False
        if spec is None:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec  # namespace packages, legacy loaders: left to the import system
        spec.loader = _PatchingLoader(spec, loader)
        return spec

    def invalidate_caches(self):
        pass


# --------------------------------------------------------------------------------------------
# install / uninstall (call with _LOCK held)
def _install(torch_utils):
    _learn_originals(torch_utils)
    _sampler_replacement()
    sde = sys.modules.get(_SDE_MODULE)
    if sde is not None:  # not imported yet: the import hook learns it when it is
        _learn_originals(sde)
    for module in _diffusers_modules():
        _patch_module(module)
    if _FINDER[0] is None:
        finder = _PatchingFinder()
        sys.meta_path.insert(0, finder)
        _FINDER[0] = finder


def _uninstall():
    finder = _FINDER[0]
    if finder is not None:
        _FINDER[0] = None
        try:
            sys.meta_path.remove(finder)
        except ValueError:  # removed by someone else
            pass
    for module, held in list(_REPLACED.values()):
        _unpatch_module(module, held)
    _REPLACED.clear()
    # modules that bound the replacement by name outside the import hook (e.g. diffusers'
    # dynamic modules, loaded with spec_from_file_location) got it only because of the patch
    for module in _diffusers_modules():
        _unpatch_module(module)


def _import_torch_utils():
    try:
        import diffusers.utils.torch_utils as torch_utils
    except ImportError as e:
        raise ImportError(
            "fastrand.patch_diffusers() needs diffusers, which could not be imported "
            f"({e}); install it with `pip install diffusers`"
        ) from e
    return torch_utils


def _acquire():
    """Puts a new patch token in force (patching diffusers if it is the first); returns it."""
    torch_utils = _import_torch_utils()  # outside the lock: imports may run the hook
    from . import _api  # noqa: F401 - load fastrand's front end before patching anything

    with _LOCK:
        current = torch_utils.__dict__.get("randn_tensor")
        original = _ORIGINAL[0] if current is _REPLACEMENT else current
        if original is None or not callable(original):
            raise ImportError(
                f"fastrand.patch_diffusers(): {_TORCH_UTILS} has no "
                "randn_tensor; this diffusers version is not supported"
            )
        token = object()
        _ACTIVE.add(token)
        _install(torch_utils)
    return token


def _release(tokens):
    """Takes tokens out of force (call with _LOCK held); unpatches when none is left."""
    released = False
    for token in tokens:
        if token is not None and token in _ACTIVE:
            _ACTIVE.discard(token)
            released = True
    if released and not _ACTIVE:
        _uninstall()


def _in_force(token: object) -> bool:
    return token in _ACTIVE


class _DiffusersPatch(PatchHandle):
    """The handle ``patch_diffusers()`` returns: already in force, a context manager, undoable.

    Patches are counted: diffusers stays patched while any patch is in force. The handle's own
    patch belongs to the first ``with`` block entered on it (that is ``with
    patch_diffusers():``), which releases it on exit. Any further ``with`` on the same handle,
    nested or later, takes a patch of its own and releases only that one on exit, so blocks
    nest and each block's exit leaves the patches of other handles and outer blocks in force.
    ``undo()`` releases everything this handle holds (a second call does nothing);
    ``unpatch_diffusers()`` releases every patch.
    """

    __slots__ = ()
    _WHAT = "diffusers patch"
    _RELEASE_UNDER_LOCK = True  # _release expects _LOCK held
    _LOCK = _LOCK
    _acquire = staticmethod(_acquire)
    _release = staticmethod(_release)
    _in_force = staticmethod(_in_force)


def patch_diffusers() -> _DiffusersPatch:
    """Makes diffusers draw its noise through ``fastrand.randn_tensor`` and its SDE schedulers'
    Brownian noise through ``fastrand.BrownianTreeNoiseSampler``.

    Replaces diffusers' ``randn_tensor`` and ``BrownianTreeNoiseSampler`` in every loaded
    ``diffusers*`` module and in every one imported (or reloaded) while the patch is in force. Returns a handle that is already in force: call
    ``.undo()`` on it, or use it as a context manager (``with fastrand.patch_diffusers(): ...``)
    to patch for a block only. ``unpatch_diffusers()`` undoes every patch. Thread-safe; raises
    ImportError when diffusers cannot be imported.
    """
    return _DiffusersPatch()._apply()


def unpatch_diffusers() -> None:
    """Undoes every ``patch_diffusers()``: puts diffusers' own ``randn_tensor`` and
    ``BrownianTreeNoiseSampler`` back exactly where they were replaced and removes the import hook. Does nothing if nothing is patched."""
    with _LOCK:
        _ACTIVE.clear()
        _uninstall()
