// The CPU region-draw loop compiled for the neon path (flags in setup.py).
#define FR_ISA_NS box_neon
#define FR_SIMD 1
#include "cpu_box_kernel.h"

namespace fastrand {
void cpu_fill_box_piece_neon(const Request& r, const Box& box, uint64_t first, uint64_t count) {
  box_neon::box_piece(r, box, first, count);
}
}  // namespace fastrand
