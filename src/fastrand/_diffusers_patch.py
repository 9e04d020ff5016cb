"""A diffusers drop-in: route diffusers' ``randn_tensor`` through ``fastrand.randn_tensor``.

``patch_diffusers()`` replaces diffusers' ``randn_tensor`` in every loaded ``diffusers*`` module
that holds it (``diffusers.utils.torch_utils`` itself, pipelines, schedulers, models, and
``diffusers_modules.*``, diffusers' dynamically loaded custom pipelines) and, while active, in
every such module imported later (a ``sys.meta_path`` hook patches each one right after it
executes). Called plainly it patches for the rest of the process; as ``with patch_diffusers():``
it patches for the block. ``unpatch_diffusers()`` (or ``.undo()`` on the returned object) puts
back exactly the (module, attribute) pairs it replaced.

diffusers modules bind the function by name (``from ...utils.torch_utils import randn_tensor``),
which is why patching the one definition is not enough and each module is patched.

Only ``randn_tensor`` is replaced. Code that calls ``torch.randn``/``torch.rand``/``randn_like``
directly (a few schedulers do, e.g. the uniform draws of ``scheduling_amused``, or the Brownian
tree of ``scheduling_dpmsolver_sde``) keeps torch's numbers.
"""

from __future__ import annotations

import sys
import threading
import types
import warnings

__all__ = ["patch_diffusers", "unpatch_diffusers"]

_TORCH_UTILS = "diffusers.utils.torch_utils"
_KNOWN_KEYWORDS = ("generator", "device", "dtype", "layout")

# All state below is guarded by _LOCK (re-entrant: a module imported by an import that happens
# while the lock is held may run the post-import hook on the same thread).
_LOCK = threading.RLock()
_ACTIVE = set()  # tokens of the _DiffusersPatch handles currently in force
_ORIGINAL = [None]  # diffusers' own randn_tensor (the last one seen; kept after undo)
_REPLACED = {}  # id(module) -> (module, {attribute names we replaced})
_FINDER = [None]  # the installed _PatchingFinder, or None


def _is_diffusers_module(name):
    return isinstance(name, str) and name.startswith("diffusers")


# --------------------------------------------------------------------------------------------
# the replacement
def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None, **kwargs):
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


# --------------------------------------------------------------------------------------------
# patching modules (call with _LOCK held)
def _patch_module(module):
    """Replaces diffusers' randn_tensor in one module; records what it replaced."""
    original = _ORIGINAL[0]
    d = getattr(module, "__dict__", None)
    if not isinstance(d, dict) or original is None:
        return
    for attr, value in list(d.items()):
        if value is original:
            setattr(module, attr, _REPLACEMENT)
        elif value is not _REPLACEMENT:
            continue
        # either replaced just now, or bound by name from an already patched module
        # (e.g. `from ...utils.torch_utils import randn_tensor` after torch_utils was patched)
        _REPLACED.setdefault(id(module), (module, set()))[1].add(attr)


def _unpatch_module(module, attrs=None):
    """Puts diffusers' randn_tensor back where this module holds the replacement."""
    original = _ORIGINAL[0]
    d = getattr(module, "__dict__", None)
    if not isinstance(d, dict) or original is None:
        return
    names = list(d) if attrs is None else attrs
    for attr in names:
        if d.get(attr) is _REPLACEMENT:  # something else put there since: leave it alone
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
def _install(original):
    _ORIGINAL[0] = original
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
    for module, attrs in list(_REPLACED.values()):
        _unpatch_module(module, attrs)
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


class _DiffusersPatch:
    """The handle ``patch_diffusers()`` returns: already in force, a context manager, undoable.

    Patches are counted: diffusers stays patched while any handle is in force, so nested
    ``with patch_diffusers():`` blocks and repeated calls are harmless and each block's exit
    restores the state at its entry. ``undo()`` releases this handle (a second call does
    nothing); ``unpatch_diffusers()`` releases them all.
    """

    __slots__ = ("_token", "__weakref__")

    def __init__(self):
        self._token = None

    def _apply(self):
        torch_utils = _import_torch_utils()  # outside the lock: imports may run the hook
        from . import _api  # noqa: F401 - load fastrand's front end before patching anything

        with _LOCK:
            current = torch_utils.__dict__.get("randn_tensor")
            if current is _REPLACEMENT:
                original = _ORIGINAL[0]
            else:
                original = current
            if original is None or not callable(original):
                raise ImportError(
                    f"fastrand.patch_diffusers(): {_TORCH_UTILS} has no "
                    "randn_tensor; this diffusers version is not supported"
                )
            if self._token is None or self._token not in _ACTIVE:
                self._token = object()
                _ACTIVE.add(self._token)
            _install(original)
        return self

    @property
    def active(self):
        """Whether this handle is still in force."""
        with _LOCK:
            return self._token is not None and self._token in _ACTIVE

    def undo(self):
        """Releases this patch; diffusers is restored once no other patch is in force."""
        with _LOCK:
            token, self._token = self._token, None
            if token is None or token not in _ACTIVE:
                return
            _ACTIVE.discard(token)
            if not _ACTIVE:
                _uninstall()

    def __enter__(self):
        if not self.active:  # re-entering an undone handle patches again
            self._apply()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.undo()
        return False

    def __repr__(self):
        return f"<fastrand diffusers patch, {'active' if self.active else 'undone'}>"


def patch_diffusers():
    """Makes diffusers draw its noise through ``fastrand.randn_tensor``.

    Replaces diffusers' ``randn_tensor`` in every loaded ``diffusers*`` module and in every one
    imported while the patch is in force. Returns a handle that is already in force: call
    ``.undo()`` on it, or use it as a context manager (``with fastrand.patch_diffusers(): ...``)
    to patch for a block only. ``unpatch_diffusers()`` undoes every patch. Thread-safe; raises
    ImportError when diffusers cannot be imported.
    """
    return _DiffusersPatch()._apply()


def unpatch_diffusers():
    """Undoes every ``patch_diffusers()``: puts diffusers' own ``randn_tensor`` back exactly
    where it was replaced and removes the import hook. Does nothing if nothing is patched."""
    with _LOCK:
        _ACTIVE.clear()
        _uninstall()
