// Runs the CUDA kernels of csrc/cuda/fastrand_kernels.cuh on the CPU: the kernel source is compiled
// by the host compiler with the few CUDA built-ins it uses defined here, and each "launch"
// runs every thread of the grid one after another (the kernels are grid-stride loops whose
// threads never communicate, so the order does not matter). The kernel, grid, block and
// parameter array come from the launch plan (csrc/cuda/launch_plan.cpp), exactly as the driver-API
// launcher hands them to cuLaunchKernel. So this checks the kernels' index arithmetic, every
// launch shape, the state and box kernels and the plan without a GPU (the device arithmetic
// itself is the stream header's host branch here; the GPU tests cover the device branch).
//
// Usage: kernel_emu MODE KIND DTYPE SEED STREAM OFFSET N VARIANT SMS MISALIGN [BASE SIZE,..
// GSTRIDE,..]
//   MODE fill | state | box | box64 (the box kernel's 64-bit index path); MISALIGN: bytes added to
//   the output address (unaligned path).
// Prints the values' bit patterns in hex on one line (state mode: then the new offset, hex).
#include "kernel_emu.h"

static std::vector<uint64_t> list(const char* s) {  // "a,b,c"
  std::vector<uint64_t> v;
  while (*s) {
    char* end = nullptr;
    v.push_back(strtoull(s, &end, 0));
    if (end == s) break;
    s = (*end == ',') ? end + 1 : end;
  }
  return v;
}

int main(int argc, char** argv) {
  if (argc != 11 && argc != 14) {
    fprintf(stderr, "usage: see the head of kernel_emu.cpp\n");
    return 2;
  }
  const std::string mode = argv[1];
  Request r;
  r.kind = atoi(argv[2]);
  r.dtype = atoi(argv[3]);
  r.seed = strtoull(argv[4], nullptr, 0);
  r.stream = strtoull(argv[5], nullptr, 0);
  r.offset = strtoull(argv[6], nullptr, 0);
  r.n = strtoull(argv[7], nullptr, 0);
  const int variant = atoi(argv[8]);
  const int sms = atoi(argv[9]);
  const int misalign = atoi(argv[10]);
  const int op = plan::op_index(r.kind, r.dtype);
  if (op < 0 || !plan::set_variant(variant)) return 2;
  Box box{};
  if (mode == "box" || mode == "box64") {
    if (argc != 14) return 2;
    box.base = strtoull(argv[11], nullptr, 0);
    const std::vector<uint64_t> sizes = list(argv[12]), gstrides = list(argv[13]);
    if (sizes.empty() || sizes.size() != gstrides.size() || sizes.size() > 8) return 2;
    box.ndim = int(sizes.size());
    r.n = 1;
    for (int d = 0; d < box.ndim; ++d) {
      box.size[d] = sizes[d];
      box.gstride[d] = gstrides[d];
      r.n *= sizes[d];
    }
  }
  const int width = plan::op_value_bytes(op);
  // guard bytes around the output catch writes out of bounds
  const size_t guard = 64;
  std::vector<unsigned char> buf(guard + misalign + r.n * width + guard, 0xA5);
  r.out = buf.data() + guard + misalign;
  uint64_t state[3] = {r.seed, r.stream, r.offset};
  if (r.n > 0 || mode == "state") {
    if (mode == "fill") {
      plan::FillArgs a;
      const plan::Launch l = plan::plan_fill(r, sms, a);
      run(l, plan::params(a).get());
    } else if (mode == "state") {
      plan::Launch lf, la;
      plan::StateArgs fa;
      plan::AdvanceArgs aa;
      plan::plan_fill_state(r, state, sms, lf, fa, la, aa);
      if (lf.kernel >= 0) run(lf, plan::params(fa).get());
      run(la, plan::params(aa).get());
    } else if (mode == "box" || mode == "box64") {
      plan::BoxFillArgs ba;
      plan::FillArgs fa;
      bool is_fill = false;
      const plan::Launch l = plan::plan_box(r, box, sms, ba, fa, is_fill);
      if (mode == "box64") ba.box.narrow = 0;  // the 64-bit index path
      run(l, is_fill ? plan::params(fa).get() : plan::params(ba).get());
    } else {
      return 2;
    }
  }
  for (size_t i = 0; i < guard + misalign; ++i)
    if (buf[i] != 0xA5) return 4;
  for (size_t i = guard + misalign + r.n * width; i < buf.size(); ++i)
    if (buf[i] != 0xA5) return 4;
  for (uint64_t i = 0; i < r.n; ++i) {
    unsigned long long v = 0;
    memcpy(&v, static_cast<unsigned char*>(r.out) + i * width, width);
    printf(i ? " %llx" : "%llx", v);
  }
  if (mode == "state") printf("%s%llx", r.n ? " " : "", (unsigned long long)state[2]);
  printf("\n");
  return 0;
}
