// The CPU region-draw loop compiled for the avx512 path (flags in setup.py).
#define FR_ISA_NS box_avx512
#define FR_SIMD 1
#include "cpu_box_kernel.h"

namespace fastrand {
void cpu_fill_box_piece_avx512(const Request& r, const Box& box, uint64_t first, uint64_t count) {
  box_avx512::box_piece(r, box, first, count);
}
}  // namespace fastrand
