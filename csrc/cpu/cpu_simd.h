// SIMD lane types for the CPU kernels: the stream math of fastrand_stream.h evaluated on 8
// (AVX2+FMA), 16 (AVX-512) or 4 (AArch64 NEON) Philox blocks at once in 32-bit lanes
// (SimdLanes), and the float64 math on 4, 8 or 2 blocks at once in 64-bit lanes (SimdLanes64).
// Only exactly rounded IEEE lane operations: +, -, *, / on GCC vector types (never contracted:
// -ffp-contract=off), vfmadd / fmla for the spec's fused steps, vsqrtps / vsqrtpd / fsqrt, and
// exact or correctly rounded conversions.
// Included by the per-ISA translation units compiled with the matching -m flags.
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif
#include <stdint.h>
#include <string.h>

#ifndef FR_ISA_NS
#error "define FR_ISA_NS before including cpu_simd.h"
#endif

namespace fastrand {
namespace v1 {
// Each instruction set's lane types in their own namespace: one name compiled with different -m
// flags would break the one-definition rule, and the linker would keep a single copy of every
// member the compiler did not inline (an AVX2 store_blocks in the AVX-512 path, or the reverse).
inline namespace FR_ISA_NS {

// What GCC's vector types give at any width: exactly rounded +, -, * (never contracted),
// integer, bit and mask operations. The per-ISA lane types below add conversions, fma, sqrt,
// broadcasts, Philox's multiply and the stores.
template <int W>
struct VectorLanes {
  static constexpr int WIDTH = W;
  typedef float F __attribute__((vector_size(4 * W)));
  typedef uint32_t U __attribute__((vector_size(4 * W)));
  typedef int32_t M __attribute__((vector_size(4 * W)));

  static F mul(F a, F b) { return a * b; }
  static F add(F a, F b) { return a + b; }
  static F sub(F a, F b) { return a - b; }
  static U sra(U v, int k) { return (U)((M)v >> k); }
  static U mad(U a, uint32_t m, U c) { return a * m + c; }
  static F abs(F a) { return (F)((U)a & 0x7fffffffu); }
  static F neg(F a) { return (F)((U)a ^ 0x80000000u); }
  static U as_u(F f) { return (U)f; }
  static F as_f(U u) { return (F)u; }
  static M lt(F a, F b) { return a < b; }
  static M ugt(U a, U b) { return a > b; }
  static M uge(U a, U b) { return a >= b; }
  static M ne(M a, M b) { return a ^ b; }
  static M msb(U a) { return (M)a < 0; }
  static F sel(M m, F a, F b) { return m ? a : b; }
  static U sel_u(M m, U a, U b) { return m ? a : b; }
};

// The float64 counterpart (fastrand_stream.h's ScalarLanes64 at W lanes): exactly rounded +, -,
// *, / (never contracted), 64-bit integer, bit and mask operations. Compares are signed: the
// stream compares values below 2^63 only.
template <int W>
struct VectorLanes64 {
  static constexpr int WIDTH = W;
  typedef double D __attribute__((vector_size(8 * W)));
  typedef uint64_t Q __attribute__((vector_size(8 * W)));
  typedef int64_t M __attribute__((vector_size(8 * W)));

  static D mul(D a, D b) { return a * b; }
  static D add(D a, D b) { return a + b; }
  static D sub(D a, D b) { return a - b; }
  static D div(D a, D b) { return a / b; }
  // double(e - 1023), e < 2048: 2^52 + e from the bits, minus 2^52 + 1023 (exact)
  static D cvt_exponent(Q e) { return as_d(e + 0x4330000000000000ull) - 0x1.00000000003ffp+52; }
  static Q as_q(D d) { return (Q)d; }
  static D as_d(Q q) { return (D)q; }
  static M gt(Q a, Q b) { return (M)a > (M)b; }
  static M msb(Q a) { return (M)a < 0; }
  static M ne(M a, M b) { return a ^ b; }
  static D sel(M m, D a, D b) { return m ? a : b; }
  static Q sel_q(M m, Q a, Q b) { return m ? a : b; }
};

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) && defined(__FMA__)
#define FR_HAVE_SIMD_LANES 1
struct SimdLanes : VectorLanes<16> {
  static F fma(F a, F b, F c) { return (F)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c); }
  static F sqrt(F a) { return (F)_mm512_sqrt_ps((__m512)a); }
  static F cvt_u32(U v) { return (F)_mm512_cvtepu32_ps((__m512i)v); }  // correctly rounded
  static F cvt_small(U v) { return (F)_mm512_cvtepi32_ps((__m512i)v); }
  static F cvt_i32(U v) { return cvt_small(v); }  // signed: exact for the values used
  static F splat(float c) { return (F)_mm512_set1_ps(c); }
  static U splat_u(uint32_t c) { return (U)_mm512_set1_epi32(int(c)); }
  static U iota() {
    return (U)_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  }
  static void mulhilo(uint32_t m, U a, U& hi, U& lo) {
    const __m512i mm = _mm512_set1_epi32(int(m));
    const __m512i even = _mm512_mul_epu32((__m512i)a, mm);
    const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64((__m512i)a, 32), mm);
    lo = (U)_mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    hi = (U)_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  }
  static U f16_bits(F f) {  // IEEE round to nearest even, subnormals exact
    return (U)_mm512_cvtepu16_epi32(
        _mm512_cvtps_ph((__m512)f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static U bf16_bits(F f) { return bf16_bits_t<SimdLanes>(f); }
  // W blocks' values in position order (a 4 x 16 transpose): o[q] holds blocks 4q .. 4q + 3,
  // v[j] lane e at 32-bit lane 4 (e - 4q) + j.
  static void transpose_blocks(const U v[4], __m512i o[4]) {
    const __m512 a = (__m512)v[0], b = (__m512)v[1], c = (__m512)v[2], d = (__m512)v[3];
    const __m512 t0 = _mm512_unpacklo_ps(a, b), t1 = _mm512_unpackhi_ps(a, b);
    const __m512 t2 = _mm512_unpacklo_ps(c, d), t3 = _mm512_unpackhi_ps(c, d);
    const __m512 u0 = _mm512_shuffle_ps(t0, t2, 0x44), u1 = _mm512_shuffle_ps(t0, t2, 0xEE);
    const __m512 u2 = _mm512_shuffle_ps(t1, t3, 0x44), u3 = _mm512_shuffle_ps(t1, t3, 0xEE);
    const __m512 v0 = _mm512_shuffle_f32x4(u0, u1, 0x44), v1 = _mm512_shuffle_f32x4(u2, u3, 0x44);
    const __m512 v2 = _mm512_shuffle_f32x4(u0, u1, 0xEE), v3 = _mm512_shuffle_f32x4(u2, u3, 0xEE);
    o[0] = (__m512i)_mm512_shuffle_f32x4(v0, v1, 0x88);
    o[1] = (__m512i)_mm512_shuffle_f32x4(v0, v1, 0xDD);
    o[2] = (__m512i)_mm512_shuffle_f32x4(v2, v3, 0x88);
    o[3] = (__m512i)_mm512_shuffle_f32x4(v2, v3, 0xDD);
  }
  // Writes W blocks' values in position order: dst[4e + j] = v[j] lane e.
  template <class T>
  static void store_blocks(T* dst, const U v[4]) {
    __m512i o[4];
    transpose_blocks(v, o);
    for (int q = 0; q < 4; ++q) {
      if constexpr (sizeof(T) == 4) {
        _mm512_storeu_si512(reinterpret_cast<void*>(dst + 16 * q), o[q]);
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 16 * q), _mm512_cvtepi32_epi16(o[q]));
      }
    }
  }
  // Writes the W lanes of v in lane order (16-bit T: values that fit 16 bits).
  template <class T>
  static void store_lanes(T* dst, U v) {
    if constexpr (sizeof(T) == 4) {
      memcpy(dst, &v, sizeof(v));
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm512_cvtepi32_epi16((__m512i)v));
    }
  }
};
struct SimdLanes64 : VectorLanes64<8> {
  static D fma(D a, D b, D c) { return (D)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c); }
  static D sqrt(D a) { return (D)_mm512_sqrt_pd((__m512d)a); }
  static D cvt_exact(Q v) { return (D)_mm512_cvtepu64_pd((__m512i)v); }  // v <= 2^53: exact
  static D splat(double c) { return (D)_mm512_set1_pd(c); }
  static Q splat_q(uint64_t c) { return (Q)_mm512_set1_epi64((long long)c); }
  // W words, zero-extended into 64-bit lanes
  static Q load_words(const uint32_t* p) {
    return (Q)_mm512_cvtepu32_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  // Writes W blocks' two values in position order: dst[2e + j] = v[j] lane e.
  static void store_blocks(double* dst, const D v[2]) {
    const __m512i lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    _mm512_storeu_pd(dst, _mm512_permutex2var_pd((__m512d)v[0], lo, (__m512d)v[1]));
    _mm512_storeu_pd(dst + 8, _mm512_permutex2var_pd((__m512d)v[0], hi, (__m512d)v[1]));
  }
};
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define FR_HAVE_SIMD_LANES 1
struct SimdLanes : VectorLanes<8> {
  static F fma(F a, F b, F c) { return (F)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c); }
  static F sqrt(F a) { return (F)_mm256_sqrt_ps((__m256)a); }
  // AVX2 has no unsigned conversion: hi * 2^16 + lo with both halves exact and one rounding
  // (the product is exact inside the fma), i.e. the correctly rounded float(v).
  static F cvt_u32(U v) {
    return fma(cvt_small(v >> 16), splat(65536.0f), cvt_small(v & splat_u(0xffffu)));
  }
  static F cvt_small(U v) { return (F)_mm256_cvtepi32_ps((__m256i)v); }
  static F cvt_i32(U v) { return cvt_small(v); }  // signed: exact for the values used
  static F splat(float c) { return (F)_mm256_set1_ps(c); }
  static U splat_u(uint32_t c) { return (U)_mm256_set1_epi32(int(c)); }
  static U iota() { return (U)_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
  static void mulhilo(uint32_t m, U a, U& hi, U& lo) {
    const __m256i mm = _mm256_set1_epi32(int(m));
    const __m256i even = _mm256_mul_epu32((__m256i)a, mm);
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64((__m256i)a, 32), mm);
    lo = (U)_mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    hi = (U)_mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  }
  static U f16_bits(F f) {  // F16C: IEEE round to nearest even, subnormals exact
    return (U)_mm256_cvtepu16_epi32(
        _mm256_cvtps_ph((__m256)f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static U bf16_bits(F f) { return bf16_bits_t<SimdLanes>(f); }
  // W blocks' values in position order (a 4 x 8 transpose): o[q] holds blocks 2q and 2q + 1,
  // v[j] lane e at 32-bit lane 4 (e - 2q) + j.
  static void transpose_blocks(const U v[4], __m256i o[4]) {
    const __m256 a = (__m256)v[0], b = (__m256)v[1], c = (__m256)v[2], d = (__m256)v[3];
    const __m256 t0 = _mm256_unpacklo_ps(a, b), t1 = _mm256_unpackhi_ps(a, b);
    const __m256 t2 = _mm256_unpacklo_ps(c, d), t3 = _mm256_unpackhi_ps(c, d);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    o[0] = (__m256i)_mm256_permute2f128_ps(u0, u1, 0x20);
    o[1] = (__m256i)_mm256_permute2f128_ps(u2, u3, 0x20);
    o[2] = (__m256i)_mm256_permute2f128_ps(u0, u1, 0x31);
    o[3] = (__m256i)_mm256_permute2f128_ps(u2, u3, 0x31);
  }
  // Writes W blocks' values in position order: dst[4e + j] = v[j] lane e.
  template <class T>
  static void store_blocks(T* dst, const U v[4]) {
    __m256i o[4];
    transpose_blocks(v, o);
    if constexpr (sizeof(T) == 4) {
      for (int q = 0; q < 4; ++q)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 8 * q), o[q]);
    } else {  // values fit 16 bits: pack pairs, then undo the in-lane interleave of packus
      for (int q = 0; q < 4; q += 2)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 8 * q),
                            _mm256_permute4x64_epi64(_mm256_packus_epi32(o[q], o[q + 1]), 0xD8));
    }
  }
  // Writes the W lanes of v in lane order (16-bit T: values that fit 16 bits).
  template <class T>
  static void store_lanes(T* dst, U v) {
    if constexpr (sizeof(T) == 4) {
      memcpy(dst, &v, sizeof(v));
    } else {
      const __m256i h = _mm256_permute4x64_epi64(_mm256_packus_epi32((__m256i)v, (__m256i)v), 0xD8);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm256_castsi256_si128(h));
    }
  }
};
struct SimdLanes64 : VectorLanes64<4> {
  static D fma(D a, D b, D c) { return (D)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c); }
  static D sqrt(D a) { return (D)_mm256_sqrt_pd((__m256d)a); }
  // AVX2 has no 64-bit integer conversion: v = hi 2^32 + lo (hi <= 2^21) from two exact
  // magic-number readings, 2^84 + hi 2^32 and 2^52 + lo; (2^84 + hi 2^32) - (2^84 + 2^52) is
  // exact, and so is adding 2^52 + lo, since the sum v <= 2^53 is representable.
  static D cvt_exact(Q v) {
    const D hi = as_d((v >> 32) + 0x4530000000000000ull) - 0x1.00000001p+84;
    return hi + as_d((v & 0xffffffffull) + 0x4330000000000000ull);
  }
  static D splat(double c) { return (D)_mm256_set1_pd(c); }
  static Q splat_q(uint64_t c) { return (Q)_mm256_set1_epi64x((long long)c); }
  static Q load_words(const uint32_t* p) {
    return (Q)_mm256_cvtepu32_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static void store_blocks(double* dst, const D v[2]) {
    const __m256d lo = _mm256_unpacklo_pd((__m256d)v[0], (__m256d)v[1]);  // s0 c0 s2 c2
    const __m256d hi = _mm256_unpackhi_pd((__m256d)v[0], (__m256d)v[1]);  // s1 c1 s3 c3
    _mm256_storeu_pd(dst, _mm256_permute2f128_pd(lo, hi, 0x20));
    _mm256_storeu_pd(dst + 4, _mm256_permute2f128_pd(lo, hi, 0x31));
  }
};
#elif defined(__aarch64__) && defined(__ARM_NEON)
// AArch64 Advanced SIMD (NEON, part of every AArch64 core, so no run-time check): 4 blocks in
// 128-bit lanes. fmla is the fused step, fsqrt correctly rounded, and ucvtf, scvtf and fcvtn
// round to nearest even under the default FPCR (Linux and macOS start every thread with it;
// fcvtn to float16 ignores FZ16, so half subnormals are exact).
#define FR_HAVE_SIMD_LANES 1
struct SimdLanes : VectorLanes<4> {
  static F fma(F a, F b, F c) {
    return (F)vfmaq_f32((float32x4_t)c, (float32x4_t)a, (float32x4_t)b);  // c + a b, one rounding
  }
  static F sqrt(F a) { return (F)vsqrtq_f32((float32x4_t)a); }
  static F cvt_u32(U v) { return (F)vcvtq_f32_u32((uint32x4_t)v); }  // correctly rounded
  static F cvt_small(U v) { return (F)vcvtq_f32_s32((int32x4_t)v); }
  static F cvt_i32(U v) { return cvt_small(v); }  // signed: exact for the values used
  static F splat(float c) { return (F)vdupq_n_f32(c); }
  static U splat_u(uint32_t c) { return (U)vdupq_n_u32(c); }
  static U iota() { return U{0, 1, 2, 3}; }
  // umull / umull2 give the 64-bit products of lanes 0, 1 and 2, 3; uzp1 / uzp2 gather their
  // low and high words.
  static void mulhilo(uint32_t m, U a, U& hi, U& lo) {
    const uint32x4_t p01 = vreinterpretq_u32_u64(vmull_n_u32(vget_low_u32((uint32x4_t)a), m));
    const uint32x4_t p23 = vreinterpretq_u32_u64(vmull_high_n_u32((uint32x4_t)a, m));
    lo = (U)vuzp1q_u32(p01, p23);
    hi = (U)vuzp2q_u32(p01, p23);
  }
  static U f16_bits(F f) {  // fcvtn: IEEE round to nearest even, subnormals exact
    return (U)vmovl_u16(vreinterpret_u16_f16(vcvt_f16_f32((float32x4_t)f)));
  }
  static U bf16_bits(F f) { return bf16_bits_t<SimdLanes>(f); }
  // Writes W blocks' values in position order, dst[4e + j] = v[j] lane e: st4 interleaves.
  template <class T>
  static void store_blocks(T* dst, const U v[4]) {
    if constexpr (sizeof(T) == 4) {
      const uint32x4x4_t o = {
          {(uint32x4_t)v[0], (uint32x4_t)v[1], (uint32x4_t)v[2], (uint32x4_t)v[3]}};
      vst4q_u32(reinterpret_cast<uint32_t*>(dst), o);
    } else {  // values fit 16 bits
      const uint16x4x4_t o = {{vmovn_u32((uint32x4_t)v[0]), vmovn_u32((uint32x4_t)v[1]),
                               vmovn_u32((uint32x4_t)v[2]), vmovn_u32((uint32x4_t)v[3])}};
      vst4_u16(reinterpret_cast<uint16_t*>(dst), o);
    }
  }
  // Writes the W lanes of v in lane order (16-bit T: values that fit 16 bits).
  template <class T>
  static void store_lanes(T* dst, U v) {
    if constexpr (sizeof(T) == 4) {
      memcpy(dst, &v, sizeof(v));
    } else {
      vst1_u16(reinterpret_cast<uint16_t*>(dst), vmovn_u32((uint32x4_t)v));
    }
  }
};
struct SimdLanes64 : VectorLanes64<2> {
  static D fma(D a, D b, D c) {
    return (D)vfmaq_f64((float64x2_t)c, (float64x2_t)a, (float64x2_t)b);  // c + a b
  }
  static D sqrt(D a) { return (D)vsqrtq_f64((float64x2_t)a); }
  static D cvt_exact(Q v) { return (D)vcvtq_f64_u64((uint64x2_t)v); }  // v <= 2^53: exact
  static D splat(double c) { return (D)vdupq_n_f64(c); }
  static Q splat_q(uint64_t c) { return (Q)vdupq_n_u64(c); }
  // W words, zero-extended into 64-bit lanes
  static Q load_words(const uint32_t* p) { return (Q)vmovl_u32(vld1_u32(p)); }
  // Writes W blocks' two values in position order, dst[2e + j] = v[j] lane e: st2 interleaves.
  static void store_blocks(double* dst, const D v[2]) {
    const float64x2x2_t o = {{(float64x2_t)v[0], (float64x2_t)v[1]}};  // (clang: a macro)
    vst2q_f64(dst, o);
  }
};
#endif

#if defined(FR_HAVE_SIMD_LANES)
// Two SIMD groups side by side: every operation is applied to both halves, so the two groups'
// dependency chains (Philox rounds, polynomial steps) interleave and keep more execution units
// busy. Same operations per lane, so the same bits.
template <class L>
struct PairLanes {
  static constexpr int WIDTH = 2 * L::WIDTH;
  struct F {
    typename L::F a, b;
  };
  struct M {
    typename L::M a, b;
  };
  struct U {
    typename L::U a, b;
    friend U operator^(U x, U y) { return {x.a ^ y.a, x.b ^ y.b}; }
    friend U operator&(U x, U y) { return {x.a & y.a, x.b & y.b}; }
    friend U operator|(U x, U y) { return {x.a | y.a, x.b | y.b}; }
    friend U operator+(U x, U y) { return {x.a + y.a, x.b + y.b}; }
    friend U operator-(U x, U y) { return {x.a - y.a, x.b - y.b}; }
    friend U operator>>(U x, int k) { return {x.a >> k, x.b >> k}; }
    friend U operator<<(U x, int k) { return {x.a << k, x.b << k}; }
  };
  static F mul(F x, F y) { return {L::mul(x.a, y.a), L::mul(x.b, y.b)}; }
  static F add(F x, F y) { return {L::add(x.a, y.a), L::add(x.b, y.b)}; }
  static F sub(F x, F y) { return {L::sub(x.a, y.a), L::sub(x.b, y.b)}; }
  static F fma(F x, F y, F z) { return {L::fma(x.a, y.a, z.a), L::fma(x.b, y.b, z.b)}; }
  static F sqrt(F x) { return {L::sqrt(x.a), L::sqrt(x.b)}; }
  static F cvt_u32(U v) { return {L::cvt_u32(v.a), L::cvt_u32(v.b)}; }
  static F cvt_small(U v) { return {L::cvt_small(v.a), L::cvt_small(v.b)}; }
  static F cvt_i32(U v) { return {L::cvt_i32(v.a), L::cvt_i32(v.b)}; }
  static U sra(U v, int k) { return {L::sra(v.a, k), L::sra(v.b, k)}; }
  static U mad(U v, uint32_t m, U c) { return {L::mad(v.a, m, c.a), L::mad(v.b, m, c.b)}; }
  static F abs(F x) { return {L::abs(x.a), L::abs(x.b)}; }
  static F neg(F x) { return {L::neg(x.a), L::neg(x.b)}; }
  static U as_u(F f) { return {L::as_u(f.a), L::as_u(f.b)}; }
  static F as_f(U u) { return {L::as_f(u.a), L::as_f(u.b)}; }
  static F splat(float c) { return {L::splat(c), L::splat(c)}; }
  static U splat_u(uint32_t c) { return {L::splat_u(c), L::splat_u(c)}; }
  static U iota() { return {L::iota(), L::iota() + L::splat_u(uint32_t(L::WIDTH))}; }
  static M lt(F x, F y) { return {L::lt(x.a, y.a), L::lt(x.b, y.b)}; }
  static M ugt(U x, U y) { return {L::ugt(x.a, y.a), L::ugt(x.b, y.b)}; }
  static M uge(U x, U y) { return {L::uge(x.a, y.a), L::uge(x.b, y.b)}; }
  static M ne(M x, M y) { return {L::ne(x.a, y.a), L::ne(x.b, y.b)}; }
  static M msb(U x) { return {L::msb(x.a), L::msb(x.b)}; }
  static F sel(M m, F x, F y) { return {L::sel(m.a, x.a, y.a), L::sel(m.b, x.b, y.b)}; }
  static U sel_u(M m, U x, U y) { return {L::sel_u(m.a, x.a, y.a), L::sel_u(m.b, x.b, y.b)}; }
  static void mulhilo(uint32_t m, U x, U& hi, U& lo) {
    L::mulhilo(m, x.a, hi.a, lo.a);
    L::mulhilo(m, x.b, hi.b, lo.b);
  }
  static U f16_bits(F f) { return {L::f16_bits(f.a), L::f16_bits(f.b)}; }
  static U bf16_bits(F f) { return {L::bf16_bits(f.a), L::bf16_bits(f.b)}; }
  template <class T>
  static void store_blocks(T* dst, const U v[4]) {
    const typename L::U va[4] = {v[0].a, v[1].a, v[2].a, v[3].a};
    const typename L::U vb[4] = {v[0].b, v[1].b, v[2].b, v[3].b};
    L::template store_blocks<T>(dst, va);
    L::template store_blocks<T>(dst + 4 * L::WIDTH, vb);
  }
};

// PairLanes for float64 lanes.
template <class L>
struct PairLanes64 {
  static constexpr int WIDTH = 2 * L::WIDTH;
  struct D {
    typename L::D a, b;
  };
  struct M {
    typename L::M a, b;
  };
  struct Q {
    typename L::Q a, b;
    friend Q operator^(Q x, Q y) { return {x.a ^ y.a, x.b ^ y.b}; }
    friend Q operator&(Q x, Q y) { return {x.a & y.a, x.b & y.b}; }
    friend Q operator|(Q x, Q y) { return {x.a | y.a, x.b | y.b}; }
    friend Q operator+(Q x, Q y) { return {x.a + y.a, x.b + y.b}; }
    friend Q operator-(Q x, Q y) { return {x.a - y.a, x.b - y.b}; }
    friend Q operator>>(Q x, int k) { return {x.a >> k, x.b >> k}; }
    friend Q operator<<(Q x, int k) { return {x.a << k, x.b << k}; }
  };
  static D mul(D x, D y) { return {L::mul(x.a, y.a), L::mul(x.b, y.b)}; }
  static D add(D x, D y) { return {L::add(x.a, y.a), L::add(x.b, y.b)}; }
  static D sub(D x, D y) { return {L::sub(x.a, y.a), L::sub(x.b, y.b)}; }
  static D div(D x, D y) { return {L::div(x.a, y.a), L::div(x.b, y.b)}; }
  static D fma(D x, D y, D z) { return {L::fma(x.a, y.a, z.a), L::fma(x.b, y.b, z.b)}; }
  static D sqrt(D x) { return {L::sqrt(x.a), L::sqrt(x.b)}; }
  static D cvt_exact(Q v) { return {L::cvt_exact(v.a), L::cvt_exact(v.b)}; }
  static D cvt_exponent(Q v) { return {L::cvt_exponent(v.a), L::cvt_exponent(v.b)}; }
  static D splat(double c) { return {L::splat(c), L::splat(c)}; }
  static Q splat_q(uint64_t c) { return {L::splat_q(c), L::splat_q(c)}; }
  static Q as_q(D d) { return {L::as_q(d.a), L::as_q(d.b)}; }
  static D as_d(Q q) { return {L::as_d(q.a), L::as_d(q.b)}; }
  static M gt(Q x, Q y) { return {L::gt(x.a, y.a), L::gt(x.b, y.b)}; }
  static M msb(Q x) { return {L::msb(x.a), L::msb(x.b)}; }
  static M ne(M x, M y) { return {L::ne(x.a, y.a), L::ne(x.b, y.b)}; }
  static D sel(M m, D x, D y) { return {L::sel(m.a, x.a, y.a), L::sel(m.b, x.b, y.b)}; }
  static Q sel_q(M m, Q x, Q y) { return {L::sel_q(m.a, x.a, y.a), L::sel_q(m.b, x.b, y.b)}; }
  static Q load_words(const uint32_t* p) { return {L::load_words(p), L::load_words(p + L::WIDTH)}; }
  static void store_blocks(double* dst, const D v[2]) {
    const typename L::D va[2] = {v[0].a, v[1].a}, vb[2] = {v[0].b, v[1].b};
    L::store_blocks(dst, va);
    L::store_blocks(dst + 2 * L::WIDTH, vb);
  }
};
#endif

}  // namespace FR_ISA_NS
}  // namespace v1
}  // namespace fastrand
