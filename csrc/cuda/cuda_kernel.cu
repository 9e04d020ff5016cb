// CUDA backend of the nvcc build: the kernels of fastrand_kernels.cuh (the source NVRTC compiles
// too), launched through the CUDA runtime with the launch plan of launch_plan.h, the same plan
// the driver-API launcher (driver.cpp) uses for NVRTC-compiled cubins.
#include <cuda_runtime.h>

#include <pthread.h>

#include <atomic>
#include <string>

#include "backend.h"
#include "driver.h"
#include "fastrand_kernels.cuh"
#include "launch_plan.h"

#ifndef FASTRAND_CUDA_ARCHS
#define FASTRAND_CUDA_ARCHS "unknown"
#endif

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
        FASTRAND_KERNEL_OPS(FASTRAND_PTR_BOX) reinterpret_cast<const void*>(&fr_advance_state),
    reinterpret_cast<const void*>(&fr_probe)};
#undef FASTRAND_PTR_FILL
#undef FASTRAND_PTR_FILLS
#undef FASTRAND_PTR_STATE
#undef FASTRAND_PTR_BOX

constexpr int MAX_DEVICES = 64;

// Per device: the multiprocessor count (0 = not asked yet) and whether every kernel is loaded.
std::atomic<int> g_sms[MAX_DEVICES];
std::atomic<bool> g_ready[MAX_DEVICES];

// A forked child cannot use the parent's CUDA state: it asks again (see driver.cpp).
void forget_after_fork() {
  for (int d = 0; d < MAX_DEVICES; ++d) {
    g_sms[d].store(0, std::memory_order_relaxed);
    g_ready[d].store(false, std::memory_order_relaxed);
  }
}
[[maybe_unused]] const int g_atfork = pthread_atfork(nullptr, nullptr, forget_after_fork);

// The multiprocessor count (the grid cap); 80 if the query fails. A failed runtime call leaves
// its error as the runtime's sticky "last error": it is cleared here, so that the launch check
// never reports a failed query as a failed launch (the kernel would have run).
int sm_count(int device) {
  if (device >= 0 && device < MAX_DEVICES) {
    const int c = g_sms[device].load(std::memory_order_relaxed);
    if (c > 0) return c;
  }
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      sms <= 0) {
    cudaGetLastError();
    sms = 80;
  }
  if (device >= 0 && device < MAX_DEVICES) g_sms[device].store(sms, std::memory_order_relaxed);
  return sms;
}

// Selects `device` for the guard's lifetime (the runtime's launches go to the current device).
// It compares the thread's current context with the device's primary context (the one the
// runtime and torch use) through the driver API: when it is already current, nothing changes;
// otherwise cudaSetDevice(device), and on exit the context that was current on entry is put back
// as it was, none included (cuCtxSetCurrent, which creates nothing). The old "cudaSetDevice
// (previous device)" restore created device 0's primary context in any thread that had no
// current context (see driver.cpp).
struct DeviceGuard {
  const drv::Api* a = drv::api();
  drv::CUcontext prev = nullptr;
  bool restore = false;
  cudaError_t err = cudaSuccess;
  std::string why;  // a driver-side failure (err is then cudaErrorInvalidDevice)
  explicit DeviceGuard(int device) {
    if (a == nullptr) {
      // The runtime opens the same driver, so this does not happen where launches can work;
      // if it does, select the device and restore nothing rather than risk creating a context.
      err = cudaSetDevice(device);
      if (err != cudaSuccess) cudaGetLastError();  // reported through err, not as a launch
      return;
    }
    drv::CUcontext target = nullptr;
    const drv::Status s = drv::primary_context(device, &target);
    if (s.code != drv::Status::OK) {
      err = cudaErrorInvalidDevice;
      why = s.msg;
      return;
    }
    if (a->cuCtxGetCurrent(&prev) == 0 && prev == target) return;
    err = cudaSetDevice(device);
    if (err != cudaSuccess) {
      cudaGetLastError();  // reported through err, not as a launch error
      return;
    }
    restore = true;
  }
  ~DeviceGuard() {
    if (restore) a->cuCtxSetCurrent(prev);
  }
  std::string error() const {
    if (!why.empty()) return why;
    return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
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

std::string cuda_versions(int* driver, int* runtime) {
  *runtime = CUDART_VERSION;
  *driver = 0;
  const cudaError_t e = cudaDriverGetVersion(driver);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return error_string(e);
  }
  return std::string();
}

std::string cuda_prepare(int device) {
  if (device < 0 || device >= MAX_DEVICES)
    return "device " + std::to_string(device) + " is out of range";
  if (g_ready[device].load(std::memory_order_acquire)) return std::string();
  // The runtime linked in needs a driver of at least its own CUDA version: an older driver
  // fails every call, so say so plainly before trying.
  int driver = 0, runtime = 0;
  std::string err = cuda_versions(&driver, &runtime);
  if (!err.empty()) return "cannot read the CUDA driver's version: " + err;
  if (driver < runtime)
    return "the NVIDIA driver supports CUDA " + std::to_string(driver / 1000) + "." +
           std::to_string(driver % 1000 / 10) + ", older than the CUDA " +
           std::to_string(runtime / 1000) + "." + std::to_string(runtime % 1000 / 10) +
           " runtime this build of fastrand was compiled with";
  DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return guard.error();
  // Every kernel of the module loaded into the device's context now: with lazy loading (CUDA
  // 12.2+ default) a kernel first used inside a stream capture would otherwise be loaded during
  // the capture. A failure is reported (and the next call tries again), never marked done.
  cudaFuncAttributes attr;
  for (int k = 0; k < plan::N_KERNELS; ++k) {
    const cudaError_t e = cudaFuncGetAttributes(&attr, kKernels[k]);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return std::string("could not load kernel ") + plan::kernel_names()[k] + ": " +
             error_string(e);
    }
  }
  sm_count(device);
  g_ready[device].store(true, std::memory_order_release);
  return std::string();
}

std::string cuda_fill(const Request& r, int device, uintptr_t cuda_stream, int variant) {
  if (r.n == 0) return std::string();
  DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return guard.error();
  plan::FillArgs args;
  const plan::Launch l = plan::plan_fill(r, sm_count(device), args, variant);
  plan::Params p = plan::params(args);
  const cudaError_t e = launch(l, p.get(), reinterpret_cast<cudaStream_t>(cuda_stream));
  return e == cudaSuccess ? std::string() : error_string(e);
}

std::string cuda_fill_state(const Request& r, uint64_t* state, int device, uintptr_t cuda_stream) {
  DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return guard.error();
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
  if (guard.err != cudaSuccess) return guard.error();
  plan::BoxFillArgs bargs;
  plan::FillArgs fargs;
  bool is_fill = false;
  const plan::Launch l = plan::plan_box(r, box, sm_count(device), bargs, fargs, is_fill);
  plan::Params p = is_fill ? plan::params(fargs) : plan::params(bargs);
  const cudaError_t e = launch(l, p.get(), reinterpret_cast<cudaStream_t>(cuda_stream));
  return e == cudaSuccess ? std::string() : error_string(e);
}

std::string probe_cuda_impl(int which, float* out, uint64_t first, uint64_t count, int device,
                            uintptr_t cuda_stream) {
  if (count == 0) return std::string();
  DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return guard.error();
  plan::ProbeArgs args;
  const plan::Launch l = plan::plan_probe(which, out, first, count, sm_count(device), args);
  plan::Params p = plan::params(args);
  const cudaError_t e = launch(l, p.get(), reinterpret_cast<cudaStream_t>(cuda_stream));
  return e == cudaSuccess ? std::string() : error_string(e);
}

const char* cuda_archs() { return FASTRAND_CUDA_ARCHS; }

}  // namespace fastrand
