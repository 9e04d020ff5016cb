// The CPU fill loop compiled for the scalar path (flags in setup.py).
#define FR_ISA_NS isa_scalar
#include "cpu_kernel.h"

namespace fastrand {
void cpu_fill_piece_scalar(const Request& r, uint64_t first, uint64_t count) {
  isa_scalar::fill_piece(r, first, count);
}
void cpu_transform_blocks_scalar(int kind, int dtype, const uint32_t* words, void* out,
                                 uint64_t nblocks) {
  isa_scalar::transform_blocks(kind, dtype, words, out, nblocks);
}
}  // namespace fastrand
