// fastrand noise stream v1: the one copy of the stream math (docs/noise-stream.md).
//
// Plain C++17, compiled for the host by every CPU translation unit and as __host__ __device__
// code by nvcc. No torch, no libm transcendental: logarithm, sine and cosine are the spec's own
// polynomials, every fused multiply-add is explicit, and nothing else may be fused (host builds
// use -ffp-contract=off; device code uses the __f*_rn / __d*_rn intrinsics, which nvcc never
// contracts). Bit-identity between backends comes from sharing this file.
#pragma once

#if defined(__CUDACC_RTC__)
// NVRTC: no libc headers (pip's NVRTC wheels ship none), so the fixed-width types are spelled
// out; memcpy, fminf and fabsf are NVRTC built-ins.
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#else
#include <stdint.h>
#include <string.h>
#endif

#if defined(__FAST_MATH__)
#error "fastrand stream math must not be compiled with fast-math options"
#endif
// nvcc defines __USE_FAST_MATH__ only under --use_fast_math; NVRTC always defines it, as 0 or 1
#if defined(__CUDACC__) && defined(__USE_FAST_MATH__) && __USE_FAST_MATH__
#error "fastrand stream math must not be compiled with nvcc fast-math"
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

// Philox4x32-10 on lanes of counters (L: a lane type, see ScalarLanes); the scalar engine
// below is this with one lane.
template <class L>
FR_HD void philox_lanes(typename L::U& x, typename L::U& y, typename L::U& z, typename L::U& w,
                        const RoundKeys& rk) {
  using U = typename L::U;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int r = 0; r < PHILOX_ROUNDS; ++r) {
    U hi0, lo0, hi1, lo1;
    L::mulhilo(PHILOX_M0, x, hi0, lo0);
    L::mulhilo(PHILOX_M1, z, hi1, lo1);
    const U nx = hi1 ^ y ^ L::splat_u(rk.k0[r]);
    const U nz = hi0 ^ w ^ L::splat_u(rk.k1[r]);
    x = nx;
    y = lo1;
    z = nz;
    w = lo0;
  }
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
// sqrt for the radius: correctly rounded for +-0 and positive normal inputs, the only ones the
// stream produces (sqrt(-2 L) with L = 0 or L <= -5.9e-8). On the device this is the fast path
// of the CUDA library's __fsqrt_rn (approximate rsqrt, then one Newton step with a rounding
// fix-up in fma: correctly rounded on normal inputs) without its branch for other inputs.
FR_HD float f_sqrt_radius(float a) {
#if defined(__CUDA_ARCH__)
  float y;
  asm("rsqrt.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(a));
  // +-0 gives y = +-inf; capping |y| (a no-op on the stream's normal inputs, where y < 3000)
  // makes the steps below return a itself for zero, as sqrt does, without a compare and select.
  y = fminf(fabsf(y), 0x1p100f);
  const float s = __fmul_rn(a, y);
  const float h = __fmul_rn(0.5f, y);
  return __fmaf_rn(h, __fmaf_rn(-s, s, a), s);
#else
  return __builtin_sqrtf(a);
#endif
}
FR_HD float f_from_u32(uint32_t v) {  // correctly rounded conversion
#if defined(__CUDA_ARCH__)
  return __uint2float_rn(v);
#else
  return float(v);
#endif
}
FR_HD float f_from_i32(int32_t v) {  // correctly rounded conversion
#if defined(__CUDA_ARCH__)
  return __int2float_rn(v);
#else
  return float(v);
#endif
}
FR_HD float f_abs(float a) {
#if defined(__CUDA_ARCH__)
  return fabsf(a);
#else
  return __builtin_fabsf(a);
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
// The bits of 2 * c for a normal binary32 constant c far below the overflow threshold.
FR_HD constexpr uint32_t twice(uint32_t bits) { return bits + (1u << 23); }
}  // namespace c32

// The float32 math is written once over a lane type L: ScalarLanes (one value; host and
// device) here, SIMD lanes in the CPU kernels (cpu_simd.h). L provides F (binary32 lanes),
// U (uint32 lanes), M (lane masks) and exactly rounded operations on them.
struct ScalarLanes {
  using F = float;
  using U = uint32_t;
  using M = bool;
  FR_HD static F mul(F a, F b) { return f_mul(a, b); }
  FR_HD static F add(F a, F b) { return f_add(a, b); }
  FR_HD static F sub(F a, F b) { return f_sub(a, b); }
  FR_HD static F fma(F a, F b, F c) { return f_fma(a, b, c); }
  FR_HD static F sqrt(F a) { return f_sqrt_radius(a); }                 // radius domain only
  FR_HD static F cvt_u32(U v) { return f_from_u32(v); }                 // correctly rounded
  FR_HD static F cvt_small(U v) { return f_from_u32(v); }               // v < 2^24: exact
  FR_HD static F cvt_i32(U v) { return f_from_i32(int32_t(v)); }        // signed, exact here
  FR_HD static U sra(U v, int k) { return uint32_t(int32_t(v) >> k); }  // arithmetic shift
  FR_HD static U mad(U a, uint32_t m, U c) {                            // a * m + c (mod 2^32)
#if defined(__CUDA_ARCH__)
    U r;  // one integer multiply-add (the compiler would rewrite it as shifts and masks)
    asm("mad.lo.u32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(m), "r"(c));
    return r;
#else
    return a * m + c;
#endif
  }
  FR_HD static F abs(F a) { return f_abs(a); }
  FR_HD static F neg(F a) { return -a; }  // sign flip (exact)
  FR_HD static U as_u(F f) { return bits_f(f); }
  FR_HD static F as_f(U u) { return f_bits(u); }
  FR_HD static F splat(float c) { return c; }
  FR_HD static U splat_u(uint32_t c) { return c; }
  FR_HD static M lt(F a, F b) { return a < b; }
  FR_HD static M ugt(U a, U b) { return a > b; }
  FR_HD static M uge(U a, U b) { return a >= b; }
  FR_HD static M ne(M a, M b) { return a != b; }
  FR_HD static M msb(U a) {  // bit 31 set
#if defined(__CUDA_ARCH__)
    // As a signed compare in PTX: the compiler's own form of the bit test costs two more
    // instructions (shift, and, compare).
    uint32_t r;
    asm("{\n\t.reg .pred p;\n\tsetp.lt.s32 p, %1, 0;\n\tselp.u32 %0, 1, 0, p;\n\t}"
        : "=r"(r)
        : "r"(a));
    return r != 0u;
#else
    return int32_t(a) < 0;
#endif
  }
  FR_HD static F sel(M m, F a, F b) { return m ? a : b; }
  FR_HD static U sel_u(M m, U a, U b) { return m ? a : b; }
  FR_HD static void mulhilo(uint32_t m, U a, U& hi, U& lo) { mulhilo32(m, a, hi, lo); }
  FR_HD static U f16_bits(F f);   // float16 bits, defined below
  FR_HD static U bf16_bits(F f);  // bfloat16 bits, defined below
};

FR_HD Words4 philox_rk(Words4 c, const RoundKeys& rk) {
  philox_lanes<ScalarLanes>(c.x, c.y, c.z, c.w, rk);
  return c;
}

// Plain Philox4x32-10 with a two-word key (used for the known-answer tests).
FR_HD Words4 philox(Words4 c, uint32_t k0, uint32_t k1) {
  return philox_rk(c, make_round_keys((uint64_t(k1) << 32) | k0));
}

// The four words of block b of a stream (spec section 2).
FR_HD Words4 block_words(uint64_t block, uint64_t stream, const RoundKeys& rk) {
  return philox_rk(
      Words4{uint32_t(block), uint32_t(block >> 32), uint32_t(stream), uint32_t(stream >> 32)}, rk);
}

// The float32 radius and angle below compute exactly the spec's values (section 3) with fewer
// operations; each rewrite is exact, and the NumPy reference (fastrand.reference) keeps the
// spec's literal form to check it against:
//  - logC's exponent and mantissa come from one integer subtraction instead of a float compare
//    and selects (see twice_log_c_t).
//  - logC is evaluated scaled by 2: every constant of the chain is doubled, so each rounded step
//    gives exactly twice the spec's value (a power-of-2 scale commutes with rounding while no
//    intermediate overflows or is subnormal, which the spec guarantees; zeros keep their sign
//    under a positive scale). -2 L is then a sign flip, which the GPU folds into an operand.
//  - u = float(w0) * 2^-32 + 2^-33 is one fma: the product is exact, so fusing it changes
//    nothing.
//  - The angle's mirror is a signed reading of the quadrant offset (see angle32_t).

// 2 * logC(v) (Cephes logf polynomial, spec section 3), v positive and normal.
template <class L>
FR_HD typename L::F twice_log_c_t(typename L::F v) {
  using namespace c32;
  using F = typename L::F;
  using U = typename L::U;
  // The spec's m is mantissa(v) in [0.5, 1); it takes x = 2m - 1 and e - 1 when m < SQRTHF,
  // i.e. when m's bits are below SQRTHF's. bits(v) - bits(SQRTHF) is ((e + 126) - 126) << 23
  // plus the mantissa difference, which borrows from the exponent exactly when m < SQRTHF:
  // shifted down arithmetically it is the spec's final e.
  // x = (m or 2m) - 1 = v * 2^-e - 1: bits(v) - (e << 23), as one integer multiply-add.
  const U b = L::as_u(v);
  const U e = L::sra(b - L::splat_u(SQRTHF), 23);
  const F fe = L::cvt_i32(e);  // |e| <= 33: exact
  const F x = L::sub(L::as_f(L::mad(e, 0xff800000u, b)), L::splat(1.0f));
  F y = L::splat(f_bits(twice(P0)));
  y = L::fma(y, x, L::splat(f_bits(twice(P1))));
  y = L::fma(y, x, L::splat(f_bits(twice(P2))));
  y = L::fma(y, x, L::splat(f_bits(twice(P3))));
  y = L::fma(y, x, L::splat(f_bits(twice(P4))));
  y = L::fma(y, x, L::splat(f_bits(twice(P5))));
  y = L::fma(y, x, L::splat(f_bits(twice(P6))));
  y = L::fma(y, x, L::splat(f_bits(twice(P7))));
  y = L::fma(y, x, L::splat(f_bits(twice(P8))));
  const F z = L::mul(x, x);
  y = L::mul(L::mul(y, x), z);
  y = L::fma(fe, L::splat(f_bits(twice(Q1))), y);
  y = L::sub(y, z);                          // 2 F(z, -0.5f, y)
  const F t = L::fma(x, L::splat(2.0f), y);  // 2 (x + y): 2x is exact
  return L::fma(fe, L::splat(f_bits(twice(Q2))), t);
}

template <class L>
FR_HD typename L::F radius32_t(typename L::U w0) {
  const typename L::F u = L::fma(L::cvt_u32(w0), L::splat(0x1p-32f), L::splat(0x1p-33f));
  return L::sqrt(L::neg(twice_log_c_t<L>(u)));  // -(2 L) is the spec's -2.0f * L, +0 -> -0
}

// sin and cos of the angle encoded by w1, integer quadrant reduction.
template <class L>
FR_HD void angle32_t(typename L::U w1, typename L::F& sin_out, typename L::F& cos_out) {
  using namespace c32;
  using F = typename L::F;
  using U = typename L::U;
  // The spec's t (bits 29..6 of w1) at the top of a word: v = t * 2^8. Read as a signed
  // integer, v is t * 2^8 for t < 2^23 and (t - 2^24) * 2^8 above, so |v| = t' * 2^8 with t'
  // the spec's mirrored t (t = 2^23 reads -2^31: |v| = 2^31, unmirrored as in the spec).
  // float(v) is exact (at most 24 significant bits), and the 2^-8 is folded into the constant.
  const U v = (w1 << 2) & L::splat_u(0xffffff00u);
  const typename L::M mirror = L::ugt(v, L::splat_u(0x80000000u));  // t > 2^23
  const F a = L::mul(L::abs(L::cvt_i32(v)), L::splat(f_bits(HALF_PI_2M24 - (8u << 23))));
  const F z = L::mul(a, a);
  F ps = L::fma(L::splat(f_bits(S0)), z, L::splat(f_bits(S1)));
  ps = L::fma(ps, z, L::splat(f_bits(S2)));
  const F s = L::fma(L::mul(ps, z), a, a);
  F pc = L::fma(L::splat(f_bits(C0)), z, L::splat(f_bits(C1)));
  pc = L::fma(pc, z, L::splat(f_bits(C2)));
  const F c = L::add(L::fma(z, L::splat(-0.5f), L::mul(L::mul(pc, z), z)), L::splat(1.0f));
  // The quadrant q = w1 >> 30. Mirroring swaps sine and cosine, and so do odd quadrants;
  // sin is negated in quadrants 2, 3 (bit 31 of w1), cos in quadrants 1, 2 (bit 31 ^ bit 30,
  // which is bit 31 of w1 + 2^30: the carry out of bit 30 flips bit 31 when bit 30 is set).
  const typename L::M swap = L::ne(mirror, L::msb(w1 << 1));  // bit 30 of w1
  const U sin_sign = w1 & L::splat_u(0x80000000u);
  const U cos_sign = (w1 + L::splat_u(0x40000000u)) & L::splat_u(0x80000000u);
  sin_out = L::as_f(L::as_u(L::sel(swap, c, s)) ^ sin_sign);
  cos_out = L::as_f(L::as_u(L::sel(swap, s, c)) ^ cos_sign);
}

// A block's four float32 normals: [r0 sin0, r0 cos0, r1 sin1, r1 cos1].
template <class L>
FR_HD void normals4_t(typename L::U w0, typename L::U w1, typename L::U w2, typename L::U w3,
                      typename L::F out[4]) {
  typename L::F s0, c0, s1, c1;
  const typename L::F r0 = radius32_t<L>(w0);
  angle32_t<L>(w1, s0, c0);
  const typename L::F r1 = radius32_t<L>(w2);
  angle32_t<L>(w3, s1, c1);
  out[0] = L::mul(r0, s0);
  out[1] = L::mul(r0, c0);
  out[2] = L::mul(r1, s1);
  out[3] = L::mul(r1, c1);
}

FR_HD float radius32(uint32_t w0) { return radius32_t<ScalarLanes>(w0); }
FR_HD void angle32(uint32_t w1, float& s, float& c) { angle32_t<ScalarLanes>(w1, s, c); }
FR_HD void normals4_f32(Words4 w, float out[4]) {
  normals4_t<ScalarLanes>(w.x, w.y, w.z, w.w, out);
}

// ---------------------------------------------------------------------------------------------
// float16 / bfloat16 rounding (spec section 4): round to nearest even, subnormals exact. Inputs
// are finite and never binary32-subnormal here; magnitudes past the format saturate to infinity.
// Results are the 16-bit patterns in 32-bit lanes.
template <class L>
FR_HD typename L::U f16_bits_t(typename L::F f) {
  using U = typename L::U;
  const U b = L::as_u(f);
  const U sign = (b >> 16) & L::splat_u(0x8000u);
  const U x = b & L::splat_u(0x7fffffffu);
  // normal halves: round the 13 dropped bits to nearest even, rebias the exponent
  const U normal =
      ((x + L::splat_u(0xfffu) + ((x >> 13) & L::splat_u(1u))) - L::splat_u(0x38000000u)) >> 13;
  // below 2^-14: adding 0.5 leaves binary32 steps of 2^-24, the subnormal half's unit, so the
  // sum's low bits are the half rounded to nearest even (a result of 0x400 is 2^-14, normal)
  const U sub = L::as_u(L::add(L::as_f(x), L::splat(0.5f))) - L::splat_u(0x3f000000u);
  U h = L::sel_u(L::uge(x, L::splat_u(0x38800000u)), normal, sub);
  h = L::sel_u(L::uge(x, L::splat_u(0x477ff000u)), L::splat_u(0x7c00u), h);
  return sign | h;
}

template <class L>
FR_HD typename L::U bf16_bits_t(typename L::F f) {
  const typename L::U x = L::as_u(f);
  return (x + L::splat_u(0x7fffu) + ((x >> 16) & L::splat_u(1u))) >> 16;
}

// On the GPU the hardware conversions are IEEE round-to-nearest-even too (same bits, tested),
// written as PTX so that no cuda_fp16.h/cuda_bf16.h is needed (NVRTC wheels lack them). The
// bfloat16 conversion exists from sm_80; below it, the exact software rounding above.
FR_HD uint16_t f32_to_f16_bits(float f) {
#if defined(__CUDA_ARCH__)
  uint16_t h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
#else
  return uint16_t(f16_bits_t<ScalarLanes>(f));
#endif
}

FR_HD uint16_t f32_to_bf16_bits(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint16_t h;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
#else
  return uint16_t(bf16_bits_t<ScalarLanes>(f));
#endif
}

FR_HD uint32_t ScalarLanes::f16_bits(float f) { return f32_to_f16_bits(f); }
FR_HD uint32_t ScalarLanes::bf16_bits(float f) { return f32_to_bf16_bits(f); }

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

// The float64 math is written once over a lane type L, as the float32 math is: ScalarLanes64
// (one value; host and device) here, SIMD lanes in the CPU kernels (cpu_simd.h). L provides D
// (binary64 lanes), Q (uint64 lanes), M (lane masks), exactly rounded +, -, *, /, fma and sqrt
// on D, and integer operations on Q. Every rounded step below is the spec's, in its order; the
// integer steps and conversions are exact, so any exact realisation of them (a lane type's
// own conversion trick, 64-bit instead of 32-bit words) gives the same bits. The words of a
// block come in as Q lanes holding the 32-bit words zero-extended.
struct ScalarLanes64 {
  using D = double;
  using Q = uint64_t;
  using M = bool;
  FR_HD static D mul(D a, D b) { return d_mul(a, b); }
  FR_HD static D add(D a, D b) { return d_add(a, b); }
  FR_HD static D sub(D a, D b) { return d_sub(a, b); }
  FR_HD static D div(D a, D b) { return d_div(a, b); }
  FR_HD static D fma(D a, D b, D c) { return d_fma(a, b, c); }
  FR_HD static D sqrt(D a) { return d_sqrt(a); }
  FR_HD static D cvt_exact(Q v) { return d_from_u64(v); }  // v <= 2^53: exact
  // double(e - 1023) for a biased binary64 exponent e < 2048 (exact)
  FR_HD static D cvt_exponent(Q e) { return double(int32_t(uint32_t(e)) - 0x3ff); }
  FR_HD static D splat(double c) { return c; }
  FR_HD static Q splat_q(uint64_t c) { return c; }
  FR_HD static Q as_q(D d) { return bits_d(d); }
  FR_HD static D as_d(Q q) { return d_bits(q); }
  FR_HD static M gt(Q a, Q b) { return a > b; }  // a, b < 2^63
  FR_HD static M msb(Q a) { return (a >> 63) != 0u; }
  FR_HD static M ne(M a, M b) { return a != b; }
  FR_HD static D sel(M m, D a, D b) { return m ? a : b; }
  FR_HD static Q sel_q(M m, Q a, Q b) { return m ? a : b; }
};

// logD (fdlibm/musl log with a fixed Horner/fma order), v positive and normal.
template <class L>
FR_HD typename L::D log_d_t(typename L::D v) {
  using namespace c64;
  using D = typename L::D;
  using Q = typename L::Q;
  // The spec's 32-bit steps on hi32(bits(v)), done on the whole word: the sum hi32 + 0x95f62
  // stays below 2^32 for every positive finite v, so no carry is lost, and the low word rides
  // along unchanged. k = (hx >> 20) - 0x3ff is the top 12 bits of b minus 0x3ff.
  const Q b = L::as_q(v) + L::splat_q(uint64_t(0x3ff00000u - 0x3fe6a09eu) << 32);
  const D dk = L::cvt_exponent(b >> 52);  // |k| <= 53: exact
  const D x =
      L::as_d((b & L::splat_q(0x000fffffffffffffull)) + L::splat_q(uint64_t(0x3fe6a09eu) << 32));
  const D f = L::sub(x, L::splat(1.0));
  const D hfsq = L::mul(L::mul(L::splat(0.5), f), f);
  const D s = L::div(f, L::add(L::splat(2.0), f));
  const D z = L::mul(s, s);
  const D w = L::mul(z, z);
  const D t1 = L::mul(
      w, L::fma(w, L::fma(w, L::splat(d_bits(Lg6)), L::splat(d_bits(Lg4))), L::splat(d_bits(Lg2))));
  const D t2 = L::mul(z, L::fma(w,
                                L::fma(w, L::fma(w, L::splat(d_bits(Lg7)), L::splat(d_bits(Lg5))),
                                       L::splat(d_bits(Lg3))),
                                L::splat(d_bits(Lg1))));
  const D R = L::add(t2, t1);
  const D inner =
      L::add(L::sub(L::fma(s, L::add(hfsq, R), L::mul(dk, L::splat(d_bits(LN2_LO)))), hfsq), f);
  return L::fma(dk, L::splat(d_bits(LN2_HI)), inner);
}

// r = sqrt(-2 logD(u)), u = (2^53 - m) * 2^-53, m = (w0 << 21) | (w1 >> 11).
template <class L>
FR_HD typename L::D radius64_t(typename L::Q w0, typename L::Q w1) {
  const typename L::Q m = (w0 << 21) | (w1 >> 11);
  const typename L::D u =
      L::mul(L::cvt_exact(L::splat_q(uint64_t(1) << 53) - m), L::splat(0x1p-53));
  return L::sqrt(L::mul(L::splat(-2.0), log_d_t<L>(u)));
}

// sin and cos of the angle encoded by w2, w3, integer quadrant reduction.
template <class L>
FR_HD void angle64_t(typename L::Q w2, typename L::Q w3, typename L::D& sin_out,
                     typename L::D& cos_out) {
  using namespace c64;
  using D = typename L::D;
  using Q = typename L::Q;
  const Q t0 = ((w2 & L::splat_q(0x3fffffffu)) << 23) | (w3 >> 9);
  const typename L::M mirror = L::gt(t0, L::splat_q(uint64_t(1) << 52));
  const Q t = L::sel_q(mirror, L::splat_q(uint64_t(1) << 53) - t0, t0);  // t <= 2^52
  const D a = L::mul(L::cvt_exact(t), L::splat(d_bits(HALF_PI_2M53)));
  const D z = L::mul(a, a);
  const D v = L::mul(z, a);
  D ps = L::fma(z, L::splat(d_bits(S6)), L::splat(d_bits(S5)));
  ps = L::fma(z, ps, L::splat(d_bits(S4)));
  ps = L::fma(z, ps, L::splat(d_bits(S3)));
  ps = L::fma(z, ps, L::splat(d_bits(S2)));
  ps = L::fma(z, ps, L::splat(d_bits(S1)));
  const D s = L::fma(v, ps, a);
  D pc = L::fma(z, L::splat(d_bits(C6)), L::splat(d_bits(C5)));
  pc = L::fma(z, pc, L::splat(d_bits(C4)));
  pc = L::fma(z, pc, L::splat(d_bits(C3)));
  pc = L::fma(z, pc, L::splat(d_bits(C2)));
  pc = L::fma(z, pc, L::splat(d_bits(C1)));
  const D rc = L::mul(z, pc);
  const D hz = L::mul(L::splat(0.5), z);
  const D w = L::sub(L::splat(1.0), hz);
  const D c = L::add(w, L::fma(z, rc, L::sub(L::sub(L::splat(1.0), w), hz)));
  // The quadrant q = w2 >> 30. Mirroring swaps sine and cosine, and so do odd quadrants (bit
  // 30 of w2); sin is negated in quadrants 2, 3 (bit 31 of w2), cos in quadrants 1, 2 (bit 31
  // of w2 + 2^30), moved to bit 63.
  const typename L::M swap = L::ne(mirror, L::msb(w2 << 33));
  const Q sin_sign = (w2 & L::splat_q(0x80000000u)) << 32;
  const Q cos_sign = ((w2 + L::splat_q(0x40000000u)) & L::splat_q(0x80000000u)) << 32;
  sin_out = L::as_d(L::as_q(L::sel(swap, c, s)) ^ sin_sign);
  cos_out = L::as_d(L::as_q(L::sel(swap, s, c)) ^ cos_sign);
}

// A block's two float64 normals: [r sin, r cos].
template <class L>
FR_HD void normals2_t(typename L::Q w0, typename L::Q w1, typename L::Q w2, typename L::Q w3,
                      typename L::D out[2]) {
  typename L::D s, c;
  const typename L::D r = radius64_t<L>(w0, w1);
  angle64_t<L>(w2, w3, s, c);
  out[0] = L::mul(r, s);
  out[1] = L::mul(r, c);
}

FR_HD double log_d(double v) { return log_d_t<ScalarLanes64>(v); }
FR_HD double radius64(uint32_t w0, uint32_t w1) { return radius64_t<ScalarLanes64>(w0, w1); }
FR_HD void angle64(uint32_t w2, uint32_t w3, double& s, double& c) {
  angle64_t<ScalarLanes64>(w2, w3, s, c);
}
FR_HD void normals2_f64(Words4 w, double out[2]) {
  normals2_t<ScalarLanes64>(w.x, w.y, w.z, w.w, out);
}

// ---------------------------------------------------------------------------------------------
// Uniforms (spec section 6); each conversion is exact.
template <class L>
FR_HD typename L::F uniform_f32_t(typename L::U w) {
  return L::mul(L::cvt_small(w >> 8), L::splat(0x1p-24f));
}
template <class L>
FR_HD typename L::U uniform_f16_bits_t(typename L::U w) {
  return f16_bits_t<L>(L::mul(L::cvt_small(w >> 21), L::splat(0x1p-11f)));
}
template <class L>
FR_HD typename L::U uniform_bf16_bits_t(typename L::U w) {
  return bf16_bits_t<L>(L::mul(L::cvt_small(w >> 24), L::splat(0x1p-8f)));
}
template <class L>
FR_HD typename L::D uniform_f64_t(typename L::Q w0, typename L::Q w1) {
  return L::mul(L::cvt_exact((w0 << 21) | (w1 >> 11)), L::splat(0x1p-53));
}
FR_HD double uniform_f64(uint32_t w0, uint32_t w1) { return uniform_f64_t<ScalarLanes64>(w0, w1); }

// ---------------------------------------------------------------------------------------------
// What a request produces, per block. Each "Op" maps the four words of one block to the values
// that block contributes, in position order. Ops with 4 values per block place value i of a
// request at position offset + i; ops with 2 values per block (float64) at start + 2i with
// start the first even position at or after the offset.
//   eval:       one block, scalar (host and device)
//   eval_lanes: one block per lane (ops with 32-bit values; the CPU's SIMD paths), giving the
//               bit patterns of the 4 values in 32-bit lanes
//   eval_lanes64: one block per lane (ops with float64 values; the CPU's SIMD paths)
enum Kind : int { KIND_NORMAL = 0, KIND_UNIFORM = 1, KIND_WORDS = 2 };
enum DType : int { DT_FLOAT32 = 0, DT_FLOAT16 = 1, DT_BFLOAT16 = 2, DT_FLOAT64 = 3, DT_UINT32 = 4 };

template <class Derived, class TT>
struct Op32 {
  using T = TT;
  static constexpr int PER_BLOCK = 4;
  FR_HD static void eval(Words4 w, T out[4]) {
    uint32_t v[4];
    Derived::template eval_lanes<ScalarLanes>(w.x, w.y, w.z, w.w, v);
    for (int j = 0; j < 4; ++j) out[j] = from_bits(v[j]);
  }
  FR_HD static T from_bits(uint32_t b) {
    if constexpr (sizeof(T) == 2) {
      return T(b);
    } else {
      T t;
      memcpy(&t, &b, 4);
      return t;
    }
  }
};

struct NormalF32 : Op32<NormalF32, float> {
  FR_HD static void eval(Words4 w, float out[4]) { normals4_f32(w, out); }
  template <class L, class U>
  FR_HD static void eval_lanes(U w0, U w1, U w2, U w3, U out[4]) {
    typename L::F f[4];
    normals4_t<L>(w0, w1, w2, w3, f);
    for (int j = 0; j < 4; ++j) out[j] = L::as_u(f[j]);
  }
};
struct NormalF16 : Op32<NormalF16, uint16_t> {
  template <class L, class U>
  FR_HD static void eval_lanes(U w0, U w1, U w2, U w3, U out[4]) {
    typename L::F f[4];
    normals4_t<L>(w0, w1, w2, w3, f);
    for (int j = 0; j < 4; ++j) out[j] = L::f16_bits(f[j]);
  }
};
struct NormalBF16 : Op32<NormalBF16, uint16_t> {
  template <class L, class U>
  FR_HD static void eval_lanes(U w0, U w1, U w2, U w3, U out[4]) {
    typename L::F f[4];
    normals4_t<L>(w0, w1, w2, w3, f);
    for (int j = 0; j < 4; ++j) out[j] = L::bf16_bits(f[j]);
  }
};
struct UniformF32 : Op32<UniformF32, float> {
  template <class L, class U>
  FR_HD static void eval_lanes(U w0, U w1, U w2, U w3, U out[4]) {
    out[0] = L::as_u(uniform_f32_t<L>(w0));
    out[1] = L::as_u(uniform_f32_t<L>(w1));
    out[2] = L::as_u(uniform_f32_t<L>(w2));
    out[3] = L::as_u(uniform_f32_t<L>(w3));
  }
};
struct UniformF16 : Op32<UniformF16, uint16_t> {
  template <class L, class U>
  FR_HD static void eval_lanes(U w0, U w1, U w2, U w3, U out[4]) {
    out[0] = uniform_f16_bits_t<L>(w0);
    out[1] = uniform_f16_bits_t<L>(w1);
    out[2] = uniform_f16_bits_t<L>(w2);
    out[3] = uniform_f16_bits_t<L>(w3);
  }
};
struct UniformBF16 : Op32<UniformBF16, uint16_t> {
  template <class L, class U>
  FR_HD static void eval_lanes(U w0, U w1, U w2, U w3, U out[4]) {
    out[0] = uniform_bf16_bits_t<L>(w0);
    out[1] = uniform_bf16_bits_t<L>(w1);
    out[2] = uniform_bf16_bits_t<L>(w2);
    out[3] = uniform_bf16_bits_t<L>(w3);
  }
};
struct RawWords : Op32<RawWords, uint32_t> {
  template <class L, class U>
  FR_HD static void eval_lanes(U w0, U w1, U w2, U w3, U out[4]) {
    out[0] = w0;
    out[1] = w1;
    out[2] = w2;
    out[3] = w3;
  }
};
// Ops with 2 float64 values per block: eval_lanes64 takes one block per lane (the words as
// zero-extended 64-bit lanes of a float64 lane type L) and gives the two values' lanes.
struct NormalF64 {
  using T = double;
  static constexpr int PER_BLOCK = 2;
  FR_HD static void eval(Words4 w, T out[2]) { normals2_f64(w, out); }
  template <class L, class Q = typename L::Q>
  FR_HD static void eval_lanes64(Q w0, Q w1, Q w2, Q w3, typename L::D out[2]) {
    normals2_t<L>(w0, w1, w2, w3, out);
  }
};
struct UniformF64 {
  using T = double;
  static constexpr int PER_BLOCK = 2;
  FR_HD static void eval(Words4 w, T out[2]) {
    out[0] = uniform_f64(w.x, w.y);
    out[1] = uniform_f64(w.z, w.w);
  }
  template <class L, class Q = typename L::Q>
  FR_HD static void eval_lanes64(Q w0, Q w1, Q w2, Q w3, typename L::D out[2]) {
    out[0] = uniform_f64_t<L>(w0, w1);
    out[1] = uniform_f64_t<L>(w2, w3);
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
