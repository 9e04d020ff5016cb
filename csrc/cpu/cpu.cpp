// CPU backend: instruction-set dispatch and threads around the per-ISA fill loops.
#include <stdlib.h>

#include <atomic>
#include <string>
#include <vector>

#include "backend.h"
#include "fastrand_stream.h"
#include "parallel.h"

namespace fastrand {

void cpu_fill_piece_scalar(const Request& r, uint64_t first, uint64_t count);
void cpu_transform_blocks_scalar(int, int, const uint32_t*, void*, uint64_t);
#if defined(__x86_64__) || defined(_M_X64)
#define FR_X86 1
void cpu_fill_piece_avx2(const Request& r, uint64_t first, uint64_t count);
void cpu_fill_piece_avx512(const Request& r, uint64_t first, uint64_t count);
void cpu_transform_blocks_avx2(int, int, const uint32_t*, void*, uint64_t);
void cpu_transform_blocks_avx512(int, int, const uint32_t*, void*, uint64_t);
#elif defined(__aarch64__) || defined(_M_ARM64)
#define FR_ARM64 1
void cpu_fill_piece_neon(const Request& r, uint64_t first, uint64_t count);
void cpu_transform_blocks_neon(int, int, const uint32_t*, void*, uint64_t);
#endif

namespace {

using PieceFn = void (*)(const Request&, uint64_t, uint64_t);
using TransformFn = void (*)(int, int, const uint32_t*, void*, uint64_t);

struct Isa {
  const char* name;
  PieceFn fn;
  TransformFn transform;
};

std::vector<Isa> available_isas() {
  std::vector<Isa> v;
  v.push_back({"scalar", cpu_fill_piece_scalar, cpu_transform_blocks_scalar});
#if defined(FR_X86)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (avx2) v.push_back({"avx2", cpu_fill_piece_avx2, cpu_transform_blocks_avx2});
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    v.push_back({"avx512", cpu_fill_piece_avx512, cpu_transform_blocks_avx512});
#elif defined(FR_ARM64)
  // Advanced SIMD is part of every AArch64 core: nothing to check at run time.
  v.push_back({"neon", cpu_fill_piece_neon, cpu_transform_blocks_neon});
#endif
  return v;
}

const std::vector<Isa>& isas() {
  static const std::vector<Isa> v = available_isas();
  return v;
}

// The names $FASTRAND_CPU_ISA may hold, whether or not this build and processor offer them.
constexpr const char* KNOWN_ISAS[] = {"scalar", "avx2", "avx512", "neon"};

struct InitialIsa {
  int index;
  std::string warning;  // non-empty when $FASTRAND_CPU_ISA names no CPU path at all (a typo)
};

InitialIsa read_initial_isa() {
  const char* env = getenv("FASTRAND_CPU_ISA");
  const auto& v = isas();
  if (env == nullptr || *env == '\0') return {int(v.size()) - 1, ""};
  const std::string want(env);
  for (size_t i = 0; i < v.size(); ++i)
    if (want == v[i].name) return {int(i), ""};
  // An unavailable forced path falls back to scalar: always correct, never faster than asked.
  // A name that is no path at all is most likely a typo: the same fallback, but said aloud.
  for (const char* known : KNOWN_ISAS)
    if (want == known) return {0, ""};
  std::string names;
  for (const char* known : KNOWN_ISAS) names += std::string(names.empty() ? "" : ", ") + known;
  return {0, "FASTRAND_CPU_ISA=" + want + " names no CPU path (expected one of " + names +
                 "); using scalar"};
}

const InitialIsa& initial_isa() {
  static const InitialIsa i = read_initial_isa();
  return i;
}

std::atomic<int>& selected() {
  static std::atomic<int> s{initial_isa().index};
  return s;
}

// Below this many values per thread, threads cost more than they save.
constexpr uint64_t MIN_VALUES_PER_THREAD = uint64_t(1) << 16;

}  // namespace

bool valid_kind_dtype(int kind, int dtype) {
  using namespace v1;
  if (kind == KIND_NORMAL || kind == KIND_UNIFORM)
    return dtype == DT_FLOAT32 || dtype == DT_FLOAT16 || dtype == DT_BFLOAT16 ||
           dtype == DT_FLOAT64;
  return kind == KIND_WORDS && dtype == DT_UINT32;
}

std::vector<std::string> cpu_isa_available() {
  std::vector<std::string> names;
  for (const auto& i : isas()) names.push_back(i.name);
  return names;
}

std::string cpu_isa_env_warning() { return initial_isa().warning; }

std::string cpu_isa_selected() { return isas()[selected().load()].name; }

bool cpu_isa_select(const std::string& name) {
  const auto& v = isas();
  for (size_t i = 0; i < v.size(); ++i)
    if (name == v[i].name) {
      selected().store(int(i));
      return true;
    }
  return false;
}

void cpu_transform_blocks(int kind, int dtype, const uint32_t* words, void* out, uint64_t nblocks) {
  isas()[selected().load()].transform(kind, dtype, words, out, nblocks);
}

void cpu_fill(const Request& r, int threads) {
  if (r.n == 0) return;
  const PieceFn fn = isas()[selected().load()].fn;
  uint64_t t = threads < 1 ? 1 : uint64_t(threads);
  const uint64_t most = (r.n + MIN_VALUES_PER_THREAD - 1) / MIN_VALUES_PER_THREAD;
  if (t > most) t = most;
  if (t <= 1) {
    fn(r, 0, r.n);
    return;
  }
  // Pieces of whole multiples of 64 values, so every piece but the last is block-aligned
  // relative to the request (an alignment for speed only: results never depend on it). A piece
  // whose thread cannot be created runs on this thread (run_pieces).
  uint64_t piece = (r.n + t - 1) / t;
  piece = (piece + 63) & ~uint64_t(63);
  const uint64_t pieces = (r.n + piece - 1) / piece;
  run_pieces(pieces, [&r, fn, piece](uint64_t k) {
    const uint64_t first = k * piece;
    fn(r, first, (r.n - first < piece) ? r.n - first : piece);
  });
}

}  // namespace fastrand
