// matmul.cpp: y (T, N) = x (T, K) @ W^T for every weight type, CPU, compiled once per ISA.
//
// T = tokens, K = input features (W's row length), N = output features (W's rows).
// Weights are dequantized on the fly, one 32-weight block at a time, into PARTS = 32 / VL native float
// vectors, and multiplied into fp32 activations. A tile of several tokens x weight rows shares each
// dequantized block, which is what makes prefill (T > 1) cheaper per token than decode.
// Every output y[t][n] is one vector accumulator updated block by block in order k = 0, 32, 64, ...
// and summed by hsum(): the same whatever the tile shape, T, or thread count.
#include <algorithm>

#include "../parallel.h"
#include "blocks.h"
#include "isa_kernels.h"
#include "simd.h"

namespace nextoken {
namespace NT_ISA {
namespace {

constexpr int PARTS = QK / VL;  // vectors per 32-weight block
#if defined(__AVX512F__)        // accumulators + one block of each row fit the 32 registers
constexpr int TILE_T = 4;       // tokens per tile
constexpr int TILE_N = 4;       // weight rows per tile
#else
// 16 registers: a decoded block is shared by 8 tokens of one row (8 accumulators), since decoding it is
// what costs (SmolLM2's float32 prefill of 512 tokens ~175 -> ~238 tok/s against 2 tokens x 2 rows, and
// Gemma 3's ~135 -> ~220, on an AMD EPYC with AVX2); a decode step (one token) takes 2 rows at a time.
constexpr int TILE_T = 8;
constexpr int TILE_N = 2;
#endif
constexpr int BLOCK_T = 64;     // tokens whose activations stay in L2 while a thread sweeps its rows
// A decode step (T = 1) reads its rows from memory once, a few tile rows at a time, and the hardware
// prefetcher alone left Q8_0 rows at ~2.5 GB/s on one core of an AMD EPYC (Zen 3) where the same
// loop runs at ~10 GMAC/s from cache; fetching each row this far ahead of its block triples that.
constexpr int PREFETCH_AHEAD = 256;

// The 32 weights q * d + m of 16 packed 4-bit codes q (low nibbles: weights 0-15, high: 16-31).
// With AVX-512 the 16 possible values go in one register and a permute looks each code up (vpermps
// reads the low 4 bits of each index), cheaper than converting codes to float and scaling each.
inline void dequantize_nibbles(const uint8_t* qs, float d, float m, vfloat* w) {
#if defined(__AVX512F__)
  const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  const vfloat table = vfloat{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15} * d + m;
  w[0] = (vfloat)_mm512_permutexvar_ps(q, (__m512)table);
  w[1] = (vfloat)_mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), (__m512)table);
#elif defined(__AVX2__)
  // Each 8 bytes widened straight from memory to 32-bit lanes give 8 low and 8 high nibbles (mask, shift):
  // 2 widenings per block instead of splitting the nibbles in bytes and widening 4 halves.
  const __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(m);
  for (int half = 0; half < 2; ++half) {
    const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8 * half)));
    w[half] = (vfloat)_mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(bytes, _mm256_set1_epi32(0xF))), dv, mv);
    w[2 + half] = (vfloat)_mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(bytes, 4)), dv, mv);
  }
#else
  for (int p = 0; p < PARTS; ++p)
    for (int i = 0; i < VL; ++i) {
      const int k = p * VL + i;  // weight index in the block
      const int q = k < 16 ? qs[k] & 0xF : qs[k - 16] >> 4;
      w[p][i] = float(q) * d + m;
    }
#endif
}

#if defined(__AVX2__)
// An empty asm that claims to change the bytes of q in memory: the codes just stored there are read back by
// widening loads (load ports), where GCC would otherwise take each 8 bytes out of the register with 2-3
// shuffles before widening them, on the ports the conversion also needs.
template <typename Bytes>
inline void keep_in_memory(Bytes& q) { asm("" : "+m"(q)); }

// 32 unsigned codes (bytes) as the weights a * q + c, in PARTS vectors. Both scalar decoders compute
// a * q exactly in fp32 (a has at most 17 significant bits, q at most 5), so the one rounding of the FMA
// is theirs: bit for bit the same weights.
inline void codes_to_floats(__m256i codes, float a, float c, vfloat* w) {
  alignas(32) uint8_t q[QK];
  _mm256_store_si256(reinterpret_cast<__m256i*>(q), codes);
  keep_in_memory(q);
  for (int p = 0; p < PARTS; ++p) {
#if defined(__AVX512F__)
    const __m512 qf = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * p))));
    w[p] = (vfloat)_mm512_fmadd_ps(qf, _mm512_set1_ps(a), _mm512_set1_ps(c));
#else
    const __m256 qf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * p))));
    w[p] = (vfloat)_mm256_fmadd_ps(qf, _mm256_set1_ps(a), _mm256_set1_ps(c));
#endif
  }
}

// 32 signed codes (bytes) as the weights a0 * q (the first 16) and a1 * q (the last 16): Q6_K's scale per
// 16 weights. Its scalar decoder's (d * sc) * q is exact in fp32 (at most 11 + 7 + 6 significant bits).
inline void signed_codes_to_floats(__m256i codes, float a0, float a1, vfloat* w) {
  alignas(32) int8_t q[QK];
  _mm256_store_si256(reinterpret_cast<__m256i*>(q), codes);
  keep_in_memory(q);
  for (int p = 0; p < PARTS; ++p) {
    const float a = p * VL < 16 ? a0 : a1;
#if defined(__AVX512F__)
    w[p] = (vfloat)_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * p)))),
                                 _mm512_set1_ps(a));
#else
    w[p] = (vfloat)_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * p)))),
                                 _mm256_set1_ps(a));
#endif
  }
}

// The low (shift 0) or high (shift 4) nibbles of 32 bytes.
inline __m256i unsigned_nibbles(const uint8_t* bytes, int shift) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes));
  return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(shift)), _mm256_set1_epi8(0xF));
}

// The 32 weights d * (q - 16) of a Q5_0 block: q's low 4 bits are nibbles as in Q4_0 (byte j: weight j
// low, j + 16 high), bit 4 of weight j is bit j of qh. The 32 bits of qh are spread to 32 bytes (each
// byte of qh broadcast to 8 lanes, tested against 1, 2, 4, ... 128), the codes widened to floats, and
// q * d - 16 d formed by one FMA: both products are exact in fp32, and so is their difference (q - 16) d.
inline void dequantize_q5_0(const BlockQ5_0* blk, vfloat* w) {
  uint32_t qh;
  std::memcpy(&qh, blk->qh, 4);
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs)), low4 = _mm_set1_epi8(0xF);
  const __m256i nibbles = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), low4), _mm_and_si128(raw, low4));
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(int(qh)),
                                             _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                               0x0101010101010101, 0x0000000000000000));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  const __m256i high = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(16));
  const float d = half_to_float(blk->d);
  codes_to_floats(_mm256_or_si256(nibbles, high), d, -16.0f * d, w);
}
#endif

// K-quant types group 8 blocks in a superblock under one header.
constexpr bool k_quant(DType D) { return D == DType::Q4_K || D == DType::Q5_K || D == DType::Q6_K; }

// Block b = b0 + j (weights 32b .. 32b + 31) of one row, as PARTS vectors in weight order. For K-quant
// types b0 is a superblock's first block and j (0-7) the block's place in it: tile() passes j as a
// constant of an unrolled loop, so each block's scale bits and nibble shift are fixed at compile time and
// the superblock's header is decoded once for its 8 blocks.
template <DType D>
inline void load_block(const uint8_t* row, int b0, int j, vfloat* w) {
  const int b = b0 + j;
  if constexpr (D == DType::F32) {
    const float* p = reinterpret_cast<const float*>(row) + b * QK;
    for (int i = 0; i < PARTS; ++i) w[i] = loadv(p + i * VL);
  } else if constexpr (D == DType::F16) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + b * QK;
    for (int i = 0; i < PARTS; ++i) w[i] = loadv_f16(p + i * VL);
  } else if constexpr (D == DType::BF16) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + b * QK;
    for (int i = 0; i < PARTS; ++i) w[i] = loadv_bf16(p + i * VL);
  } else if constexpr (D == DType::Q4_0) {
    const BlockQ4_0* blk = reinterpret_cast<const BlockQ4_0*>(row) + b;
    const float d = half_to_float(blk->d);
    dequantize_nibbles(blk->qs, d, -8.0f * d, w);
  } else if constexpr (D == DType::Q4_1) {
    const BlockQ4_1* blk = reinterpret_cast<const BlockQ4_1*>(row) + b;
    float d, m;
    halves_to_floats(&blk->d, d, m);  // d and m are adjacent
    dequantize_nibbles(blk->qs, d, m, w);
  } else if constexpr (D == DType::Q8_0) {
    const BlockQ8_0* blk = reinterpret_cast<const BlockQ8_0*>(row) + b;
    const float d = half_to_float(blk->d);
    for (int i = 0; i < PARTS; ++i) w[i] = loadv_i8(blk->qs + i * VL) * d;
#if defined(__AVX2__)
  } else if constexpr (D == DType::Q5_0) {
    dequantize_q5_0(reinterpret_cast<const BlockQ5_0*>(row) + b, w);
  } else if constexpr (D == DType::Q4_K) {
    const BlockQ4_K& x = reinterpret_cast<const BlockQ4_K*>(row)[b0 / 8];
    int sc, mn;
    blocks::scale_min_k4(j, x.scales, sc, mn);
    codes_to_floats(unsigned_nibbles(x.qs + 32 * (j / 2), (j % 2) * 4), half_to_float(x.d) * float(sc),
                    -(half_to_float(x.dmin) * float(mn)), w);
  } else if constexpr (D == DType::Q6_K) {  // layout in blocks.h
    const BlockQ6_K& x = reinterpret_cast<const BlockQ6_K*>(row)[b0 / 8];
    const int half = j / 4, sub = j % 4;
    const __m256i low = unsigned_nibbles(x.ql + 64 * half + 32 * (sub & 1), sub >= 2 ? 4 : 0);
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * half));
    const __m256i high = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * sub)), _mm256_set1_epi8(3));
    const __m256i codes = _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(high, 4)), _mm256_set1_epi8(32));
    const float d = half_to_float(x.d);
    signed_codes_to_floats(codes, d * float(x.scales[2 * j]), d * float(x.scales[2 * j + 1]), w);
#endif
  } else {  // Q5_K (and all these on the baseline ISA): decoded by the scalar code of blocks.h
    float tmp[QK];
    blocks::decode32(tmp, row, D, b);
    for (int i = 0; i < PARTS; ++i) w[i] = loadv(tmp + i * VL);
  }
}

constexpr bool unblocked(DType D) { return D == DType::F32 || D == DType::F16 || D == DType::BF16; }

// The last, partial block of an unblocked (F32/F16/BF16) row: weights 32b .. K - 1, zero after.
template <DType D>
inline void load_tail(const uint8_t* row, int b, int n, vfloat* w) {
  float tmp[QK] = {};
  for (int i = 0; i < n; ++i) {
    const size_t k = size_t(b) * QK + i;
    if constexpr (D == DType::F32) tmp[i] = reinterpret_cast<const float*>(row)[k];
    else if constexpr (D == DType::F16) tmp[i] = half_to_float(reinterpret_cast<const uint16_t*>(row)[k]);
    else tmp[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[k]);
  }
  for (int i = 0; i < PARTS; ++i) w[i] = loadv(tmp + i * VL);
}

// y[t * N + r] for NT tokens x NR rows. x: (NT, K) rows, w: NR rows of rb bytes.
template <DType D, int NT, int NR>
inline void tile(float* y, int N, const float* x, int K, const uint8_t* w, size_t rb) {
  vfloat acc[NT][NR];
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < NR; ++r) acc[t][r] = splat(0.0f);
  const int n_full = K / QK, tail = K % QK;
  constexpr int BLOCKS_PER_SUPER = QK_K / QK;
  constexpr int UNROLL = k_quant(D) ? BLOCKS_PER_SUPER : 1;  // (K is a multiple of QK_K for K-quants)
  // Block b starts b / 8 of a superblock's worth of bytes into a row (row_bytes(D, QK) is 0 for K-quants).
  const size_t superblock_bytes = row_bytes(D, QK_K);
  for (int b0 = 0; b0 < n_full; b0 += UNROLL)
#pragma GCC unroll 8
    for (int j = 0; j < UNROLL; ++j) {
      const int b = b0 + j;
      vfloat wb[NR][PARTS];
      if constexpr (NT == 1)  // decode streams each row once: ask for its bytes PREFETCH_AHEAD early
        for (int r = 0; r < NR; ++r)
          __builtin_prefetch(w + r * rb + (b + 1) * superblock_bytes / BLOCKS_PER_SUPER + PREFETCH_AHEAD);
      for (int r = 0; r < NR; ++r) load_block<D>(w + r * rb, b0, j, wb[r]);
      for (int t = 0; t < NT; ++t)
        for (int i = 0; i < PARTS; ++i) {
          const vfloat xv = loadv(x + size_t(t) * K + b * QK + i * VL);
          for (int r = 0; r < NR; ++r) acc[t][r] += wb[r][i] * xv;
        }
    }
  if constexpr (unblocked(D)) {
    if (tail) {
      vfloat wb[NR][PARTS];
      for (int r = 0; r < NR; ++r) load_tail<D>(w + r * rb, n_full, tail, wb[r]);
      for (int t = 0; t < NT; ++t)
        for (int i = 0; i < PARTS; ++i) {
          const float* xt = x + size_t(t) * K + n_full * QK + i * VL;
          const int n = std::min(VL, std::max(0, tail - i * VL));
          const vfloat xv = n == VL ? loadv(xt) : n > 0 ? loadv_partial(xt, n) : splat(0.0f);
          for (int r = 0; r < NR; ++r) acc[t][r] += wb[r][i] * xv;
        }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < NR; ++r) y[size_t(t) * N + r] = hsum(acc[t][r]);
}

// Tokens [t0, t1) of rows [n, n + NR) of y: TILE_T tokens at a time, then 2 (16 registers), then one.
template <DType D, int NR>
inline void row_tile(float* y, const float* x, const uint8_t* w, size_t rb, int t0, int t1, int K, int N, int n) {
  int t = t0;
  for (; t + TILE_T <= t1; t += TILE_T)
    tile<D, TILE_T, NR>(y + size_t(t) * N + n, N, x + size_t(t) * K, K, w + n * rb, rb);
  if constexpr (VL == 8)
    for (; t + 2 <= t1; t += 2) tile<D, 2, NR>(y + size_t(t) * N + n, N, x + size_t(t) * K, K, w + n * rb, rb);
  for (; t < t1; ++t) tile<D, 1, NR>(y + size_t(t) * N + n, N, x + size_t(t) * K, K, w + n * rb, rb);
}

// Rows [n0, n1) of y, every token.
template <DType D>
void rows(float* y, const float* x, const uint8_t* w, int T, int K, int N, int n0, int n1) {
  const size_t rb = row_bytes(D, K);
  constexpr int ROWS_SHARED = VL == 8 ? 1 : TILE_N;  // rows per tile when T > 1
  if (T == 1) {
    int n = n0;
    for (; n + TILE_N <= n1; n += TILE_N) tile<D, 1, TILE_N>(y + n, N, x, K, w + n * rb, rb);
    for (; n < n1; ++n) tile<D, 1, 1>(y + n, N, x, K, w + n * rb, rb);
    return;
  }
  for (int t0 = 0; t0 < T; t0 += BLOCK_T) {
    const int t1 = std::min(T, t0 + BLOCK_T);
    int n = n0;
    for (; n + ROWS_SHARED <= n1; n += ROWS_SHARED) row_tile<D, ROWS_SHARED>(y, x, w, rb, t0, t1, K, N, n);
    for (; n < n1; ++n) row_tile<D, 1>(y, x, w, rb, t0, t1, K, N, n);
  }
}

void rows_any(const MatmulOut& o, const float* x, int T, int K, int n0, int n1) {
  const uint8_t* w = static_cast<const uint8_t*>(o.w);
  switch (o.w_type) {
    case DType::F32: return rows<DType::F32>(o.y, x, w, T, K, o.N, n0, n1);
    case DType::F16: return rows<DType::F16>(o.y, x, w, T, K, o.N, n0, n1);
    case DType::BF16: return rows<DType::BF16>(o.y, x, w, T, K, o.N, n0, n1);
    case DType::Q4_0: return rows<DType::Q4_0>(o.y, x, w, T, K, o.N, n0, n1);
    case DType::Q4_1: return rows<DType::Q4_1>(o.y, x, w, T, K, o.N, n0, n1);
    case DType::Q8_0: return rows<DType::Q8_0>(o.y, x, w, T, K, o.N, n0, n1);
    case DType::Q5_0: return rows<DType::Q5_0>(o.y, x, w, T, K, o.N, n0, n1);
    case DType::Q4_K: return rows<DType::Q4_K>(o.y, x, w, T, K, o.N, n0, n1);
    case DType::Q5_K: return rows<DType::Q5_K>(o.y, x, w, T, K, o.N, n0, n1);
    case DType::Q6_K: return rows<DType::Q6_K>(o.y, x, w, T, K, o.N, n0, n1);
  }
}

}  // namespace

void matmul_multi(const MatmulOut* outs, int n_outs, const float* x, int T, int K, int n_threads) {
  // One job (one wake-up and one join) for Q, K and V together, or gate and up; a chunk is a range of row
  // tiles, each computed for every token by one thread.
  auto tiles = [&](int i) { return (outs[i].N + TILE_N - 1) / TILE_N; };
  parallel_for(total_units(n_outs, tiles), n_threads, 1, [&](int begin, int end) {
    for_output_ranges(n_outs, tiles, begin, end, [&](int i, int a, int b) {
      rows_any(outs[i], x, T, K, a * TILE_N, std::min(outs[i].N, b * TILE_N));
    });
  });
}

}  // namespace NT_ISA
}  // namespace nextoken
