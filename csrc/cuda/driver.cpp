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
//
// Kernels: the run-time backend compiles one small program per kernel group (an op's plain
// fills, the state fills, the box fills, the probe) and loads each into the device's primary
// context when first needed. Every loaded kernel lands in the device's one kernel table, by its
// index of launch_plan.h; a launch finds its kernel there, and a kernel whose group was not
// loaded is a clear error, never a launch of something else.
//
// fork(): a child process cannot use the parent's CUDA contexts or modules. A child handler
// forgets them (contexts, kernel tables, attribute caches), so nothing in the child ever
// launches through a handle of the parent; its first CUDA call meets torch's own check (or
// the driver's error).
#include "driver.h"

#include <dlfcn.h>
#include <pthread.h>

#include <atomic>
#include <mutex>
#include <new>

#include "launch_plan.h"

namespace fastrand {
namespace drv {
namespace {

constexpr CUresult CUDA_SUCCESS = 0;
constexpr CUresult CUDA_ERROR_INVALID_IMAGE = 200;
constexpr CUresult CUDA_ERROR_NO_BINARY_FOR_GPU = 209;
constexpr CUresult CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222;
constexpr CUresult CUDA_ERROR_NOT_FOUND = 500;
constexpr int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
constexpr int MAX_DEVICES = 64;

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

// Per device: the retained primary context, the multiprocessor count, and the kernel table.
struct DeviceState {
  std::atomic<CUcontext> ctx{nullptr};
  std::atomic<int> sms{0};
  std::atomic<CUfunction> fn[plan::N_KERNELS];
};
DeviceState g_devices[MAX_DEVICES];
std::mutex g_mutex;  // guards retaining contexts and loading modules

// In a forked child: forget the parent's contexts and kernels (see the top of this file).
void forget_after_fork() {
  for (DeviceState& d : g_devices) {
    d.ctx.store(nullptr, std::memory_order_relaxed);
    d.sms.store(0, std::memory_order_relaxed);
    for (auto& f : d.fn) f.store(nullptr, std::memory_order_relaxed);
  }
  new (&g_mutex) std::mutex();  // another thread of the parent may have held it
}
[[maybe_unused]] const int g_atfork = pthread_atfork(nullptr, nullptr, forget_after_fork);

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

Status launch(const Api& a, int device, const plan::Launch& l, void** params,
              uintptr_t cuda_stream) {
  const CUfunction fn = g_devices[device].fn[l.kernel].load(std::memory_order_acquire);
  if (fn == nullptr)
    return Status::failed(std::string("kernel ") + plan::kernel_names()[l.kernel] +
                          " is not loaded on CUDA device " + std::to_string(device) +
                          " (its group's cubin was not loaded there)");
  const CUresult e = a.cuLaunchKernel(fn, l.grid, 1, 1, l.block, 1, 1, 0,
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
};
Status enter(int device, Entry* en) {
  const Loaded& l = loaded();
  if (!l.ok) return Status::failed(l.why);
  en->a = &l.api;
  if (device < 0 || device >= MAX_DEVICES)
    return Status::bad_arg("device " + std::to_string(device) + " is not a CUDA device index");
  if (g_devices[device].ctx.load(std::memory_order_acquire) == nullptr)
    return Status::failed("no fastrand kernels are loaded on CUDA device " +
                          std::to_string(device));
  return primary_context(*en->a, device, &en->ctx);
}

}  // namespace

const Api* api() {
  const Loaded& l = loaded();
  return l.ok ? &l.api : nullptr;
}

std::string status() { return loaded().ok ? std::string() : loaded().why; }

std::string error_text(CUresult r) { return error_text_of(loaded().api, r); }

Status primary_context(int device, CUcontext* ctx) {
  const Loaded& l = loaded();
  if (!l.ok) return Status::failed(l.why);
  if (device >= 0 && device < MAX_DEVICES) {
    *ctx = g_devices[device].ctx.load(std::memory_order_acquire);
    if (*ctx != nullptr) return Status::ok();
  }
  Status s = check_device(l.api, device);
  if (s.code != Status::OK) return s;
  return primary_context(l.api, device, ctx);
}

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

Status load_module(int device, const void* image, size_t size, std::vector<std::string>* names) {
  const Loaded& l = loaded();
  if (!l.ok) return Status::failed(l.why);
  const Api& a = l.api;
  if (image == nullptr || size < 16) return Status::bad_arg("image is not a cubin (too short)");
  Status s = check_device(a, device);
  if (s.code != Status::OK) return s;
  CUcontext ctx = nullptr;
  s = primary_context(a, device, &ctx);
  if (s.code != Status::OK) return s;
  std::lock_guard<std::mutex> lock(g_mutex);
  ContextGuard guard(&a, ctx);
  if (guard.error() != CUDA_SUCCESS)
    return Status::failed("could not make CUDA device " + std::to_string(device) +
                          "'s context current: " + error_text_of(a, guard.error()));
  CUmodule mod = nullptr;
  CUresult e = a.cuModuleLoadData(&mod, image);
  if (e != CUDA_SUCCESS) {
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
  // The kernels of launch_plan.h this cubin holds (a group's program holds some of them), each
  // loaded now: with lazy loading a first launch would load it, which a stream capture may not
  // allow. They enter the device's table only once all of them loaded.
  const char* const* all = plan::kernel_names();
  CUfunction found[plan::N_KERNELS] = {};
  int count = 0;
  for (int k = 0; k < plan::N_KERNELS; ++k) {
    e = a.cuModuleGetFunction(&found[k], mod, all[k]);
    if (e == CUDA_ERROR_NOT_FOUND) {
      found[k] = nullptr;
      continue;
    }
    if (e == CUDA_SUCCESS && a.cuFuncLoad != nullptr) e = a.cuFuncLoad(found[k]);
    if (e != CUDA_SUCCESS) {
      a.cuModuleUnload(mod);
      return Status::failed(std::string("could not load kernel ") + all[k] + " on CUDA device " +
                            std::to_string(device) + ": " + error_text_of(a, e));
    }
    ++count;
  }
  if (count == 0) {
    a.cuModuleUnload(mod);
    return Status::bad_arg("the cubin holds no fastrand kernel");
  }
  // The module stays loaded for the life of the process (its kernels may be in the table).
  names->clear();
  for (int k = 0; k < plan::N_KERNELS; ++k) {
    if (found[k] == nullptr) continue;
    g_devices[device].fn[k].store(found[k], std::memory_order_release);
    names->emplace_back(all[k]);
  }
  return Status::ok();
}

#define FASTRAND_ENTER(device)                                                     \
  Entry en;                                                                        \
  {                                                                                \
    Status s_ = enter(device, &en);                                                \
    if (s_.code != Status::OK) return s_;                                          \
  }                                                                                \
  const Api& a = *en.a;                                                            \
  ContextGuard guard(&a, en.ctx);                                                  \
  if (guard.error() != CUDA_SUCCESS)                                               \
    return Status::failed("could not make CUDA device " + std::to_string(device) + \
                          "'s context current: " + error_text_of(a, guard.error()));

Status fill(const Request& r, int device, uintptr_t cuda_stream, int variant) {
  FASTRAND_ENTER(device)
  if (r.n == 0) return Status::ok();
  plan::FillArgs args;
  const plan::Launch l = plan::plan_fill(r, sm_count(a, device), args, variant);
  plan::Params p = plan::params(args);
  return launch(a, device, l, p.get(), cuda_stream);
}

Status fill_state(const Request& r, uint64_t* state, int device, uintptr_t cuda_stream) {
  FASTRAND_ENTER(device)
  plan::Launch lf, la;
  plan::StateArgs fargs;
  plan::AdvanceArgs aargs;
  plan::plan_fill_state(r, state, sm_count(a, device), lf, fargs, la, aargs);
  if (lf.kernel >= 0) {
    plan::Params p = plan::params(fargs);
    Status s = launch(a, device, lf, p.get(), cuda_stream);
    if (s.code != Status::OK) return s;
  }
  plan::Params p = plan::params(aargs);
  return launch(a, device, la, p.get(), cuda_stream);
}

Status fill_box(const Request& r, const Box& box, int device, uintptr_t cuda_stream) {
  FASTRAND_ENTER(device)
  if (r.n == 0) return Status::ok();
  plan::BoxFillArgs bargs;
  plan::FillArgs fargs;
  bool is_fill = false;
  const plan::Launch l = plan::plan_box(r, box, sm_count(a, device), bargs, fargs, is_fill);
  plan::Params p = is_fill ? plan::params(fargs) : plan::params(bargs);
  return launch(a, device, l, p.get(), cuda_stream);
}

Status probe(int which, float* out, uint64_t first, uint64_t count, int device,
             uintptr_t cuda_stream) {
  FASTRAND_ENTER(device)
  if (count == 0) return Status::ok();
  plan::ProbeArgs args;
  const plan::Launch l = plan::plan_probe(which, out, first, count, sm_count(a, device), args);
  plan::Params p = plan::params(args);
  return launch(a, device, l, p.get(), cuda_stream);
}

#undef FASTRAND_ENTER

}  // namespace drv
}  // namespace fastrand
