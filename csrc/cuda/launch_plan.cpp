// The CUDA launch plan (launch_plan.h): which kernel, grid and arguments a request gets.
#include "launch_plan.h"

#include <atomic>

namespace fastrand {
namespace plan {
namespace {
using namespace v1;

constexpr int THREADS = 256;

#define FASTRAND_NAME_FILL(OPNAME, OP, SHAPE, IDX, UNROLL, NT) "fr_fill_" #OPNAME "_" #SHAPE,
#define FASTRAND_NAME_FILLS(OPNAME, OP) FASTRAND_KERNEL_SHAPES(FASTRAND_NAME_FILL, OPNAME, OP)
#define FASTRAND_NAME_STATE(OPNAME, OP) "fr_fill_state_" #OPNAME,
#define FASTRAND_NAME_BOX(OPNAME, OP) "fr_fill_box_" #OPNAME,
const char* const kNames[N_KERNELS] = {
    FASTRAND_KERNEL_OPS(FASTRAND_NAME_FILLS) FASTRAND_KERNEL_OPS(FASTRAND_NAME_STATE)
        FASTRAND_KERNEL_OPS(FASTRAND_NAME_BOX) "fr_advance_state",
    "fr_probe"};
#define FASTRAND_OP_NAME(OPNAME, OP) #OPNAME,
#define FASTRAND_OP_TYPE(OPNAME, OP) #OP,
const char* const kOpNames[N_OPS] = {FASTRAND_KERNEL_OPS(FASTRAND_OP_NAME)};
const char* const kOpTypes[N_OPS] = {FASTRAND_KERNEL_OPS(FASTRAND_OP_TYPE)};
#undef FASTRAND_OP_NAME
#undef FASTRAND_OP_TYPE
#undef FASTRAND_NAME_FILL
#undef FASTRAND_NAME_FILLS
#undef FASTRAND_NAME_STATE
#undef FASTRAND_NAME_BOX

#define FASTRAND_OP_PER_BLOCK(OPNAME, OP) OP::PER_BLOCK,
#define FASTRAND_OP_BYTES(OPNAME, OP) int(sizeof(OP::T)),
const int kPerBlock[N_OPS] = {FASTRAND_KERNEL_OPS(FASTRAND_OP_PER_BLOCK)};
const int kBytes[N_OPS] = {FASTRAND_KERNEL_OPS(FASTRAND_OP_BYTES)};
#undef FASTRAND_OP_PER_BLOCK
#undef FASTRAND_OP_BYTES

// Launch shapes. Every variant computes the same blocks with the same code, so all give the
// same bits; they differ only in how work is spread. Variant 0 is the default; the others exist
// for the GPU benchmark (fastrand._C.cuda_set_variant) and are tested for identity.
//   0: 32-bit indices where they fit, 1 block per thread step, grid capped at 16 CTAs per SM
//      (large float32/16 normals: as 7, see below)
//   1: 64-bit indices, 1 block per thread step, grid capped at 16 CTAs per SM
//   2: 32-bit indices where they fit, 1 block per thread step, grid capped at 8 CTAs per SM
//   3: 32-bit indices where they fit, 2 blocks per thread step, grid capped at 8 CTAs per SM
//   4: as 0 with 128-thread CTAs, grid capped at 32 CTAs per SM
//   5: as 0 with 512-thread CTAs, grid capped at 8 CTAs per SM
//   6: as 0 with one Philox block per thread and no grid cap (no loop)
//   7: 32-bit indices where they fit, 2 blocks per thread step, grid capped at 16 CTAs per SM
//   8: 32-bit indices where they fit, 4 blocks per thread step, grid capped at 8 CTAs per SM
// The default (0) switches to variant 7's shape for float32/16 normals of at least 8 whole
// 2-block grid steps: on an H200 that was 1.44-1.45x torch.randn at 2^26 and 2^28 elements
// against 1.40-1.41x with one block per step; smaller draws keep one block per step (a full
// grid matters more there).
constexpr int N_VARIANTS = 9;
std::atomic<int> g_variant{0};

// Ops whose large draws take two blocks per step: the float32/16 normals.
bool large_two_per_step(int op) { return op == 0 || op == 1 || op == 2; }

unsigned grid_for(uint64_t work, int sms, uint64_t ctas_per_sm, int threads = THREADS) {
  uint64_t want = (work + threads - 1) / threads;
  if (want == 0) want = 1;
  if (ctas_per_sm == 0) return unsigned(want < 0x7fffffffu ? want : 0x7fffffffu);
  const uint64_t cap = uint64_t(sms) * ctas_per_sm;
  return unsigned(want < cap ? want : cap);
}

constexpr int kUnroll[N_SHAPES] = {1, 1, 2, 4, 1, 1};
constexpr int kThreads[N_SHAPES] = {256, 256, 256, 256, 128, 512};

}  // namespace

const char* const* kernel_names() { return kNames; }
const char* const* op_names() { return kOpNames; }
const char* const* op_types() { return kOpTypes; }

int op_index(int kind, int dtype) {
  switch (kind * 8 + dtype) {
    case KIND_NORMAL * 8 + DT_FLOAT32:
      return 0;
    case KIND_NORMAL * 8 + DT_FLOAT16:
      return 1;
    case KIND_NORMAL * 8 + DT_BFLOAT16:
      return 2;
    case KIND_NORMAL * 8 + DT_FLOAT64:
      return 3;
    case KIND_UNIFORM * 8 + DT_FLOAT32:
      return 4;
    case KIND_UNIFORM * 8 + DT_FLOAT16:
      return 5;
    case KIND_UNIFORM * 8 + DT_BFLOAT16:
      return 6;
    case KIND_UNIFORM * 8 + DT_FLOAT64:
      return 7;
    case KIND_WORDS * 8 + DT_UINT32:
      return 8;
    default:
      return -1;
  }
}

int op_per_block(int op) { return kPerBlock[op]; }
int op_value_bytes(int op) { return kBytes[op]; }

Params params(FillArgs& a) {
  return Params{{&a.out, &a.n, &a.start, &a.stream, &a.rk, &a.nblocks, &a.nvec, nullptr}};
}
Params params(StateArgs& a) {
  return Params{{&a.out, &a.n, &a.state, &a.aligned, nullptr, nullptr, nullptr, nullptr}};
}
Params params(AdvanceArgs& a) {
  return Params{{&a.state, &a.n, &a.per_block, nullptr, nullptr, nullptr, nullptr, nullptr}};
}
Params params(BoxFillArgs& a) {
  return Params{{&a.out, &a.n, &a.start, &a.stream, &a.rk, &a.box, nullptr, nullptr}};
}
Params params(ProbeArgs& a) {
  return Params{{&a.which, &a.out, &a.first, &a.count, nullptr, nullptr, nullptr, nullptr}};
}

Launch plan_fill(const Request& r, int sms, FillArgs& args, int variant) {
  const int op = op_index(r.kind, r.dtype);
  const int P = kPerBlock[op];
  const uint64_t S = uint64_t(4 / P);
  const uint64_t start = first_position(r.offset, P);
  const uint64_t head = (start & 3u) / S;
  const uint64_t nblocks = (head + r.n + P - 1) / P;
  const bool aligned = (reinterpret_cast<uintptr_t>(r.out) % uint64_t(kBytes[op] * P)) == 0;
  const uint64_t nvec = (aligned && head == 0) ? r.n / P : 0;  // whole blocks
  // 32-bit indices: every slot index, and a thread's index one grid step past the end (at most
  // nblocks plus the grid), stays far below 2^32; and the block counter's low word does not
  // carry within the request (see block_counter in fastrand_kernels.cuh).
  const bool narrow = nblocks * P < (uint64_t(1) << 30) &&
                      ((start >> 2) & 0xffffffffu) + nblocks <= (uint64_t(1) << 32);
  const int v = variant >= 0 ? variant : g_variant.load(std::memory_order_relaxed);
  int shape = N1_256;
  uint64_t ctas_per_sm = 16;
  if (v == 1 || !narrow) {
    shape = W1_256;
  } else if (v == 2) {
    ctas_per_sm = 8;
  } else if (v == 3) {
    shape = N2_256;
    ctas_per_sm = 8;
  } else if (v == 4) {
    shape = N1_128;
    ctas_per_sm = 32;
  } else if (v == 5) {
    shape = N1_512;
    ctas_per_sm = 8;
  } else if (v == 6) {
    ctas_per_sm = 0;
  } else if (v == 7) {
    shape = N2_256;
  } else if (v == 8) {
    shape = N4_256;
    ctas_per_sm = 8;
  } else if (large_two_per_step(op) && nvec >= 16 * uint64_t(sms) * 16 * THREADS) {
    shape = N2_256;  // large normal draws: 2 blocks per step (variant 7), at least 8 whole steps
  }
  const int unroll = kUnroll[shape], nt = kThreads[shape];
  const uint64_t work = nvec > 0 ? (nvec + unroll - 1) / unroll : nblocks;
  args = FillArgs{r.out, r.n, start, r.stream, make_round_keys(r.seed), nblocks, nvec};
  return Launch{op * N_SHAPES + shape, grid_for(work, sms, ctas_per_sm, nt), unsigned(nt)};
}

void plan_fill_state(const Request& r, uint64_t* state, int sms, Launch& fill, StateArgs& fargs,
                     Launch& advance, AdvanceArgs& aargs) {
  const int op = op_index(r.kind, r.dtype);
  const int P = kPerBlock[op];
  fill = Launch{-1, 0, 0};
  if (r.n > 0) {
    const uint64_t most_blocks = (3 + r.n + P - 1) / P;  // the head is not known on the host
    const bool aligned = (reinterpret_cast<uintptr_t>(r.out) % uint64_t(kBytes[op] * P)) == 0;
    fargs = StateArgs{r.out, r.n, state, aligned};
    fill = Launch{K_STATE + op, grid_for(most_blocks, sms, 16), unsigned(THREADS)};
  }
  // n = 0 still advances an odd offset to even for float64 (spec section 5)
  aargs = AdvanceArgs{state, r.n, P};
  advance = Launch{K_ADVANCE, 1, 1};
}

Launch plan_box(const Request& r, const Box& box, int sms, BoxFillArgs& bargs, FillArgs& fargs,
                bool& is_fill) {
  const int op = op_index(r.kind, r.dtype);
  const int P = kPerBlock[op];
  // (size, gstride) from the innermost dimension out, normalised
  uint64_t size[MAX_BOX_DIMS], gstride[MAX_BOX_DIMS];
  int nd = 0;
  for (int d = box.ndim - 1; d >= 0; --d) {
    if (nd > 0 && box.size[d] == 1) continue;  // a leading index that is always 0
    if (nd > 0 && box.gstride[d] == size[nd - 1] * gstride[nd - 1]) {
      size[nd - 1] *= box.size[d];  // contiguous with the dimension inside it: merge
      continue;
    }
    size[nd] = box.size[d];
    gstride[nd] = box.gstride[d];
    ++nd;
  }
  const uint64_t start = first_position(r.offset, P);
  is_fill = nd == 1;
  if (is_fill) {  // one run: global values base .. base + n - 1, a plain fill
    Request run = r;
    run.offset = P == 4 ? r.offset + box.base : start + 2 * box.base;
    return plan_fill(run, sms, fargs);
  }
  BoxArgs b{};
  b.base = box.base;
  b.rowlen = size[0];
  b.lead_dims = uint64_t(nd - 1);
  bool narrow = true;
  for (int d = 1; d < nd; ++d) {  // outermost first in BoxArgs
    b.size[nd - 1 - d] = size[d];
    b.gstride[nd - 1 - d] = gstride[d];
    narrow = narrow && size[d] < (uint64_t(1) << 32);
  }
  // a row's values start at slot head (0 <= head < P) of its first block
  b.row_blocks = (uint64_t(P - 1) + b.rowlen + uint64_t(P - 1)) / uint64_t(P);
  const uint64_t items = (r.n / b.rowlen) * b.row_blocks;
  b.narrow = narrow && items < (uint64_t(1) << 32) ? 1 : 0;
  bargs = BoxFillArgs{r.out, r.n, start, r.stream, make_round_keys(r.seed), b};
  return Launch{K_BOX + op, grid_for(items, sms, 16), unsigned(THREADS)};
}

Launch plan_probe(int which, float* out, uint64_t first, uint64_t count, int sms, ProbeArgs& args) {
  args = ProbeArgs{which, out, first, count};
  return Launch{K_PROBE, grid_for(count, sms, 16), unsigned(THREADS)};
}

bool set_variant(int variant) {
  if (variant < 0 || variant >= N_VARIANTS) return false;
  g_variant.store(variant, std::memory_order_relaxed);
  return true;
}

int variant_count() { return N_VARIANTS; }

}  // namespace plan
}  // namespace fastrand
