// The CPU fill loop, included once per instruction set (cpu_scalar.cpp, cpu_avx2.cpp,
// cpu_avx512.cpp, cpu_neon.cpp). Each translation unit compiles the same source with its own
// flags inside its own namespace FR_ISA_NS; the SIMD builds evaluate one Philox block per lane
// (cpu_simd.h).
// The math is the shared header's: exact IEEE operations whatever the vector width.
#pragma once

#include "backend.h"
#include "fastrand_stream.h"
#if defined(FR_SIMD)
#include "cpu_simd.h"
#endif

#ifndef FR_ISA_NS
#error "define FR_ISA_NS before including cpu_kernel.h"
#endif

namespace fastrand {
namespace FR_ISA_NS {
using namespace v1;

#if defined(FR_HAVE_SIMD_LANES)
// The words of blocks b .. b + L::WIDTH - 1 (b < 2^62), one block per lane.
template <class L>
inline void philox_group(uint64_t b, typename L::U lane, uint32_t s_lo, uint32_t s_hi,
                         const RoundKeys& rk, typename L::U w[4]) {
  using U = typename L::U;
  const U base = L::splat_u(uint32_t(b));
  w[0] = base + lane;
  // lanes whose low word wrapped carry into the high word (block indices wrap at 2^62)
  w[1] = (L::splat_u(uint32_t(b >> 32)) +
          L::sel_u(L::ugt(base, w[0]), L::splat_u(1u), L::splat_u(0u))) &
         L::splat_u(0x3fffffffu);
  w[2] = L::splat_u(s_lo);
  w[3] = L::splat_u(s_hi);
  philox_lanes<L>(w[0], w[1], w[2], w[3], rk);
}

// Blocks b0 + k .. for as many whole groups of L::WIDTH blocks as fit before nfull, one block
// per lane; returns the first block not written.
template <class L, class Op>
inline uint64_t simd_groups(typename Op::T* __restrict o, uint64_t b0, uint64_t k, uint64_t nfull,
                            uint32_t s_lo, uint32_t s_hi, const RoundKeys& rk) {
  using U = typename L::U;
  constexpr int W = L::WIDTH;
  const U lane = L::iota();
  for (; k + W <= nfull; k += W) {
    U w[4], v[4];
    philox_group<L>((b0 + k) & BLOCK_MASK, lane, s_lo, s_hi, rk, w);
    Op::template eval_lanes<L>(w[0], w[1], w[2], w[3], v);
    L::store_blocks(o + k * 4, v);
  }
  return k;
}

// The float64 values of W blocks from their words (words[j][e]: word j of block e), LD::WIDTH
// blocks at a time.
template <class LD, class Op, int W>
inline void eval_words64(double* __restrict o, const uint32_t (&words)[4][W]) {
  static_assert(W % LD::WIDTH == 0, "whole float64 groups");
  for (int e = 0; e < W; e += LD::WIDTH) {
    typename LD::D v[2];
    Op::template eval_lanes64<LD>(LD::load_words(words[0] + e), LD::load_words(words[1] + e),
                                  LD::load_words(words[2] + e), LD::load_words(words[3] + e), v);
    LD::store_blocks(o + e * 2, v);
  }
}

// The same for ops with two float64 values per block: Philox on the 32-bit lanes of LP, then
// the float64 math on the 64-bit lanes of LD, LP::WIDTH / LD::WIDTH times (the words pass
// through a small buffer, zero-extended on the way back in).
template <class LP, class LD, class Op>
inline uint64_t simd_groups64(double* __restrict o, uint64_t b0, uint64_t k, uint64_t nfull,
                              uint32_t s_lo, uint32_t s_hi, const RoundKeys& rk) {
  using U = typename LP::U;
  constexpr int W = LP::WIDTH;
  const U lane = LP::iota();
  for (; k + W <= nfull; k += W) {
    U w[4];
    philox_group<LP>((b0 + k) & BLOCK_MASK, lane, s_lo, s_hi, rk, w);
    alignas(64) uint32_t words[4][W];
    static_assert(sizeof(U) == sizeof(words[0]), "lanes in block order");
    memcpy(words, w, sizeof(words));
    eval_words64<LD, Op>(o + k * 2, words);
  }
  return k;
}

// Philox lanes and float64 lanes of the main SIMD loops.
using Lanes4 = PairLanes<PairLanes<SimdLanes>>;
using Lanes64x2 = PairLanes64<PairLanes64<SimdLanes64>>;
#endif

// Whole blocks b0 .. b0 + nfull - 1 into o (PER_BLOCK values each). The generic loop evaluates
// one block per iteration; ops with 32-bit values on a SIMD build evaluate four groups of
// SimdLanes::WIDTH blocks at once (one block per lane; independent chains for the out-of-order
// core: 2-core EPYC, float32, one thread: 1 group 0.88, 2 groups 1.16, 4 groups 1.20 G/s with
// AVX-512; 0.59 / 0.79 / 0.88 with AVX2), then two, then one, and write the lanes in position
// order. float64 ops draw four groups' words, then evaluate them two groups of SimdLanes64 at a
// time (float64 normals, one thread, same machine: 0.52 G/s with AVX-512, 0.37 with AVX2; one
// group of words and two of doubles: 0.43 / 0.27), then one group's words.
template <class Op>
inline void whole_blocks(typename Op::T* __restrict o, uint64_t b0, uint64_t nfull, uint32_t s_lo,
                         uint32_t s_hi, const RoundKeys& rk) {
  using T = typename Op::T;
  constexpr int P = Op::PER_BLOCK;
  uint64_t k = 0;
#if defined(FR_HAVE_SIMD_LANES)
  if constexpr (P == 4) {
    k = simd_groups<Lanes4, Op>(o, b0, 0, nfull, s_lo, s_hi, rk);
    k = simd_groups<PairLanes<SimdLanes>, Op>(o, b0, k, nfull, s_lo, s_hi, rk);
    k = simd_groups<SimdLanes, Op>(o, b0, k, nfull, s_lo, s_hi, rk);
  }
  if constexpr (P == 2) {
    k = simd_groups64<Lanes4, Lanes64x2, Op>(o, b0, 0, nfull, s_lo, s_hi, rk);
    k = simd_groups64<SimdLanes, PairLanes64<SimdLanes64>, Op>(o, b0, k, nfull, s_lo, s_hi, rk);
  }
#endif
  for (; k < nfull; ++k) {
    const uint64_t b = (b0 + k) & BLOCK_MASK;
    T v[P];
    Op::eval(philox_rk(Words4{uint32_t(b), uint32_t(b >> 32), s_lo, s_hi}, rk), v);
    for (int j = 0; j < P; ++j) o[k * P + j] = v[j];
  }
}

// Values [0, n) of a request whose first value sits at position `start` (positions advance by
// 4 / PER_BLOCK per value).
template <class Op>
void fill_range(typename Op::T* __restrict out, uint64_t n, uint64_t start, uint64_t stream,
                const RoundKeys& rk) {
  using T = typename Op::T;
  constexpr int P = Op::PER_BLOCK;
  constexpr uint64_t S = 4 / P;
  uint64_t i = 0;
  // Head: the rest of a block entered in the middle.
  uint32_t slot = uint32_t((start & 3u) / S);
  if (slot != 0 && n > 0) {
    T v[P];
    Op::eval(block_words(start >> 2, stream, rk), v);
    for (; slot < uint32_t(P) && i < n; ++slot) out[i++] = v[slot];
  }
  if (i == n) return;
  // Whole blocks.
  const uint64_t b0 = (start + S * i) >> 2;
  const uint64_t nfull = (n - i) / P;
  whole_blocks<Op>(out + i, b0, nfull, uint32_t(stream), uint32_t(stream >> 32), rk);
  i += nfull * P;
  // Tail: the start of one more block.
  if (i < n) {
    T v[P];
    Op::eval(block_words((b0 + nfull) & BLOCK_MASK, stream, rk), v);
    for (int j = 0; i < n; ++j) out[i++] = v[j];
  }
}

// Calls f(Op()) with the op of (kind, dtype); does nothing for a pair valid_kind_dtype refuses
// (refused before it gets here).
template <class F>
inline void with_op(int kind, int dtype, F&& f) {
  switch (kind * 8 + dtype) {
    case KIND_NORMAL * 8 + DT_FLOAT32:
      return f(NormalF32());
    case KIND_NORMAL * 8 + DT_FLOAT16:
      return f(NormalF16());
    case KIND_NORMAL * 8 + DT_BFLOAT16:
      return f(NormalBF16());
    case KIND_NORMAL * 8 + DT_FLOAT64:
      return f(NormalF64());
    case KIND_UNIFORM * 8 + DT_FLOAT32:
      return f(UniformF32());
    case KIND_UNIFORM * 8 + DT_FLOAT16:
      return f(UniformF16());
    case KIND_UNIFORM * 8 + DT_BFLOAT16:
      return f(UniformBF16());
    case KIND_UNIFORM * 8 + DT_FLOAT64:
      return f(UniformF64());
    case KIND_WORDS * 8 + DT_UINT32:
      return f(RawWords());
    default:
      return;
  }
}

// One contiguous piece [first, first + count) of request r.
inline void fill_piece(const Request& r, uint64_t first, uint64_t count) {
  const RoundKeys rk = make_round_keys(r.seed);
  with_op(r.kind, r.dtype, [&](auto op) {
    using Op = decltype(op);
    constexpr uint64_t S = 4 / Op::PER_BLOCK;
    const uint64_t start = first_position(r.offset, Op::PER_BLOCK) + S * first;
    fill_range<Op>(static_cast<typename Op::T*>(r.out) + first, count, start, r.stream, rk);
  });
}

// The values of nblocks blocks whose words are given (words[4i + j]: word j of block i) instead
// of drawn, through the lanes the fill loops use on this path (groups of the main SIMD loop,
// then one block at a time): the transforms at chosen inputs, for tests.
inline void transform_blocks(int kind, int dtype, const uint32_t* words, void* out,
                             uint64_t nblocks) {
  with_op(kind, dtype, [&](auto op) {
    using Op = decltype(op);
    using T = typename Op::T;
    constexpr int P = Op::PER_BLOCK;
    T* o = static_cast<T*>(out);
    uint64_t k = 0;
#if defined(FR_HAVE_SIMD_LANES)
    constexpr int W = Lanes4::WIDTH;
    for (; k + W <= nblocks; k += W) {
      alignas(64) uint32_t buf[4][W];
      for (int e = 0; e < W; ++e)
        for (int j = 0; j < 4; ++j) buf[j][e] = words[4 * (k + e) + j];
      if constexpr (P == 4) {
        typename Lanes4::U w[4], v[4];
        memcpy(w, buf, sizeof(buf));
        Op::template eval_lanes<Lanes4>(w[0], w[1], w[2], w[3], v);
        Lanes4::store_blocks(o + k * 4, v);
      } else {
        eval_words64<Lanes64x2, Op>(o + k * 2, buf);
      }
    }
#endif
    for (; k < nblocks; ++k) {
      const uint32_t* w = words + 4 * k;
      T v[P];
      Op::eval(Words4{w[0], w[1], w[2], w[3]}, v);
      for (int j = 0; j < P; ++j) o[k * P + j] = v[j];
    }
  });
}

}  // namespace FR_ISA_NS
}  // namespace fastrand
