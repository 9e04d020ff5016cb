"""CudaGraphGenerator: a generator whose (seed, stream, offset) live on the GPU.

Draws from it launch a kernel that reads the state when it runs and a one-thread kernel that
advances the offset, both on the current stream. Captured into a CUDA graph, every replay
therefore draws the *next* noise of the stream, still equal to the CPU stream at the
corresponding offsets:

    g = fastrand.CudaGraphGenerator(0, device="cuda")
    fastrand.randn_tensor(shape, generator=g, device="cuda")  # warm-up: every (kind, dtype)
    g.set_offset(0)                                            # the graph will draw, eagerly
    static = torch.empty(shape, device="cuda")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static.copy_(fastrand.randn_tensor(shape, generator=g, device="cuda"))
    graph.replay()   # offsets [0, n); the next replay [n, 2n)

What holds:
- Draws never synchronise. Capture records the launches without running them; eager draws
  (the warm-up) run and advance the state.
- Every host-side access to the state (initial_seed(), stream, get_offset(), set_offset(),
  manual_seed(), get_state(), set_state(), clone(), copy.copy / copy.deepcopy / pickle)
  synchronises the generator's device: it sees every draw and replay queued before it, on any
  stream, and a write is complete on the device before the call returns. These calls are
  refused (RuntimeError) while the current stream is capturing.
- Draws queued on different streams without ordering between them (events, wait_stream) are not
  ordered with respect to each other: use one stream per generator at a time.
- A graph that captured a draw keeps the state tensor alive for as long as the graph object
  lives, so deleting the generator cannot make a replay write into freed memory.
- A copy (clone(), copy.copy, copy.deepcopy, pickle) is an independent generator with its own
  state tensor, at the same (seed, stream, offset) on the same device.
"""

from __future__ import annotations

import threading
from typing import SupportsIndex

import torch

from ._generator import U64, check_seed, check_u64


def _to_i64(v: int) -> int:
    return v - U64 if v >= (1 << 63) else v


# States captured by graphs that cannot be identified (a capture not made by torch.cuda.graph /
# torch.cuda.CUDAGraph, or a torch without CUDAGraph.get_currently_capturing_graph): kept for the
# life of the process, since such a graph may replay at any time.
_KEEP_FOREVER: list[torch.Tensor] = []
_KEEP_LOCK = threading.Lock()


def _hold(held: list[torch.Tensor], state: torch.Tensor) -> None:
    if not any(s is state for s in held):
        held.append(state)


def keep_for_capture(state: torch.Tensor) -> None:
    """If the current stream is capturing a CUDA graph, ties `state` to that graph's lifetime
    (the graph holds its raw address), as torch.cuda.CUDAGraph does for torch's generators."""
    try:
        if not torch.cuda.is_current_stream_capturing():
            return
    except RuntimeError:  # a torch built without CUDA: nothing can be capturing
        return
    with _KEEP_LOCK:
        try:
            graph = torch.cuda.CUDAGraph.get_currently_capturing_graph()
            held = graph.__dict__.setdefault("_fastrand_states", [])
        except (AttributeError, RuntimeError, TypeError):
            held = _KEEP_FOREVER
        _hold(held, state)


class CudaGraphGenerator:
    """fastrand generator with its state in a device tensor (int64[3]: seed, stream, offset as
    two's-complement uint64), for CUDA-graph capture and torch.compile(mode="reduce-overhead").

    The state's address is marked static for torch.compile (torch._dynamo.mark_static_address),
    so the CUDA graphs of mode="reduce-overhead" may mutate it. See the module docstring for
    what synchronises and what a copy is."""

    __slots__ = ("state", "device", "_lock", "__weakref__")

    state: torch.Tensor
    device: torch.device

    def __init__(
        self,
        seed: SupportsIndex,
        device: torch.device | str | int = "cuda",
        *,
        offset: SupportsIndex = 0,
        stream: SupportsIndex = 0,
    ) -> None:
        dev = torch.device(device) if not isinstance(device, torch.device) else device
        if dev.type != "cuda":
            raise ValueError(f"device: a CudaGraphGenerator lives on a CUDA device, not {dev}")
        if not torch.cuda.is_available():
            raise ValueError("device: CUDA is not available to torch")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device: {dev} does not exist ({torch.cuda.device_count()} CUDA devices)"
            )
        vals = [check_seed(seed), check_u64(stream, "stream"), check_u64(offset, "offset")]
        state = torch.tensor([_to_i64(v) for v in vals], dtype=torch.int64, device=dev)
        self._init(state, dev)

    def _init(self, state: torch.Tensor, device: torch.device) -> None:
        self.state = state
        self.device = device
        self._lock = threading.Lock()
        torch._dynamo.mark_static_address(state)

    @classmethod
    def _wrap(cls, state: torch.Tensor, device: torch.device) -> CudaGraphGenerator:
        """A generator around an existing int64[3] state tensor (no copy, no checks)."""
        g = cls.__new__(cls)
        g._init(state, device)
        return g

    # host-side access: synchronised with every stream of the device ---------------------------
    def _sync(self) -> None:
        if self.state.device.type == "cuda":
            if torch.cuda.is_current_stream_capturing():
                raise RuntimeError(
                    "CudaGraphGenerator: the state cannot be read or set during CUDA graph "
                    "capture (only draws can be captured)"
                )
            torch.cuda.synchronize(self.state.device)

    def _read(self) -> list[int]:
        with self._lock:
            self._sync()
            return [int(v) % U64 for v in self.state.tolist()]

    def _write(self, values: list[tuple[int, int]]) -> None:
        """Writes (index, uint64 value) pairs into the state, ordered after every queued draw
        and complete before returning."""
        with self._lock:
            self._sync()
            new = self.state.cpu()
            for i, v in values:
                new[i] = _to_i64(v)
            self.state.copy_(new)
            self._sync()

    def initial_seed(self) -> int:
        return self._read()[0]

    @property
    def stream(self) -> int:
        return self._read()[1]

    def get_offset(self) -> int:
        return self._read()[2]

    def set_offset(self, offset: SupportsIndex) -> CudaGraphGenerator:
        self._write([(2, check_u64(offset, "offset"))])
        return self

    def manual_seed(self, seed: SupportsIndex) -> CudaGraphGenerator:
        """Sets the seed and restarts the sequence (offset 0; the stream is kept)."""
        self._write([(0, check_seed(seed)), (2, 0)])
        return self

    def get_state(self) -> torch.Tensor:
        """A copy of the state (int64[3] on the generator's device)."""
        with self._lock:
            self._sync()
            copy = self.state.clone()
            self._sync()
            return copy

    def set_state(self, state: torch.Tensor) -> CudaGraphGenerator:
        """Restores a state from get_state() (an int64 tensor of 3 values, any device)."""
        if not isinstance(state, torch.Tensor):
            raise TypeError(
                f"state: expected an int64 tensor of 3 values from get_state(), "
                f"got {type(state).__name__}"
            )
        if state.dtype != torch.int64 or tuple(state.shape) != (3,):
            raise ValueError(
                "state: expected an int64 tensor of 3 values from get_state(), got "
                f"{state.dtype} of shape {tuple(state.shape)}"
            )
        if state.device.type == "cuda" and state.device != self.state.device:
            torch.cuda.synchronize(state.device)  # (the generator's device is synchronised next)
        with self._lock:
            self._sync()
            values = [int(v) % U64 for v in state.tolist()]
        self._write(list(enumerate(values)))
        return self

    # copies -------------------------------------------------------------------------------------
    def clone(self) -> CudaGraphGenerator:
        """An independent generator (its own state tensor) at the same (seed, stream, offset)
        on the same device."""
        with self._lock:
            self._sync()
            state = self.state.clone()
            self._sync()
        return type(self)._wrap(state, self.device)

    def __copy__(self) -> CudaGraphGenerator:
        return self.clone()

    def __deepcopy__(self, memo) -> CudaGraphGenerator:
        return self.clone()

    def __reduce__(self):
        seed, stream, offset = self._read()
        return (_restore, (seed, stream, offset, str(self.device)))

    def __repr__(self) -> str:
        return f"fastrand.CudaGraphGenerator(device={self.device})"


def _restore(seed: int, stream: int, offset: int, device: str) -> CudaGraphGenerator:
    return CudaGraphGenerator(seed, device, offset=offset, stream=stream)
