// matmul_int8.cpp: y = x @ W^T with int8 activations and packed 4/8-bit weights, CPU, once per ISA.
//
// T = tokens, K = input features, N = output features; packed layout in kernels.h. Per token, group of
// 16 rows and 32-weight block b, with u the codes, xq the activation codes and a the exact integer
// a[j] = sum_i u(j, i) xq(i):
//     acc[j] = fma(float(a[j]), d[j] * dx_b, acc[j]);   acc[j] = fma(m[j], dx_b * sx_b, acc[j])
// With AVX-512 VNNI the 16 rows are the 16 lanes of one register and a is 8 vpdpbusd; with AVX2, two
// registers of 8 rows; elsewhere the same operations run row by row. a is exact and the float steps are
// the same, so every ISA gives the same bits. No horizontal sums: 16 outputs at once.
#include <algorithm>
#include <cmath>

#include "../parallel.h"
#include "isa_kernels.h"
#include "simd.h"

namespace nextoken {
namespace NT_ISA {
namespace {

constexpr int ROWS = 16;    // rows per packed group
constexpr int TILE_T = 4;   // tokens sharing one unpacking of a chunk's codes
constexpr int BLOCK_T = 64; // tokens whose activations stay in cache while a thread sweeps its groups
// Bytes ahead of a decode step's (T = 1) reads at which its packed weights are prefetched: on an AMD EPYC
// (Zen 3, AVX2) SmolLM2's int8 decode went from ~115 to ~128 tokens/s (interleaved runs; 512 and 2048
// bytes did about as well).
constexpr int PREFETCH_AHEAD = 1024;

// The quantized activations of tokens t, t + 1, ... (K = n_blocks * 32 each): codes, block scale dx, the
// block's code sum sx, and dx * float(sx) (formed once by quantize_activations, not in every group's inner
// loop: the same float product, so the same bits).
struct Tokens {
  const int8_t* xq;
  const float* dx;
  const float* dx_sx;
  const int32_t* sx;
  int n_blocks;
  const int8_t* codes(int t, int b) const { return xq + (size_t(t) * n_blocks + b) * QK; }
  float scale(int t, int b) const { return dx[size_t(t) * n_blocks + b]; }
  float scale_sum(int t, int b) const { return dx_sx[size_t(t) * n_blocks + b]; }
  int32_t sum(int t, int b) const { return sx[size_t(t) * n_blocks + b]; }
  Tokens from(int t) const {
    const size_t at = size_t(t) * n_blocks;
    return {xq + at * QK, dx + at, dx_sx + at, sx + at, n_blocks};
  }
};

#if defined(__AVX512VNNI__)
// y[t * N + j], j < n_rows (<= 16), for NT tokens and one group of rows.
template <int BITS, int NT>
void group_tile(float* y, int N, int n_rows, const Tokens& x, const uint8_t* w) {
  const int n_blocks = x.n_blocks;
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int b = 0; b < n_blocks; ++b) {
    const uint8_t* c = w + b * packed_chunk_bytes(BITS);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c)));
    const __m512 m = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32)));
    __m512i codes[8];
    if constexpr (BITS == 4) {
      const __m512i low4 = _mm512_set1_epi8(0x0F);
      for (int p = 0; p < 4; ++p) {
        const __m512i v = _mm512_loadu_si512(c + 64 + 64 * p);
        codes[2 * p] = _mm512_and_si512(v, low4);
        codes[2 * p + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
      }
    } else {
      for (int g = 0; g < 8; ++g) codes[g] = _mm512_loadu_si512(c + 64 + 64 * g);
    }
    for (int t = 0; t < NT; ++t) {
      const int8_t* xb = x.codes(t, b);
      __m512i a = _mm512_setzero_si512();
      for (int g = 0; g < 8; ++g) {
        int32_t four;
        std::memcpy(&four, xb + 4 * g, 4);
        a = _mm512_dpbusd_epi32(a, codes[g], _mm512_set1_epi32(four));
      }
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_mul_ps(d, _mm512_set1_ps(x.scale(t, b))), acc[t]);
      acc[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(x.scale_sum(t, b)), acc[t]);
    }
  }
  const __mmask16 keep = __mmask16((1u << n_rows) - 1);
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + size_t(t) * N, keep, acc[t]);
}
#elif defined(__AVX2__)
// The same sums 8 rows at a time (the two halves of a group), with vpmaddubsw: u8 x s8 pairs into s16.
inline __m256i x4(const Tokens& x, int t, int b, int g) {  // activations 4g .. 4g + 3 of block b, every lane
  int32_t four;
  std::memcpy(&four, x.codes(t, b) + 4 * g, 4);
  return _mm256_set1_epi32(four);
}

// Adds block b's terms d dx (u . x) + m dx sx for token t to the accumulator of half h (rows 8h .. 8h + 7).
inline void add_block(__m256& acc, const uint8_t* c, int h, const Tokens& x, int t, int b, __m256i a) {
  const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 16 * h)));
  const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 32 + 16 * h)));
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), _mm256_mul_ps(d, _mm256_set1_ps(x.scale(t, b))), acc);
  acc = _mm256_fmadd_ps(m, _mm256_set1_ps(x.scale_sum(t, b)), acc);
}

// A decode step (NT = 1) streams the group once: ask for the bytes PREFETCH_AHEAD past chunk c early.
template <int BITS>
inline void prefetch_ahead(const uint8_t* c) {
  for (int l = 0; l < int(packed_chunk_bytes(BITS)); l += 64) __builtin_prefetch(c + PREFETCH_AHEAD + l);
}

inline void store_rows(float* y, int N, int n_rows, int t, int h, __m256 acc) {
  const int rows_here = std::min(8, n_rows - 8 * h);
  if (rows_here <= 0) return;
  alignas(32) float out[8];
  _mm256_store_ps(out, acc);
  std::memcpy(y + size_t(t) * N + 8 * h, out, sizeof(float) * rows_here);
}

// 4-bit codes u give at most 2 * 15 * 127 = 3810 per pair, so the 8 groups of a block add up in 16 bits
// (at most 30480 < 32767 in any order, exact) before one vpmaddwd by ones widens them. Group by group,
// both halves' codes are unpacked from memory (2 registers, not 16) and each token's activations are
// broadcast once for both; the sums of NT tokens x 2 halves stay in registers.
template <int NT>
void group_tile_4bit(float* y, int N, int n_rows, const Tokens& x, const uint8_t* w) {
  const __m256i ones = _mm256_set1_epi16(1), low4 = _mm256_set1_epi8(0x0F);
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  for (int b = 0; b < x.n_blocks; ++b) {
    const uint8_t* c = w + b * packed_chunk_bytes(4);
    if (NT == 1) prefetch_ahead<4>(c);
    __m256i sum16[NT][2];
    for (int g = 0; g < 8; ++g) {
      __m256i codes[2];  // group g: 4 codes of each of the 8 rows of half h
      for (int h = 0; h < 2; ++h) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 64 + 64 * (g / 2) + 32 * h));
        codes[h] = g % 2 ? _mm256_and_si256(_mm256_srli_epi16(v, 4), low4) : _mm256_and_si256(v, low4);
      }
      for (int t = 0; t < NT; ++t) {
        const __m256i xg = x4(x, t, b, g);
        for (int h = 0; h < 2; ++h) {
          const __m256i p = _mm256_maddubs_epi16(codes[h], xg);
          sum16[t][h] = g == 0 ? p : _mm256_add_epi16(sum16[t][h], p);
        }
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int h = 0; h < 2; ++h) add_block(acc[t][h], c, h, x, t, b, _mm256_madd_epi16(sum16[t][h], ones));
  }
  for (int t = 0; t < NT; ++t)
    for (int h = 0; h < 2; ++h) store_rows(y, N, n_rows, t, h, acc[t][h]);
}

// 8-bit codes would saturate vpmaddubsw (2 * 255 * 127), so they are read as signed q = u - 128 (u ^ 0x80)
// and multiplied as |q| * (x signed by q), at most 2 * 128 * 127 = 32512 per pair (x is within +-127), and
// widened group by group; u . x = q . x + 128 * sum(x), exactly. As for 4-bit codes, group by group over
// both halves, each token's activations broadcast once.
template <int NT>
void group_tile_8bit(float* y, int N, int n_rows, const Tokens& x, const uint8_t* w) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  for (int b = 0; b < x.n_blocks; ++b) {
    const uint8_t* c = w + b * packed_chunk_bytes(8);
    if (NT == 1) prefetch_ahead<8>(c);
    __m256i a[NT][2];
    for (int t = 0; t < NT; ++t) a[t][0] = a[t][1] = _mm256_set1_epi32(128 * x.sum(t, b));
    for (int g = 0; g < 8; ++g) {
      __m256i q[2], magnitude[2];  // half h: q = u - 128 and |q| (128 for -128: read as unsigned)
      for (int h = 0; h < 2; ++h) {
        q[h] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 64 + 64 * g + 32 * h)),
                                _mm256_set1_epi8(char(0x80)));
        magnitude[h] = _mm256_abs_epi8(q[h]);
      }
      for (int t = 0; t < NT; ++t) {
        const __m256i xg = x4(x, t, b, g);
        for (int h = 0; h < 2; ++h) {
          const __m256i qx = _mm256_maddubs_epi16(magnitude[h], _mm256_sign_epi8(xg, q[h]));
          a[t][h] = _mm256_add_epi32(a[t][h], _mm256_madd_epi16(qx, ones));
        }
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int h = 0; h < 2; ++h) add_block(acc[t][h], c, h, x, t, b, a[t][h]);
  }
  for (int t = 0; t < NT; ++t)
    for (int h = 0; h < 2; ++h) store_rows(y, N, n_rows, t, h, acc[t][h]);
}

template <int BITS, int NT>
void group_tile(float* y, int N, int n_rows, const Tokens& x, const uint8_t* w) {
  if constexpr (BITS == 4) group_tile_4bit<NT>(y, N, n_rows, x, w);
  else group_tile_8bit<NT>(y, N, n_rows, x, w);
}
#else
template <int BITS, int NT>
void group_tile(float* y, int N, int n_rows, const Tokens& x, const uint8_t* w) {
  const int n_blocks = x.n_blocks;
  float acc[NT][ROWS] = {};
  for (int b = 0; b < n_blocks; ++b) {
    const uint8_t* c = w + b * packed_chunk_bytes(BITS);
    const uint16_t* d16 = reinterpret_cast<const uint16_t*>(c);
    const uint8_t* codes = c + 64;
    for (int t = 0; t < NT; ++t) {
      const int8_t* xb = x.codes(t, b);
      const float s = x.scale(t, b), s_sum = x.scale_sum(t, b);
      for (int j = 0; j < ROWS; ++j) {
        int32_t a = 0;
        for (int i = 0; i < QK; ++i) {
          int u;
          if constexpr (BITS == 8) {
            u = codes[(i / 4) * 64 + 4 * j + i % 4];
          } else {
            const int p = i / 8, k = i % 8;
            const uint8_t byte = codes[p * 64 + 4 * j + k % 4];
            u = k < 4 ? byte & 0xF : byte >> 4;
          }
          a += u * xb[i];
        }
        acc[t][j] = std::fma(float(a), f16_to_f32(d16[j]) * s, acc[t][j]);
        acc[t][j] = std::fma(f16_to_f32(d16[16 + j]), s_sum, acc[t][j]);
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int j = 0; j < n_rows; ++j) y[size_t(t) * N + j] = acc[t][j];
}
#endif

// Groups [g0, g1) of one output, every token.
template <int BITS>
void groups(const PackedOut& o, const Tokens& x, int T, int g0, int g1) {
  const size_t group_bytes = size_t(x.n_blocks) * packed_chunk_bytes(BITS);
  for (int t0 = 0; t0 < T; t0 += BLOCK_T) {
    const int t1 = std::min(T, t0 + BLOCK_T);
    for (int g = g0; g < g1; ++g) {
      const int n_rows = std::min(ROWS, o.N - g * ROWS);
      const uint8_t* w = o.w + g * group_bytes;
      int t = t0;
      for (; t + TILE_T <= t1; t += TILE_T)
        group_tile<BITS, TILE_T>(o.y + size_t(t) * o.N + g * ROWS, o.N, n_rows, x.from(t), w);
      for (; t < t1; ++t) group_tile<BITS, 1>(o.y + size_t(t) * o.N + g * ROWS, o.N, n_rows, x.from(t), w);
    }
  }
}

}  // namespace

void matmul_int8_multi(const PackedOut* outs, int n_outs, const int8_t* xq, const float* dx, const int32_t* sx,
                       const float* dx_sx, int T, int K, int n_threads) {
  const Tokens x{xq, dx, dx_sx, sx, K / QK};
  auto n_groups = [&](int i) { return (outs[i].N + ROWS - 1) / ROWS; };
  parallel_for(total_units(n_outs, n_groups), n_threads, 1, [&](int begin, int end) {
    for_output_ranges(n_outs, n_groups, begin, end, [&](int i, int a, int b) {
      if (outs[i].bits == 4) groups<4>(outs[i], x, T, a, b);
      else groups<8>(outs[i], x, T, a, b);
    });
  });
}

}  // namespace NT_ISA
}  // namespace nextoken
