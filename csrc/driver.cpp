// CUDA driver API loader and launcher (driver.h): the run-time backend launches NVRTC-compiled
// cubins of fastrand_kernels.cuh with the launch plan of launch_plan.h, the same plan the nvcc
// build uses.
//
// The context guard, and why:
//  - A launch goes to the target device's PRIMARY context (the one torch and the CUDA runtime
//    use), retained once per device and kept for the life of the process.
//  - On entry the guard reads the thread's current context. If it is already the target, the
//    guard does nothing. Otherwise it makes the target current and, on exit, puts back exactly
//    what was current on entry: the previous context when there was one, or no context at all
//    (cuCtxSetCurrent(NULL), which creates nothing). It never selects a device by index, so it
//    can never create a context on a device the call does not draw on: the runtime's
//    "cudaSetDevice(previous device)" restore would, in a thread with no current context, create
//    device 0's primary context (hundreds of MB on GPU 0 for every rank of a one-process-per-GPU
//    job). Leaving the target current instead would silently change the thread's current device
//    as the CUDA runtime (and so torch) sees it.
//  - Attribute queries (the multiprocessor count, for the grid size) fall back to a default on
//    failure and leave no error state behind: the driver API has no sticky "last error", and a
//    failed query is never reported as a failed launch.
//  - Errors carry the driver's error name (CUDA_ERROR_...) and description; a cubin the driver
//    cannot load says so (too old a driver, another GPU architecture).
#include "driver.h"

#include <dlfcn.h>

#include <atomic>
#include <mutex>

#include "launch_plan.h"

namespace fastrand {
namespace drv {
namespace {

constexpr CUresult CUDA_SUCCESS = 0;
constexpr CUresult CUDA_ERROR_INVALID_IMAGE = 200;
constexpr CUresult CUDA_ERROR_NO_BINARY_FOR_GPU = 209;
constexpr CUresult CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222;
constexpr int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
constexpr int MAX_DEVICES = 64;
constexpr int MAX_MODULES = 4096;

std::string error_text_of(const Api& a, CUresult r) {
  const char* name = nullptr;
  const char* text = nullptr;
  if (a.cuGetErrorName == nullptr || a.cuGetErrorName(r, &name) != CUDA_SUCCESS) name = nullptr;
  if (a.cuGetErrorString == nullptr || a.cuGetErrorString(r, &text) != CUDA_SUCCESS) text = nullptr;
  std::string s = name ? std::string(name) : "CUDA driver error " + std::to_string(r);
  if (text) s += std::string(": ") + text;
  return s;
}

struct Loaded {
  Api api{};
  bool ok = false;
  std::string why;
};

template <class F>
bool sym(void* lib, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  return f != nullptr;
}

const Loaded& loaded() {
  static const Loaded* l = [] {
    Loaded* r = new Loaded();  // never freed: used until the process ends
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* e = dlerror();
      r->why = std::string("the CUDA driver (libcuda.so.1) could not be loaded: ") +
               (e ? e : "unknown error");
      return r;
    }
    Api& a = r->api;
    const char* missing = nullptr;
#define FASTRAND_SYM(name) \
  if (!missing && !sym(lib, #name, a.name)) missing = #name;
    FASTRAND_SYM(cuInit)
    FASTRAND_SYM(cuDeviceGetCount)
    FASTRAND_SYM(cuDeviceGet)
    FASTRAND_SYM(cuDeviceGetAttribute)
    FASTRAND_SYM(cuDevicePrimaryCtxRetain)
    FASTRAND_SYM(cuCtxGetCurrent)
    FASTRAND_SYM(cuCtxSetCurrent)
    FASTRAND_SYM(cuModuleLoadData)
    FASTRAND_SYM(cuModuleUnload)
    FASTRAND_SYM(cuModuleGetFunction)
    FASTRAND_SYM(cuLaunchKernel)
    FASTRAND_SYM(cuGetErrorName)
    FASTRAND_SYM(cuGetErrorString)
#undef FASTRAND_SYM
    if (missing) {
      r->why = std::string("the CUDA driver (libcuda.so.1) lacks ") + missing;
      return r;
    }
    sym(lib, "cuFuncLoad", a.cuFuncLoad);  // optional (CUDA 12.4+)
    const CUresult e = a.cuInit(0);
    if (e != CUDA_SUCCESS) {
      r->why = "cuInit failed: " + error_text_of(a, e);
      return r;
    }
    r->ok = true;
    return r;
  }();
  return *l;
}

// Per device: the retained primary context and the multiprocessor count.
struct DeviceState {
  std::atomic<CUcontext> ctx{nullptr};
  std::atomic<int> sms{0};
};
DeviceState g_devices[MAX_DEVICES];
std::mutex g_mutex;  // guards retaining contexts and adding modules

struct Module {
  int device;
  CUmodule mod;
  CUfunction fn[plan::N_KERNELS];
};
std::atomic<Module*> g_modules[MAX_MODULES];
std::atomic<int> g_module_count{0};

Status check_device(const Api& a, int device) {
  int count = 0;
  const CUresult e = a.cuDeviceGetCount(&count);
  if (e != CUDA_SUCCESS) return Status::failed("cuDeviceGetCount failed: " + error_text_of(a, e));
  if (device < 0 || device >= count || device >= MAX_DEVICES)
    return Status::bad_arg("device " + std::to_string(device) + " is not a CUDA device index (" +
                           std::to_string(count) + " visible)");
  return Status::ok();
}

// The retained primary context of a device (checked index).
Status primary_context(const Api& a, int device, CUcontext* out) {
  CUcontext c = g_devices[device].ctx.load(std::memory_order_acquire);
  if (c == nullptr) {
    std::lock_guard<std::mutex> lock(g_mutex);
    c = g_devices[device].ctx.load(std::memory_order_acquire);
    if (c == nullptr) {
      CUdevice dev = 0;
      CUresult e = a.cuDeviceGet(&dev, device);
      if (e == CUDA_SUCCESS) e = a.cuDevicePrimaryCtxRetain(&c, dev);
      if (e != CUDA_SUCCESS)
        return Status::failed("could not retain the primary context of CUDA device " +
                              std::to_string(device) + ": " + error_text_of(a, e));
      g_devices[device].ctx.store(c, std::memory_order_release);
    }
  }
  *out = c;
  return Status::ok();
}

// The multiprocessor count (the grid cap); 80 if the query fails. The failure leaves no state
// behind and is not reported: it only shapes the grid, never the values.
int sm_count(const Api& a, int device) {
  int sms = g_devices[device].sms.load(std::memory_order_relaxed);
  if (sms > 0) return sms;
  CUdevice dev = 0;
  if (a.cuDeviceGet(&dev, device) != CUDA_SUCCESS ||
      a.cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev) != CUDA_SUCCESS ||
      sms <= 0)
    sms = 80;
  g_devices[device].sms.store(sms, std::memory_order_relaxed);
  return sms;
}

// A loaded module by id, checked against the device it is launched on.
Status find_module(int64_t id, int device, const Module** out) {
  if (id < 1 || id > g_module_count.load(std::memory_order_acquire))
    return Status::bad_arg("module " + std::to_string(id) +
                           " is not a module id from drv_load_module");
  const Module* m = g_modules[id - 1].load(std::memory_order_acquire);
  if (m == nullptr)
    return Status::bad_arg("module " + std::to_string(id) +
                           " is not a module id from drv_load_module");
  if (m->device != device)
    return Status::bad_arg("module " + std::to_string(id) + " was loaded for CUDA device " +
                           std::to_string(m->device) + ", not device " + std::to_string(device));
  *out = m;
  return Status::ok();
}

Status launch(const Api& a, const Module& m, const plan::Launch& l, void** params,
              uintptr_t cuda_stream) {
  const CUresult e = a.cuLaunchKernel(m.fn[l.kernel], l.grid, 1, 1, l.block, 1, 1, 0,
                                      reinterpret_cast<CUstream>(cuda_stream), params, nullptr);
  if (e != CUDA_SUCCESS)
    return Status::failed(std::string("launch of ") + plan::kernel_names()[l.kernel] +
                          " failed: " + error_text_of(a, e));
  return Status::ok();
}

// What every launching entry point does first: the driver, the device, its context.
struct Entry {
  const Api* a = nullptr;
  CUcontext ctx = nullptr;
  const Module* m = nullptr;
};
Status enter(int64_t module, int device, Entry* en) {
  const Loaded& l = loaded();
  if (!l.ok) return Status::failed(l.why);
  en->a = &l.api;
  if (device < 0 || device >= MAX_DEVICES)
    return Status::bad_arg("device " + std::to_string(device) + " is not a CUDA device index");
  Status s = find_module(module, device, &en->m);
  if (s.code != Status::OK) return s;
  return primary_context(*en->a, device, &en->ctx);
}

}  // namespace

const Api* api() {
  const Loaded& l = loaded();
  return l.ok ? &l.api : nullptr;
}

std::string status() { return loaded().ok ? std::string() : loaded().why; }

std::string error_text(CUresult r) { return error_text_of(loaded().api, r); }

ContextGuard::ContextGuard(const Api* a, CUcontext target) : a_(a) {
  CUcontext cur = nullptr;
  err_ = a_->cuCtxGetCurrent(&cur);
  if (err_ != CUDA_SUCCESS || cur == target) return;
  err_ = a_->cuCtxSetCurrent(target);
  if (err_ == CUDA_SUCCESS) {
    prev_ = cur;  // may be null: no context was current, and none will be after the guard
    swapped_ = true;
  }
}

ContextGuard::~ContextGuard() {
  if (swapped_) a_->cuCtxSetCurrent(prev_);
}

Status load_module(int device, const void* image, size_t size, int64_t* id) {
  const Loaded& l = loaded();
  if (!l.ok) return Status::failed(l.why);
  const Api& a = l.api;
  if (image == nullptr || size < 16) return Status::bad_arg("image is not a cubin (too short)");
  Status s = check_device(a, device);
  if (s.code != Status::OK) return s;
  CUcontext ctx = nullptr;
  s = primary_context(a, device, &ctx);
  if (s.code != Status::OK) return s;
  ContextGuard guard(&a, ctx);
  if (guard.error() != CUDA_SUCCESS)
    return Status::failed("could not make CUDA device " + std::to_string(device) +
                          "'s context current: " + error_text_of(a, guard.error()));
  Module* m = new Module();
  m->device = device;
  CUresult e = a.cuModuleLoadData(&m->mod, image);
  if (e != CUDA_SUCCESS) {
    delete m;
    std::string why = "could not load the kernel cubin on CUDA device " + std::to_string(device) +
                      ": " + error_text_of(a, e);
    if (e == CUDA_ERROR_UNSUPPORTED_PTX_VERSION)
      why +=
          " (the driver is too old for this cubin: update the NVIDIA driver, or use an NVRTC "
          "no newer than the CUDA version the driver supports)";
    else if (e == CUDA_ERROR_NO_BINARY_FOR_GPU)
      why +=
          " (the cubin holds no code for this GPU's architecture, or the driver is too old "
          "for it)";
    else if (e == CUDA_ERROR_INVALID_IMAGE)
      why += " (the cubin is damaged, or made by a CUDA newer than this driver)";
    return Status::failed(why);
  }
  const char* const* names = plan::kernel_names();
  for (int k = 0; k < plan::N_KERNELS; ++k) {
    e = a.cuModuleGetFunction(&m->fn[k], m->mod, names[k]);
    // Load every kernel now (with lazy loading, a first launch would load it, which a stream
    // capture may not allow).
    if (e == CUDA_SUCCESS && a.cuFuncLoad != nullptr) e = a.cuFuncLoad(m->fn[k]);
    if (e != CUDA_SUCCESS) {
      a.cuModuleUnload(m->mod);
      delete m;
      return Status::failed(std::string("the kernel cubin lacks ") + names[k] + ": " +
                            error_text_of(a, e));
    }
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  const int slot = g_module_count.load(std::memory_order_relaxed);
  if (slot >= MAX_MODULES) {
    a.cuModuleUnload(m->mod);
    delete m;
    return Status::failed("too many kernel modules loaded (" + std::to_string(MAX_MODULES) + ")");
  }
  g_modules[slot].store(m, std::memory_order_release);
  g_module_count.store(slot + 1, std::memory_order_release);
  *id = slot + 1;
  return Status::ok();
}

#define FASTRAND_ENTER(module, device)                                             \
  Entry en;                                                                        \
  {                                                                                \
    Status s_ = enter(module, device, &en);                                        \
    if (s_.code != Status::OK) return s_;                                          \
  }                                                                                \
  const Api& a = *en.a;                                                            \
  ContextGuard guard(&a, en.ctx);                                                  \
  if (guard.error() != CUDA_SUCCESS)                                               \
    return Status::failed("could not make CUDA device " + std::to_string(device) + \
                          "'s context current: " + error_text_of(a, guard.error()));

Status fill(int64_t module, const Request& r, int device, uintptr_t cuda_stream) {
  FASTRAND_ENTER(module, device)
  if (r.n == 0) return Status::ok();
  plan::FillArgs args;
  const plan::Launch l = plan::plan_fill(r, sm_count(a, device), args);
  plan::Params p = plan::params(args);
  return launch(a, *en.m, l, p.get(), cuda_stream);
}

Status fill_state(int64_t module, const Request& r, uint64_t* state, int device,
                  uintptr_t cuda_stream) {
  FASTRAND_ENTER(module, device)
  plan::Launch lf, la;
  plan::StateArgs fargs;
  plan::AdvanceArgs aargs;
  plan::plan_fill_state(r, state, sm_count(a, device), lf, fargs, la, aargs);
  if (lf.kernel >= 0) {
    plan::Params p = plan::params(fargs);
    Status s = launch(a, *en.m, lf, p.get(), cuda_stream);
    if (s.code != Status::OK) return s;
  }
  plan::Params p = plan::params(aargs);
  return launch(a, *en.m, la, p.get(), cuda_stream);
}

Status fill_box(int64_t module, const Request& r, const Box& box, int device,
                uintptr_t cuda_stream) {
  FASTRAND_ENTER(module, device)
  if (r.n == 0) return Status::ok();
  plan::BoxFillArgs args;
  const plan::Launch l = plan::plan_box(r, box, sm_count(a, device), args);
  plan::Params p = plan::params(args);
  return launch(a, *en.m, l, p.get(), cuda_stream);
}

#undef FASTRAND_ENTER

}  // namespace drv
}  // namespace fastrand
