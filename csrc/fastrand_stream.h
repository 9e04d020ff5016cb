// fastrand noise stream v1: the one copy of the stream math (docs/noise-stream.md).
//
// Plain C++17, compiled for the host by every CPU translation unit and as __host__ __device__
// code by nvcc. No torch, no libm transcendental: logarithm, sine and cosine are the spec's own
// polynomials, every fused multiply-add is explicit, and nothing else may be fused (host builds
// use -ffp-contract=off; device code uses the __f*_rn / __d*_rn intrinsics, which nvcc never
// contracts). Bit-identity between backends comes from sharing this file.
#pragma once

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#if defined(__FAST_MATH__)
#error "fastrand stream math must not be compiled with -ffast-math / -Ofast"
#endif
#if defined(__CUDACC__) && defined(__USE_FAST_MATH__)
#error "fastrand stream math must not be compiled with --use_fast_math"
#endif

#if defined(__CUDACC__)
#define FR_HD __host__ __device__ __forceinline__
#else
#define FR_HD inline __attribute__((always_inline))
#endif

namespace fastrand {
namespace v1 {

// ---------------------------------------------------------------------------------------------
// Philox4x32-10 (spec section 1)
constexpr uint32_t PHILOX_M0 = 0xD2511F53u;
constexpr uint32_t PHILOX_M1 = 0xCD9E8D57u;
constexpr uint32_t PHILOX_W0 = 0x9E3779B9u;
constexpr uint32_t PHILOX_W1 = 0xBB67AE85u;
constexpr int PHILOX_ROUNDS = 10;
// Block indices live in [0, 2^62): positions (64-bit, wrapping) divided by 4.
constexpr uint64_t BLOCK_MASK = (uint64_t(1) << 62) - 1;

struct Words4 {
  uint32_t x, y, z, w;
};

// The ten round keys of one seed, computed once per request.
struct RoundKeys {
  uint32_t k0[PHILOX_ROUNDS];
  uint32_t k1[PHILOX_ROUNDS];
};

FR_HD RoundKeys make_round_keys(uint64_t seed) {
  RoundKeys rk;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int r = 0; r < PHILOX_ROUNDS; ++r) {
    rk.k0[r] = k0;
    rk.k1[r] = k1;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  return rk;
}

FR_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  lo = a * b;
  hi = __umulhi(a, b);
#else
  uint64_t p = uint64_t(a) * uint64_t(b);
  lo = uint32_t(p);
  hi = uint32_t(p >> 32);
#endif
}

FR_HD Words4 philox_round(Words4 c, uint32_t k0, uint32_t k1) {
  uint32_t hi0, lo0, hi1, lo1;
  mulhilo32(PHILOX_M0, c.x, hi0, lo0);
  mulhilo32(PHILOX_M1, c.z, hi1, lo1);
  return Words4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
}

FR_HD Words4 philox_rk(Words4 c, const RoundKeys& rk) {
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int r = 0; r < PHILOX_ROUNDS; ++r) c = philox_round(c, rk.k0[r], rk.k1[r]);
  return c;
}

// Plain Philox4x32-10 with a two-word key (used for the known-answer tests).
FR_HD Words4 philox(Words4 c, uint32_t k0, uint32_t k1) {
  c = philox_round(c, k0, k1);
  for (int r = 1; r < PHILOX_ROUNDS; ++r) {
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
    c = philox_round(c, k0, k1);
  }
  return c;
}

// The four words of block b of a stream (spec section 2).
FR_HD Words4 block_words(uint64_t block, uint64_t stream, const RoundKeys& rk) {
  return philox_rk(Words4{uint32_t(block), uint32_t(block >> 32), uint32_t(stream),
                          uint32_t(stream >> 32)},
                   rk);
}

// ---------------------------------------------------------------------------------------------
// Exactly rounded binary32 / binary64 primitives. On the host, -ffp-contract=off keeps `*` and
// `+` separate; the fma builtins compile to the hardware instruction where the target has one,
// and to glibc's correctly rounded fma otherwise.
FR_HD float f_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FR_HD float f_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
FR_HD float f_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
FR_HD float f_fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return __builtin_fmaf(a, b, c);
#endif
}
FR_HD float f_sqrt(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return __builtin_sqrtf(a);  // -fno-math-errno: one sqrtss, IEEE correctly rounded
#endif
}
FR_HD float f_from_u32(uint32_t v) {  // correctly rounded conversion
#if defined(__CUDA_ARCH__)
  return __uint2float_rn(v);
#else
  return float(v);
#endif
}
FR_HD float f_from_i32(int32_t v) {  // |v| < 2^24 here: exact
#if defined(__CUDA_ARCH__)
  return __int2float_rn(v);
#else
  return float(v);
#endif
}
FR_HD float f_bits(uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float f;
  memcpy(&f, &b, 4);
  return f;
#endif
}
FR_HD uint32_t bits_f(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t b;
  memcpy(&b, &f, 4);
  return b;
#endif
}

FR_HD double d_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
FR_HD double d_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
FR_HD double d_sub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
FR_HD double d_div(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
FR_HD double d_fma(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return __builtin_fma(a, b, c);
#endif
}
FR_HD double d_sqrt(double a) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(a);
#else
  return __builtin_sqrt(a);
#endif
}
FR_HD double d_from_u64(uint64_t v) {  // v <= 2^53 here: exact
#if defined(__CUDA_ARCH__)
  return __ull2double_rn(v);
#else
  return double(v);
#endif
}
FR_HD double d_bits(uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double((long long)b);
#else
  double d;
  memcpy(&d, &b, 8);
  return d;
#endif
}
FR_HD uint64_t bits_d(double d) {
#if defined(__CUDA_ARCH__)
  return (uint64_t)__double_as_longlong(d);
#else
  uint64_t b;
  memcpy(&b, &d, 8);
  return b;
#endif
}

// ---------------------------------------------------------------------------------------------
// float32 normals (spec section 3)
namespace c32 {
constexpr uint32_t SQRTHF = 0x3f3504f3u;
constexpr uint32_t P0 = 0x3d9021bbu, P1 = 0xbdebd1b8u, P2 = 0x3def251au, P3 = 0xbdfe5d4fu,
                   P4 = 0x3e11e9bfu, P5 = 0xbe2aae50u, P6 = 0x3e4cceacu, P7 = 0xbe7ffffcu,
                   P8 = 0x3eaaaaaau, Q1 = 0xb95e8083u, Q2 = 0x3f318000u;
constexpr uint32_t HALF_PI_2M24 = 0x33c90fdbu;
constexpr uint32_t S0 = 0xb94ca1f9u, S1 = 0x3c08839eu, S2 = 0xbe2aaaa3u, C0 = 0x37ccf5ceu,
                   C1 = 0xbab6061au, C2 = 0x3d2aaaa5u;
constexpr uint32_t SIGN = 0x80000000u;
}  // namespace c32

// logC (Cephes logf polynomial), v positive and normal.
FR_HD float log_c(float v) {
  using namespace c32;
  const uint32_t b = bits_f(v);
  int32_t e = int32_t((b >> 23) & 0xffu) - 126;
  const float m = f_bits((b & 0x807fffffu) | 0x3f000000u);
  const bool low = m < f_bits(SQRTHF);
  e -= low ? 1 : 0;
  const float x = f_sub(low ? f_add(m, m) : m, 1.0f);
  float y = f_bits(P0);
  y = f_fma(y, x, f_bits(P1));
  y = f_fma(y, x, f_bits(P2));
  y = f_fma(y, x, f_bits(P3));
  y = f_fma(y, x, f_bits(P4));
  y = f_fma(y, x, f_bits(P5));
  y = f_fma(y, x, f_bits(P6));
  y = f_fma(y, x, f_bits(P7));
  y = f_fma(y, x, f_bits(P8));
  const float z = f_mul(x, x);
  y = f_mul(f_mul(y, x), z);
  const float fe = f_from_i32(e);
  y = f_fma(fe, f_bits(Q1), y);
  y = f_fma(z, -0.5f, y);
  const float t = f_add(x, y);
  return f_fma(fe, f_bits(Q2), t);
}

FR_HD float radius32(uint32_t w0) {
  const float u = f_add(f_mul(f_from_u32(w0), 0x1p-32f), 0x1p-33f);
  return f_sqrt(f_mul(-2.0f, log_c(u)));
}

// sin and cos of the angle encoded by w1, integer quadrant reduction.
FR_HD void angle32(uint32_t w1, float& sin_out, float& cos_out) {
  using namespace c32;
  const uint32_t q = w1 >> 30;
  uint32_t t = (w1 >> 6) & 0xffffffu;
  const bool mirror = t > 0x800000u;
  t = mirror ? 0x1000000u - t : t;
  const float a = f_mul(f_from_u32(t), f_bits(HALF_PI_2M24));
  const float z = f_mul(a, a);
  float ps = f_fma(f_bits(S0), z, f_bits(S1));
  ps = f_fma(ps, z, f_bits(S2));
  const float s = f_fma(f_mul(ps, z), a, a);
  float pc = f_fma(f_bits(C0), z, f_bits(C1));
  pc = f_fma(pc, z, f_bits(C2));
  const float c = f_add(f_fma(z, -0.5f, f_mul(f_mul(pc, z), z)), 1.0f);
  // mirror swaps sine and cosine, and so do odd quadrants.
  const bool swap = mirror != bool(q & 1u);
  const uint32_t sin_mag = bits_f(swap ? c : s);
  const uint32_t cos_mag = bits_f(swap ? s : c);
  // sin is negated in quadrants 2, 3; cos in quadrants 1, 2.
  sin_out = f_bits(sin_mag ^ ((q >> 1) << 31));
  cos_out = f_bits(cos_mag ^ ((((q + 1u) >> 1) & 1u) << 31));
}

// A block's four float32 normals: [r0 sin0, r0 cos0, r1 sin1, r1 cos1].
FR_HD void normals4_f32(Words4 w, float out[4]) {
  float s0, c0, s1, c1;
  const float r0 = radius32(w.x);
  angle32(w.y, s0, c0);
  const float r1 = radius32(w.z);
  angle32(w.w, s1, c1);
  out[0] = f_mul(r0, s0);
  out[1] = f_mul(r0, c0);
  out[2] = f_mul(r1, s1);
  out[3] = f_mul(r1, c1);
}

// ---------------------------------------------------------------------------------------------
// float16 / bfloat16 rounding (spec section 4): round to nearest even, subnormals exact.
// Inputs are finite here; larger magnitudes than the formats hold saturate to infinity.
// On the GPU the hardware conversions are IEEE round-to-nearest-even too (same bits, tested).
FR_HD uint16_t f32_to_f16_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  uint32_t x = bits_f(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to infinity
  if (x >= 0x38800000u) {                                  // normal half
    x += 0xfffu + ((x >> 13) & 1u);
    return uint16_t(sign | ((x - 0x38000000u) >> 13));
  }
  if (x <= 0x33000000u) return uint16_t(sign);  // |f| <= 2^-25 rounds to zero (ties to even)
  // subnormal half: value = mant * 2^(e-150), result in units of 2^-24.
  const uint32_t e = x >> 23;                           // 102..112
  const uint32_t mant = (x & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e;                      // 14..24
  uint32_t q = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  q += (rem > half || (rem == half && (q & 1u))) ? 1u : 0u;
  return uint16_t(sign | q);
#endif
}

FR_HD uint16_t f32_to_bf16_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
#else
  const uint32_t x = bits_f(f);
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
#endif
}

// ---------------------------------------------------------------------------------------------
// float64 normals (docs/noise-stream.md section 5)
namespace c64 {
constexpr uint64_t LN2_HI = 0x3fe62e42fee00000ull, LN2_LO = 0x3dea39ef35793c76ull;
constexpr uint64_t Lg1 = 0x3fe5555555555593ull, Lg2 = 0x3fd999999997fa04ull,
                   Lg3 = 0x3fd2492494229359ull, Lg4 = 0x3fcc71c51d8e78afull,
                   Lg5 = 0x3fc7466496cb03deull, Lg6 = 0x3fc39a09d078c69full,
                   Lg7 = 0x3fc2f112df3e5244ull;
constexpr uint64_t HALF_PI_2M53 = 0x3ca921fb54442d18ull;
constexpr uint64_t S1 = 0xbfc5555555555549ull, S2 = 0x3f8111111110f8a6ull,
                   S3 = 0xbf2a01a019c161d5ull, S4 = 0x3ec71de357b1fe7dull,
                   S5 = 0xbe5ae5e68a2b9cebull, S6 = 0x3de5d93a5acfd57cull;
constexpr uint64_t C1 = 0x3fa555555555554cull, C2 = 0xbf56c16c16c15177ull,
                   C3 = 0x3efa01a019cb1590ull, C4 = 0xbe927e4f809c52adull,
                   C5 = 0x3e21ee9ebdb4b1c4ull, C6 = 0xbda8fae9be8838d4ull;
}  // namespace c64

// logD (fdlibm/musl log with a fixed Horner/fma order), v positive and normal.
FR_HD double log_d(double v) {
  using namespace c64;
  const uint64_t b = bits_d(v);
  uint32_t hx = uint32_t(b >> 32) + (0x3ff00000u - 0x3fe6a09eu);
  const int32_t k = int32_t(hx >> 20) - 0x3ff;
  hx = (hx & 0x000fffffu) + 0x3fe6a09eu;
  const double x = d_bits((uint64_t(hx) << 32) | (b & 0xffffffffull));
  const double f = d_sub(x, 1.0);
  const double hfsq = d_mul(d_mul(0.5, f), f);
  const double s = d_div(f, d_add(2.0, f));
  const double z = d_mul(s, s);
  const double w = d_mul(z, z);
  const double t1 = d_mul(w, d_fma(w, d_fma(w, d_bits(Lg6), d_bits(Lg4)), d_bits(Lg2)));
  const double t2 =
      d_mul(z, d_fma(w, d_fma(w, d_fma(w, d_bits(Lg7), d_bits(Lg5)), d_bits(Lg3)), d_bits(Lg1)));
  const double R = d_add(t2, t1);
  const double dk = double(k);  // |k| <= 53: exact
  const double inner = d_add(d_sub(d_fma(s, d_add(hfsq, R), d_mul(dk, d_bits(LN2_LO))), hfsq), f);
  return d_fma(dk, d_bits(LN2_HI), inner);
}

FR_HD double radius64(uint32_t w0, uint32_t w1) {
  const uint64_t m = (uint64_t(w0) << 21) | (w1 >> 11);
  const double u = d_mul(d_from_u64((uint64_t(1) << 53) - m), 0x1p-53);
  return d_sqrt(d_mul(-2.0, log_d(u)));
}

FR_HD void angle64(uint32_t w2, uint32_t w3, double& sin_out, double& cos_out) {
  using namespace c64;
  const uint32_t q = w2 >> 30;
  uint64_t t = (uint64_t(w2 & 0x3fffffffu) << 23) | (w3 >> 9);
  const bool mirror = t > (uint64_t(1) << 52);
  t = mirror ? (uint64_t(1) << 53) - t : t;
  const double a = d_mul(d_from_u64(t), d_bits(HALF_PI_2M53));
  const double z = d_mul(a, a);
  const double v = d_mul(z, a);
  double ps = d_fma(z, d_bits(S6), d_bits(S5));
  ps = d_fma(z, ps, d_bits(S4));
  ps = d_fma(z, ps, d_bits(S3));
  ps = d_fma(z, ps, d_bits(S2));
  ps = d_fma(z, ps, d_bits(S1));
  const double s = d_fma(v, ps, a);
  double pc = d_fma(z, d_bits(C6), d_bits(C5));
  pc = d_fma(z, pc, d_bits(C4));
  pc = d_fma(z, pc, d_bits(C3));
  pc = d_fma(z, pc, d_bits(C2));
  pc = d_fma(z, pc, d_bits(C1));
  const double rc = d_mul(z, pc);
  const double hz = d_mul(0.5, z);
  const double w = d_sub(1.0, hz);
  const double c = d_add(w, d_fma(z, rc, d_sub(d_sub(1.0, w), hz)));
  const bool swap = mirror != bool(q & 1u);
  const uint64_t sin_mag = bits_d(swap ? c : s);
  const uint64_t cos_mag = bits_d(swap ? s : c);
  sin_out = d_bits(sin_mag ^ (uint64_t(q >> 1) << 63));
  cos_out = d_bits(cos_mag ^ (uint64_t(((q + 1u) >> 1) & 1u) << 63));
}

// A block's two float64 normals: [r sin, r cos].
FR_HD void normals2_f64(Words4 w, double out[2]) {
  double s, c;
  const double r = radius64(w.x, w.y);
  angle64(w.z, w.w, s, c);
  out[0] = d_mul(r, s);
  out[1] = d_mul(r, c);
}

// ---------------------------------------------------------------------------------------------
// Uniforms (spec section 6); each conversion is exact.
FR_HD float uniform_f32(uint32_t w) { return f_mul(f_from_u32(w >> 8), 0x1p-24f); }
FR_HD uint16_t uniform_f16_bits(uint32_t w) {
  return f32_to_f16_bits(f_mul(f_from_u32(w >> 21), 0x1p-11f));
}
FR_HD uint16_t uniform_bf16_bits(uint32_t w) {
  return f32_to_bf16_bits(f_mul(f_from_u32(w >> 24), 0x1p-8f));
}
FR_HD double uniform_f64(uint32_t w0, uint32_t w1) {
  return d_mul(d_from_u64((uint64_t(w0) << 21) | (w1 >> 11)), 0x1p-53);
}

// ---------------------------------------------------------------------------------------------
// What a request produces, per block. Each "Op" maps the four words of one block to the values
// that block contributes, in position order. Ops with 4 values per block place value i of a
// request at position offset + i; ops with 2 values per block (float64) at start + 2i with
// start the first even position at or after the offset.
enum Kind : int { KIND_NORMAL = 0, KIND_UNIFORM = 1, KIND_WORDS = 2 };
enum DType : int { DT_FLOAT32 = 0, DT_FLOAT16 = 1, DT_BFLOAT16 = 2, DT_FLOAT64 = 3, DT_UINT32 = 4 };

struct NormalF32 {
  using T = float;
  static constexpr int PER_BLOCK = 4;
  FR_HD static void eval(Words4 w, T out[4]) { normals4_f32(w, out); }
};
struct NormalF16 {
  using T = uint16_t;
  static constexpr int PER_BLOCK = 4;
  FR_HD static void eval(Words4 w, T out[4]) {
    float f[4];
    normals4_f32(w, f);
    for (int j = 0; j < 4; ++j) out[j] = f32_to_f16_bits(f[j]);
  }
};
struct NormalBF16 {
  using T = uint16_t;
  static constexpr int PER_BLOCK = 4;
  FR_HD static void eval(Words4 w, T out[4]) {
    float f[4];
    normals4_f32(w, f);
    for (int j = 0; j < 4; ++j) out[j] = f32_to_bf16_bits(f[j]);
  }
};
struct NormalF64 {
  using T = double;
  static constexpr int PER_BLOCK = 2;
  FR_HD static void eval(Words4 w, T out[2]) { normals2_f64(w, out); }
};
struct UniformF32 {
  using T = float;
  static constexpr int PER_BLOCK = 4;
  FR_HD static void eval(Words4 w, T out[4]) {
    out[0] = uniform_f32(w.x);
    out[1] = uniform_f32(w.y);
    out[2] = uniform_f32(w.z);
    out[3] = uniform_f32(w.w);
  }
};
struct UniformF16 {
  using T = uint16_t;
  static constexpr int PER_BLOCK = 4;
  FR_HD static void eval(Words4 w, T out[4]) {
    out[0] = uniform_f16_bits(w.x);
    out[1] = uniform_f16_bits(w.y);
    out[2] = uniform_f16_bits(w.z);
    out[3] = uniform_f16_bits(w.w);
  }
};
struct UniformBF16 {
  using T = uint16_t;
  static constexpr int PER_BLOCK = 4;
  FR_HD static void eval(Words4 w, T out[4]) {
    out[0] = uniform_bf16_bits(w.x);
    out[1] = uniform_bf16_bits(w.y);
    out[2] = uniform_bf16_bits(w.z);
    out[3] = uniform_bf16_bits(w.w);
  }
};
struct UniformF64 {
  using T = double;
  static constexpr int PER_BLOCK = 2;
  FR_HD static void eval(Words4 w, T out[2]) {
    out[0] = uniform_f64(w.x, w.y);
    out[1] = uniform_f64(w.z, w.w);
  }
};
struct RawWords {
  using T = uint32_t;
  static constexpr int PER_BLOCK = 4;
  FR_HD static void eval(Words4 w, T out[4]) {
    out[0] = w.x;
    out[1] = w.y;
    out[2] = w.z;
    out[3] = w.w;
  }
};

// Where a request of n values at `offset` starts, and the offset after it (spec sections 2, 5).
FR_HD uint64_t first_position(uint64_t offset, int per_block) {
  return per_block == 2 ? offset + (offset & 1u) : offset;
}
FR_HD uint64_t next_offset(uint64_t offset, uint64_t n, int per_block) {
  return per_block == 2 ? first_position(offset, 2) + 2u * n : offset + n;
}

}  // namespace v1
}  // namespace fastrand
