"""The handle of a counted patch (``patch_diffusers()``, ``patch_torch()``): already in force, a
context manager, undoable.

The handle's own patch (taken when it is made) belongs to the first ``with`` block entered on it
where that patch can be claimed, which releases it on exit. Any further ``with`` on the same
handle, nested or later, takes a patch of its own and releases only that one on exit, so blocks
nest and each block's exit leaves the patches of other handles and outer blocks in force.
``undo()`` releases everything the handle holds (a second call does nothing).

Each patch supplies its token operations as static methods: ``_acquire()`` (a new token in
force), ``_release(tokens)``, ``_in_force(token)``, ``_claimable(token)`` (whether a block
entered here may take over the handle's token), and ``_LOCK``, an RLock that guards its state;
``_RELEASE_UNDER_LOCK`` says whether ``_release`` is called with it held.
"""

from __future__ import annotations

from typing import Any


class PatchHandle:
    __slots__ = ("_token", "_claimed", "_blocks", "__weakref__")

    _WHAT = "patch"  # for repr
    _RELEASE_UNDER_LOCK = False
    _LOCK: Any

    @staticmethod
    def _acquire() -> Any:
        raise NotImplementedError

    @staticmethod
    def _release(tokens: list[Any]) -> None:
        raise NotImplementedError

    @staticmethod
    def _in_force(token: Any) -> bool:
        raise NotImplementedError

    @classmethod
    def _claimable(cls, token: Any) -> bool:
        return cls._in_force(token)

    def __init__(self) -> None:
        self._token: Any = None  # the patch the patch function put in force for this handle
        self._claimed = False  # whether a with block owns self._token
        self._blocks: list[Any] = []  # the token of each open with block, innermost last

    def _apply(self):
        self._token = self._acquire()
        self._claimed = False
        return self

    @property
    def active(self) -> bool:
        """Whether this handle (or a block entered on it) still holds a patch in force."""
        with self._LOCK:
            return any(t is not None and self._in_force(t) for t in [self._token, *self._blocks])

    def undo(self) -> None:
        """Releases this handle's patches; the patched library is restored once no other patch
        is in force."""
        with self._LOCK:
            tokens = [self._token, *self._blocks]
            self._token = None
            if self._RELEASE_UNDER_LOCK:
                self._release(tokens)
        if not self._RELEASE_UNDER_LOCK:
            self._release(tokens)

    def __enter__(self):
        with self._LOCK:
            token = self._token
            if token is not None and not self._claimed and self._claimable(token):
                self._claimed = True
                self._blocks.append(token)
                return self
        token = self._acquire()  # a nested or later block, or an undone handle: its own patch
        with self._LOCK:
            self._blocks.append(token)
        return self

    def __exit__(self, exc_type, exc, tb):
        with self._LOCK:
            token = self._blocks.pop() if self._blocks else None
            if token is not None and token is self._token:
                self._token = None
                self._claimed = False
            if self._RELEASE_UNDER_LOCK:
                self._release([token])
        if not self._RELEASE_UNDER_LOCK:
            self._release([token])
        return False

    def __repr__(self):
        return f"<fastrand {self._WHAT}, {'active' if self.active else 'undone'}>"
