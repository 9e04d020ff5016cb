// The CPU region-draw loop, included once per instruction set (cpu_box_scalar.cpp,
// cpu_box_avx2.cpp, cpu_box_avx512.cpp) with its own FR_ISA_NS, like cpu_kernel.h, whose fill
// loops it reuses. Long rows of a Box are plain requests (fill_range, SIMD over consecutive
// blocks). Short rows would leave the SIMD lanes idle and pay a call per row, so their blocks
// are gathered from any rows into lanes (one block per lane, the block indices loaded per lane)
// and each lane's values copied to its row: per value, a short row costs about what a long one
// does, plus the partial blocks at the rows' ends.
#pragma once

#include <string.h>

#include "cpu_kernel.h"

namespace fastrand {
namespace FR_ISA_NS {
using namespace v1;

#define FR_NOINLINE_BOX __attribute__((noinline))

// Rows with at least this many values are filled as plain requests.
constexpr uint64_t BOX_LONG_ROW = 1024;

#if defined(FR_HAVE_SIMD_LANES)
using GatherLanes = PairLanes<PairLanes<SimdLanes>>;
template <class L>
struct LaneLoad {  // lanes from an array of W words
  static typename L::U load(const uint32_t* p) {
    typename L::U u;
    memcpy(&u, p, sizeof(u));
    return u;
  }
};
template <class L>
struct LaneLoad<PairLanes<L>> {
  static typename PairLanes<L>::U load(const uint32_t* p) {
    return {LaneLoad<L>::load(p), LaneLoad<L>::load(p + L::WIDTH)};
  }
};
#endif

// dst[0 .. c) = src[0 .. c) for c <= 4 (written out: a library memcpy call would cost more than
// the copy)
template <class T>
inline void copy_upto4(T* __restrict dst, const T* __restrict src, int c) {
  if (c == 4) {  // a whole block (most of a row): one vector move
    memcpy(dst, src, 4 * sizeof(T));
    return;
  }
  switch (c) {
    case 4:
      dst[3] = src[3];
      [[fallthrough]];
    case 3:
      dst[2] = src[2];
      [[fallthrough]];
    case 2:
      dst[1] = src[1];
      [[fallthrough]];
    case 1:
      dst[0] = src[0];
      [[fallthrough]];
    default:
      break;
  }
}

// The blocks of a gather: block e's value slots [lo, lo + cnt) go to dst[0 .. cnt). Plain
// arrays owned by the caller, whose counters stay in registers. Two batches alternate: the values
// of a batch are copied out after the next batch was evaluated, when the vector stores that wrote
// them have long retired (read at once, every scalar load of a value would wait for them: a
// failed store-to-load forward, which cost more than the evaluation).
template <class Op>
struct Gather {
  using T = typename Op::T;
#if defined(FR_HAVE_SIMD_LANES)
  static constexpr bool SIMD = Op::PER_BLOCK == 4;
  static constexpr int W = SIMD ? GatherLanes::WIDTH : 16;
#else
  static constexpr bool SIMD = false;
  static constexpr int W = 16;
#endif
  uint32_t xs[W], ys[W];  // block index, low and high word (already masked)
  T* dst[2][W];
  int lo[2][W], cnt[2][W];
  T vals[SIMD ? 2 : 1][SIMD ? 4 * W : 1];  // vals[buf][4e + j]: value j of block e
};

// Evaluates the n <= W blocks of batch `buf`: into vals[buf] (SIMD; copied out by gather_copy),
// or straight to their destinations.
template <class Op>
FR_NOINLINE_BOX void gather_eval(Gather<Op>& g, int buf, int n, const RoundKeys& rk,
                                 uint64_t stream) {
#if defined(FR_HAVE_SIMD_LANES)
  if constexpr (Gather<Op>::SIMD) {
    using L = GatherLanes;
    using U = typename L::U;
    for (int e = n; e < Gather<Op>::W; ++e) {  // idle lanes repeat block 0
      g.xs[e] = g.xs[0];
      g.ys[e] = g.ys[0];
    }
    U x = LaneLoad<L>::load(g.xs), y = LaneLoad<L>::load(g.ys);
    U z = L::splat_u(uint32_t(stream)), w = L::splat_u(uint32_t(stream >> 32));
    philox_lanes<L>(x, y, z, w, rk);
    U v[4];
    Op::template eval_lanes<L>(x, y, z, w, v);
    L::template store_blocks<typename Op::T>(g.vals[buf], v);
    return;
  }
#endif
  for (int e = 0; e < n; ++e) {
    typename Op::T v[Op::PER_BLOCK];
    const uint64_t b = uint64_t(g.xs[e]) | (uint64_t(g.ys[e]) << 32);
    Op::eval(block_words(b, stream, rk), v);
    copy_upto4(g.dst[buf][e], v + g.lo[buf][e], g.cnt[buf][e]);
  }
}

template <class Op>
inline void gather_copy(Gather<Op>& g, int buf, int n) {
  if constexpr (Gather<Op>::SIMD) {
    for (int e = 0; e < n; ++e)
      copy_upto4(g.dst[buf][e], g.vals[buf] + 4 * e + g.lo[buf][e], g.cnt[buf][e]);
  }
}

// Output values [first, first + count) of the box (row-major over box.size; backend.h Box).
template <class Op>
void box_range(const Request& r, const Box& box, uint64_t first, uint64_t count) {
  using T = typename Op::T;
  constexpr int P = Op::PER_BLOCK;
  constexpr uint64_t S = 4 / P;  // positions per value
  const RoundKeys rk = make_round_keys(r.seed);
  const uint64_t start = first_position(r.offset, P);
  const int nd = box.ndim;
  const uint64_t row = box.size[nd - 1];
  // the multi-index and global value of the piece's first row
  uint64_t idx[MAX_BOX_DIMS] = {0};
  uint64_t rest = first / row, g_row = box.base;
  for (int d = nd - 2; d >= 0; --d) {
    idx[d] = rest % box.size[d];
    rest /= box.size[d];
    g_row += idx[d] * box.gstride[d];
  }
  uint64_t col = first % row, done = 0;
  // the innermost outer dimension's index, size and stride in registers (the rest on carry)
  const int inner = nd - 2;
  const uint64_t inner_size = inner >= 0 ? box.size[inner] : 1;
  const uint64_t inner_stride = inner >= 0 ? box.gstride[inner] : 0;
  uint64_t inner_idx = inner >= 0 ? idx[inner] : 0;
  T* out = static_cast<T*>(r.out) + first;
  Gather<Op> gather;
  int pending = 0, cur = 0, held = 0;  // blocks of batch cur; evaluated blocks of batch cur ^ 1
  auto run_batch = [&]() {
    gather_eval<Op>(gather, cur, pending, rk, r.stream);
    gather_copy<Op>(gather, cur ^ 1, held);
    held = pending;
    cur ^= 1;
    pending = 0;
  };
  while (done < count) {
    const uint64_t len = (row - col < count - done) ? row - col : count - done;
    // value 0 of this run is global value g_row + col (the last dimension has gstride 1), at
    // position start + S * (g_row + col), modulo 2^64 like every request's positions
    const uint64_t p0 = start + S * (g_row + col);
    T* dst = out + done;
    if (len >= BOX_LONG_ROW) {
      fill_range<Op>(dst, len, p0, r.stream, rk);
    } else {
      uint64_t i = 0, block = p0 >> 2;
      int slot = int((p0 & 3u) / S);
      while (i < len) {
        const int take = (uint64_t(P - slot) < len - i) ? P - slot : int(len - i);
        const uint64_t b = block & BLOCK_MASK;
        gather.xs[pending] = uint32_t(b);
        gather.ys[pending] = uint32_t(b >> 32);
        gather.dst[cur][pending] = dst + i;
        gather.lo[cur][pending] = slot;
        gather.cnt[cur][pending] = take;
        if (++pending == Gather<Op>::W) run_batch();
        i += uint64_t(take);
        slot = 0;
        ++block;
      }
    }
    done += len;
    col = 0;
    // next row: an odometer over dimensions nd-2 .. 0
    g_row += inner_stride;
    if (++inner_idx == inner_size && inner >= 0) {
      g_row -= inner_size * inner_stride;
      inner_idx = 0;
      for (int d = inner - 1; d >= 0; --d) {
        g_row += box.gstride[d];
        if (++idx[d] < box.size[d]) break;
        g_row -= box.size[d] * box.gstride[d];
        idx[d] = 0;
      }
    }
  }
  if (pending) run_batch();
  gather_copy<Op>(gather, cur ^ 1, held);
}

inline void box_piece(const Request& r, const Box& box, uint64_t first, uint64_t count) {
  switch (r.kind * 8 + r.dtype) {
    case KIND_NORMAL * 8 + DT_FLOAT32:
      return box_range<NormalF32>(r, box, first, count);
    case KIND_NORMAL * 8 + DT_FLOAT16:
      return box_range<NormalF16>(r, box, first, count);
    case KIND_NORMAL * 8 + DT_BFLOAT16:
      return box_range<NormalBF16>(r, box, first, count);
    case KIND_NORMAL * 8 + DT_FLOAT64:
      return box_range<NormalF64>(r, box, first, count);
    case KIND_UNIFORM * 8 + DT_FLOAT32:
      return box_range<UniformF32>(r, box, first, count);
    case KIND_UNIFORM * 8 + DT_FLOAT16:
      return box_range<UniformF16>(r, box, first, count);
    case KIND_UNIFORM * 8 + DT_BFLOAT16:
      return box_range<UniformBF16>(r, box, first, count);
    case KIND_UNIFORM * 8 + DT_FLOAT64:
      return box_range<UniformF64>(r, box, first, count);
    case KIND_WORDS * 8 + DT_UINT32:
      return box_range<RawWords>(r, box, first, count);
    default:
      return;  // refused before it gets here (valid_kind_dtype)
  }
}

}  // namespace FR_ISA_NS
}  // namespace fastrand
