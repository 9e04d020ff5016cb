// The CUDA launch plan, shared by the two launchers of the kernels in fastrand_kernels.cuh: the
// runtime-API one of the nvcc build (cuda_kernel.cu) and the driver-API one that launches
// NVRTC-compiled cubins (driver.cpp). Both take the kernel, grid, block and arguments from here,
// so the ahead-of-time and the run-time backends run the same kernels the same way.
// Plain host C++, compiled in every build.
#pragma once

#include <stdint.h>

#include "backend.h"
#include "fastrand_kernels.cuh"

namespace fastrand {
namespace plan {

// Kernel indices: fill kernels op-major (op * N_SHAPES + shape), then the state fills, the box
// fills, the state advance and the math probe; kernel_names() lists the extern "C" names in this
// order.
#define FASTRAND_COUNT_ONE(...) +1
#define FASTRAND_COUNT_OP(A, B) FASTRAND_KERNEL_SHAPES(FASTRAND_COUNT_ONE, A, B)
constexpr int N_OPS = 0 FASTRAND_KERNEL_OPS(FASTRAND_COUNT_ONE);
constexpr int N_SHAPES = (0 FASTRAND_KERNEL_OPS(FASTRAND_COUNT_OP)) / N_OPS;
#undef FASTRAND_COUNT_OP
#undef FASTRAND_COUNT_ONE
constexpr int K_STATE = N_OPS * N_SHAPES;
constexpr int K_BOX = K_STATE + N_OPS;
constexpr int K_ADVANCE = K_BOX + N_OPS;
constexpr int K_PROBE = K_ADVANCE + 1;
constexpr int N_KERNELS = K_PROBE + 1;

// The shapes, in FASTRAND_KERNEL_SHAPES order.
enum Shape : int { W1_256 = 0, N1_256, N2_256, N4_256, N1_128, N1_512 };

// The extern "C" names of all kernels, by index.
const char* const* kernel_names();

// The ops' names and stream Op types (FASTRAND_KERNEL_OPS), e.g. "normal_f32", "NormalF32".
const char* const* op_names();
const char* const* op_types();

// The op (index into FASTRAND_KERNEL_OPS) of a (kind, dtype) code pair, or -1.
int op_index(int kind, int dtype);
// Values per Philox block (4, or 2 for float64) and bytes per value of an op.
int op_per_block(int op);
int op_value_bytes(int op);

// One kernel launch: kernel index, grid and CTA size (1-d).
struct Launch {
  int kernel;
  unsigned grid;
  unsigned block;
};

// Arguments of fr_fill_* (in parameter order).
struct FillArgs {
  void* out;
  uint64_t n;
  uint64_t start;
  uint64_t stream;
  v1::RoundKeys rk;
  uint64_t nblocks;
  uint64_t nvec;
};
// Arguments of fr_fill_state_*.
struct StateArgs {
  void* out;
  uint64_t n;
  const uint64_t* state;
  bool aligned;
};
// Arguments of fr_advance_state.
struct AdvanceArgs {
  uint64_t* state;
  uint64_t n;
  int per_block;
};
// Arguments of fr_probe.
struct ProbeArgs {
  int which;
  float* out;
  uint64_t first;
  uint64_t count;
};
// Arguments of fr_fill_box_*.
struct BoxFillArgs {
  void* out;
  uint64_t n;
  uint64_t start;
  uint64_t stream;
  v1::RoundKeys rk;
  BoxArgs box;
};

// Pointers to each argument, as cudaLaunchKernel / cuLaunchKernel take them.
struct Params {
  void* p[8];
  void** get() { return p; }
};
Params params(FillArgs& a);
Params params(StateArgs& a);
Params params(AdvanceArgs& a);
Params params(BoxFillArgs& a);
Params params(ProbeArgs& a);

// The launch of a plain fill of r (n > 0, valid op) on a GPU with `sms` multiprocessors,
// following the selected variant (see launch_plan.cpp), or `variant` when it is >= 0 (the
// known-answer check runs every launch shape this way; all give the same bits).
Launch plan_fill(const Request& r, int sms, FillArgs& args, int variant = -1);
// The fill and advance launches of a CUDA-graph-mode fill (n may be 0: advance only, and
// fill.kernel = -1).
void plan_fill_state(const Request& r, uint64_t* state, int sms, Launch& fill, StateArgs& fargs,
                     Launch& advance, AdvanceArgs& aargs);
// The launch of a box fill (r.n = the box's numel > 0; box as backend.h, last gstride 1).
// Leading dimensions of size 1 are dropped and contiguous dimensions merged; a box that is then
// one run of consecutive global values is a plain fill (is_fill: the launch and fargs are the
// plain fill's, with all its launch shapes), any other takes the box kernel (bargs).
Launch plan_box(const Request& r, const Box& box, int sms, BoxFillArgs& bargs, FillArgs& fargs,
                bool& is_fill);

// The launch of the math probe over count inputs (count > 0).
Launch plan_probe(int which, float* out, uint64_t first, uint64_t count, int sms, ProbeArgs& args);

// Launch shapes for benchmarks (all give the same bits).
bool set_variant(int variant);
int variant_count();

}  // namespace plan
}  // namespace fastrand
