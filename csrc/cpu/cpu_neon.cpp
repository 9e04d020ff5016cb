// The CPU fill loop compiled for the neon path (AArch64 Advanced SIMD; flags in setup.py).
#define FR_ISA_NS isa_neon
#define FR_SIMD 1
#include "cpu_kernel.h"

#if !defined(FR_HAVE_SIMD_LANES)
#error "cpu_neon.cpp is built for AArch64 targets only (setup.py)"
#endif

namespace fastrand {
void cpu_fill_piece_neon(const Request& r, uint64_t first, uint64_t count) {
  isa_neon::fill_piece(r, first, count);
}
void cpu_transform_blocks_neon(int kind, int dtype, const uint32_t* words, void* out,
                               uint64_t nblocks) {
  isa_neon::transform_blocks(kind, dtype, words, out, nblocks);
}
}  // namespace fastrand
