// CPU region draw (Box, backend.h): every row of the collapsed box is a contiguous run of global
// values, i.e. a plain request at a shifted position, filled by the selected per-ISA piece
// function. The box's values are split into equal flat pieces over threads; each thread walks
// its rows with an odometer, so many short rows cost one threaded call and no Python loop.
#include <thread>
#include <vector>

#include "backend.h"
#include "fastrand_stream.h"

namespace fastrand {

namespace {

// Below this many values per thread, threads cost more than they save (as cpu_fill).
constexpr uint64_t MIN_BOX_VALUES_PER_THREAD = uint64_t(1) << 16;

int item_size(int dtype) {
  using namespace v1;
  switch (dtype) {
    case DT_FLOAT16:
    case DT_BFLOAT16:
      return 2;
    case DT_FLOAT64:
      return 8;
    default:
      return 4;  // DT_FLOAT32, DT_UINT32
  }
}

// Output values [first, first + count) of the box (row-major over box.size).
void fill_box_piece(const Request& r, const Box& box, CpuPieceFn fn, uint64_t first,
                    uint64_t count) {
  const int nd = box.ndim;
  const uint64_t row = box.size[nd - 1];
  const int es = item_size(r.dtype);
  // float64 values take two positions each from an even start (spec section 5); every other
  // value type one position per value. Positions wrap modulo 2^64 like the plain request's.
  const bool two = r.dtype == v1::DT_FLOAT64;
  const uint64_t start = v1::first_position(r.offset, two ? 2 : 4);
  // The multi-index of the first row of the piece, and its global value.
  uint64_t idx[MAX_BOX_DIMS] = {0};
  uint64_t rest = first / row;
  uint64_t g_row = box.base;
  for (int d = nd - 2; d >= 0; --d) {
    idx[d] = rest % box.size[d];
    rest /= box.size[d];
    g_row += idx[d] * box.gstride[d];
  }
  uint64_t col = first % row;
  uint64_t done = 0;
  char* out = static_cast<char*>(r.out);
  while (done < count) {
    const uint64_t len = (row - col < count - done) ? row - col : count - done;
    const uint64_t g = g_row + col;  // the last dimension has gstride 1 (Box)
    Request q = r;
    q.out = out + (first + done) * uint64_t(es);
    q.n = len;
    // a plain request whose value 0 is global value g: its first position is start + g (x2)
    q.offset = start + (two ? 2 * g : g);
    fn(q, 0, len);
    done += len;
    col = 0;
    // next row: odometer over dimensions nd-2 .. 0
    for (int d = nd - 2; d >= 0; --d) {
      g_row += box.gstride[d];
      if (++idx[d] < box.size[d]) break;
      g_row -= box.size[d] * box.gstride[d];
      idx[d] = 0;
    }
  }
}

}  // namespace

void cpu_fill_box(const Request& r, const Box& box, int threads) {
  if (r.n == 0) return;
  const CpuPieceFn fn = cpu_piece_fn();
  uint64_t t = threads < 1 ? 1 : uint64_t(threads);
  const uint64_t most = (r.n + MIN_BOX_VALUES_PER_THREAD - 1) / MIN_BOX_VALUES_PER_THREAD;
  if (t > most) t = most;
  if (t <= 1) {
    fill_box_piece(r, box, fn, 0, r.n);
    return;
  }
  uint64_t piece = (r.n + t - 1) / t;
  piece = (piece + 63) & ~uint64_t(63);
  std::vector<std::thread> pool;
  pool.reserve(t - 1);
  for (uint64_t k = 1; k < t; ++k) {
    const uint64_t first = k * piece;
    if (first >= r.n) break;
    const uint64_t count = (r.n - first < piece) ? r.n - first : piece;
    pool.emplace_back([&r, &box, fn, first, count] { fill_box_piece(r, box, fn, first, count); });
  }
  fill_box_piece(r, box, fn, 0, piece < r.n ? piece : r.n);
  for (auto& th : pool) th.join();
}

}  // namespace fastrand
