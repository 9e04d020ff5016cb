// CUDA backend of the nvcc build: the kernels of fastrand_kernels.cuh (the source NVRTC compiles
// too), launched through the CUDA runtime with the launch plan of launch_plan.h, the same plan
// the driver-API launcher (driver.cpp) uses for NVRTC-compiled cubins.
#include <cuda_runtime.h>

#include <string>

#include "backend.h"
#include "driver.h"
#include "fastrand_kernels.cuh"
#include "launch_plan.h"
#include "math_probe.h"

#ifndef FASTRAND_CUDA_ARCHS
#define FASTRAND_CUDA_ARCHS "unknown"
#endif

// The math probes of the device check: an nvcc-build-only debugging aid, not a stream kernel.
__global__ void fr_probe(int which, float* out, uint64_t first, uint64_t count) {
  const uint64_t step = uint64_t(gridDim.x) * blockDim.x;
  for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += step)
    fastrand::probe_eval(which, out, i, first);
}

namespace fastrand {
namespace {

// The kernels by index of launch_plan.h (same order as plan::kernel_names()).
#define FASTRAND_PTR_FILL(OPNAME, OP, SHAPE, IDX, UNROLL, NT) \
  reinterpret_cast<const void*>(&fr_fill_##OPNAME##_##SHAPE),
#define FASTRAND_PTR_FILLS(OPNAME, OP) FASTRAND_KERNEL_SHAPES(FASTRAND_PTR_FILL, OPNAME, OP)
#define FASTRAND_PTR_STATE(OPNAME, OP) reinterpret_cast<const void*>(&fr_fill_state_##OPNAME),
#define FASTRAND_PTR_BOX(OPNAME, OP) reinterpret_cast<const void*>(&fr_fill_box_##OPNAME),
const void* const kKernels[plan::N_KERNELS] = {
    FASTRAND_KERNEL_OPS(FASTRAND_PTR_FILLS) FASTRAND_KERNEL_OPS(FASTRAND_PTR_STATE)
        FASTRAND_KERNEL_OPS(FASTRAND_PTR_BOX) reinterpret_cast<const void*>(&fr_advance_state)};
#undef FASTRAND_PTR_FILL
#undef FASTRAND_PTR_FILLS
#undef FASTRAND_PTR_STATE
#undef FASTRAND_PTR_BOX

constexpr int MAX_DEVICES = 64;

// The multiprocessor count (the grid cap); 80 if the query fails. A failed runtime call leaves
// its error as the runtime's sticky "last error": it is cleared here, so that the launch check
// never reports a failed query as a failed launch (the kernel would have run).
int sm_count(int device) {
  static int cached[MAX_DEVICES] = {0};
  if (device >= 0 && device < MAX_DEVICES && cached[device] > 0) return cached[device];
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      sms <= 0) {
    cudaGetLastError();
    sms = 80;
  }
  if (device >= 0 && device < MAX_DEVICES) cached[device] = sms;
  return sms;
}

// Every kernel of the module loaded into the device's context at the first launch there: with
// lazy loading (CUDA 12.2+ default) a kernel variant first used inside a stream capture would
// otherwise be loaded during the capture. Failures are harmless here (a launch reports its own).
void preload(int device) {
  static bool done[MAX_DEVICES] = {false};
  if (device < 0 || device >= MAX_DEVICES || done[device]) return;
  cudaFuncAttributes attr;
  for (int k = 0; k < plan::N_KERNELS; ++k) cudaFuncGetAttributes(&attr, kKernels[k]);
  cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(&fr_probe));
  cudaGetLastError();
  done[device] = true;
}

// Selects `device` for the guard's lifetime (the runtime's launches go to the current device).
// It reads the thread's current context with the driver API first: when a context is current
// and belongs to `device`, nothing changes; otherwise cudaSetDevice(device), and on exit the
// context that was current on entry is put back as it was, none included (cuCtxSetCurrent, which
// creates nothing). The old "cudaSetDevice(previous device)" restore created device 0's primary
// context in any thread that had no current context (see driver.cpp).
struct DeviceGuard {
  const drv::Api* a = drv::api();
  drv::CUcontext prev = nullptr;
  bool restore = false;
  cudaError_t err = cudaSuccess;
  explicit DeviceGuard(int device) {
    // The runtime links the same driver, so its entry points are there; without them the guard
    // still selects the device but restores nothing rather than risk creating a context.
    bool have_ctx = false;
    if (a != nullptr && a->cuCtxGetCurrent(&prev) == 0) have_ctx = prev != nullptr;
    int cur = -1;
    if (have_ctx && cudaGetDevice(&cur) == cudaSuccess && cur == device) return;
    err = cudaSetDevice(device);
    if (err != cudaSuccess) {
      cudaGetLastError();  // not this call's launch error: reported through err
      return;
    }
    restore = a != nullptr;
  }
  ~DeviceGuard() {
    if (restore) a->cuCtxSetCurrent(prev);
  }
};

std::string error_string(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

// Launches and returns the launch's own result (and clears the sticky copy of it).
cudaError_t launch(const plan::Launch& l, void** params, cudaStream_t st) {
  const cudaError_t e =
      cudaLaunchKernel(kKernels[l.kernel], dim3(l.grid), dim3(l.block), params, 0, st);
  if (e != cudaSuccess) cudaGetLastError();
  return e;
}

}  // namespace

std::string cuda_fill(const Request& r, int device, uintptr_t cuda_stream) {
  if (r.n == 0) return std::string();
  DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return error_string(guard.err);
  preload(device);
  plan::FillArgs args;
  const plan::Launch l = plan::plan_fill(r, sm_count(device), args);
  plan::Params p = plan::params(args);
  const cudaError_t e = launch(l, p.get(), reinterpret_cast<cudaStream_t>(cuda_stream));
  return e == cudaSuccess ? std::string() : error_string(e);
}

std::string cuda_fill_state(const Request& r, uint64_t* state, int device, uintptr_t cuda_stream) {
  DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return error_string(guard.err);
  preload(device);
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(cuda_stream);
  plan::Launch lf, la;
  plan::StateArgs fargs;
  plan::AdvanceArgs aargs;
  plan::plan_fill_state(r, state, sm_count(device), lf, fargs, la, aargs);
  if (lf.kernel >= 0) {
    plan::Params p = plan::params(fargs);
    const cudaError_t e = launch(lf, p.get(), st);
    if (e != cudaSuccess) return error_string(e);
  }
  plan::Params p = plan::params(aargs);
  const cudaError_t e = launch(la, p.get(), st);
  return e == cudaSuccess ? std::string() : error_string(e);
}

std::string cuda_fill_box(const Request& r, const Box& box, int device, uintptr_t cuda_stream) {
  if (r.n == 0) return std::string();
  DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return error_string(guard.err);
  preload(device);
  plan::BoxFillArgs args;
  const plan::Launch l = plan::plan_box(r, box, sm_count(device), args);
  plan::Params p = plan::params(args);
  const cudaError_t e = launch(l, p.get(), reinterpret_cast<cudaStream_t>(cuda_stream));
  return e == cudaSuccess ? std::string() : error_string(e);
}

std::string probe_cuda_impl(int which, float* out, uint64_t first, uint64_t count, int device,
                            uintptr_t cuda_stream) {
  if (count == 0) return std::string();
  DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return error_string(guard.err);
  preload(device);
  const uint64_t work = (count + 255) / 256;
  const uint64_t cap = uint64_t(sm_count(device)) * 16;
  const unsigned grid = unsigned(work < cap ? (work > 0 ? work : 1) : cap);
  fr_probe<<<grid, 256, 0, reinterpret_cast<cudaStream_t>(cuda_stream)>>>(which, out, first, count);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : error_string(e);
}

const char* cuda_archs() { return FASTRAND_CUDA_ARCHS; }

}  // namespace fastrand
