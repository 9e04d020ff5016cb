// CUDA backend: a thin grid-stride loop around the shared stream header. Each thread computes
// whole Philox blocks chosen by their position in the request; which thread computes a block
// never changes what the block holds, so results do not depend on the grid or the GPU.
#include <cuda_runtime.h>

#include <string>
#include <type_traits>

#include "backend.h"
#include "fastrand_stream.h"
#include "math_probe.h"

#ifndef FASTRAND_CUDA_ARCHS
#define FASTRAND_CUDA_ARCHS "unknown"
#endif

namespace fastrand {
namespace {
using namespace v1;

constexpr int THREADS = 256;

// Stores block j's values with a single vector store: element j of the output seen as an array
// of vectors (aligned by the caller).
template <class T, int P>
struct BlockStore;
template <>
struct BlockStore<float, 4> {
  template <class Idx>
  __device__ static void put(float* out, Idx j, const float* v) {
    reinterpret_cast<float4*>(out)[j] = make_float4(v[0], v[1], v[2], v[3]);
  }
};
template <>
struct BlockStore<uint16_t, 4> {
  template <class Idx>
  __device__ static void put(uint16_t* out, Idx j, const uint16_t* v) {
    reinterpret_cast<uint2*>(out)[j] = make_uint2(uint32_t(v[0]) | (uint32_t(v[1]) << 16),
                                                  uint32_t(v[2]) | (uint32_t(v[3]) << 16));
  }
};
template <>
struct BlockStore<uint32_t, 4> {
  template <class Idx>
  __device__ static void put(uint32_t* out, Idx j, const uint32_t* v) {
    reinterpret_cast<uint4*>(out)[j] = make_uint4(v[0], v[1], v[2], v[3]);
  }
};
template <>
struct BlockStore<double, 2> {
  template <class Idx>
  __device__ static void put(double* out, Idx j, const double* v) {
    reinterpret_cast<double2*>(out)[j] = make_double2(v[0], v[1]);
  }
};

// The counter of block b_first + j. With 32-bit indices the launch guarantees that the low word
// does not carry (lo32(b_first) + nblocks <= 2^32), so the high word is the same for the whole
// launch and Philox's first rounds partly fold into per-launch constants.
__device__ __forceinline__ Words4 block_counter(uint64_t b_first, uint32_t j, uint32_t s_lo,
                                                uint32_t s_hi) {
  return Words4{uint32_t(b_first) + j, uint32_t(b_first >> 32) & uint32_t(BLOCK_MASK >> 32), s_lo,
                s_hi};
}
__device__ __forceinline__ Words4 block_counter(uint64_t b_first, uint64_t j, uint32_t s_lo,
                                                uint32_t s_hi) {
  const uint64_t b = (b_first + j) & BLOCK_MASK;
  return Words4{uint32_t(b), uint32_t(b >> 32), s_lo, s_hi};
}

// Slot s of the request is position start - (start & 3) + S * s; value i is slot head + i.
// Idx is uint32_t when every slot index fits in 32 bits (cheaper index math), else uint64_t.
// Blocks [0, nvec) are whole and aligned (the request starts at a block boundary and the output
// is aligned for vector stores; else nvec = 0) and get one unconditional vector store each.
// With UNROLL > 1 a thread computes UNROLL blocks per step, one grid width apart (each store
// instruction stays coalesced across the warp), over whole steps only. The rest (a partial
// last step, a partial tail block, or every block of an unaligned request) goes through a
// second loop that checks each block.
template <class Op, class Idx, int UNROLL, int NT>
__device__ __forceinline__ void fill_blocks(typename Op::T* __restrict__ out, Idx n, Idx head,
                                            uint64_t b_first, uint32_t s_lo, uint32_t s_hi,
                                            const RoundKeys& rk, Idx nblocks, Idx nvec) {
  using T = typename Op::T;
  constexpr int P = Op::PER_BLOCK;
  const Idx tid = Idx(blockIdx.x) * NT + threadIdx.x;
  const Idx threads = Idx(gridDim.x) * NT;
  Idx rest = nvec;  // first block of the checked loop
  if constexpr (UNROLL == 1) {
    for (Idx j = tid; j < nvec; j += threads) {
      T v[P];
      Op::eval(philox_rk(block_counter(b_first, j, s_lo, s_hi), rk), v);
      BlockStore<T, P>::put(out, j, v);
    }
  } else {
    const Idx step = threads * UNROLL;
    rest = nvec - nvec % step;
    for (Idx j0 = tid; j0 < rest; j0 += step) {
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        const Idx j = j0 + Idx(u) * threads;
        T v[P];
        Op::eval(philox_rk(block_counter(b_first, j, s_lo, s_hi), rk), v);
        BlockStore<T, P>::put(out, j, v);
      }
    }
  }
  for (Idx j = rest + tid; j < nblocks; j += threads) {
    T v[P];
    Op::eval(philox_rk(block_counter(b_first, j, s_lo, s_hi), rk), v);
    if (j < nvec) {
      BlockStore<T, P>::put(out, j, v);
      continue;
    }
#pragma unroll
    for (int e = 0; e < P; ++e) {
      const Idx s = j * P + e;
      if (s >= head && s - head < n) out[s - head] = v[e];
    }
  }
}

template <class Op, class Idx, int UNROLL, int NT>
__global__ void __launch_bounds__(NT)
    fill_kernel(typename Op::T* __restrict__ out, uint64_t n, uint64_t start, uint64_t stream,
                const __grid_constant__ RoundKeys rk, uint64_t nblocks, uint64_t nvec) {
  // The round keys are a kernel parameter: Philox's xors read them straight from the constant
  // bank instead of recomputing the key schedule in every iteration.
  constexpr uint64_t S = 4 / Op::PER_BLOCK;
  fill_blocks<Op, Idx, UNROLL, NT>(out, Idx(n), Idx((start & 3u) / S), start >> 2, uint32_t(stream),
                                   uint32_t(stream >> 32), rk, Idx(nblocks), Idx(nvec));
}

__global__ void probe_kernel(int which, float* out, uint64_t first, uint64_t count) {
  const uint64_t step = uint64_t(gridDim.x) * blockDim.x;
  for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += step)
    probe_eval(which, out, i, first);
}

// CUDA-graph mode: (seed, stream, offset) live in device memory (uint64 state[3]); the fill
// reads them when it runs and a one-thread kernel queued after it advances the offset, so each
// replay of a captured graph draws the next noise of the stream. Simple grid-stride shape: the
// round keys come from the state, not from a launch parameter.
template <class Op>
__global__ void __launch_bounds__(THREADS)
    fill_state_kernel(typename Op::T* __restrict__ out, uint64_t n,
                      const uint64_t* __restrict__ state, bool aligned) {
  constexpr int P = Op::PER_BLOCK;
  constexpr uint64_t S = 4 / P;
  const uint64_t seed = state[0], stream = state[1];
  const uint64_t start = first_position(state[2], P);
  const uint64_t head = (start & 3u) / S;
  const uint64_t nblocks = (head + n + P - 1) / P;
  const uint64_t nvec = (aligned && head == 0) ? n / P : 0;
  fill_blocks<Op, uint64_t, 1, THREADS>(out, n, head, start >> 2, uint32_t(stream),
                                        uint32_t(stream >> 32), make_round_keys(seed), nblocks,
                                        nvec);
}

__global__ void advance_state_kernel(uint64_t* state, uint64_t n, int per_block) {
  state[2] = next_offset(state[2], n, per_block);
}

int sm_count(int device) {
  static int cached[64] = {0};
  if (device >= 0 && device < 64 && cached[device] > 0) return cached[device];
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      sms <= 0)
    sms = 80;
  if (device >= 0 && device < 64) cached[device] = sms;
  return sms;
}

// Selects `device` for the lifetime of the guard and restores the previous one.
struct DeviceGuard {
  int prev = -1;
  cudaError_t err = cudaSuccess;
  explicit DeviceGuard(int device) {
    err = cudaGetDevice(&prev);
    if (err == cudaSuccess && prev != device) err = cudaSetDevice(device);
    // A failed call leaves its error as the runtime's "last error"; clear it, so the launch
    // check below reports only the launch. (This static runtime is fastrand's own: torch's
    // error state is separate.)
    if (err != cudaSuccess) cudaGetLastError();
  }
  ~DeviceGuard() {
    int cur = -1;
    if (prev >= 0 && cudaGetDevice(&cur) == cudaSuccess && cur != prev) cudaSetDevice(prev);
  }
};

// Launch shapes. Every variant computes the same blocks with the same code, so all give the
// same bits; they differ only in how work is spread. Variant 0 is the default; the others exist
// for the GPU benchmark (fastrand._C.cuda_set_variant) and are tested for identity.
//   0: 32-bit indices where they fit, 1 block per thread step, grid capped at 16 CTAs per SM
//      (large float32/16 normals: as 7, see below)
//   1: 64-bit indices, 1 block per thread step, grid capped at 16 CTAs per SM
//   2: 32-bit indices where they fit, 1 block per thread step, grid capped at 8 CTAs per SM
//   3: 32-bit indices where they fit, 2 blocks per thread step, grid capped at 8 CTAs per SM
//   4: as 0 with 128-thread CTAs, grid capped at 32 CTAs per SM
//   5: as 0 with 512-thread CTAs, grid capped at 8 CTAs per SM
//   6: as 0 with one Philox block per thread and no grid cap (no loop)
//   7: 32-bit indices where they fit, 2 blocks per thread step, grid capped at 16 CTAs per SM
//   8: 32-bit indices where they fit, 4 blocks per thread step, grid capped at 8 CTAs per SM
// The default (0) switches to variant 7's shape for float32/16 normals of at least 8 whole
// 2-block grid steps: on an H200 that was 1.44-1.45x torch.randn at 2^26 and 2^28 elements
// against 1.40-1.41x with one block per step; smaller draws keep one block per step (a full
// grid matters more there).
constexpr int N_VARIANTS = 9;
template <class Op>
constexpr bool kLargeTwoPerStep =
    std::is_same<Op, NormalF32>::value || std::is_same<Op, NormalF16>::value ||
    std::is_same<Op, NormalBF16>::value;
int g_variant = 0;

unsigned grid_for(uint64_t work, int device, uint64_t ctas_per_sm, int threads = THREADS) {
  uint64_t want = (work + threads - 1) / threads;
  if (want == 0) want = 1;
  if (ctas_per_sm == 0) return unsigned(want < 0x7fffffffu ? want : 0x7fffffffu);
  const uint64_t cap = uint64_t(sm_count(device)) * ctas_per_sm;
  return unsigned(want < cap ? want : cap);
}

template <class Op, class Idx, int UNROLL, int NT = THREADS>
void launch_shape(const Request& r, int device, cudaStream_t st, uint64_t start, uint64_t nblocks,
                  uint64_t nvec, uint64_t ctas_per_sm) {
  const uint64_t work = nvec > 0 ? (nvec + UNROLL - 1) / UNROLL : nblocks;
  fill_kernel<Op, Idx, UNROLL, NT><<<grid_for(work, device, ctas_per_sm, NT), NT, 0, st>>>(
      static_cast<typename Op::T*>(r.out), r.n, start, r.stream, make_round_keys(r.seed), nblocks,
      nvec);
}

template <class Op>
cudaError_t launch(const Request& r, int device, cudaStream_t st) {
  using T = typename Op::T;
  constexpr int P = Op::PER_BLOCK;
  constexpr uint64_t S = 4 / P;
  const uint64_t start = first_position(r.offset, P);
  const uint64_t head = (start & 3u) / S;
  const uint64_t nblocks = (head + r.n + P - 1) / P;
  const bool aligned = (reinterpret_cast<uintptr_t>(r.out) % (sizeof(T) * P)) == 0;
  const uint64_t nvec = (aligned && head == 0) ? r.n / P : 0;  // whole blocks
  // 32-bit indices: every slot index, and a thread's index one grid step past the end (at most
  // nblocks plus the grid), stays far below 2^32; and the block counter's low word does not
  // carry within the request (see block_counter).
  const bool narrow = nblocks * P < (uint64_t(1) << 30) &&
                      (start >> 2 & 0xffffffffu) + nblocks <= (uint64_t(1) << 32);
  const int v = g_variant;
  if (v == 1 || !narrow) {
    launch_shape<Op, uint64_t, 1>(r, device, st, start, nblocks, nvec, 16);
  } else if (v == 2) {
    launch_shape<Op, uint32_t, 1>(r, device, st, start, nblocks, nvec, 8);
  } else if (v == 3) {
    launch_shape<Op, uint32_t, 2>(r, device, st, start, nblocks, nvec, 8);
  } else if (v == 4) {
    launch_shape<Op, uint32_t, 1, 128>(r, device, st, start, nblocks, nvec, 32);
  } else if (v == 5) {
    launch_shape<Op, uint32_t, 1, 512>(r, device, st, start, nblocks, nvec, 8);
  } else if (v == 6) {
    launch_shape<Op, uint32_t, 1>(r, device, st, start, nblocks, nvec, 0);
  } else if (v == 7) {
    launch_shape<Op, uint32_t, 2>(r, device, st, start, nblocks, nvec, 16);
  } else if (v == 8) {
    launch_shape<Op, uint32_t, 4>(r, device, st, start, nblocks, nvec, 8);
  } else if (kLargeTwoPerStep<Op> && nvec >= 16 * uint64_t(sm_count(device)) * 16 * THREADS) {
    // large normal draws: 2 blocks per step (variant 7), at least 8 whole steps
    launch_shape<Op, uint32_t, 2>(r, device, st, start, nblocks, nvec, 16);
  } else {
    launch_shape<Op, uint32_t, 1>(r, device, st, start, nblocks, nvec, 16);
  }
  return cudaGetLastError();
}

template <class Op>
cudaError_t launch_state(const Request& r, const uint64_t* state, int device, cudaStream_t st) {
  using T = typename Op::T;
  constexpr int P = Op::PER_BLOCK;
  const uint64_t most_blocks = (3 + r.n + P - 1) / P;  // the head is not known on the host
  const bool aligned = (reinterpret_cast<uintptr_t>(r.out) % (sizeof(T) * P)) == 0;
  fill_state_kernel<Op><<<grid_for(most_blocks, device, 16), THREADS, 0, st>>>(
      static_cast<T*>(r.out), r.n, state, aligned);
  advance_state_kernel<<<1, 1, 0, st>>>(const_cast<uint64_t*>(state), r.n, P);
  return cudaGetLastError();
}

}  // namespace

std::string cuda_fill(const Request& r, int device, uintptr_t cuda_stream) {
  if (r.n == 0) return std::string();
  DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return cudaGetErrorString(guard.err);
  cudaGetLastError();  // nothing stale may be reported as this launch's error
  cudaStream_t st = reinterpret_cast<cudaStream_t>(cuda_stream);
  cudaError_t err = cudaErrorInvalidValue;
  switch (r.kind * 8 + r.dtype) {
    case KIND_NORMAL * 8 + DT_FLOAT32:
      err = launch<NormalF32>(r, device, st);
      break;
    case KIND_NORMAL * 8 + DT_FLOAT16:
      err = launch<NormalF16>(r, device, st);
      break;
    case KIND_NORMAL * 8 + DT_BFLOAT16:
      err = launch<NormalBF16>(r, device, st);
      break;
    case KIND_NORMAL * 8 + DT_FLOAT64:
      err = launch<NormalF64>(r, device, st);
      break;
    case KIND_UNIFORM * 8 + DT_FLOAT32:
      err = launch<UniformF32>(r, device, st);
      break;
    case KIND_UNIFORM * 8 + DT_FLOAT16:
      err = launch<UniformF16>(r, device, st);
      break;
    case KIND_UNIFORM * 8 + DT_BFLOAT16:
      err = launch<UniformBF16>(r, device, st);
      break;
    case KIND_UNIFORM * 8 + DT_FLOAT64:
      err = launch<UniformF64>(r, device, st);
      break;
    case KIND_WORDS * 8 + DT_UINT32:
      err = launch<RawWords>(r, device, st);
      break;
    default:
      break;
  }
  return err == cudaSuccess ? std::string() : std::string(cudaGetErrorString(err));
}

std::string cuda_fill_state(const Request& r, uint64_t* state, int device, uintptr_t cuda_stream) {
  DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return cudaGetErrorString(guard.err);
  cudaGetLastError();
  cudaStream_t st = reinterpret_cast<cudaStream_t>(cuda_stream);
  if (r.n == 0) {  // still advances an odd offset to even for float64 (spec section 5)
    advance_state_kernel<<<1, 1, 0, st>>>(state, 0, r.dtype == DT_FLOAT64 ? 2 : 4);
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
  }
  cudaError_t err = cudaErrorInvalidValue;
  switch (r.kind * 8 + r.dtype) {
    case KIND_NORMAL * 8 + DT_FLOAT32:
      err = launch_state<NormalF32>(r, state, device, st);
      break;
    case KIND_NORMAL * 8 + DT_FLOAT16:
      err = launch_state<NormalF16>(r, state, device, st);
      break;
    case KIND_NORMAL * 8 + DT_BFLOAT16:
      err = launch_state<NormalBF16>(r, state, device, st);
      break;
    case KIND_NORMAL * 8 + DT_FLOAT64:
      err = launch_state<NormalF64>(r, state, device, st);
      break;
    case KIND_UNIFORM * 8 + DT_FLOAT32:
      err = launch_state<UniformF32>(r, state, device, st);
      break;
    case KIND_UNIFORM * 8 + DT_FLOAT16:
      err = launch_state<UniformF16>(r, state, device, st);
      break;
    case KIND_UNIFORM * 8 + DT_BFLOAT16:
      err = launch_state<UniformBF16>(r, state, device, st);
      break;
    case KIND_UNIFORM * 8 + DT_FLOAT64:
      err = launch_state<UniformF64>(r, state, device, st);
      break;
    case KIND_WORDS * 8 + DT_UINT32:
      err = launch_state<RawWords>(r, state, device, st);
      break;
    default:
      break;
  }
  return err == cudaSuccess ? std::string() : std::string(cudaGetErrorString(err));
}

std::string probe_cuda_impl(int which, float* out, uint64_t first, uint64_t count, int device,
                            uintptr_t cuda_stream) {
  if (count == 0) return std::string();
  DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return cudaGetErrorString(guard.err);
  cudaGetLastError();
  probe_kernel<<<grid_for(count, device, 16), THREADS, 0,
                 reinterpret_cast<cudaStream_t>(cuda_stream)>>>(which, out, first, count);
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? std::string() : std::string(cudaGetErrorString(err));
}

const char* cuda_archs() { return FASTRAND_CUDA_ARCHS; }

bool cuda_set_variant(int variant) {
  if (variant < 0 || variant >= N_VARIANTS) return false;
  g_variant = variant;
  return true;
}

int cuda_variant_count() { return N_VARIANTS; }

}  // namespace fastrand
