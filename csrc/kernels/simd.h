// simd.h: the native float vector of the ISA a kernel file is compiled for, and the few helpers the
// hot kernels need.
//
// Written with GCC/Clang vector extensions rather than intrinsics, so one source serves every ISA: the
// kernel files that include this are compiled once per ISA and `vfloat` is one register there: 16 lanes
// with AVX-512, 8 with AVX2, 4 otherwise. Intrinsics appear only where the extensions have no spelling
// or GCC's code for them is poor (half-precision and byte conversions).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../common.h"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace nextoken {

#if defined(__AVX512F__)
constexpr int VL = 16;
#elif defined(__AVX2__)
constexpr int VL = 8;
#else
constexpr int VL = 4;
#endif

typedef float vfloat __attribute__((vector_size(4 * VL)));
typedef int32_t vint __attribute__((vector_size(4 * VL)));

static inline vfloat splat(float x) { return vfloat{} + x; }

static inline vfloat loadv(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
static inline void storev(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }

// Loads n < VL floats, zero in the other lanes.
static inline vfloat loadv_partial(const float* p, int n) {
  float tmp[VL] = {};
  std::memcpy(tmp, p, sizeof(float) * n);
  return loadv(tmp);
}

// Sum of the lanes, always in the same tree order (halves added pairwise).
static inline float hsum(vfloat v) {
  typedef float f32x4 __attribute__((vector_size(16)));
#if defined(__AVX512F__)
  typedef float f32x8 __attribute__((vector_size(32)));
  const f32x8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                  __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const f32x4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
#elif defined(__AVX2__)
  const f32x4 b = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
#else
  const f32x4 b = v;
#endif
  return (b[0] + b[2]) + (b[1] + b[3]);
}

// out[r] = hsum(v[r]) for 8 vectors, bit for bit the same sums. With AVX2 the 8 trees run side by side,
// lanes of different vectors added together (21 shuffles and adds in all, against 8 x 5 one by one).
static inline void hsum8(float* out, const vfloat* v) {
#if defined(__AVX2__) && !defined(__AVX512F__)
  // s[r]: v[r]'s halves added (hsum's b) in lanes 0-3 and v[r + 4]'s in lanes 4-7
  vfloat s[4];
  for (int r = 0; r < 4; ++r)
    s[r] = __builtin_shufflevector(v[r], v[r + 4], 0, 1, 2, 3, 8, 9, 10, 11) +
           __builtin_shufflevector(v[r], v[r + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  // e: per vector b[0] + b[2] and b[1] + b[3] of v[0], v[1] | v[4], v[5]; f the same of v[2], v[3] | v[6], v[7]
  const vfloat e = __builtin_shufflevector(s[0], s[1], 0, 1, 8, 9, 4, 5, 12, 13) +
                   __builtin_shufflevector(s[0], s[1], 2, 3, 10, 11, 6, 7, 14, 15);
  const vfloat f = __builtin_shufflevector(s[2], s[3], 0, 1, 8, 9, 4, 5, 12, 13) +
                   __builtin_shufflevector(s[2], s[3], 2, 3, 10, 11, 6, 7, 14, 15);
  storev(out, __builtin_shufflevector(e, f, 0, 2, 8, 10, 4, 6, 12, 14) + __builtin_shufflevector(e, f, 1, 3, 9, 11, 5, 7, 13, 15));
#else
  for (int r = 0; r < 8; ++r) out[r] = hsum(v[r]);
#endif
}

static inline float half_to_float(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  return f16_to_f32(h);
#endif
}

// Two adjacent halves (a block's d and m) as floats, converted together.
static inline void halves_to_floats(const uint16_t* p, float& a, float& b) {
#if defined(__F16C__)
  uint32_t pair;
  std::memcpy(&pair, p, 4);
  const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(int(pair)));
  a = _mm_cvtss_f32(f);
  b = _mm_cvtss_f32(_mm_movehdup_ps(f));
#else
  a = f16_to_f32(p[0]);
  b = f16_to_f32(p[1]);
#endif
}

// VL halves from memory as floats.
static inline vfloat loadv_f16(const uint16_t* p) {
#if defined(__AVX512F__)
  return (vfloat)_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#elif defined(__AVX2__) && defined(__F16C__)
  return (vfloat)_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
  vfloat v;
  for (int i = 0; i < VL; ++i) v[i] = half_to_float(p[i]);
  return v;
#endif
}

// VL bfloat16 values from memory as floats (a bfloat16 is the top half of a float's bits).
static inline vfloat loadv_bf16(const uint16_t* p) {
#if defined(__AVX512F__)
  return (vfloat)_mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
#elif defined(__AVX2__)
  return (vfloat)_mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
#else
  vfloat v;
  for (int i = 0; i < VL; ++i) v[i] = bf16_to_f32(p[i]);
  return v;
#endif
}

// VL signed bytes from memory as floats. Intrinsics: GCC 12 turns a vector-extension sign extension
// of bytes into one scalar load per byte.
static inline vfloat loadv_i8(const int8_t* p) {
#if defined(__AVX512F__)
  return (vfloat)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#elif defined(__AVX2__)
  return (vfloat)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
  vfloat v;
  for (int i = 0; i < VL; ++i) v[i] = float(p[i]);
  return v;
#endif
}

// e^x lane by lane: Cody-Waite range reduction x = n ln2 + r, a degree-6 polynomial for e^r on
// |r| <= ln2/2, then 2^n built in the exponent bits. Max error ~2 ulp; 0 below -87.3 (where e^x
// leaves the normal floats), +inf above 88.7.
static inline vfloat expv(vfloat x) {
  const vfloat hi = splat(88.7228f), lo = splat(-87.3365f);
  const vint tiny = x < lo;
  x = x < lo ? lo : x;
  vfloat big = x > hi ? splat(INFINITY) : splat(0.0f);
  x = x > hi ? hi : x;
  // n = round(x / ln2) via the 1.5 * 2^23 shifter trick.
  const vfloat shifter = splat(12582912.0f);
  vfloat t = x * splat(1.44269504088896341f) + shifter;
  vfloat n = t - shifter;
  vfloat r = x - n * splat(0.693359375f);
  r = r - n * splat(-2.12194440e-4f);
  vfloat p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * r * r + r + splat(1.0f);
  vint ni = __builtin_convertvector(n, vint);
  // 2^n for n in [-126, 128]; split in two factors so n = 128 or n = -126.x does not overflow the field.
  vint n1 = ni >> 1, n2 = ni - n1;
  vfloat s1, s2;
  vint b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
  std::memcpy(&s1, &b1, sizeof s1);
  std::memcpy(&s2, &b2, sizeof s2);
  vfloat y = p * s1 * s2;
  y = tiny ? splat(0.0f) : y;
  return big != 0.0f ? big : y;
}

}  // namespace nextoken
