"""Brownian tree v1: Brownian motion that is the same on every device (docs/brownian-tree.md).

``BrownianTree`` is a virtual Brownian tree on a dyadic grid over ``[t0, t1]``: the value at a
grid point is reached from the root by Brownian-bridge bisection, and the normal vector of each
bisection node is read from noise stream v1 at a position fixed by the node (its heap number
times a per-node stride), so a value depends only on (seed, stream, size, dtype, t0, t1, tol)
and the grid point, never on the device, the query order or what was cached. The bisection
arithmetic is a fixed sequence of IEEE-rounded torch element-wise operations whose results do
not depend on fusion, so the CPU and every GPU give the same bits.

``BrownianTreeNoiseSampler`` and ``default_noise_sampler`` are drop-ins for the noise samplers
of diffusers' and k-diffusion's SDE samplers (DPM-Solver SDE, DPM++ 2M/3M SDE, ancestral).
"""

from __future__ import annotations

import math
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Callable

import torch

from . import _C
from ._api import _check_bytes, _device_arg, _fill
from ._generator import Generator, check_seed, check_shape, check_u64

__all__ = [
    "BrownianTree",
    "BrownianTreeNoiseSampler",
    "default_noise_sampler",
    "MAX_DEPTH",
    "SAMPLER_STREAM",
    "ANCESTRAL_STREAM",
]

MAX_DEPTH = 40  # grid of at most 2^40 cells
SAMPLER_STREAM = 0x62726F776E69616E  # b"brownian": BrownianTreeNoiseSampler's trees
ANCESTRAL_STREAM = 0x616E636573747261  # b"ancestra": default_noise_sampler's draws
DEFAULT_CACHE_BYTES = 64 << 20
_MIN_CACHE_NODES = 4
_U64 = 1 << 64
_KIND_NORMAL = _C.KIND_NORMAL
_TREE_DTYPES = {torch.float32: (_C.DT_FLOAT32, 1, 4), torch.float64: (_C.DT_FLOAT64, 2, 8)}


def _time_arg(value: Any, name: str) -> float:
    """A finite time given as a Python/NumPy number or a one-element tensor -> float."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{name}: expected a number or a one-element tensor, got shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}") from None
    if not math.isfinite(t):
        raise ValueError(f"{name}: expected a finite time, got {t}")
    return t


def _tree_dtype_arg(dtype: Any) -> torch.dtype:
    if dtype is None:
        dtype = torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype: expected a torch.dtype, got {type(dtype).__name__}")
    if dtype not in _TREE_DTYPES:
        raise ValueError(f"dtype: a Brownian tree is float32 or float64, not {dtype}")
    return dtype


def _round_to(dtype: torch.dtype, x: float) -> float:
    """x (binary64) rounded to nearest-even in dtype, as a Python float."""
    if dtype == torch.float32:
        try:
            return struct.unpack("<f", struct.pack("<f", x))[0]
        except OverflowError:  # beyond the float32 range: rounds to infinity
            return math.copysign(math.inf, x)
    return x


def tree_depth(t0: float, t1: float, tol: float) -> int:
    """The grid depth D: the smallest D >= 0 with (t1 - t0) * 2^-D <= tol, at most MAX_DEPTH."""
    width = t1 - t0
    depth = 0
    while depth < MAX_DEPTH and math.ldexp(width, -depth) > tol:
        depth += 1
    return depth


def node_id(m: int, depth: int) -> int:
    """Heap number of the grid point m (0 < m < 2^depth): level l = depth - v2(m) and odd
    j = m >> v2(m) give 2^(l-1) + (j - 1) / 2. The root W(t1) is node 0."""
    v = (m & -m).bit_length() - 1
    level = depth - v
    return (1 << (level - 1)) + ((m >> v) >> 1)


class BrownianTree:
    """Brownian motion W on ``[t0, t1]`` with ``W(t0) = 0``, reproducible on every device.

    ``tree(ta, tb)`` returns ``W(tb) - W(ta)`` (a tensor of ``size``, ``dtype`` on ``device``);
    ``tree(t)`` returns ``W(t)``. Times are snapped to a dyadic grid of ``2^D`` cells, D the
    smallest depth with a cell no wider than ``tol`` (at most ``MAX_DEPTH`` = 40), and a time
    outside ``[t0, t1]`` is clamped to it, silently. The result is a deterministic function of
    (seed, stream, size, dtype, t0, t1, tol) and the grid cells of ``ta`` and ``tb``: the same
    bits on the CPU and every GPU, in any query order, for repeated queries and from a fresh
    object. ``tree(tb, ta)`` is exactly ``-tree(ta, tb)``.

    The tree reads the whole of stream ``stream`` of ``seed`` (node k at positions from
    ``k * stride``); do not draw other noise from that stream. Node values are cached (least
    recently used first out, at most ``2 * (depth + 2)`` nodes). Between queries a tree keeps
    at most ``max(cache_bytes, 4 * node_bytes)`` of tensors (``cache_bytes`` default 64 MiB,
    ``node_bytes`` = size x itemsize): cached nodes, the storage kept for reuse and the zero
    node together; on a GPU also a column of ``depth + 1`` scale factors. A query needs up to
    ``depth + 2`` nodes more while it runs.
    Thread-safe; picklable and deep-copyable (a copy starts with empty caches and gives the same
    values). The layout is frozen as "Brownian tree v1" in docs/brownian-tree.md.
    """

    def __init__(
        self,
        t0: Any,
        t1: Any,
        size: Sequence[int],
        *,
        seed: int,
        stream: int = 0,
        dtype: torch.dtype | None = None,
        device: Any = None,
        tol: float = 1e-6,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        t0 = _time_arg(t0, "t0")
        t1 = _time_arg(t1, "t1")
        if not t0 < t1:
            raise ValueError(f"t0, t1: expected t0 < t1, got t0={t0!r}, t1={t1!r}")
        width = t1 - t0
        if not math.isfinite(width):
            raise ValueError(f"t0, t1: t1 - t0 overflows ({t0!r}, {t1!r})")
        if isinstance(tol, (bool, str, bytes)):
            raise TypeError(f"tol: expected a positive real number, got {type(tol).__name__}")
        try:
            tol = float(tol)
        except (TypeError, ValueError):
            raise TypeError(
                f"tol: expected a positive real number, got {type(tol).__name__}"
            ) from None
        if not (math.isfinite(tol) and tol > 0):
            raise ValueError(f"tol: expected a positive finite number, got {tol!r}")
        shape = check_shape(size, "size")
        dtype = _tree_dtype_arg(dtype)
        dev = _device_arg(device)
        self._seed = check_seed(seed, "seed")
        self._stream = check_u64(stream, "stream")
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int):
            raise TypeError(f"cache_bytes: expected an int, got {type(cache_bytes).__name__}")
        if cache_bytes < 0:
            raise ValueError(f"cache_bytes: expected a non-negative int, got {cache_bytes}")
        _check_bytes(shape, dtype, "size")
        code, words, itemsize = _TREE_DTYPES[dtype]
        depth = tree_depth(t0, t1, tol)
        numel = math.prod(shape)
        stride = -(-words * numel // 4) * 4  # positions per node, a whole number of blocks
        if stride << depth > _U64:
            raise ValueError(
                f"size: {tuple(shape)} of {dtype} is too large for a tree of depth {depth} "
                f"(tol={tol!r} over [{t0!r}, {t1!r}]): 2^{depth} nodes of {stride} positions "
                "exceed the 2^64 positions of a stream; use a larger tol or split the tensor"
            )
        self.t0, self.t1, self.tol = t0, t1, tol
        self.size = torch.Size(shape)
        self.dtype, self.device, self.depth = dtype, dev, depth
        self._code, self._numel, self._stride = code, numel, stride
        self._width = width
        self._cells = 1 << depth
        self._node_bytes = numel * itemsize
        # node-sized tensors kept between queries: the zero node, the cache and the pool of
        # storage for reuse together (the pool only fills what the cache leaves of the budget)
        self._budget = max(_MIN_CACHE_NODES, cache_bytes // max(1, self._node_bytes))
        # enough for the paths of the last few query points (more only costs fresh memory)
        self._capacity = min(self._budget - 1, 2 * (depth + 2))
        # scale of a level-l midpoint: sqrt((t1 - t0) * 2^-(l + 1)); of the root: sqrt(t1 - t0);
        # rounded to dtype here, so torch multiplies by exactly that value on every device
        self._scales = [
            _round_to(dtype, math.sqrt(width)),
            *(
                _round_to(dtype, math.sqrt(math.ldexp(width, -(level + 1))))
                for level in range(1, depth + 1)
            ),
        ]
        self._pool_size = depth + 2
        self._on_cpu = dev.type == "cpu"
        # nodes whose normals are drawn into one buffer and scaled by one multiplication: fewer
        # kernel launches on a GPU; on the CPU one node at a time keeps the work in cache
        self._batch = 1 if self._on_cpu else max(1, min(8, (16 << 20) // max(1, self._node_bytes)))
        self._reset()

    def _reset(self) -> None:
        """The caches and the lock: new for a new tree, a copy, or an unpickled tree."""
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._pool: list[torch.Tensor] = []  # storage of evicted nodes, reused
        self._zero: torch.Tensor | None = None
        self._scale_col: torch.Tensor | None = None
        self._threads = 1
        self._lock = threading.RLock()

    _TRANSIENT = ("_cache", "_pool", "_zero", "_scale_col", "_threads", "_lock")

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            return {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # ---------------------------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self._seed

    @property
    def stream(self) -> int:
        return self._stream

    def grid_index(self, t: Any) -> int:
        """The grid point of time t: round-half-even(((t - t0) / (t1 - t0)) * 2^D), clamped
        to [0, 2^D] (binary64, each operation rounded)."""
        return self._index(_time_arg(t, "t"))

    def _index(self, t: float) -> int:
        x = ((t - self.t0) / self._width) * self._cells
        if not x > 0:
            return 0
        if not x < self._cells:
            return self._cells
        return round(x)

    def __call__(self, ta: Any, tb: Any = None) -> torch.Tensor:
        """``W(tb) - W(ta)``; with one argument ``W(ta)`` (= ``W(ta) - W(t0)``)."""
        a = self._index(_time_arg(ta, "ta"))
        b = None if tb is None else self._index(_time_arg(tb, "tb"))
        with self._lock:
            self._threads = torch.get_num_threads()
            try:
                if b is None:
                    return self._point(a).clone()
                return torch.sub(self._point(b), self._point(a))
            finally:
                self._evict()

    # ---------------------------------------------------------------------------------------
    # Node values live in self._cache (grid index -> tensor), which never hands a tensor out:
    # queries return new tensors, so an evicted node's storage can be reused for a new node.
    def _zeros(self) -> torch.Tensor:
        if self._zero is None:
            self._zero = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        return self._zero

    def _new_node(self) -> torch.Tensor:
        return (
            self._pool.pop()
            if self._pool
            else torch.empty(self.size, dtype=self.dtype, device=self.device)
        )

    def _normals(self, out: torch.Tensor, node: int) -> None:
        """Writes node `node`'s normal vector Z (stream v1 at node * stride) into `out`."""
        if not self._numel:
            return
        offset = (node * self._stride) % _U64
        if self._on_cpu:  # the common case, straight to the kernel
            _C.fill_cpu(
                out.data_ptr(),
                self._numel,
                _KIND_NORMAL,
                self._code,
                self._seed,
                self._stream,
                offset,
                self._threads,
            )
        else:
            _fill(
                out,
                self._numel,
                self.device,
                _KIND_NORMAL,
                self._code,
                self._seed,
                self._stream,
                offset,
            )

    def _root(self) -> torch.Tensor:
        """W(t1) = sqrt(t1 - t0) * Z_0."""
        w = self._new_node()
        self._normals(w, 0)
        w.mul_(self._scales[0])
        self._cache[self._cells] = w
        return w

    def _scale_column(self) -> torch.Tensor:
        col = self._scale_col
        if col is None:
            col = torch.tensor(self._scales, dtype=self.dtype).unsqueeze(1).to(self.device)
            self._scale_col = col
        return col

    def _chain(
        self, chain: list[tuple[int, int, int, int]], values: dict[int, torch.Tensor]
    ) -> None:
        """Computes W at consecutive nodes of one bisection path, (mid, lo, hi, level) with
        levels increasing by one: W(mid) = (W(lo) + W(hi)) * 0.5 + scale(level) * Z. With
        self._batch > 1 the normals of up to that many nodes are drawn into one buffer and
        scaled by one multiplication (the same bits)."""
        tmp = self._new_node()  # W(lo) + W(hi); back to the pool at the end
        step = self._batch
        depth = self.depth
        buf = None
        for start in range(0, len(chain), step):
            part = chain[start : start + step]
            k = len(part)
            if k == 1:
                sz = self._new_node()  # scale * Z straight into the node's storage
                self._normals(sz, node_id(part[0][0], depth))
                sz.mul_(self._scales[part[0][3]])
                rows = [sz]
            else:
                if buf is None:
                    buf = torch.empty((step, self._numel), dtype=self.dtype, device=self.device)
                for row, (mid, _, _, _) in enumerate(part):
                    self._normals(buf[row], node_id(mid, depth))
                level0 = part[0][3]
                buf[:k].mul_(self._scale_column()[level0 : level0 + k])
                rows = [buf[row].view(self.size) for row in range(k)]
            for (mid, lo, hi, _), sz in zip(part, rows):
                w = sz if k == 1 else self._new_node()
                torch.add(values[lo], values[hi], out=tmp)
                # + (W(lo) + W(hi)) * 0.5: the halving is exact, so torch may fuse it into
                # this addition (add with alpha) without changing a bit
                torch.add(sz, tmp, alpha=0.5, out=w)
                values[mid] = w
                self._cache[mid] = w
        self._pool.append(tmp)

    def _point(self, m: int) -> torch.Tensor:
        """W at grid point m (0 <= m <= 2^D), from the root by bisection; a cached tensor."""
        if m == 0:
            return self._zeros()
        cache = self._cache
        w = cache.get(m)
        if w is not None:  # a point queried before (or a node on the way to one)
            cache.move_to_end(m)
            return w
        cells = self._cells
        root = cache.get(cells)
        if root is None:
            root = self._root()
        values = {0: self._zeros(), cells: root}
        touched = [cells]
        lo, hi, level = 0, cells, 1
        chain: list[tuple[int, int, int, int]] = []  # the path below the deepest cached node
        while m != hi:
            mid = (lo + hi) >> 1
            touched.append(mid)
            cached = None if chain else cache.get(mid)
            if cached is None:
                chain.append((mid, lo, hi, level))
            else:
                values[mid] = cached
            if m == mid:
                break
            if m < mid:
                hi = mid
            else:
                lo = mid
            level += 1
        if chain:
            self._chain(chain, values)
        # mark the path used, shallow nodes last and the queried point after them: eviction
        # (least recently used first) takes the deep nodes in between before their ancestors
        for key in reversed(touched):
            cache.move_to_end(key)
        cache.move_to_end(m)
        return values[m]

    def _evict(self) -> None:
        cache, pool = self._cache, self._pool
        while len(cache) > self._capacity:
            pool.append(cache.popitem(last=False)[1])
        # what the budget leaves after the zero node and the cache (at most depth + 2 nodes,
        # enough for one query's path and its work buffer)
        room = self._budget - (self._zero is not None) - len(cache)
        del pool[max(0, min(room, self._pool_size)) :]

    def clear_cache(self) -> None:
        """Drops the cached node values (results do not change)."""
        with self._lock:
            self._cache.clear()
            self._pool.clear()
            self._zero = self._scale_col = None

    def __repr__(self) -> str:
        return (
            f"fastrand.BrownianTree(t0={self.t0!r}, t1={self.t1!r}, size={tuple(self.size)}, "
            f"seed={self._seed}, stream={self._stream}, dtype={self.dtype}, "
            f"device={self.device}, tol={self.tol!r}, depth={self.depth})"
        )


# --------------------------------------------------------------------------------------------
# noise samplers (diffusers / k-diffusion call convention: sampler(sigma, sigma_next))
def _tensor_arg(x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"x: expected a floating-point tensor, got {x.dtype}")
    if x.layout != torch.strided:
        raise ValueError(f"x: has layout {x.layout}; only strided tensors are supported")
    return x


def _is_seed_sequence(seed: Any) -> bool:
    """Whether seed gives one seed per batch row: a list, tuple, range or other sequence, or a
    NumPy array or tensor with dimensions (as diffusers' and k-diffusion's trees, which take
    anything with len(seed) == batch); not a str or bytes."""
    if isinstance(seed, (str, bytes, bytearray)):
        return False
    if isinstance(seed, (Sequence, torch.Tensor)) or type(seed).__name__ == "ndarray":
        return getattr(seed, "ndim", 1) > 0
    return False


def _seeds_arg(seed: Any, x: torch.Tensor) -> tuple[list[int], bool]:
    """(seeds, batched): an int gives one seed over x; a sequence one seed per batch row."""
    if seed is None:  # as diffusers and k-diffusion do: one draw from torch's default generator
        seed = int(torch.randint(0, 2**63 - 1, []).item())
    if _is_seed_sequence(seed):
        if x.dim() == 0 or len(seed) != x.shape[0]:
            batch = "no batch dimension" if x.dim() == 0 else f"a batch of {x.shape[0]}"
            raise ValueError(f"seed: a sequence of {len(seed)} seeds for x with {batch}")
        return [check_seed(s, f"seed[{i}]") for i, s in enumerate(seed)], True
    return [check_seed(seed, "seed")], False


def _identity(sigma: Any) -> Any:
    return sigma


class BrownianTreeNoiseSampler:
    """Noise for SDE samplers from Brownian trees: ``sampler(sigma, sigma_next)`` returns
    ``(W(t(sigma_next)) - W(t(sigma))) / sqrt(|t(sigma_next) - t(sigma)|)``, a standard normal
    tensor shaped like ``x`` (its dtype and device), with ``t = transform(sigma)``.

    The call convention and semantics of diffusers' and k-diffusion's
    ``BrownianTreeNoiseSampler``: the tree spans ``[transform(sigma_min), transform(sigma_max)]``
    (in either order; a decreasing transform negates the noise, as there), ``tol=1e-6``, and
    sigmas outside the range are clamped. ``sigma_min == sigma_max`` (a 1-step schedule) is a
    degenerate interval, as there: every sigma clamps to the one point, so every call returns
    zeros (it builds no tree). ``seed``: an int gives one tree over ``x``; a sequence of
    ints (list, tuple, range, NumPy integer array) one tree per batch row (row ``i`` depends only
    on ``seed[i]``, not on the batch size);
    None takes one draw from torch's default generator, as diffusers does. Trees use stream
    ``SAMPLER_STREAM`` of each seed, so they are independent of ``fastrand.Generator(seed)``'s
    stream-0 draws (e.g. the initial latents). ``cpu=True`` computes the trees on the CPU and
    moves the noise to ``x``'s device: the same bits either way. float16 and bfloat16 ``x`` get
    the float32 noise rounded; float64 ``x`` a float64 tree (other noise than float32's).
    Picklable (with a picklable ``transform``) and deep-copyable; a copy continues exactly.
    """

    def __init__(
        self,
        x: torch.Tensor,
        sigma_min: Any,
        sigma_max: Any,
        seed: int | Sequence[int] | None = None,
        transform: Callable[[Any], Any] = _identity,
        cpu: bool = False,
    ) -> None:
        x = _tensor_arg(x)
        if not callable(transform):
            raise TypeError(f"transform: expected a callable, got {type(transform).__name__}")
        self.transform = transform
        t0 = _time_arg(transform(torch.as_tensor(sigma_min)), "sigma_min")
        t1 = _time_arg(transform(torch.as_tensor(sigma_max)), "sigma_max")
        self.sign = 1.0 if t0 < t1 else -1.0
        t0, t1 = min(t0, t1), max(t0, t1)
        self.shape = tuple(x.shape)
        self.dtype = x.dtype
        self.device = x.device
        self.cpu = bool(cpu)
        self.tree_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        tree_device = torch.device("cpu") if self.cpu else x.device
        batched = _is_seed_sequence(seed)

        def tree(s: int) -> BrownianTree:
            return BrownianTree(
                t0,
                t1,
                self.shape[1:] if batched else self.shape,
                seed=s,
                stream=SAMPLER_STREAM,
                dtype=self.tree_dtype,
                device=tree_device,
                tol=1e-6,
            )

        degenerate = t0 == t1  # nothing to draw: no tree
        if seed is None and not degenerate:
            tree(0)  # refuse a bad x before drawing the seed from torch's default generator
        self.seeds, self.batched = _seeds_arg(seed, x)
        self.trees = [] if degenerate else [tree(s) for s in self.seeds]

    def __call__(self, sigma: Any, sigma_next: Any) -> torch.Tensor:
        ta = _time_arg(self.transform(torch.as_tensor(sigma)), "sigma")
        tb = _time_arg(self.transform(torch.as_tensor(sigma_next)), "sigma_next")
        dt = abs(tb - ta)
        if dt == 0:
            raise ValueError(f"sigma, sigma_next: equal times ({ta!r}) have no noise increment")
        trees = self.trees
        if not trees:  # a degenerate interval (zero increments) or an empty batch
            return torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        # one rounding: the increment times sign / sqrt(dt), a binary64 value rounded to dtype
        factor = _round_to(self.tree_dtype, self.sign / math.sqrt(dt))
        if self.batched:
            first = trees[0]
            out = torch.empty(self.shape, dtype=first.dtype, device=first.device)
            for i, tree in enumerate(trees):
                torch.mul(tree(ta, tb), factor, out=out[i])
        else:
            out = trees[0](ta, tb).mul_(factor)
        return out.to(device=self.device, dtype=self.dtype)


def default_noise_sampler(
    x: torch.Tensor, seed: int | Sequence[int] | None = None
) -> Callable[..., torch.Tensor]:
    """Noise for ancestral samplers: a callable ``(sigma, sigma_next) -> tensor`` that returns
    fresh standard normal noise shaped like ``x`` on every call (the arguments are ignored),
    drawn from ``fastrand.Generator(seed, stream=ANCESTRAL_STREAM)``: the same sequence on every
    device. ``seed``: an int, a sequence of ints as for ``BrownianTreeNoiseSampler`` (one
    generator per batch row, so a row does not depend on the batch size) or None (one draw from
    torch's default generator).
    """
    x = _tensor_arg(x)
    seeds, batched = _seeds_arg(seed, x)
    gens = [Generator(s, stream=ANCESTRAL_STREAM) for s in seeds]
    generator: Any = gens if batched else gens[0]
    shape, dtype, device = tuple(x.shape), x.dtype, x.device
    from ._api import randn_tensor

    def sample(sigma: Any = None, sigma_next: Any = None) -> torch.Tensor:
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)

    return sample
