// CPU backend: instruction-set dispatch and threads around the per-ISA fill loops.
#include <stdlib.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "backend.h"
#include "fastrand_stream.h"

namespace fastrand {

void cpu_fill_piece_scalar(const Request& r, uint64_t first, uint64_t count);
#if defined(__x86_64__) || defined(_M_X64)
#define FR_X86 1
void cpu_fill_piece_avx2(const Request& r, uint64_t first, uint64_t count);
void cpu_fill_piece_avx512(const Request& r, uint64_t first, uint64_t count);
#endif

namespace {

using PieceFn = void (*)(const Request&, uint64_t, uint64_t);

struct Isa {
  const char* name;
  PieceFn fn;
};

std::vector<Isa> available_isas() {
  std::vector<Isa> v;
  v.push_back({"scalar", cpu_fill_piece_scalar});
#if defined(FR_X86)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (avx2) v.push_back({"avx2", cpu_fill_piece_avx2});
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    v.push_back({"avx512", cpu_fill_piece_avx512});
#endif
  return v;
}

const std::vector<Isa>& isas() {
  static const std::vector<Isa> v = available_isas();
  return v;
}

int initial_isa() {
  const char* env = getenv("FASTRAND_CPU_ISA");
  const auto& v = isas();
  if (env != nullptr && *env != '\0') {
    for (size_t i = 0; i < v.size(); ++i)
      if (std::string(env) == v[i].name) return int(i);
    // An unavailable forced path falls back to scalar: always correct, never faster than asked.
    return 0;
  }
  return int(v.size()) - 1;
}

std::atomic<int>& selected() {
  static std::atomic<int> s{initial_isa()};
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
  // relative to the request (an alignment for speed only: results never depend on it).
  uint64_t piece = (r.n + t - 1) / t;
  piece = (piece + 63) & ~uint64_t(63);
  std::vector<std::thread> pool;
  pool.reserve(t - 1);
  for (uint64_t k = 1; k < t; ++k) {
    const uint64_t first = k * piece;
    if (first >= r.n) break;
    const uint64_t count = (r.n - first < piece) ? r.n - first : piece;
    pool.emplace_back([&r, fn, first, count] { fn(r, first, count); });
  }
  fn(r, 0, piece < r.n ? piece : r.n);
  for (auto& th : pool) th.join();
}

}  // namespace fastrand
