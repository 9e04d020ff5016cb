// The CPU region-draw loop, included once per instruction set (cpu_box_scalar.cpp,
// cpu_box_avx2.cpp, cpu_box_avx512.cpp, cpu_box_neon.cpp) with its own FR_ISA_NS, like
// cpu_kernel.h, whose fill loops it reuses. A piece of a Box (backend.h) is whole rows between at
// most two partial ones; the partial rows and long rows are plain requests (fill_range). Short rows
// go by runs: the consecutive rows along the innermost outer dimension. On the SIMD paths a run's
// rows are split into phase classes (rows whose first position has the same remainder modulo 4, one
// class when the run's row step is whole blocks); the blocks a class's rows touch, numbered row by
// row, are one stream of "compacted" blocks that the lanes walk as the contiguous fill walks
// consecutive blocks, each lane's block index computed by vector adds (RowCounter). Then:
// - rows of whole blocks, back to back in the output: the lanes store straight into it, as a
//   contiguous fill does (compacted_blocks);
// - rows of one value, back to back: each lane's value at the rows' slot, stored as the lanes
//   hold them (single_values);
// - otherwise a chunk of compacted blocks goes to a small buffer and each row takes its values
//   from it (partial blocks at the rows' ends are evaluated whole, as a Philox block always is).
#pragma once

#include <string.h>

#include "cpu_kernel.h"

namespace fastrand {
namespace FR_ISA_NS {
using namespace v1;

// Rows with at least this many values are filled as plain requests.
constexpr uint64_t BOX_LONG_ROW = 1024;

// dst[0 .. n) = src[0 .. n) for short n, in fixed-size moves that may overlap each other (never
// a byte outside either range): a library memcpy call per row would cost more than the row.
template <class T>
inline void copy_short(T* __restrict dst, const T* __restrict src, uint64_t n) {
  char* d = reinterpret_cast<char*>(dst);
  const char* s = reinterpret_cast<const char*>(src);
  const uint64_t b = n * sizeof(T);
  if (b >= 32) {
    uint64_t i = 0;
    for (; i + 32 <= b; i += 32) memcpy(d + i, s + i, 32);
    if (i < b) memcpy(d + b - 32, s + b - 32, 32);
  } else if (b >= 16) {
    memcpy(d, s, 16);
    memcpy(d + b - 16, s + b - 16, 16);
  } else if (b >= 8) {
    memcpy(d, s, 8);
    memcpy(d + b - 8, s + b - 8, 8);
  } else if (b >= 4) {
    memcpy(d, s, 4);
    memcpy(d + b - 4, s + b - 4, 4);
  } else if (b >= 2) {
    memcpy(d, s, 2);
  }
}

#if defined(FR_HAVE_SIMD_LANES)
// Compacted block c = i nb + j (j < nb) of a class is block b0 + i db + j of the stream, modulo
// 2^62 like every request's blocks. Lane e of a step holds compacted block c0 + e and advances
// by WIDTH each step: its in-row index j and its row's first block (two 32-bit words, the high
// one masked to 30 bits) are updated by adds and selects, no division.
struct RowCounter {
  using L = Lanes4;
  using U = typename L::U;
  static constexpr int W = L::WIDTH;
  U j, rlo, rhi;                              // per lane: block in the row, the row's first block
  U jinc, nbm1, nbv, a0lo, a0hi, a1lo, a1hi;  // constants of the step

  RowCounter(uint64_t b0, uint64_t db, uint64_t nb) {
    alignas(64) uint32_t js[W], los[W], his[W];
    uint64_t jj = 0, row = b0 & BLOCK_MASK;
    for (int e = 0; e < W; ++e) {
      js[e] = uint32_t(jj);
      los[e] = uint32_t(row);
      his[e] = uint32_t(row >> 32);
      if (++jj == nb) {
        jj = 0;
        row = (row + db) & BLOCK_MASK;
      }
    }
    memcpy(&j, js, sizeof(j));
    memcpy(&rlo, los, sizeof(rlo));
    memcpy(&rhi, his, sizeof(rhi));
    const uint64_t rinc = uint64_t(W) / nb;
    const uint64_t a0 = (rinc * db) & BLOCK_MASK, a1 = ((rinc + 1) * db) & BLOCK_MASK;
    jinc = L::splat_u(uint32_t(uint64_t(W) % nb));
    nbm1 = L::splat_u(uint32_t(nb - 1));
    nbv = L::splat_u(uint32_t(nb));
    a0lo = L::splat_u(uint32_t(a0));
    a0hi = L::splat_u(uint32_t(a0 >> 32));
    a1lo = L::splat_u(uint32_t(a1));
    a1hi = L::splat_u(uint32_t(a1 >> 32));
  }
  // the lanes' block indices (low word x, high word y)
  void blocks(U& x, U& y) const {
    x = rlo + j;
    y = (rhi + L::sel_u(L::ugt(rlo, x), L::splat_u(1u), L::splat_u(0u))) & L::splat_u(0x3fffffffu);
  }
  // every lane W compacted blocks on
  void step() {
    j = j + jinc;
    const typename L::M wrap = L::ugt(j, nbm1);  // passed the row's end: one row more
    j = j - L::sel_u(wrap, nbv, L::splat_u(0u));
    const U alo = L::sel_u(wrap, a1lo, a0lo), ahi = L::sel_u(wrap, a1hi, a0hi);
    const U lo = rlo + alo;
    rhi = (rhi + ahi + L::sel_u(L::ugt(rlo, lo), L::splat_u(1u), L::splat_u(0u))) &
          L::splat_u(0x3fffffffu);
    rlo = lo;
  }
};

// The values of the W blocks whose indices are in lanes (x, y), in position order at o (P
// values a block): the main fill loop's lanes and transforms (cpu_kernel.h).
template <class Op>
__attribute__((always_inline)) inline void eval_group(typename Lanes4::U x, typename Lanes4::U y,
                                                      uint64_t stream, const RoundKeys& rk,
                                                      typename Op::T* o) {
  using L = Lanes4;
  using U = typename L::U;
  U z = L::splat_u(uint32_t(stream)), w = L::splat_u(uint32_t(stream >> 32));
  philox_lanes<L>(x, y, z, w, rk);
  if constexpr (Op::PER_BLOCK == 4) {
    U v[4];
    Op::template eval_lanes<L>(x, y, z, w, v);
    L::template store_blocks<typename Op::T>(o, v);
  } else {
    constexpr int W = L::WIDTH;
    alignas(64) uint32_t words[4][W];
    const U wv[4] = {x, y, z, w};
    static_assert(sizeof(wv) == sizeof(words), "lanes in block order");
    memcpy(words, wv, sizeof(words));
    eval_words64<Lanes64x2, Op>(o, words);
  }
}

// The counter's next n compacted blocks into o (P values each, contiguous). A count that is not
// a whole number of steps ends the counter's use (its last step went past the n blocks).
template <class Op>
__attribute__((noinline)) void compacted_blocks(typename Op::T* __restrict o, uint64_t n,
                                                RowCounter& ctr, uint64_t stream,
                                                const RoundKeys& rk) {
  using U = typename Lanes4::U;
  constexpr int W = RowCounter::W, P = Op::PER_BLOCK;
  uint64_t k = 0;
  for (; k + W <= n; k += W) {
    U x, y;
    ctr.blocks(x, y);
    eval_group<Op>(x, y, stream, rk, o + P * k);
    ctr.step();
  }
  if (k < n) {
    alignas(64) typename Op::T tmp[P * W];
    U x, y;
    ctr.blocks(x, y);
    eval_group<Op>(x, y, stream, rk, tmp);
    ctr.step();
    memcpy(o + P * k, tmp, (n - k) * P * sizeof(typename Op::T));
  }
}

// One value of each of the counter's next n blocks, at slot `slot`, into o[0 .. n): rows of one
// value back to back. The lanes' values at that slot are already in row order: stored as they
// are, no transpose, no buffer.
template <class Op>
__attribute__((noinline)) void single_values(typename Op::T* __restrict o, uint64_t n, int slot,
                                             RowCounter& ctr, uint64_t stream,
                                             const RoundKeys& rk) {
  using L = Lanes4;
  using U = typename L::U;
  using T = typename Op::T;
  constexpr int W = RowCounter::W, R = SimdLanes::WIDTH;
  auto store = [](T* d, const SimdLanes::U& v) { SimdLanes::store_lanes(d, v); };  // R values
  for (uint64_t k = 0; k < n; k += W) {
    U x, y, z = L::splat_u(uint32_t(stream)), w = L::splat_u(uint32_t(stream >> 32));
    ctr.blocks(x, y);
    philox_lanes<L>(x, y, z, w, rk);
    ctr.step();
    alignas(64) T vals[W];               // the W blocks' values at the slot, in block order
    T* d = (k + W <= n) ? o + k : vals;  // the last, partial step through vals
    if constexpr (Op::PER_BLOCK == 4) {
      U v[4];
      Op::template eval_lanes<L>(x, y, z, w, v);
      const U& u = v[slot];
      store(d, u.a.a);
      store(d + R, u.a.b);
      store(d + 2 * R, u.b.a);
      store(d + 3 * R, u.b.b);
    } else {  // two float64 values a block: the words through a buffer, as the main loop
      using LD = Lanes64x2;
      alignas(64) uint32_t words[4][W];
      const U wv[4] = {x, y, z, w};
      static_assert(sizeof(wv) == sizeof(words), "lanes in block order");
      memcpy(words, wv, sizeof(words));
      for (int e = 0; e < W; e += LD::WIDTH) {
        typename LD::D v[2];
        Op::template eval_lanes64<LD>(LD::load_words(words[0] + e), LD::load_words(words[1] + e),
                                      LD::load_words(words[2] + e), LD::load_words(words[3] + e),
                                      v);
        static_assert(sizeof(v[0]) == LD::WIDTH * sizeof(double), "lanes in block order");
        memcpy(d + e, &v[slot], sizeof(v[0]));
      }
    }
    if (d == vals) memcpy(o + k, vals, (n - k) * sizeof(T));
  }
}

// Compacted blocks a buffered chunk holds (a whole number of steps; 4 KiB of float32 values).
constexpr uint64_t CHUNK_BLOCKS = 256;

// m rows of len values (len < BOX_LONG_ROW), row i's value v at position p0 + i dp + S v and at
// dst[i ostride + v], where dp is a whole number of blocks (dp = 4 db modulo 2^64).
template <class Op>
void class_rows(typename Op::T* dst, uint64_t ostride, uint64_t m, uint64_t len, uint64_t p0,
                uint64_t db, uint64_t stream, const RoundKeys& rk) {
  using T = typename Op::T;
  constexpr uint64_t P = Op::PER_BLOCK, S = 4 / P;
  const uint64_t slot = (p0 & 3u) / S;
  const uint64_t nb = (slot + len + P - 1) / P;  // blocks a row touches
  const uint64_t total = m * nb;
  if (total < uint64_t(RowCounter::W)) {  // too few to fill the lanes once: row by row
    for (uint64_t i = 0; i < m; ++i)
      fill_range<Op>(dst + i * ostride, len, p0 + 4 * db * i, stream, rk);
    return;
  }
  RowCounter ctr(p0 >> 2, db, nb);
  if (slot == 0 && len == nb * P && ostride == len) {  // whole blocks, rows back to back
    compacted_blocks<Op>(dst, total, ctr, stream, rk);
    return;
  }
  if (len == 1 && ostride == 1) {  // one value a row, rows back to back
    single_values<Op>(dst, m, int(slot), ctr, stream, rk);
    return;
  }
  alignas(64) T stage[CHUNK_BLOCKS * P];
  const uint64_t row_vals = nb * P;  // compacted values a row spans
  uint64_t row = 0, got = 0;         // the row being copied, its values copied so far
  for (uint64_t c = 0; c < total; c += CHUNK_BLOCKS) {
    const uint64_t n = (total - c < CHUNK_BLOCKS) ? total - c : CHUNK_BLOCKS;
    compacted_blocks<Op>(stage, n, ctr, stream, rk);
    if (nb == 1 && len == 1) {  // one value a row, a block a row: a strided copy
      for (uint64_t e = 0; e < n; ++e) dst[(c + e) * ostride] = stage[e * P + slot];
      continue;
    }
    const uint64_t vlo = c * P, vhi = (c + n) * P;
    uint64_t at = row * row_vals + slot;  // the row's first value among the compacted values
    T* d = dst + row * ostride;
    if (got) {  // the rest of a row the last chunk began
      const uint64_t e = (at + len < vhi) ? at + len : vhi;
      copy_short(d + got, stage + (at + got - vlo), e - (at + got));
      got = e - at;
      if (got < len) continue;
      ++row;
      got = 0;
      at += row_vals;
      d += ostride;
    }
    for (; row < m && at + len <= vhi; ++row) {  // rows wholly in this chunk
      copy_short(d, stage + (at - vlo), len);
      at += row_vals;
      d += ostride;
    }
    if (row < m && at < vhi) {  // a row this chunk begins
      copy_short(d, stage + (at - vlo), vhi - at);
      got = vhi - at;
    }
  }
}
#endif

// m consecutive rows of len values along a dimension of global stride gs: row i's values at
// positions p0 + S (i gs + v), written to dst[i len + v].
template <class Op>
void run_rows(typename Op::T* dst, uint64_t m, uint64_t len, uint64_t p0, uint64_t gs,
              uint64_t stream, const RoundKeys& rk) {
  constexpr uint64_t S = 4 / Op::PER_BLOCK;
  const uint64_t dp = S * gs;  // position step of a row (modulo 2^64)
#if defined(FR_HAVE_SIMD_LANES)
  if (len < BOX_LONG_ROW) {
    // rows q apart start at the same slot of their blocks: q classes of rows
    const uint64_t q = (dp & 3u) == 0 ? 1 : ((dp & 3u) == 2 ? 2 : 4);
    for (uint64_t k = 0; k < q && k < m; ++k)
      class_rows<Op>(dst + k * len, q * len, (m - k + q - 1) / q, len, p0 + k * dp, (q * dp) >> 2,
                     stream, rk);
    return;
  }
#endif
  for (uint64_t i = 0; i < m; ++i) fill_range<Op>(dst + i * len, len, p0 + i * dp, stream, rk);
}

// Output values [first, first + count) of the box (row-major over box.size; backend.h Box).
template <class Op>
void box_range(const Request& r, const Box& box, uint64_t first, uint64_t count) {
  using T = typename Op::T;
  constexpr uint64_t S = 4 / Op::PER_BLOCK;
  const RoundKeys rk = make_round_keys(r.seed);
  const uint64_t start = first_position(r.offset, Op::PER_BLOCK);
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
  // rows advance along the innermost outer dimension (none for a one-dimensional box)
  const int inner = nd - 2;
  const uint64_t inner_size = inner >= 0 ? box.size[inner] : 1;
  const uint64_t inner_stride = inner >= 0 ? box.gstride[inner] : 0;
  auto next_rows = [&](uint64_t m) {  // m rows on, m <= the rows left along the inner dimension
    if (inner < 0) return;
    g_row += m * inner_stride;
    idx[inner] += m;
    for (int d = inner; d > 0 && idx[d] == box.size[d]; --d) {  // an odometer over the others
      g_row -= box.size[d] * box.gstride[d];
      idx[d] = 0;
      g_row += box.gstride[d - 1];
      ++idx[d - 1];
    }
  };
  T* out = static_cast<T*>(r.out) + first;
  uint64_t done = 0;
  if (const uint64_t col = first % row) {  // the piece starts inside a row
    const uint64_t len = (row - col < count) ? row - col : count;
    fill_range<Op>(out, len, start + S * (g_row + col), r.stream, rk);
    done = len;
    next_rows(1);
  }
  while (count - done >= row) {  // whole rows, a run along the inner dimension at a time
    uint64_t m = inner_size - (inner >= 0 ? idx[inner] : 0);
    if ((count - done) / row < m) m = (count - done) / row;
    run_rows<Op>(out + done, m, row, start + S * g_row, inner_stride, r.stream, rk);
    done += m * row;
    next_rows(m);
  }
  if (done < count)  // the piece ends inside a row
    fill_range<Op>(out + done, count - done, start + S * g_row, r.stream, rk);
}

inline void box_piece(const Request& r, const Box& box, uint64_t first, uint64_t count) {
  with_op(r.kind, r.dtype, [&](auto op) { box_range<decltype(op)>(r, box, first, count); });
}

}  // namespace FR_ISA_NS
}  // namespace fastrand
