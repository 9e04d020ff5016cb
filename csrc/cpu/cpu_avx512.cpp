// The CPU fill loop compiled for the avx512 path (flags in setup.py).
#define FR_ISA_NS isa_avx512
#define FR_SIMD 1
#include "cpu_kernel.h"

namespace fastrand {
void cpu_fill_piece_avx512(const Request& r, uint64_t first, uint64_t count) {
  isa_avx512::fill_piece(r, first, count);
}
void cpu_transform_blocks_avx512(int kind, int dtype, const uint32_t* words, void* out,
                                 uint64_t nblocks) {
  isa_avx512::transform_blocks(kind, dtype, words, out, nblocks);
}
}  // namespace fastrand
