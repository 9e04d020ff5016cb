// fastrand CUDA kernels: thin loops around the stream header, in the one source that both nvcc
// (the ahead-of-time build, through cuda_kernel.cu) and NVRTC (the run-time backend, which gets
// this file and fastrand_stream.h as in-memory sources: _C.kernel_sources()) compile. So it
// includes nothing but the stream header: no libc or CUDA toolkit header.
//
// Every kernel is extern "C" with a fixed name (KERNEL_NAMES in launch_plan.h lists them, built
// from the same lists below), so the driver API can look them up in a cubin. Each thread
// computes whole Philox blocks chosen by their position in the request; which thread computes a
// block never changes what the block holds, so results do not depend on the grid or the GPU.
//
// Host code (launch_plan.h) includes this file too, without __CUDACC__, for the kernel lists and
// the argument layouts only.
#pragma once

#include "fastrand_stream.h"
#include "math_probe.h"

// The value types (op name, stream Op). Kernel names are fr_fill_<op>_<shape>,
// fr_fill_state_<op>, fr_fill_box_<op> and fr_advance_state.
#define FASTRAND_KERNEL_OPS(X) \
  X(normal_f32, NormalF32)     \
  X(normal_f16, NormalF16)     \
  X(normal_bf16, NormalBF16)   \
  X(normal_f64, NormalF64)     \
  X(uniform_f32, UniformF32)   \
  X(uniform_f16, UniformF16)   \
  X(uniform_bf16, UniformBF16) \
  X(uniform_f64, UniformF64)   \
  X(words_u32, RawWords)

// The launch shapes of a plain fill (shape name, index type, blocks per thread step, threads
// per CTA), called as Y(A, B, shape...) so that a caller can pass its op along; launch_plan.h
// picks one per request.
#define FASTRAND_KERNEL_SHAPES(Y, A, B) \
  Y(A, B, w1_256, uint64_t, 1, 256)     \
  Y(A, B, n1_256, uint32_t, 1, 256)     \
  Y(A, B, n2_256, uint32_t, 2, 256)     \
  Y(A, B, n4_256, uint32_t, 4, 256)     \
  Y(A, B, n1_128, uint32_t, 1, 128)     \
  Y(A, B, n1_512, uint32_t, 1, 512)

namespace fastrand {

// The box of a region draw as the box kernel reads it (see Box in backend.h). The output is a
// row-major array of rows: row r is output elements [r * rowlen, (r + 1) * rowlen), global values
// [g0(r), g0(r) + rowlen) with g0(r) = base + sum_d idx_d(r) * gstride[d] over the leading
// dimensions d < lead_dims (idx_d: row-major digits of r over size[0..lead_dims)). row_blocks
// bounds the Philox blocks one row touches (its slots plus the head). narrow: the work items
// and every size fit in 32 bits, so the kernel's index arithmetic (not the global positions)
// runs in 32 bits.
struct BoxArgs {
  uint64_t base;
  uint64_t rowlen;
  uint64_t row_blocks;
  uint64_t lead_dims;
  uint64_t narrow;
  uint64_t size[7];
  uint64_t gstride[7];
};

}  // namespace fastrand

#if defined(__CUDACC__)

namespace fastrand {
namespace kern {
using namespace v1;

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

// A plain fill: n values from position `start` (already rounded up to even for float64).
// The round keys are a kernel parameter: Philox's xors read them straight from the constant
// bank instead of recomputing the key schedule in every iteration.
template <class Op, class Idx, int UNROLL, int NT>
__device__ __forceinline__ void fill_body(typename Op::T* __restrict__ out, uint64_t n,
                                          uint64_t start, uint64_t stream, const RoundKeys& rk,
                                          uint64_t nblocks, uint64_t nvec) {
  constexpr uint64_t S = 4 / Op::PER_BLOCK;
  fill_blocks<Op, Idx, UNROLL, NT>(out, Idx(n), Idx((start & 3u) / S), start >> 2, uint32_t(stream),
                                   uint32_t(stream >> 32), rk, Idx(nblocks), Idx(nvec));
}

// CUDA-graph mode: (seed, stream, offset) live in device memory (uint64 state[3]); the fill
// reads them when it runs and a one-thread kernel queued after it advances the offset, so each
// replay of a captured graph draws the next noise of the stream. Simple grid-stride shape: the
// round keys come from the state, not from a launch parameter.
template <class Op>
__device__ __forceinline__ void fill_state_body(typename Op::T* __restrict__ out, uint64_t n,
                                                const uint64_t* __restrict__ state, bool aligned) {
  constexpr int P = Op::PER_BLOCK;
  constexpr uint64_t S = 4 / P;
  const uint64_t seed = state[0], stream = state[1];
  const uint64_t start = first_position(state[2], P);
  const uint64_t head = (start & 3u) / S;
  const uint64_t nblocks = (head + n + P - 1) / P;
  const uint64_t nvec = (aligned && head == 0) ? n / P : 0;
  fill_blocks<Op, uint64_t, 1, 256>(out, n, head, start >> 2, uint32_t(stream),
                                    uint32_t(stream >> 32), make_round_keys(seed), nblocks, nvec);
}

// Row r and block j of box work item t, and the row's first global value g0 (see BoxArgs), with
// the index arithmetic in Idx.
template <class Idx>
__device__ __forceinline__ void box_item(const BoxArgs& box, uint64_t t, uint64_t& r, uint64_t& j,
                                         uint64_t& g0) {
  const Idx row_blocks = Idx(box.row_blocks);
  const Idx rr = Idx(t) / row_blocks;
  j = uint64_t(Idx(t) - rr * row_blocks);
  r = uint64_t(rr);
  g0 = box.base;
  Idx q = rr;
  for (int d = int(box.lead_dims) - 1; d >= 0; --d) {
    const Idx sz = Idx(box.size[d]);
    const Idx qd = q / sz;
    g0 += uint64_t(q - qd * sz) * box.gstride[d];
    q = qd;
  }
}

// A box (region draw): work item t is block j = t % row_blocks of row r = t / row_blocks. Row r
// is a plain fill of rowlen values whose value i sits at position start + S * (g0(r) + i)
// (S = 4 / P positions per value); the item computes the row's j-th Philox block if the row
// touches that many, and writes the values of it that belong to the row. The item's index
// arithmetic runs in 32 bits when BoxArgs::narrow.
template <class Op>
__device__ __forceinline__ void fill_box_body(typename Op::T* __restrict__ out, uint64_t n,
                                              uint64_t start, uint64_t stream, const RoundKeys& rk,
                                              const BoxArgs& box) {
  using T = typename Op::T;
  constexpr int P = Op::PER_BLOCK;
  constexpr uint64_t S = 4 / P;
  const uint64_t items = (n / box.rowlen) * box.row_blocks;
  const uint64_t step = uint64_t(gridDim.x) * blockDim.x;
  const uint32_t s_lo = uint32_t(stream), s_hi = uint32_t(stream >> 32);
  for (uint64_t t = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < items; t += step) {
    uint64_t r, j, g0;
    if (box.narrow)
      box_item<uint32_t>(box, t, r, j, g0);
    else
      box_item<uint64_t>(box, t, r, j, g0);
    const uint64_t p0 = start + S * g0;  // position of the row's first value (wraps mod 2^64)
    const uint64_t head = (p0 & 3u) / S;
    if (j * P >= head + box.rowlen) continue;  // the row ends before this block
    T v[P];
    Op::eval(philox_rk(block_counter(p0 >> 2, j, s_lo, s_hi), rk), v);
    T* row = out + r * box.rowlen;
#pragma unroll
    for (int e = 0; e < P; ++e) {
      const uint64_t s = j * P + e;
      if (s >= head && s - head < box.rowlen) row[s - head] = v[e];
    }
  }
}

}  // namespace kern
}  // namespace fastrand

#define FASTRAND_FILL_KERNEL(OPNAME, OP, SHAPE, IDX, UNROLL, NT)                             \
  extern "C" __global__ void __launch_bounds__(NT) fr_fill_##OPNAME##_##SHAPE(               \
      fastrand::v1::OP::T* __restrict__ out, uint64_t n, uint64_t start, uint64_t stream,    \
      const __grid_constant__ fastrand::v1::RoundKeys rk, uint64_t nblocks, uint64_t nvec) { \
    fastrand::kern::fill_body<fastrand::v1::OP, IDX, UNROLL, NT>(out, n, start, stream, rk,  \
                                                                 nblocks, nvec);             \
  }
// The kernel groups (a program of the run-time backend holds one group, see FASTRAND_KERNEL_GROUP
// below): an op's plain fills in every launch shape; the state fills; the box fills; the state
// advance; the math probe.
#define FASTRAND_PLAIN_KERNELS_OF(OPNAME, OP) \
  FASTRAND_KERNEL_SHAPES(FASTRAND_FILL_KERNEL, OPNAME, OP)
#define FASTRAND_STATE_KERNEL_OF(OPNAME, OP)                                     \
  extern "C" __global__ void __launch_bounds__(256)                              \
      fr_fill_state_##OPNAME(fastrand::v1::OP::T* __restrict__ out, uint64_t n,  \
                             const uint64_t* __restrict__ state, bool aligned) { \
    fastrand::kern::fill_state_body<fastrand::v1::OP>(out, n, state, aligned);   \
  }
#define FASTRAND_BOX_KERNEL_OF(OPNAME, OP)                                                      \
  extern "C" __global__ void __launch_bounds__(256)                                             \
      fr_fill_box_##OPNAME(fastrand::v1::OP::T* __restrict__ out, uint64_t n, uint64_t start,   \
                           uint64_t stream, const __grid_constant__ fastrand::v1::RoundKeys rk, \
                           const __grid_constant__ fastrand::BoxArgs box) {                     \
    fastrand::kern::fill_box_body<fastrand::v1::OP>(out, n, start, stream, rk, box);            \
  }
#define FASTRAND_ADVANCE_KERNEL                                                             \
  extern "C" __global__ void fr_advance_state(uint64_t* state, uint64_t n, int per_block) { \
    state[2] = fastrand::v1::next_offset(state[2], n, per_block);                           \
  }
// The math probe (math_probe.h) over raw inputs [first, first + count): the known-answer check
// at load and the device check's exhaustive comparison evaluate the transform's building blocks
// on chosen inputs (edges, every radius word) with it.
#define FASTRAND_PROBE_KERNEL                                                                  \
  extern "C" __global__ void fr_probe(int which, float* out, uint64_t first, uint64_t count) { \
    const uint64_t step = uint64_t(gridDim.x) * blockDim.x;                                    \
    for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += step)   \
      fastrand::probe_eval(which, out, i, first);                                              \
  }

// Every kernel, unless the including translation unit defines FASTRAND_KERNEL_GROUP and then
// instantiates the group it wants with the macros above (the run-time backend compiles one small
// program per group, on demand).
#if !defined(FASTRAND_KERNEL_GROUP)
FASTRAND_KERNEL_OPS(FASTRAND_PLAIN_KERNELS_OF)
FASTRAND_KERNEL_OPS(FASTRAND_STATE_KERNEL_OF)
FASTRAND_KERNEL_OPS(FASTRAND_BOX_KERNEL_OF)
FASTRAND_ADVANCE_KERNEL
FASTRAND_PROBE_KERNEL
#endif

#endif  // __CUDACC__
