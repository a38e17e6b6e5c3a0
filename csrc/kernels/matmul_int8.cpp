// matmul_int8.cpp: y = x @ W^T with int8 activations and packed 4/5/6/8-bit weights, CPU, once per ISA.
//
// T = tokens, K = input features, N = output features; packed layout in kernels.h. Per token, group of
// 16 rows and 32-weight block b, with u the codes, xq the activation codes, sx their sum and a the exact
// integer a[j] = sum_i u(j, i) xq(i) - z sx (z = 0 for the formats with an offset m, else 2^(bits - 1);
// for Q6_K the sum of sc[s][j] (sum over sub-block s of u xq - 32 sx_s), sx_s the sub-block's code sum):
//     acc[j] = fma(float(a[j]), d[j] * dx_b, acc[j]);   with an offset also acc[j] = fma(m[j], dx_b * sx_b, acc[j])
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

// Where a chunk's codes start: after d[16], m[16] when the format has an offset, and Q6_K's sc[2][16].
template <int BITS, bool OFFSET>
inline const uint8_t* chunk_codes(const uint8_t* c) { return c + packed_chunk_bytes({BITS, OFFSET}) - 64 * BITS; }
// z of the formats without an offset: w = d (u - z).
template <int BITS, bool OFFSET>
constexpr int ZERO_POINT = OFFSET ? 0 : 1 << (BITS - 1);
// Q6_K: the code sums of the block's two halves of 16 activations (sub-blocks 0 and 1).
inline void sub_sums(const int8_t* xb, int32_t s[2]) {
  s[0] = s[1] = 0;
  for (int i = 0; i < QK / 2; ++i) {
    s[0] += xb[i];
    s[1] += xb[QK / 2 + i];
  }
}

#if defined(__AVX512VNNI__)
// Bit `bit` (4 or 5) of group g's codes: bit g of each byte of that bit's 64 bytes, moved to bit `bit`.
// 16-bit shifts carry bits across the byte boundary, but never into bit `bit` of the other byte (a left
// shift by bit - g <= 5 brings in bits below it, a right shift by g - bit <= 3 bits above it).
inline __m512i high_bits(__m512i plane, int g, int bit) {
  const __m512i v = g >= bit ? _mm512_srl_epi16(plane, _mm_cvtsi32_si128(g - bit))
                             : _mm512_sll_epi16(plane, _mm_cvtsi32_si128(bit - g));
  return _mm512_and_si512(v, _mm512_set1_epi8(char(1 << bit)));
}

// y[t * N + j], j < n_rows (<= 16), for NT tokens and one group of rows.
template <int BITS, bool OFFSET, int NT>
void group_tile(float* y, int N, int n_rows, const Tokens& x, const uint8_t* w) {
  constexpr PackedFormat format{BITS, OFFSET};
  constexpr int Z = ZERO_POINT<BITS, OFFSET>;
  const int n_blocks = x.n_blocks;
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int b = 0; b < n_blocks; ++b) {
    const uint8_t* c = w + b * packed_chunk_bytes(format);
    const uint8_t* u = chunk_codes<BITS, OFFSET>(c);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c)));
    __m512i codes[8];
    if constexpr (BITS == 8) {
      for (int g = 0; g < 8; ++g) codes[g] = _mm512_loadu_si512(u + 64 * g);
    } else {
      const __m512i low4 = _mm512_set1_epi8(0x0F);
      for (int p = 0; p < 4; ++p) {
        const __m512i v = _mm512_loadu_si512(u + 64 * p);
        codes[2 * p] = _mm512_and_si512(v, low4);
        codes[2 * p + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
      }
      for (int bit = 4; bit < BITS; ++bit) {
        const __m512i plane = _mm512_loadu_si512(u + 256 + 64 * (bit - 4));
#pragma GCC unroll 8  // constant shifts
        for (int g = 0; g < 8; ++g) codes[g] = _mm512_or_si512(codes[g], high_bits(plane, g, bit));
      }
    }
    for (int t = 0; t < NT; ++t) {
      const int8_t* xb = x.codes(t, b);
      __m512i a;
      if constexpr (BITS == 6) {  // a = sc0 (u . x - 32 sx_0) + sc1 (u . x - 32 sx_1), over the two halves
        int32_t sums[2];
        sub_sums(xb, sums);
        a = _mm512_setzero_si512();
        for (int sub = 0; sub < 2; ++sub) {
          __m512i part = _mm512_set1_epi32(-32 * sums[sub]);
          for (int g = 4 * sub; g < 4 * sub + 4; ++g) {
            int32_t four;
            std::memcpy(&four, xb + 4 * g, 4);
            part = _mm512_dpbusd_epi32(part, codes[g], _mm512_set1_epi32(four));
          }
          const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 32 + 16 * sub)));
          a = _mm512_add_epi32(a, _mm512_mullo_epi32(part, sc));
        }
      } else {
        a = _mm512_set1_epi32(-Z * x.sum(t, b));
        for (int g = 0; g < 8; ++g) {
          int32_t four;
          std::memcpy(&four, xb + 4 * g, 4);
          a = _mm512_dpbusd_epi32(a, codes[g], _mm512_set1_epi32(four));
        }
      }
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_mul_ps(d, _mm512_set1_ps(x.scale(t, b))), acc[t]);
      if constexpr (OFFSET) {
        const __m512 m = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32)));
        acc[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(x.scale_sum(t, b)), acc[t]);
      }
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

// high_bits of the AVX-512 path, for one half.
inline __m256i high_bits(__m256i plane, int g, int bit) {
  const __m256i v = g >= bit ? _mm256_srl_epi16(plane, _mm_cvtsi32_si128(g - bit))
                             : _mm256_sll_epi16(plane, _mm_cvtsi32_si128(bit - g));
  return _mm256_and_si256(v, _mm256_set1_epi8(char(1 << bit)));
}

// Adds block b's terms d dx a (+ m dx sx) for token t to the accumulator of half h (rows 8h .. 8h + 7).
template <bool OFFSET>
inline void add_block(__m256& acc, const uint8_t* c, int h, const Tokens& x, int t, int b, __m256i a) {
  const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 16 * h)));
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), _mm256_mul_ps(d, _mm256_set1_ps(x.scale(t, b))), acc);
  if constexpr (OFFSET) {
    const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 32 + 16 * h)));
    acc = _mm256_fmadd_ps(m, _mm256_set1_ps(x.scale_sum(t, b)), acc);
  }
}

// An empty asm that claims to change v: the compiler must have v in a register here, and cannot move
// the additions that made it past this point.
inline void keep_in_register(__m256i& v) { asm("" : "+x"(v)); }

// A decode step (NT = 1) streams the group once: ask for the bytes PREFETCH_AHEAD past chunk c early.
inline void prefetch_ahead(const uint8_t* c, size_t chunk_bytes) {
  for (size_t l = 0; l < chunk_bytes; l += 64) __builtin_prefetch(c + PREFETCH_AHEAD + l);
}

inline void store_rows(float* y, int N, int n_rows, int t, int h, __m256 acc) {
  const int rows_here = std::min(8, n_rows - 8 * h);
  if (rows_here <= 0) return;
  alignas(32) float out[8];
  _mm256_store_ps(out, acc);
  std::memcpy(y + size_t(t) * N + 8 * h, out, sizeof(float) * rows_here);
}

// 4-bit codes u give at most 2 * 15 * 127 = 3810 per pair, so the 8 groups of a block add up in 16 bits
// (at most 30480 < 32767 in any order, exact) before one vpmaddwd by ones widens them; 5-bit codes (2 * 31
// * 127 = 7874 per pair) are widened after groups 0-3 and 4-7 (31496 each), 6-bit codes (16002) every 2
// groups (32004). Q6_K's scale multiplies each sub-block's exact sum (groups 0-3, 4-7) in 32 bits. Group
// by group, both halves' codes are unpacked from memory (2 registers, not 16) and each token's activations
// are broadcast once for both; the sums of NT tokens x 2 halves stay in registers.
template <int BITS, bool OFFSET, int NT>
void group_tile_nibbles(float* y, int N, int n_rows, const Tokens& x, const uint8_t* w) {
  constexpr PackedFormat format{BITS, OFFSET};
  constexpr int Z = ZERO_POINT<BITS, OFFSET>;
  constexpr int WIDEN_EVERY = BITS == 4 ? 8 : BITS == 5 ? 4 : 2;  // groups summed in 16 bits
  const __m256i ones = _mm256_set1_epi16(1), low4 = _mm256_set1_epi8(0x0F);
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  for (int b = 0; b < x.n_blocks; ++b) {
    const uint8_t* c = w + b * packed_chunk_bytes(format);
    const uint8_t* u = chunk_codes<BITS, OFFSET>(c);
    if (NT == 1) prefetch_ahead(c, packed_chunk_bytes(format));
    // a: the block's integer sum; Q6_K sums a sub-block in part (from -32 sx_s) and adds sc times it to a
    __m256i sum16[NT][2], a[NT][2], part[NT][2];
    int32_t sums[NT][2];
    for (int t = 0; t < NT; ++t) {
      if constexpr (BITS == 6) {
        sub_sums(x.codes(t, b), sums[t]);
        a[t][0] = a[t][1] = _mm256_setzero_si256();
        part[t][0] = part[t][1] = _mm256_set1_epi32(-32 * sums[t][0]);
      } else {
        a[t][0] = a[t][1] = _mm256_set1_epi32(-Z * x.sum(t, b));
      }
    }
#pragma GCC unroll 8  // g picks the nibble, the high bits' shifts and the widening: constants once unrolled
    for (int g = 0; g < 8; ++g) {
      __m256i codes[2];  // group g: 4 codes of each of the 8 rows of half h
      for (int h = 0; h < 2; ++h) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u + 64 * (g / 2) + 32 * h));
        codes[h] = g % 2 ? _mm256_and_si256(_mm256_srli_epi16(v, 4), low4) : _mm256_and_si256(v, low4);
        for (int bit = 4; bit < BITS; ++bit)
          codes[h] = _mm256_or_si256(codes[h], high_bits(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(
                                                             u + 256 + 64 * (bit - 4) + 32 * h)), g, bit));
      }
      for (int t = 0; t < NT; ++t) {
        const __m256i xg = x4(x, t, b, g);
        for (int h = 0; h < 2; ++h) {
          const __m256i p = _mm256_maddubs_epi16(codes[h], xg);
          sum16[t][h] = g % WIDEN_EVERY == 0 ? p : _mm256_add_epi16(sum16[t][h], p);
          // 4-bit codes: keeps the block's sum one chain in a register; GCC otherwise rebalances the 8
          // unrolled additions into a tree and spills all 64 products of a block to the stack first.
          // (The shorter sums of 5- and 6-bit codes measured slower with it.)
          if constexpr (BITS == 4) keep_in_register(sum16[t][h]);
          if (g % WIDEN_EVERY != WIDEN_EVERY - 1) continue;
          const __m256i wide = _mm256_madd_epi16(sum16[t][h], ones);
          if constexpr (BITS == 6) {
            part[t][h] = _mm256_add_epi32(part[t][h], wide);
            if (g % 4 == 3) {  // the end of sub-block g / 4
              const int sub = g / 4;
              const __m256i sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + 32 + 16 * sub + 8 * h)));
              a[t][h] = _mm256_add_epi32(a[t][h], _mm256_mullo_epi32(part[t][h], sc));
              if (sub == 0) part[t][h] = _mm256_set1_epi32(-32 * sums[t][1]);
            }
          } else {
            a[t][h] = _mm256_add_epi32(a[t][h], wide);
          }
        }
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int h = 0; h < 2; ++h) add_block<OFFSET>(acc[t][h], c, h, x, t, b, a[t][h]);
  }
  for (int t = 0; t < NT; ++t)
    for (int h = 0; h < 2; ++h) store_rows(y, N, n_rows, t, h, acc[t][h]);
}

// 8-bit codes would saturate vpmaddubsw (2 * 255 * 127), so they are read as signed q = u - 128 (u ^ 0x80)
// and multiplied as |q| * (x signed by q), at most 2 * 128 * 127 = 32512 per pair (x is within +-127), and
// widened group by group: q . x is a = u . x - 128 sx itself. As for 4-bit codes, group by group over
// both halves, each token's activations broadcast once.
template <int NT>
void group_tile_8bit(float* y, int N, int n_rows, const Tokens& x, const uint8_t* w) {
  constexpr PackedFormat format{8, false};
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  for (int b = 0; b < x.n_blocks; ++b) {
    const uint8_t* c = w + b * packed_chunk_bytes(format);
    const uint8_t* u = chunk_codes<8, false>(c);
    if (NT == 1) prefetch_ahead(c, packed_chunk_bytes(format));
    __m256i a[NT][2];
    for (int t = 0; t < NT; ++t) a[t][0] = a[t][1] = _mm256_setzero_si256();
    for (int g = 0; g < 8; ++g) {
      __m256i q[2], magnitude[2];  // half h: q = u - 128 and |q| (128 for -128: read as unsigned)
      for (int h = 0; h < 2; ++h) {
        q[h] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u + 64 * g + 32 * h)),
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
      for (int h = 0; h < 2; ++h) add_block<false>(acc[t][h], c, h, x, t, b, a[t][h]);
  }
  for (int t = 0; t < NT; ++t)
    for (int h = 0; h < 2; ++h) store_rows(y, N, n_rows, t, h, acc[t][h]);
}

template <int BITS, bool OFFSET, int NT>
void group_tile(float* y, int N, int n_rows, const Tokens& x, const uint8_t* w) {
  if constexpr (BITS == 8) group_tile_8bit<NT>(y, N, n_rows, x, w);
  else group_tile_nibbles<BITS, OFFSET, NT>(y, N, n_rows, x, w);
}
#else
template <int BITS, bool OFFSET, int NT>
void group_tile(float* y, int N, int n_rows, const Tokens& x, const uint8_t* w) {
  constexpr PackedFormat format{BITS, OFFSET};
  constexpr int Z = ZERO_POINT<BITS, OFFSET>;
  const int n_blocks = x.n_blocks;
  float acc[NT][ROWS] = {};
  for (int b = 0; b < n_blocks; ++b) {
    const uint8_t* c = w + b * packed_chunk_bytes(format);
    const uint16_t* d16 = reinterpret_cast<const uint16_t*>(c);
    const int8_t* sc = reinterpret_cast<const int8_t*>(c + 32);  // Q6_K's sc[2][16]
    const uint8_t* codes = chunk_codes<BITS, OFFSET>(c);
    for (int t = 0; t < NT; ++t) {
      const int8_t* xb = x.codes(t, b);
      const float s = x.scale(t, b), s_sum = x.scale_sum(t, b);
      int32_t sums[2] = {0, 0};
      if constexpr (BITS == 6) sub_sums(xb, sums);
      for (int j = 0; j < ROWS; ++j) {
        int32_t part[2] = {0, 0};  // u . x over each sub-block
        for (int i = 0; i < QK; ++i) {
          int u;
          if constexpr (BITS == 8) {
            u = codes[(i / 4) * 64 + 4 * j + i % 4];
          } else {
            const int p = i / 8, k = i % 8;
            const uint8_t byte = codes[p * 64 + 4 * j + k % 4];
            u = k < 4 ? byte & 0xF : byte >> 4;
            for (int bit = 4; bit < BITS; ++bit) u |= ((codes[256 + 64 * (bit - 4) + 4 * j + i % 4] >> (i / 4)) & 1) << bit;
          }
          part[i / 16] += u * xb[i];
        }
        const int32_t a = BITS == 6 ? sc[j] * (part[0] - 32 * sums[0]) + sc[16 + j] * (part[1] - 32 * sums[1])
                                    : part[0] + part[1] - Z * x.sum(t, b);
        acc[t][j] = std::fma(float(a), f16_to_f32(d16[j]) * s, acc[t][j]);
        if constexpr (OFFSET) acc[t][j] = std::fma(f16_to_f32(d16[16 + j]), s_sum, acc[t][j]);
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int j = 0; j < n_rows; ++j) y[size_t(t) * N + j] = acc[t][j];
}
#endif

// Groups [g0, g1) of one output, every token.
template <int BITS, bool OFFSET>
void groups(const PackedOut& o, const Tokens& x, int T, int g0, int g1) {
  const size_t group_bytes = size_t(x.n_blocks) * packed_chunk_bytes(o.format);
  for (int t0 = 0; t0 < T; t0 += BLOCK_T) {
    const int t1 = std::min(T, t0 + BLOCK_T);
    for (int g = g0; g < g1; ++g) {
      const int n_rows = std::min(ROWS, o.N - g * ROWS);
      const uint8_t* w = o.w + g * group_bytes;
      int t = t0;
      for (; t + TILE_T <= t1; t += TILE_T)
        group_tile<BITS, OFFSET, TILE_T>(o.y + size_t(t) * o.N + g * ROWS, o.N, n_rows, x.from(t), w);
      for (; t < t1; ++t) group_tile<BITS, OFFSET, 1>(o.y + size_t(t) * o.N + g * ROWS, o.N, n_rows, x.from(t), w);
    }
  }
}

void groups_of_format(const PackedOut& o, const Tokens& x, int T, int g0, int g1) {
  const PackedFormat f = o.format;
  if (f.bits == 4) f.offset ? groups<4, true>(o, x, T, g0, g1) : groups<4, false>(o, x, T, g0, g1);
  else if (f.bits == 5) f.offset ? groups<5, true>(o, x, T, g0, g1) : groups<5, false>(o, x, T, g0, g1);
  else if (f.bits == 6) groups<6, false>(o, x, T, g0, g1);  // Q6_K
  else groups<8, false>(o, x, T, g0, g1);  // Q8_0, the one 8-bit format
}

// Block b of one token: amax = max |x| (NaNs never win, as in std::max(amax, |x|)), the codes
// round(x * 127 / amax) by the 1.5 * 2^23 shifter (|x * inv| <= 127: no libm call; a multiply, then an
// add, never fused, so that every ISA rounds alike) and their sum.
inline void quantize_block(int8_t* q, float& scale, int32_t& sum, const float* x) {
#if defined(__AVX2__)
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 v[4], m = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    m = _mm256_max_ps(_mm256_and_ps(v[i], magnitude), m);  // the second operand where either is NaN
  }
  m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 1));
  m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0x4E));
  m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0xB1));
  const float amax = _mm256_cvtss_f32(m);
  scale = amax / 127.0f;
  const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f), shifter = _mm256_set1_ps(12582912.0f);
  __m256i c[4], total = _mm256_setzero_si256();
  for (int i = 0; i < 4; ++i) {
    c[i] = _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(v[i], inv), shifter), shifter));
    total = _mm256_add_epi32(total, c[i]);
  }
  // int32 -> int8 (exact: |code| <= 127); packs work within 128-bit lanes, the permute restores the order
  const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
  sum = _mm_cvtsi128_si32(s4);
#else
  float amax = 0.0f;
  for (int i = 0; i < QK; ++i) amax = std::max(amax, std::fabs(x[i]));
  scale = amax / 127.0f;
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  sum = 0;
  for (int i = 0; i < QK; ++i) {
    q[i] = int8_t((x[i] * inv + 12582912.0f) - 12582912.0f);  // the baseline ISA has no FMA to fuse it into
    sum += q[i];
  }
#endif
}

}  // namespace

void quantize_activations(int8_t* xq, float* dx, int32_t* sx, float* dx_sx, const float* x, int T, int K, int n_threads) {
  const int n_blocks = K / QK;
  // Rows are independent: split them over the threads (prefill quantizes up to 512 rows at a time).
  parallel_for(T, n_threads, 1, [&](int t0, int t1) {
    for (int t = t0; t < t1; ++t)
      for (int b = 0; b < n_blocks; ++b) {
        const size_t i = size_t(t) * n_blocks + b;
        quantize_block(xq + i * QK, dx[i], sx[i], x + i * QK);
        dx_sx[i] = dx[i] * float(sx[i]);
      }
  });
}

void matmul_int8_multi(const PackedOut* outs, int n_outs, const int8_t* xq, const float* dx, const int32_t* sx,
                       const float* dx_sx, int T, int K, int n_threads) {
  const Tokens x{xq, dx, dx_sx, sx, K / QK};
  auto n_groups = [&](int i) { return (outs[i].N + ROWS - 1) / ROWS; };
  parallel_for(total_units(n_outs, n_groups), n_threads, 1, [&](int begin, int end) {
    for_output_ranges(n_outs, n_groups, begin, end, [&](int i, int a, int b) { groups_of_format(outs[i], x, T, a, b); });
  });
}

}  // namespace NT_ISA
}  // namespace nextoken
