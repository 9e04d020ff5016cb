"""CudaGraphGenerator: a generator whose (seed, stream, offset) live on the GPU.

Draws from it launch a kernel that reads the state when it runs and a one-thread kernel that
advances the offset, both on the current stream. Captured into a CUDA graph, every replay
therefore draws the *next* noise of the stream, still equal to the CPU stream at the
corresponding offsets:

    g = fastrand.CudaGraphGenerator(0, device="cuda")
    static = torch.empty(shape, device="cuda")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static.copy_(fastrand.randn_tensor(shape, generator=g, device="cuda"))
    graph.replay()   # noise at offsets [n, 2n) (capture itself does not run the kernels...)

(Capture records the launches without running them; the warm-up/eager draws before capture do
run and advance the state.) Reading the state (get_offset(), get_state()) synchronises with
the GPU; draws do not. Use one CUDA stream per generator: draws on different streams are not
ordered with respect to each other.
"""

from __future__ import annotations

import threading

import torch

from ._generator import U64, check_seed, check_u64


def _to_i64(v):
    return v - U64 if v >= (1 << 63) else v


class CudaGraphGenerator:
    """fastrand generator with its state in a device tensor (int64[3]: seed, stream, offset as
    two's-complement uint64), for CUDA-graph capture and torch.compile(mode="reduce-overhead")."""

    __slots__ = ("state", "device", "_lock", "__weakref__")

    def __init__(self, seed, device="cuda", *, offset=0, stream=0):
        dev = torch.device(device) if not isinstance(device, torch.device) else device
        if dev.type != "cuda":
            raise ValueError(f"device: a CudaGraphGenerator lives on a CUDA device, not {dev}")
        if not torch.cuda.is_available():
            raise ValueError("device: CUDA is not available to torch")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self.device = dev
        self._lock = threading.Lock()
        vals = [check_seed(seed), check_u64(stream, "stream"), check_u64(offset, "offset")]
        self.state = torch.tensor([_to_i64(v) for v in vals], dtype=torch.int64, device=dev)

    def _read(self):
        return [int(v) % U64 for v in self.state.tolist()]  # synchronises

    def initial_seed(self):
        return self._read()[0]

    @property
    def stream(self):
        return self._read()[1]

    def get_offset(self):
        return self._read()[2]

    def set_offset(self, offset):
        o = check_u64(offset, "offset")
        self.state[2].fill_(_to_i64(o))
        return self

    def manual_seed(self, seed):
        s = check_seed(seed)
        self.state[0].fill_(_to_i64(s))
        self.state[2].fill_(0)
        return self

    def get_state(self):
        return self.state.clone()

    def set_state(self, state):
        if not isinstance(state, torch.Tensor) or state.dtype != torch.int64 or state.shape != (3,):
            raise ValueError("state: expected an int64 tensor of 3 values from get_state()")
        self.state.copy_(state)
        return self

    def __repr__(self):
        return f"fastrand.CudaGraphGenerator(device={self.device})"


def reserve_on_device(g, out, n, kind, code):
    """Fills `out` (n values, on g.device) from the device state and advances it."""
    from . import _cuda

    if out.device != g.device:
        raise ValueError(
            f"device: a CudaGraphGenerator on {g.device} draws only on that device, "
            f"not {out.device}"
        )
    index = g.device.index
    if not _cuda.native(index):
        raise ValueError(
            "generator: CudaGraphGenerator needs a CUDA kernel (AOT or NVRTC), and "
            f"{g.device} has none: {_cuda.copy_reason(index)}"
        )
    _cuda.fill_state(out, n, kind, code, g.state)
    return out
