// The CPU fill loop compiled for the avx2 path (flags in setup.py).
#define FR_ISA_NS isa_avx2
#define FR_SIMD 1
#include "cpu_kernel.h"

namespace fastrand {
void cpu_fill_piece_avx2(const Request& r, uint64_t first, uint64_t count) {
  isa_avx2::fill_piece(r, first, count);
}
}  // namespace fastrand
