// The CPU region-draw loop compiled for the scalar path (flags in setup.py).
#define FR_ISA_NS box_scalar
#include "cpu_box_kernel.h"

namespace fastrand {
void cpu_fill_box_piece_scalar(const Request& r, const Box& box, uint64_t first, uint64_t count) {
  box_scalar::box_piece(r, box, first, count);
}
}  // namespace fastrand
