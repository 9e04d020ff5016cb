// A stand-in for the CUDA driver (libcuda.so.1) for tests without a GPU: the subset of the driver
// API that fastrand's driver-API backend (csrc/cuda/driver.cpp) opens, with fastrand's kernels run
// on the CPU by the emulator (kernel_emu.h) on host memory. A "module" is any image the driver
// would take (an NVRTC cubin, or a NUL-terminated text): a kernel is in it when its name is, as
// the symbol string of a cubin is. So the real run-time backend (NVRTC compile, image cache,
// kernel groups, the known-answer check, the per-device kernel table, the launch plan) runs end to
// end, every launch on the CPU.
//
// Environment: FAKE_CUDA_REFUSE=1 refuses every image (CUDA_ERROR_NO_BINARY_FOR_GPU);
// FAKE_CUDA_CORRUPT=1 flips a bit of the first value of every plain fill (a wrong kernel).
#include <stdint.h>

#include "kernel_emu.h"

#define FAKE_API extern "C" __attribute__((visibility("default")))

namespace {

typedef int CUresult;
constexpr CUresult OK = 0, NOT_INITIALIZED = 3, INVALID_VALUE = 1, INVALID_DEVICE = 101,
                   NO_BINARY_FOR_GPU = 209, NOT_FOUND = 500;

int g_primary = 0;                       // the one device's primary context (its address)
thread_local void* g_current = nullptr;  // the calling thread's current context

struct Module {
  std::string image;
};

// The image's bytes: an ELF cubin's size from its header, else a NUL-terminated text.
std::string image_bytes(const void* image) {
  const unsigned char* p = static_cast<const unsigned char*>(image);
  if (memcmp(p,
             "\x7f"
             "ELF",
             4) == 0 &&
      p[4] == 2) {
    uint64_t shoff = 0;
    uint16_t shentsize = 0, shnum = 0;
    memcpy(&shoff, p + 0x28, 8);
    memcpy(&shentsize, p + 0x3A, 2);
    memcpy(&shnum, p + 0x3C, 2);
    return std::string(reinterpret_cast<const char*>(p), shoff + uint64_t(shentsize) * shnum);
  }
  return std::string(reinterpret_cast<const char*>(p));
}

// A kernel is in an image when its name is, between NUL bytes (a cubin's symbol strings).
bool holds(const std::string& image, const char* name) {
  return image.find(std::string(1, '\0') + name + std::string(1, '\0')) != std::string::npos;
}

}  // namespace

FAKE_API CUresult cuInit(unsigned) { return OK; }
FAKE_API CUresult cuDeviceGetCount(int* n) {
  *n = 1;
  return OK;
}
FAKE_API CUresult cuDeviceGet(int* dev, int index) {
  if (index != 0) return INVALID_DEVICE;
  *dev = 0;
  return OK;
}
FAKE_API CUresult cuDeviceGetAttribute(int* value, int attr, int dev) {
  if (dev != 0) return INVALID_DEVICE;
  *value = attr == 16 ? 4 : 0;  // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: a small GPU
  return OK;
}
FAKE_API CUresult cuDevicePrimaryCtxRetain(void** ctx, int dev) {
  if (dev != 0) return INVALID_DEVICE;
  *ctx = &g_primary;
  return OK;
}
FAKE_API CUresult cuCtxGetCurrent(void** ctx) {
  *ctx = g_current;
  return OK;
}
FAKE_API CUresult cuCtxSetCurrent(void* ctx) {
  g_current = ctx;
  return OK;
}
FAKE_API CUresult cuModuleLoadData(void** module, const void* image) {
  if (g_current != &g_primary) return NOT_INITIALIZED;  // the loader makes the context current
  if (getenv("FAKE_CUDA_REFUSE")) return NO_BINARY_FOR_GPU;
  *module = new Module{image_bytes(image)};
  return OK;
}
FAKE_API CUresult cuModuleUnload(void* module) {
  delete static_cast<Module*>(module);
  return OK;
}
FAKE_API CUresult cuModuleGetFunction(void** fn, void* module, const char* name) {
  const Module* m = static_cast<const Module*>(module);
  const char* const* names = plan::kernel_names();
  for (int k = 0; k < plan::N_KERNELS; ++k)
    if (strcmp(names[k], name) == 0) {
      if (!holds(m->image, name)) return NOT_FOUND;
      *fn = reinterpret_cast<void*>(intptr_t(k) + 1);
      return OK;
    }
  return NOT_FOUND;
}
FAKE_API CUresult cuFuncLoad(void*) { return OK; }
FAKE_API CUresult cuLaunchKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                 unsigned by, unsigned bz, unsigned shmem, void* stream,
                                 void** params, void** extra) {
  if (g_current != &g_primary) return NOT_INITIALIZED;  // launches go to the primary context
  if (gy != 1 || gz != 1 || by != 1 || bz != 1 || shmem != 0 || extra != nullptr || stream)
    return INVALID_VALUE;
  const int k = int(reinterpret_cast<intptr_t>(fn)) - 1;
  if (!run_launch(plan::Launch{k, gx, bx}, params)) return INVALID_VALUE;
  if (getenv("FAKE_CUDA_CORRUPT") && k < plan::K_STATE) {
    unsigned char* out = *static_cast<unsigned char**>(params[0]);
    if (*static_cast<uint64_t*>(params[1]) > 0) out[0] ^= 1;  // n > 0: the first value is wrong
  }
  return OK;
}
FAKE_API CUresult cuGetErrorName(CUresult r, const char** name) {
  *name = r == NO_BINARY_FOR_GPU ? "CUDA_ERROR_NO_BINARY_FOR_GPU"
          : r == NOT_FOUND       ? "CUDA_ERROR_NOT_FOUND"
                                 : "CUDA_ERROR_FAKE";
  return OK;
}
FAKE_API CUresult cuGetErrorString(CUresult r, const char** text) {
  *text = r == NO_BINARY_FOR_GPU ? "no kernel image is available for execution on the device"
                                 : "an error of the stand-in driver";
  return OK;
}
