// A CPU torch.Generator's state read as a stream v1 position, and the state a draw writes back
// (docs/torch-generators.md, "CPU generators"). Plain C++ on raw bytes: no torch inside; the
// caller passes the 5056 bytes of get_state() and sets the state written.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <mutex>
#include <vector>

namespace fastrand {

// BLAKE2b with an 8-byte digest, no key, the given salt and personalisation (each at most 16
// bytes, zero-padded as hashlib does), read as a little-endian integer (RFC 7693).
uint64_t blake2b64(const uint8_t* data, size_t n, const char* salt, const char* person);

constexpr size_t CPU_STATE_BYTES = 5056;  // torch's CPUGeneratorImplState

// C(seed, stream, pos): the state a draw that ends at `pos` of `stream` leaves behind.
void cpu_state_build(uint64_t seed, uint64_t stream, uint64_t pos, uint8_t* out);

// Philox generators (CUDA and others; docs/torch-generators.md, "Philox generators"): the
// state is (seed, offset), and fastrand's position is encoded in the offset.
struct PhiloxDraw {
  uint64_t generation;  // the stream is 2^63 + generation
  uint64_t position;    // where the draw starts
  uint64_t after;       // the offset that records the draw
};
// The draw of n values (per_block 1, or 2 for float64) from the state (seed, offset).
PhiloxDraw philox_draw(uint64_t seed, uint64_t offset, uint64_t n, int per_block);

struct CpuPosition {
  uint64_t seed, stream, offset;
};

// Reads CPU generator states and writes the states that record draws. Remembers the last
// `capacity` states it wrote, so that a state it wrote is recognised by one comparison instead
// of a rebuild; the memory changes speed, never a result. Thread-safe.
class CpuStates {
 public:
  explicit CpuStates(size_t capacity);
  // The position of an n-value request (per_block values per Philox position pair: 1, or 2 for
  // float64) from `state`, and in `out` the state after it. `fresh` is torch's state right
  // after manual_seed(seed of `state`), or null: then only a state this object wrote is read
  // (for any other: returns false with pos->seed set, and writes nothing).
  bool draw(const uint8_t* state, const uint8_t* fresh, uint64_t n, int per_block, uint8_t* out,
            CpuPosition* pos);

 private:
  bool remembered(const uint8_t* state);
  std::mutex mutex_;
  std::vector<uint8_t> written_;  // capacity states of CPU_STATE_BYTES, a ring
  size_t capacity_, count_ = 0, next_ = 0;
};

}  // namespace fastrand
