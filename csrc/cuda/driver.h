// CUDA driver API, opened at run time (libcuda.so.1 through dlopen): the loader and launcher of
// the run-time (NVRTC) backend, and the context guard that both CUDA launchers use. Plain host
// C++ with its own minimal driver typedefs: it needs no CUDA header and is compiled in every
// build. See driver.cpp for what the guard does and why.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "backend.h"

namespace fastrand {
namespace drv {

// The few driver types used here, with the driver's ABI (cuda.h).
typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st* CUcontext;
typedef struct CUmod_st* CUmodule;
typedef struct CUfunc_st* CUfunction;
typedef struct CUstream_st* CUstream;

struct Api {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGetCount)(int*);
  CUresult (*cuDeviceGet)(CUdevice*, int);
  CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*cuCtxGetCurrent)(CUcontext*);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuModuleLoadData)(CUmodule*, const void*);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*cuFuncLoad)(CUfunction);  // CUDA 12.4+ drivers; may be null
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, CUstream, void**, void**);
  CUresult (*cuGetErrorName)(CUresult, const char**);
  CUresult (*cuGetErrorString)(CUresult, const char**);
};

// The driver's entry points, loaded and initialised (cuInit) once; null if that failed.
const Api* api();
// "" when the driver loaded and cuInit(0) succeeded, else why not.
std::string status();
// "CUDA_ERROR_NAME: description" of a driver result.
std::string error_text(CUresult r);

// Makes `target` the calling thread's current context for the guard's lifetime, then puts back
// exactly the context that was current on entry (see driver.cpp).
class ContextGuard {
 public:
  ContextGuard(const Api* a, CUcontext target);
  ~ContextGuard();
  ContextGuard(const ContextGuard&) = delete;
  ContextGuard& operator=(const ContextGuard&) = delete;
  CUresult error() const { return err_; }

 private:
  const Api* a_;
  CUcontext prev_ = nullptr;
  bool swapped_ = false;
  CUresult err_ = 0;
};

// The outcome of a driver-backend call: ok, a bad argument (-> ValueError) or a CUDA failure
// (-> RuntimeError), with its message.
struct Status {
  enum Code { OK = 0, BAD_ARG = 1, FAILED = 2 } code = OK;
  std::string msg;
  static Status ok() { return Status(); }
  static Status bad_arg(std::string m) { return Status{BAD_ARG, std::move(m)}; }
  static Status failed(std::string m) { return Status{FAILED, std::move(m)}; }
};

// The primary context of a device, retained once (for the life of the process) and cached.
Status primary_context(int device, CUcontext* ctx);

// Loads a cubin into `device`'s primary context (retained for the life of the process), loads
// the kernels of launch_plan.h it holds and enters them in the device's kernel table; *names
// receives their names.
Status load_module(int device, const void* image, size_t size, std::vector<std::string>* names);
// Launches on `cuda_stream` of `device` with the kernels loaded there (no synchronisation);
// variant >= 0 forces a launch shape (launch_plan.h).
Status fill(const Request& r, int device, uintptr_t cuda_stream, int variant = -1);
Status fill_state(const Request& r, uint64_t* state, int device, uintptr_t cuda_stream);
Status fill_box(const Request& r, const Box& box, int device, uintptr_t cuda_stream);
// The math probe (math_probe.h) over [first, first + count) into out.
Status probe(int which, float* out, uint64_t first, uint64_t count, int device,
             uintptr_t cuda_stream);

}  // namespace drv
}  // namespace fastrand
