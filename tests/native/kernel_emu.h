// The CUDA kernels of csrc/cuda/fastrand_kernels.cuh run on the CPU: the kernel source compiled by
// the host compiler with the few CUDA built-ins it uses defined here, and each "launch" runs every
// thread of the grid one after another (the kernels are grid-stride loops whose threads never
// communicate, so the order does not matter). Shared by the emulator program (kernel_emu.cpp)
// and the stand-in CUDA driver (fake_libcuda.cpp). Include once, in one translation unit.
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#define __CUDACC__ 1
#define __host__
#define __device__
#define __global__
#define __forceinline__ inline
#define __grid_constant__
#define __launch_bounds__(...)

struct Dim {
  unsigned x;
};
static Dim blockIdx, threadIdx, gridDim, blockDim;

struct float4 {
  float x, y, z, w;
};
struct uint2 {
  unsigned x, y;
};
struct uint4 {
  unsigned x, y, z, w;
};
struct double2 {
  double x, y;
};
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
  return {x, y, z, w};
}
static inline double2 make_double2(double x, double y) { return {x, y}; }

#include "fastrand_kernels.cuh"
#include "launch_plan.cpp"

using namespace fastrand;

// Each kernel called from a cuLaunchKernel-style parameter array.
typedef void (*Caller)(void** p);
#define EMU_P(T, i) (*static_cast<T*>(p[i]))
#define EMU_FILL(OPNAME, OP, SHAPE, IDX, UNROLL, NT)                                            \
  static void call_fill_##OPNAME##_##SHAPE(void** p) {                                          \
    fr_fill_##OPNAME##_##SHAPE(static_cast<v1::OP::T*>(EMU_P(void*, 0)), EMU_P(uint64_t, 1),    \
                               EMU_P(uint64_t, 2), EMU_P(uint64_t, 3), EMU_P(v1::RoundKeys, 4), \
                               EMU_P(uint64_t, 5), EMU_P(uint64_t, 6));                         \
  }
#define EMU_OP(OPNAME, OP)                                                                \
  FASTRAND_KERNEL_SHAPES(EMU_FILL, OPNAME, OP)                                            \
  static void call_state_##OPNAME(void** p) {                                             \
    fr_fill_state_##OPNAME(static_cast<v1::OP::T*>(EMU_P(void*, 0)), EMU_P(uint64_t, 1),  \
                           EMU_P(const uint64_t*, 2), EMU_P(bool, 3));                    \
  }                                                                                       \
  static void call_box_##OPNAME(void** p) {                                               \
    fr_fill_box_##OPNAME(static_cast<v1::OP::T*>(EMU_P(void*, 0)), EMU_P(uint64_t, 1),    \
                         EMU_P(uint64_t, 2), EMU_P(uint64_t, 3), EMU_P(v1::RoundKeys, 4), \
                         EMU_P(BoxArgs, 5));                                              \
  }
FASTRAND_KERNEL_OPS(EMU_OP)
static void call_advance(void** p) {
  fr_advance_state(EMU_P(uint64_t*, 0), EMU_P(uint64_t, 1), EMU_P(int, 2));
}
static void call_probe(void** p) {
  fr_probe(EMU_P(int, 0), EMU_P(float*, 1), EMU_P(uint64_t, 2), EMU_P(uint64_t, 3));
}
#define EMU_PTR_FILL(OPNAME, OP, SHAPE, IDX, UNROLL, NT) &call_fill_##OPNAME##_##SHAPE,
#define EMU_PTR_FILLS(OPNAME, OP) FASTRAND_KERNEL_SHAPES(EMU_PTR_FILL, OPNAME, OP)
#define EMU_PTR_STATE(OPNAME, OP) &call_state_##OPNAME,
#define EMU_PTR_BOX(OPNAME, OP) &call_box_##OPNAME,
static const Caller kCallers[plan::N_KERNELS] = {FASTRAND_KERNEL_OPS(EMU_PTR_FILLS)
                                                         FASTRAND_KERNEL_OPS(EMU_PTR_STATE)
                                                             FASTRAND_KERNEL_OPS(EMU_PTR_BOX) &
                                                     call_advance,
                                                 &call_probe};

// Runs every thread of a launch in turn; false for a launch no GPU would take.
static bool run_launch(const plan::Launch& l, void** params) {
  if (l.grid == 0 || l.block == 0 || l.block > 1024 || l.kernel < 0 || l.kernel >= plan::N_KERNELS)
    return false;
  gridDim.x = l.grid;
  blockDim.x = l.block;
  for (unsigned b = 0; b < l.grid; ++b)
    for (unsigned t = 0; t < l.block; ++t) {
      blockIdx.x = b;
      threadIdx.x = t;
      kCallers[l.kernel](params);
    }
  return true;
}

static void run(const plan::Launch& l, void** params) {
  if (!run_launch(l, params)) {
    fprintf(stderr, "bad launch: kernel %d grid %u block %u\n", l.kernel, l.grid, l.block);
    exit(3);
  }
}
