// CPU region draw (Box, backend.h): the selected instruction set's box loop
// (cpu_box_kernel.h) over equal flat pieces of the box's values, one piece a thread
// (run_pieces: the calling thread and the worker pool).
#include <string>

#include "backend.h"
#include "parallel.h"

namespace fastrand {

void cpu_fill_box_piece_scalar(const Request& r, const Box& box, uint64_t first, uint64_t count);
#if defined(__x86_64__) || defined(_M_X64)
#define FR_BOX_X86 1
void cpu_fill_box_piece_avx2(const Request& r, const Box& box, uint64_t first, uint64_t count);
void cpu_fill_box_piece_avx512(const Request& r, const Box& box, uint64_t first, uint64_t count);
#elif defined(__aarch64__) || defined(_M_ARM64)
#define FR_BOX_ARM64 1
void cpu_fill_box_piece_neon(const Request& r, const Box& box, uint64_t first, uint64_t count);
#endif

namespace {

using BoxPieceFn = void (*)(const Request&, const Box&, uint64_t, uint64_t);

// The box loop of the path cpu_fill uses (cpu_isa_selected), so both take the same code path.
BoxPieceFn selected_box_fn() {
#if defined(FR_BOX_X86)
  const std::string isa = cpu_isa_selected();
  if (isa == "avx512") return cpu_fill_box_piece_avx512;
  if (isa == "avx2") return cpu_fill_box_piece_avx2;
#elif defined(FR_BOX_ARM64)
  if (cpu_isa_selected() == "neon") return cpu_fill_box_piece_neon;
#endif
  return cpu_fill_box_piece_scalar;
}

// Below this many values per thread, threads cost more than they save (as cpu_fill).
constexpr uint64_t MIN_BOX_VALUES_PER_THREAD = uint64_t(1) << 16;

}  // namespace

void cpu_fill_box(const Request& r, const Box& box, int threads) {
  if (r.n == 0) return;
  const BoxPieceFn fn = selected_box_fn();
  uint64_t t = threads < 1 ? 1 : uint64_t(threads);
  const uint64_t most = (r.n + MIN_BOX_VALUES_PER_THREAD - 1) / MIN_BOX_VALUES_PER_THREAD;
  if (t > most) t = most;
  if (t <= 1) {
    fn(r, box, 0, r.n);
    return;
  }
  // Pieces of whole multiples of 64 values (as cpu_fill); a piece whose thread cannot be
  // created runs on this thread (run_pieces).
  uint64_t piece = (r.n + t - 1) / t;
  piece = (piece + 63) & ~uint64_t(63);
  const uint64_t pieces = (r.n + piece - 1) / piece;
  run_pieces(pieces, [&r, &box, fn, piece](uint64_t k) {
    const uint64_t first = k * piece;
    fn(r, box, first, (r.n - first < piece) ? r.n - first : piece);
  });
}

}  // namespace fastrand
