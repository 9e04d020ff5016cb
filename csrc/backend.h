// Declarations shared by the thin kernels and the bindings. Plain C++, no torch.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

namespace fastrand {

// One request: n values of (kind, dtype) at `offset` of (seed, stream), written to `out`.
// kind/dtype use the codes of fastrand_stream.h (KIND_*, DT_*).
struct Request {
  void* out;
  uint64_t n;
  int kind;
  int dtype;
  uint64_t seed;
  uint64_t stream;
  uint64_t offset;
};

// A box of a row-major global tensor drawn as one request (the region draw, fastrand.randn_slice):
// the request's global value g (0 <= g < the global tensor's numel) sits where a plain request
// puts its value g (position offset + g; float64: start + 2g, start = offset rounded up to even).
// Output element i, in row-major order over size[0..ndim), is global value
// base + sum_d idx_d(i) * gstride[d]. The caller collapses contiguous dimensions (ndim <= 8, at
// least 1) and gives the last dimension gstride 1; Request::n is the box's numel.
constexpr int MAX_BOX_DIMS = 8;
struct Box {
  int ndim;
  uint64_t base;
  uint64_t size[MAX_BOX_DIMS];
  uint64_t gstride[MAX_BOX_DIMS];
};

// True when (kind, dtype) names a value type this stream defines.
bool valid_kind_dtype(int kind, int dtype);

// CPU: split across `threads` threads (results do not depend on it). Releases nothing itself;
// the binding drops the GIL around it.
void cpu_fill(const Request& r, int threads);
// CPU region draw: n = box's numel values of r, the box's global values in row-major order
// (threads as cpu_fill; the last dimension must have gstride 1).
void cpu_fill_box(const Request& r, const Box& box, int threads);
// The CPU code paths this build and processor offer ("scalar", "avx2", "avx512", "neon"), and
// the one in use ($FASTRAND_CPU_ISA or the best available).
std::vector<std::string> cpu_isa_available();
std::string cpu_isa_selected();
// Non-empty when $FASTRAND_CPU_ISA (read once, at the first selection) names no CPU path at all,
// which selects scalar: the text of the warning the module gives at import.
std::string cpu_isa_env_warning();
// Forces a path by name; returns false if this build/processor lacks it.
bool cpu_isa_select(const std::string& name);
// Tests: the values of (kind, dtype) of nblocks blocks whose four words each are given
// (words[4i + j]: word j of block i), on the selected path's lanes, in position order.
void cpu_transform_blocks(int kind, int dtype, const uint32_t* words, void* out, uint64_t nblocks);

#if defined(FASTRAND_WITH_CUDA)
// CUDA, runtime API (nvcc build; cuda_kernel.cu). The launch plan, the launch-shape switch and
// the driver-API backend that every build has are in launch_plan.h and driver.h.
// CUDA: launched on `cuda_stream` of `device`, under a device guard; no synchronisation.
// Returns an empty string on success, else the CUDA error text.
// First use on a device: the driver's version against the runtime's (an older driver cannot run
// this build), then every kernel loaded into the device's context. "" when ready (a failure is
// not remembered: the next call tries again).
std::string cuda_prepare(int device);
// The CUDA driver's version and the version of the runtime this build links ("" or why not).
std::string cuda_versions(int* driver, int* runtime);
// variant >= 0 forces a launch shape (launch_plan.h).
std::string cuda_fill(const Request& r, int device, uintptr_t cuda_stream, int variant = -1);
// CUDA-graph mode: as cuda_fill, but (seed, stream, offset) are read from the device array
// state[3] when the kernel runs, and the offset there is advanced past the request by a kernel
// queued after it (so captured graphs draw fresh noise on every replay). r.seed/stream/offset
// are ignored.
std::string cuda_fill_state(const Request& r, uint64_t* state, int device, uintptr_t cuda_stream);
// Region draw: the box's values (r.n = its numel) in row-major order, as cuda_fill.
std::string cuda_fill_box(const Request& r, const Box& box, int device, uintptr_t cuda_stream);
// Evaluates a probe of math_probe.h over [first, first + count) on the GPU.
std::string probe_cuda_impl(int which, float* out, uint64_t first, uint64_t count, int device,
                            uintptr_t cuda_stream);
// "sm_75,sm_80,...,compute_120": what this build holds.
const char* cuda_archs();
#endif

}  // namespace fastrand
