// The CPU region-draw loop, included once per instruction set (cpu_box_scalar.cpp,
// cpu_box_avx2.cpp, cpu_box_avx512.cpp) with its own FR_ISA_NS, like cpu_kernel.h, whose fill
// loops it reuses. Long rows of a Box are plain requests (fill_range, SIMD over consecutive
// blocks). Short rows would leave the SIMD lanes idle and pay a call per row. On the SIMD paths
// their whole blocks are walked: one row a lane, W rows at a time, the block indices advanced by
// one vector add a step, each lane's block copied to its row in one move (Walk). The rest (the
// partial blocks at the rows' ends, rows with no whole block, rows cut by the piece's ends) are
// gathered from any rows into lanes, one block a lane with its bookkeeping (Gather).
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
  if constexpr (sizeof(T) <= 4) {  // (float64 blocks hold 2 values: c <= 2 there)
    if (c == 4) {                  // a whole block (most of a row): one vector move
      memcpy(dst, src, 4 * sizeof(T));
      return;
    }
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

#if defined(FR_HAVE_SIMD_LANES)
// The values of the GatherLanes::WIDTH blocks whose indices are in lanes (x, y) into vals, block
// e's values at vals[P e ..] (P = Op::PER_BLOCK): the main fill loop's lanes (cpu_kernel.h).
template <class Op>
__attribute__((always_inline)) inline void eval_gathered(typename GatherLanes::U x,
                                                         typename GatherLanes::U y, uint64_t stream,
                                                         const RoundKeys& rk,
                                                         typename Op::T* vals) {
  using L = GatherLanes;
  using U = typename L::U;
  U z = L::splat_u(uint32_t(stream)), w = L::splat_u(uint32_t(stream >> 32));
  philox_lanes<L>(x, y, z, w, rk);
  if constexpr (Op::PER_BLOCK == 4) {
    U v[4];
    Op::template eval_lanes<L>(x, y, z, w, v);
    L::template store_blocks<typename Op::T>(vals, v);
  } else {
    constexpr int W = L::WIDTH;
    alignas(64) uint32_t words[4][W];
    const U wv[4] = {x, y, z, w};
    static_assert(sizeof(wv) == sizeof(words), "lanes in block order");
    memcpy(words, wv, sizeof(words));
    eval_words64<Lanes64x2, Op>(vals, words);
  }
}
#endif

// The blocks of a gather: block e's value slots [lo, lo + cnt) go to dst[0 .. cnt). Plain
// arrays owned by the caller, whose counters stay in registers. Two batches alternate: the values
// of a batch are copied out after the next batch was evaluated, when the vector stores that wrote
// them have long retired (read at once, every scalar load of a value would wait for them: a
// failed store-to-load forward, which cost more than the evaluation).
template <class Op>
struct Gather {
  using T = typename Op::T;
  static constexpr int P = Op::PER_BLOCK;
#if defined(FR_HAVE_SIMD_LANES)
  static constexpr bool SIMD = true;
  static constexpr int W = GatherLanes::WIDTH;
#else
  static constexpr bool SIMD = false;
  static constexpr int W = 16;
#endif
  uint32_t xs[W], ys[W];  // block index, low and high word (already masked)
  T* dst[2][W];
  int lo[2][W], cnt[2][W];
  T vals[SIMD ? 2 : 1][SIMD ? P * W : 1];  // vals[buf][P e + j]: value j of block e
};

// Evaluates the n <= W blocks of batch `buf`: into vals[buf] (SIMD; copied out by gather_copy),
// or straight to their destinations.
template <class Op>
FR_NOINLINE_BOX void gather_eval(Gather<Op>& g, int buf, int n, const RoundKeys& rk,
                                 uint64_t stream) {
#if defined(FR_HAVE_SIMD_LANES)
  using L = GatherLanes;
  for (int e = n; e < Gather<Op>::W; ++e) {  // idle lanes repeat block 0
    g.xs[e] = g.xs[0];
    g.ys[e] = g.ys[0];
  }
  eval_gathered<Op>(LaneLoad<L>::load(g.xs), LaneLoad<L>::load(g.ys), stream, rk, g.vals[buf]);
#else
  for (int e = 0; e < n; ++e) {
    typename Op::T v[Op::PER_BLOCK];
    const uint64_t b = uint64_t(g.xs[e]) | (uint64_t(g.ys[e]) << 32);
    Op::eval(block_words(b, stream, rk), v);
    copy_upto4(g.dst[buf][e], v + g.lo[buf][e], g.cnt[buf][e]);
  }
#endif
}

template <class Op>
inline void gather_copy(Gather<Op>& g, int buf, int n) {
  if constexpr (Gather<Op>::SIMD) {
    constexpr int P = Op::PER_BLOCK;
    for (int e = 0; e < n; ++e)
      copy_upto4(g.dst[buf][e], g.vals[buf] + P * e + g.lo[buf][e], g.cnt[buf][e]);
  }
}

#if defined(FR_HAVE_SIMD_LANES)
// Whole blocks of many rows at once: lane k walks row k, from its first whole block (block
// index xs, ys) on; step j evaluates block j of every row (the indices one vector add apart) and
// copies lane k's values to dst[k] + P j as one move. Rows' partial blocks and whole blocks past
// the rows' common count (steps) go through a Gather.
template <class Op>
struct Walk {
  using T = typename Op::T;
  static constexpr int P = Op::PER_BLOCK;
  static constexpr int W = GatherLanes::WIDTH;
  uint32_t xs[W], ys[W];  // row k's first whole block, low and high word (already masked)
  T* dst[W];              // where that block's values go
  alignas(64) T vals[2][P * W];
};

template <class Op>
FR_NOINLINE_BOX void walk_run(Walk<Op>& wk, int n, uint64_t steps, const RoundKeys& rk,
                              uint64_t stream) {
  using L = GatherLanes;
  using U = typename L::U;
  using T = typename Op::T;
  constexpr int P = Op::PER_BLOCK;
  for (int k = n; k < Walk<Op>::W; ++k) {  // idle lanes repeat row 0
    wk.xs[k] = wk.xs[0];
    wk.ys[k] = wk.ys[0];
  }
  U x = LaneLoad<L>::load(wk.xs), y = LaneLoad<L>::load(wk.ys);
  const U one = L::splat_u(1u), zero = L::splat_u(0u), mask = L::splat_u(0x3fffffffu);
  for (uint64_t j = 0; j < steps; ++j) {
    eval_gathered<Op>(x, y, stream, rk, wk.vals[j & 1]);
    if (j > 0) {  // the previous step's values, whose stores have retired by now
      const T* v = wk.vals[(j - 1) & 1];
      for (int k = 0; k < n; ++k) memcpy(wk.dst[k] + P * (j - 1), v + P * k, P * sizeof(T));
    }
    // next block of every row: block indices wrap at 2^62 like every request's
    const U x1 = x + one;
    y = (y + L::sel_u(L::ugt(x, x1), one, zero)) & mask;
    x = x1;
  }
  if (steps > 0) {
    const T* v = wk.vals[(steps - 1) & 1];
    for (int k = 0; k < n; ++k) memcpy(wk.dst[k] + P * (steps - 1), v + P * k, P * sizeof(T));
  }
}
#endif

#if defined(FR_HAVE_SIMD_LANES)
// G = 4 or 2 whole blocks a row a step (ops with 32-bit values): group i of GatherLanes' four
// groups of R = SimdLanes::WIDTH lanes holds block G j + (i % G) of rows R (i / G) + k, lane k.
// After each group's transpose (transpose_blocks), the 4 G values of a row are one vector (AVX2,
// G = 4: two), stored whole at dst[row] + at.
template <int G, class T>
inline void store_rows(const GatherLanes::U v[4], T* const* dst, uint64_t at) {
  using SU = SimdLanes::U;
  const SU grp[4][4] = {{v[0].a.a, v[1].a.a, v[2].a.a, v[3].a.a},
                        {v[0].a.b, v[1].a.b, v[2].a.b, v[3].a.b},
                        {v[0].b.a, v[1].b.a, v[2].b.a, v[3].b.a},
                        {v[0].b.b, v[1].b.b, v[2].b.b, v[3].b.b}};
#if defined(__AVX512F__)
  __m512i o[4][4];  // o[i][q]: 128-bit lane l holds block 4q + l of group i
  for (int i = 0; i < 4; ++i) SimdLanes::transpose_blocks(grp[i], o[i]);
  for (int q = 0; q < 4; ++q) {
    if constexpr (G == 4) {  // a 4 x 4 transpose of 128-bit lanes
      const __m512i a = _mm512_shuffle_i32x4(o[0][q], o[1][q], 0x44);
      const __m512i b = _mm512_shuffle_i32x4(o[2][q], o[3][q], 0x44);
      const __m512i c = _mm512_shuffle_i32x4(o[0][q], o[1][q], 0xEE);
      const __m512i d = _mm512_shuffle_i32x4(o[2][q], o[3][q], 0xEE);
      const __m512i r[4] = {_mm512_shuffle_i32x4(a, b, 0x88), _mm512_shuffle_i32x4(a, b, 0xDD),
                            _mm512_shuffle_i32x4(c, d, 0x88), _mm512_shuffle_i32x4(c, d, 0xDD)};
      for (int l = 0; l < 4; ++l) {
        T* p = dst[4 * q + l] + at;
        if constexpr (sizeof(T) == 4) {
          _mm512_storeu_si512(reinterpret_cast<void*>(p), r[l]);
        } else {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r[l]));
        }
      }
    } else {  // rows 4q + l of each half: lane l of groups 2h and 2h + 1, two rows a vector
      for (int h = 0; h < 2; ++h) {
        const __m512i a = _mm512_shuffle_i32x4(o[2 * h][q], o[2 * h + 1][q], 0x44);
        const __m512i c = _mm512_shuffle_i32x4(o[2 * h][q], o[2 * h + 1][q], 0xEE);
        const __m512i r[2] = {_mm512_shuffle_i32x4(a, a, 0xD8), _mm512_shuffle_i32x4(c, c, 0xD8)};
        for (int l = 0; l < 2; ++l) {
          T* p0 = dst[SimdLanes::WIDTH * h + 4 * q + 2 * l] + at;
          T* p1 = dst[SimdLanes::WIDTH * h + 4 * q + 2 * l + 1] + at;
          if constexpr (sizeof(T) == 4) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(p0), _mm512_castsi512_si256(r[l]));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(p1), _mm512_extracti64x4_epi64(r[l], 1));
          } else {
            const __m256i y = _mm512_cvtepi32_epi16(r[l]);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(p0), _mm256_castsi256_si128(y));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(p1), _mm256_extracti128_si256(y, 1));
          }
        }
      }
    }
  }
#else
  __m256i o[4][4];  // o[i][q]: 128-bit half h holds block 2q + h of group i
  for (int i = 0; i < 4; ++i) SimdLanes::transpose_blocks(grp[i], o[i]);
  for (int q = 0; q < 4; ++q) {
    if constexpr (G == 4) {
      for (int h = 0; h < 2; ++h) {
        const __m256i lo = h ? _mm256_permute2x128_si256(o[0][q], o[1][q], 0x31)
                             : _mm256_permute2x128_si256(o[0][q], o[1][q], 0x20);
        const __m256i hi = h ? _mm256_permute2x128_si256(o[2][q], o[3][q], 0x31)
                             : _mm256_permute2x128_si256(o[2][q], o[3][q], 0x20);
        T* p = dst[2 * q + h] + at;
        if constexpr (sizeof(T) == 4) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), lo);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 8), hi);
        } else {  // values fit 16 bits: pack, then undo the in-lane interleave of packus
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                              _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8));
        }
      }
    } else {  // rows 2q + h of each half g: half h of groups 2g and 2g + 1
      for (int g = 0; g < 2; ++g) {
        const __m256i r0 = _mm256_permute2x128_si256(o[2 * g][q], o[2 * g + 1][q], 0x20);
        const __m256i r1 = _mm256_permute2x128_si256(o[2 * g][q], o[2 * g + 1][q], 0x31);
        T* p0 = dst[SimdLanes::WIDTH * g + 2 * q] + at;
        T* p1 = dst[SimdLanes::WIDTH * g + 2 * q + 1] + at;
        if constexpr (sizeof(T) == 4) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(p0), r0);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(p1), r1);
        } else {
          const __m256i y = _mm256_permute4x64_epi64(_mm256_packus_epi32(r0, r1), 0xD8);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(p0), _mm256_castsi256_si128(y));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(p1), _mm256_extracti128_si256(y, 1));
        }
      }
    }
  }
#endif
}

// Rows s0 .. s0 + 4 R / G - 1 of the walk, `steps` steps of G blocks each (store_rows).
template <int G, class Op>
FR_NOINLINE_BOX void walk_rows_run(Walk<Op>& wk, int s0, uint64_t steps, const RoundKeys& rk,
                                   uint64_t stream) {
  using L = GatherLanes;
  using U = typename L::U;
  using S = SimdLanes;
  using SU = typename S::U;
  SU xg[4], yg[4];
  for (int i = 0; i < 4; ++i) {  // block i % G of rows R (i / G) + k (indices wrap at 2^62)
    SU xr, yr;
    memcpy(&xr, wk.xs + s0 + S::WIDTH * (i / G), sizeof(xr));
    memcpy(&yr, wk.ys + s0 + S::WIDTH * (i / G), sizeof(yr));
    xg[i] = xr + S::splat_u(uint32_t(i % G));
    yg[i] = (yr + S::sel_u(S::ugt(xr, xg[i]), S::splat_u(1u), S::splat_u(0u))) &
            S::splat_u(0x3fffffffu);
  }
  U x = {{xg[0], xg[1]}, {xg[2], xg[3]}}, y = {{yg[0], yg[1]}, {yg[2], yg[3]}};
  const U step = L::splat_u(uint32_t(G)), one = L::splat_u(1u), zero = L::splat_u(0u);
  const U mask = L::splat_u(0x3fffffffu);
  const U z0 = L::splat_u(uint32_t(stream)), w0 = L::splat_u(uint32_t(stream >> 32));
  for (uint64_t j = 0; j < steps; ++j) {
    U a = x, b = y, z = z0, w = w0, v[4];
    philox_lanes<L>(a, b, z, w, rk);
    Op::template eval_lanes<L>(a, b, z, w, v);
    store_rows<G, typename Op::T>(v, wk.dst + s0, 4 * G * j);
    const U x1 = x + step;
    y = (y + L::sel_u(L::ugt(x, x1), one, zero)) & mask;
    x = x1;
  }
}
#endif

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
  // block `block` (unmasked), slots [slot, slot + take) to dst
  auto gather_block = [&](uint64_t block, int slot, int take, T* dst) {
    const uint64_t b = block & BLOCK_MASK;
    gather.xs[pending] = uint32_t(b);
    gather.ys[pending] = uint32_t(b >> 32);
    gather.dst[cur][pending] = dst;
    gather.lo[cur][pending] = slot;
    gather.cnt[cur][pending] = take;
    if (++pending == Gather<Op>::W) run_batch();
  };
#if defined(FR_HAVE_SIMD_LANES)
  Walk<Op> walk;
  int walking = 0;               // rows in the walk
  uint64_t nf_row[Walk<Op>::W];  // their whole blocks
  auto run_walk = [&](int n) {   // (n: rows in the walk, a parameter to stay in a register)
    uint64_t nf_min = nf_row[0], nf_max = nf_row[0];
    for (int k = 1; k < n; ++k) {
      nf_min = nf_row[k] < nf_min ? nf_row[k] : nf_min;
      nf_max = nf_row[k] > nf_max ? nf_row[k] : nf_max;
    }
    if (nf_max > nf_min) {  // the blocks past the common count, through the gather
      for (int k = 0; k < n; ++k) {
        const uint64_t b0 = uint64_t(walk.xs[k]) | (uint64_t(walk.ys[k]) << 32);
        for (uint64_t j = nf_min; j < nf_row[k]; ++j)
          gather_block(b0 + j, 0, P, walk.dst[k] + P * j);
      }
    }
    if constexpr (P == 4) {  // four, then two blocks a row a step first
      if (nf_min >= 2) {
        for (int k = n; k < Walk<Op>::W; ++k) {  // idle rows repeat row 0, values and all
          walk.xs[k] = walk.xs[0];
          walk.ys[k] = walk.ys[0];
          walk.dst[k] = walk.dst[0];
        }
      }
      auto advance = [&](uint64_t nb) {  // every row's next block: nb on
        for (int k = 0; k < n; ++k) {
          const uint64_t b =
              ((uint64_t(walk.xs[k]) | (uint64_t(walk.ys[k]) << 32)) + nb) & BLOCK_MASK;
          walk.xs[k] = uint32_t(b);
          walk.ys[k] = uint32_t(b >> 32);
          walk.dst[k] += P * nb;
        }
        nf_min -= nb;
      };
      if (const uint64_t steps = nf_min / 4) {
        for (int s0 = 0; s0 < n; s0 += SimdLanes::WIDTH)
          walk_rows_run<4, Op>(walk, s0, steps, rk, r.stream);
        if (nf_min > 4 * steps)
          advance(4 * steps);
        else
          nf_min = 0;
      }
      if (const uint64_t steps = nf_min / 2) {
        for (int s0 = 0; s0 < n; s0 += 2 * SimdLanes::WIDTH)
          walk_rows_run<2, Op>(walk, s0, steps, rk, r.stream);
        if (nf_min > 2 * steps)
          advance(2 * steps);
        else
          nf_min = 0;
      }
    }
    walk_run<Op>(walk, n, nf_min, rk, r.stream);
  };
#endif
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
#if defined(FR_HAVE_SIMD_LANES)
      const uint64_t head = slot ? uint64_t(P - slot) : 0;
      if (len == row && len >= head + P) {  // whole rows with whole blocks: walked
        // m rows along the inner dimension from here, all entered at this slot when a row step is
        // whole blocks (db of them); their blocks b + k db modulo 2^62, like their positions
        uint64_t m = 1, db = 0;
        if (inner >= 0 && (S * inner_stride) % 4 == 0) {
          m = inner_size - inner_idx;
          if ((count - done) / row < m) m = (count - done) / row;
          db = S * inner_stride / 4;
        }
        const uint64_t nf = (len - head) / P, tail = (len - head) % P;
        for (uint64_t k = 0; k < m;) {
          const int take =
              (m - k < uint64_t(Walk<Op>::W - walking)) ? int(m - k) : Walk<Op>::W - walking;
          for (int e = 0; e < take; ++e) {
            const uint64_t bk = block + (k + uint64_t(e)) * db;  // the row's first block
            T* dk = dst + (k + uint64_t(e)) * row;
            if (head) gather_block(bk, slot, int(head), dk);
            const uint64_t b = (bk + (head ? 1 : 0)) & BLOCK_MASK;
            walk.xs[walking + e] = uint32_t(b);
            walk.ys[walking + e] = uint32_t(b >> 32);
            walk.dst[walking + e] = dk + head;
            nf_row[walking + e] = nf;
            if (tail) gather_block(bk + (head ? 1 : 0) + nf, 0, int(tail), dk + head + P * nf);
          }
          walking += take;
          k += uint64_t(take);
          if (walking == Walk<Op>::W) {
            run_walk(walking);
            walking = 0;
          }
        }
        // the loop's step below moves on from the last of the m rows
        done += (m - 1) * row;
        g_row += (m - 1) * inner_stride;
        inner_idx += m - 1;
        i = len;
      }
#endif
      while (i < len) {  // (gather_block written out: the hot loop of rows of a few values)
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
#if defined(FR_HAVE_SIMD_LANES)
  if (walking) run_walk(walking);
#endif
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
