// CPU torch.Generator states as stream v1 positions (docs/torch-generators.md, "CPU
// generators"). The state is torch's CPUGeneratorImplState, little-endian: the_initial_seed u64
// at 0, left i32 at 8, seeded i32 at 12, next u64 at 16, the 624 mt19937 words as u64 (upper
// halves zero) at 24, the cached normals from 5016.
#include "torch_state.h"

#include <string.h>

#include "backend.h"
#include "fastrand_stream.h"

namespace fastrand {

namespace {

constexpr uint64_t TORCH_STREAM = uint64_t(1) << 63;
constexpr uint64_t M32 = 0xFFFFFFFFu;
constexpr uint64_t CPU_TAG = 0x46524731;  // "FRG1": word 0 of a state a fastrand draw wrote
constexpr int CPU_WORDS = 624;
constexpr int CPU_FILLER = CPU_WORDS - 5;  // words 5..623: raw stream v1 words, hashed key
constexpr size_t WORDS_AT = 24;
constexpr size_t NORMALS_AT = WORDS_AT + 8 * CPU_WORDS;
const char PERSON[] = "fastrand-torch";  // BLAKE2b personalisation of every hash

// Little-endian 64-bit loads and stores (one move on a little-endian host).
uint64_t load64(const uint8_t* p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
#else
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
#endif
}
void store64(uint8_t* p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(p, &v, 8);
#else
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i));
#endif
}
uint64_t word(const uint8_t* state, int j) { return load64(state + WORDS_AT + 8 * j); }

// BLAKE2b (RFC 7693) ----------------------------------------------------------------------------
constexpr uint64_t IV[8] = {0x6a09e667f3bcc908u, 0xbb67ae8584caa73bu, 0x3c6ef372fe94f82bu,
                            0xa54ff53a5f1d36f1u, 0x510e527fade682d1u, 0x9b05688c2b3e6c1fu,
                            0x1f83d9abfb41bd6bu, 0x5be0cd19137e2179u};
constexpr uint8_t SIGMA[12][16] = {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
                                   {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
                                   {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
                                   {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
                                   {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
                                   {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
                                   {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
                                   {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
                                   {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
                                   {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
                                   {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
                                   {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

uint64_t rotr(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

void mix(uint64_t* v, int a, int b, int c, int d, uint64_t x, uint64_t y) {
  v[a] += v[b] + x;
  v[d] = rotr(v[d] ^ v[a], 32);
  v[c] += v[d];
  v[b] = rotr(v[b] ^ v[c], 24);
  v[a] += v[b] + y;
  v[d] = rotr(v[d] ^ v[a], 16);
  v[c] += v[d];
  v[b] = rotr(v[b] ^ v[c], 63);
}

// One 128-byte block; `bytes`: the message bytes hashed up to the end of this block.
void compress(uint64_t h[8], const uint8_t* block, uint64_t bytes, bool last) {
  uint64_t v[16], m[16];
  for (int i = 0; i < 8; ++i) v[i] = h[i], v[i + 8] = IV[i];
  v[12] ^= bytes;  // (the counter's high word stays 0: messages here are far below 2^64 bytes)
  if (last) v[14] = ~v[14];
  for (int i = 0; i < 16; ++i) m[i] = load64(block + 8 * i);
#pragma GCC unroll 12
  for (const auto& s : SIGMA) {
    mix(v, 0, 4, 8, 12, m[s[0]], m[s[1]]);
    mix(v, 1, 5, 9, 13, m[s[2]], m[s[3]]);
    mix(v, 2, 6, 10, 14, m[s[4]], m[s[5]]);
    mix(v, 3, 7, 11, 15, m[s[6]], m[s[7]]);
    mix(v, 0, 5, 10, 15, m[s[8]], m[s[9]]);
    mix(v, 1, 6, 11, 12, m[s[10]], m[s[11]]);
    mix(v, 2, 7, 8, 13, m[s[12]], m[s[13]]);
    mix(v, 3, 4, 9, 14, m[s[14]], m[s[15]]);
  }
  for (int i = 0; i < 8; ++i) h[i] ^= v[i] ^ v[i + 8];
}

uint64_t hash_values(const char* tag, uint64_t a, uint64_t b, uint64_t c) {
  uint8_t packed[24];
  store64(packed, a);
  store64(packed + 8, b);
  store64(packed + 16, c);
  return blake2b64(packed, sizeof packed, tag, PERSON);
}

// Rule 2's fields: the tag, left = 1, next = 0 and (stream, position) in 32-bit halves.
bool carried_position(const uint8_t* state, uint64_t* stream, uint64_t* pos) {
  if (word(state, 0) != CPU_TAG || (load64(state + 8) & M32) != 1 || load64(state + 16) != 0)
    return false;
  for (int j = 1; j <= 4; ++j)
    if (word(state, j) > M32) return false;
  *stream = word(state, 1) | word(state, 2) << 32;
  *pos = word(state, 3) | word(state, 4) << 32;
  return true;
}

}  // namespace

uint64_t blake2b64(const uint8_t* data, size_t n, const char* salt, const char* person) {
  uint8_t param[64] = {8, 0, 1, 1};  // digest length, key length, fanout, depth; rest zero
  memcpy(param + 32, salt, strnlen(salt, 16));
  memcpy(param + 48, person, strnlen(person, 16));
  uint64_t h[8];
  for (int i = 0; i < 8; ++i) h[i] = IV[i] ^ load64(param + 8 * i);
  size_t done = 0;
  for (; n - done > 128; done += 128) compress(h, data + done, done + 128, false);
  uint8_t last[128] = {};
  if (n > done) memcpy(last, data + done, n - done);
  compress(h, last, n, true);
  return h[0];
}

void cpu_state_build(uint64_t seed, uint64_t stream, uint64_t pos, uint8_t* out) {
  uint32_t filler[CPU_FILLER];
  const uint64_t key = hash_values("cpu-fill", seed, stream, pos);
  cpu_fill(Request{filler, CPU_FILLER, v1::KIND_WORDS, v1::DT_UINT32, key, 0, 0}, 1);
  store64(out, seed);
  store64(out + 8, uint64_t(1) | uint64_t(1) << 32);  // left = 1, seeded = 1
  store64(out + 16, 0);                               // next
  const uint64_t head[5] = {CPU_TAG, stream & M32, stream >> 32, pos & M32, pos >> 32};
  for (int j = 0; j < 5; ++j) store64(out + WORDS_AT + 8 * j, head[j]);
  for (int j = 0; j < CPU_FILLER; ++j) store64(out + WORDS_AT + 8 * (5 + j), filler[j]);
  memset(out + NORMALS_AT, 0, CPU_STATE_BYTES - NORMALS_AT);  // no cached normals
}

namespace {

constexpr int PX_CURSOR_BITS = 41;
constexpr uint64_t PX_CURSOR_MASK = (uint64_t(1) << PX_CURSOR_BITS) - 1;
constexpr uint64_t PX_GENERATIONS = 8;
constexpr int PX_START_BITS = 40;  // a sequence from a state torch touched first starts below
constexpr int PX_GAP_BITS = 24;    // after a state torch touched: past the cursor by 1 + gap

uint64_t hash2(const char* tag, uint64_t a, uint64_t b) {
  uint8_t packed[16];
  store64(packed, a);
  store64(packed + 8, b);
  return blake2b64(packed, sizeof packed, tag, PERSON);
}

uint64_t px_check(uint64_t seed, uint64_t high) { return hash2("check", seed, high) >> 49; }

uint64_t px_encode(uint64_t seed, uint64_t generation, uint64_t cursor) {
  const uint64_t high = uint64_t(1) << 44 | generation << PX_CURSOR_BITS | cursor;
  return high << 18 | px_check(seed, high) << 2;
}

uint64_t px_next_generation(uint64_t g) { return g % (PX_GENERATIONS - 1) + 1; }  // 1..7

}  // namespace

PhiloxDraw philox_draw(uint64_t seed, uint64_t offset, uint64_t n, int per_block) {
  uint64_t generation = 0, pos = 0;
  if (offset == 0) {  // rule 1: right after manual_seed(seed)
  } else if (offset >> 62 == 1 && (offset & 3) == 0) {
    const uint64_t high = offset >> 18;
    generation = (high >> PX_CURSOR_BITS) & (PX_GENERATIONS - 1);
    pos = high & PX_CURSOR_MASK;
    if (((offset >> 2) & 0xFFFF) != px_check(seed, high)) {
      // rule 3: torch used the generator after a fastrand draw; one generation further, past
      // the cursor by a gap hashed from the state
      generation = px_next_generation(generation);
      pos += 1 + (hash2("gap", seed, offset) >> (64 - PX_GAP_BITS));
    }  // else rule 2: a state a fastrand draw left
  } else {  // rule 4: torch used the generator since it was seeded, or set_offset put it here
    generation = 1;
    pos = hash2("start", seed, offset) >> (64 - PX_START_BITS);
  }
  uint64_t g = generation, end = v1::next_offset(pos, n, per_block);
  if (end > PX_CURSOR_MASK) {  // past what the offset can hold: one generation further
    g = px_next_generation(g);
    end = hash_values("wrap", seed, g, end) >> (64 - PX_START_BITS);
  }
  return PhiloxDraw{generation, pos, px_encode(seed, g, end)};
}

CpuStates::CpuStates(size_t capacity) : written_(capacity * CPU_STATE_BYTES), capacity_(capacity) {}

bool CpuStates::remembered(const uint8_t* state) {
  for (size_t k = 1; k <= count_; ++k) {  // the newest first
    const size_t slot = (next_ + capacity_ - k) % capacity_;
    if (memcmp(&written_[slot * CPU_STATE_BYTES], state, CPU_STATE_BYTES) == 0) return true;
  }
  return false;
}

bool CpuStates::draw(const uint8_t* state, const uint8_t* fresh, uint64_t n, int per_block,
                     uint8_t* out, CpuPosition* pos) {
  // A remembered state is read by rule 2 at once (as the Python reader did): this object built
  // it as C(seed, stream, position), which could be torch's seeded state (rule 1) only if 619
  // Philox words equalled mt19937's seeding. Any other state: rules 1, 2, 3 in order.
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t seed = load64(state);
  uint64_t stream = 0, offset = 0;
  if (remembered(state)) {
    carried_position(state, &stream, &offset);
  } else if (fresh == nullptr) {
    pos->seed = seed;
    return false;
  } else if (memcmp(state, fresh, CPU_STATE_BYTES) == 0) {  // rule 1: right after manual_seed
    stream = TORCH_STREAM;
  } else {
    uint8_t rebuilt[CPU_STATE_BYTES];
    const bool carried = carried_position(state, &stream, &offset);
    if (carried) cpu_state_build(seed, stream, offset, rebuilt);
    if (!carried || memcmp(state, rebuilt, CPU_STATE_BYTES) != 0) {  // rule 3: any other state
      stream = TORCH_STREAM | blake2b64(state, CPU_STATE_BYTES, "cpu", PERSON) >> 1;
      offset = 0;
    }
  }
  *pos = CpuPosition{seed, stream, offset};
  cpu_state_build(seed, stream, v1::next_offset(offset, n, per_block), out);
  if (capacity_ != 0) {
    memcpy(&written_[next_ * CPU_STATE_BYTES], out, CPU_STATE_BYTES);
    next_ = (next_ + 1) % capacity_;
    if (count_ < capacity_) ++count_;
  }
  return true;
}

}  // namespace fastrand
