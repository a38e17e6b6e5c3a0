// simd.h: 16-lane float vectors and the few helpers the hot kernels need.
//
// Written with GCC/Clang vector extensions rather than intrinsics, so one source serves every ISA: the
// kernel files that include this are compiled once per ISA (AVX-512, AVX2, baseline) and the compiler
// maps a 16-lane vector onto one zmm, two ymm or four xmm registers. Intrinsics appear only where
// the extensions have no spelling (half-precision conversion).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../common.h"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace nextoken {

typedef float f32x16 __attribute__((vector_size(64)));
typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));

static inline f32x16 splat(float x) { return f32x16{} + x; }
static inline f32x16 iota16() { return f32x16{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}; }

static inline f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
static inline void store16(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }

// Loads n < 16 floats, zero in the other lanes.
static inline f32x16 load16_partial(const float* p, int n) {
  float tmp[16] = {};
  std::memcpy(tmp, p, sizeof(float) * n);
  return load16(tmp);
}

static inline u8x16 load_u8x16(const uint8_t* p) {
#if defined(__SSE2__)
  return (u8x16)_mm_loadu_si128(reinterpret_cast<const __m128i*>(p));  // memcpy here gets split into bytes
#else
  u8x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
#endif
}

static inline f32x16 join8(f32x8 lo, f32x8 hi) {
  return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

// 16 signed bytes from memory as floats. Intrinsics: GCC 12 turns a vector-extension sign extension of
// bytes into 16 scalar loads.
static inline f32x16 load16_i8(const int8_t* p) {
#if defined(__AVX512F__)
  return (f32x16)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#elif defined(__AVX2__)
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return join8((f32x8)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)),
               (f32x8)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(q, q))));
#else
  f32x16 v;
  for (int i = 0; i < 16; ++i) v[i] = float(p[i]);
  return v;
#endif
}

// Sum of the 16 lanes, always in the same tree order.
static inline float hsum(f32x16 v) {
  f32x8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
            __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  f32x4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
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

static inline f32x16 load16_f16(const uint16_t* p) {
#if defined(__AVX512F__)
  return (f32x16)_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#else
  f32x16 v;
  for (int i = 0; i < 16; ++i) v[i] = half_to_float(p[i]);
  return v;
#endif
}

// e^x for 16 lanes: Cody-Waite range reduction x = n ln2 + r, a degree-6 polynomial for e^r on
// |r| <= ln2/2, then 2^n built in the exponent bits. Max error ~2 ulp; e^x -> 0 below -87.3, +inf above 88.7.
static inline f32x16 exp16(f32x16 x) {
  const f32x16 hi = splat(88.7228f), lo = splat(-87.3365f);
  x = x < lo ? lo : x;
  f32x16 big = x > hi ? splat(INFINITY) : splat(0.0f);
  x = x > hi ? hi : x;
  // n = round(x / ln2) via the 1.5 * 2^23 shifter trick.
  const f32x16 shifter = splat(12582912.0f);
  f32x16 t = x * splat(1.44269504088896341f) + shifter;
  f32x16 n = t - shifter;
  f32x16 r = x - n * splat(0.693359375f);
  r = r - n * splat(-2.12194440e-4f);
  f32x16 p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * r * r + r + splat(1.0f);
  i32x16 ni = __builtin_convertvector(n, i32x16);
  // 2^n for n in [-126, 128]; split in two factors so n = 128 or n = -126.x does not overflow the field.
  i32x16 n1 = ni >> 1, n2 = ni - n1;
  f32x16 s1, s2;
  i32x16 b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
  std::memcpy(&s1, &b1, sizeof s1);
  std::memcpy(&s2, &b2, sizeof s2);
  f32x16 y = p * s1 * s2;
  return big != 0.0f ? big : y;
}

}  // namespace nextoken
