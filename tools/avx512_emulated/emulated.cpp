// emulated.cpp: matmul_int8.cpp's AVX-512 VNNI variant compiled against SIMDe (SIMD Everywhere), whose
// portable definitions of the _mm512 intrinsics run on any x86-64: the variant can be checked on a CPU
// without AVX-512. SIMDe 0.7.4 (Debian's libsimde-dev) lacks the four conversions below, defined here
// lane by lane.
#include <immintrin.h>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include <cstdint>
#include <cstring>

#include "../../csrc/common.h"

namespace emulated {
inline simde__m512 cvtph_ps(simde__m256i h) {
  uint16_t in[16];
  float out[16];
  simde_mm256_storeu_si256(reinterpret_cast<simde__m256i*>(in), h);
  for (int i = 0; i < 16; ++i) out[i] = nextoken::f16_to_f32(in[i]);
  return simde_mm512_loadu_ps(out);
}
inline simde__m512i cvtepi8_epi32(simde__m128i b) {
  int8_t in[16];
  int32_t out[16];
  simde_mm_storeu_si128(reinterpret_cast<simde__m128i*>(in), b);
  for (int i = 0; i < 16; ++i) out[i] = in[i];
  return simde_mm512_loadu_si512(out);
}
inline simde__m512 cvtepi32_ps(simde__m512i a) {
  int32_t in[16];
  float out[16];
  simde_mm512_storeu_si512(in, a);
  for (int i = 0; i < 16; ++i) out[i] = float(in[i]);  // round to nearest even, as vcvtdq2ps
  return simde_mm512_loadu_ps(out);
}
inline void mask_storeu_ps(void* p, uint16_t keep, simde__m512 v) {
  float in[16];
  simde_mm512_storeu_ps(in, v);
  for (int i = 0; i < 16; ++i)
    if (keep >> i & 1) static_cast<float*>(p)[i] = in[i];
}
}  // namespace emulated

#define _mm512_cvtph_ps emulated::cvtph_ps
#define _mm512_cvtepi8_epi32 emulated::cvtepi8_epi32
#define _mm512_cvtepi32_ps emulated::cvtepi32_ps
#define _mm512_mask_storeu_ps emulated::mask_storeu_ps
#define __AVX512VNNI__ 1
#define NT_ISA avx512_emulated
#include "../../csrc/kernels/matmul_int8.cpp"
