// matmul.cpp: y (T, N) = x (T, K) @ W^T for every weight type, CPU, compiled once per ISA.
//
// T = tokens, K = input features (W's row length), N = output features (W's rows).
// Weights are dequantized on the fly, one 32-weight block at a time, into PARTS = 32 / VL native float
// vectors, and multiplied into fp32 activations. A tile of up to TILE_T tokens x TILE_N weight rows
// shares each dequantized block, which is what makes prefill (T > 1) cheaper per token than decode.
// Every output y[t][n] is one vector accumulator updated block by block in order k = 0, 32, 64, ...
// and summed by hsum(): the same whatever the tile shape, T, or thread count.
#include <algorithm>

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
#else                           // 16 registers
constexpr int TILE_T = 2;
constexpr int TILE_N = 2;
#endif
constexpr int BLOCK_T = 64;     // tokens whose activations stay in L2 while a thread sweeps its rows

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
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)), mask = _mm_set1_epi8(0xF);
  const __m128i q_lo = _mm_and_si128(raw, mask), q_hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
  const __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(m);
  auto eight = [&](__m128i q) { return (vfloat)_mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q)), dv, mv); };
  w[0] = eight(q_lo);
  w[1] = eight(_mm_unpackhi_epi64(q_lo, q_lo));
  w[2] = eight(q_hi);
  w[3] = eight(_mm_unpackhi_epi64(q_hi, q_hi));
#else
  for (int p = 0; p < PARTS; ++p)
    for (int i = 0; i < VL; ++i) {
      const int k = p * VL + i;  // weight index in the block
      const int q = k < 16 ? qs[k] & 0xF : qs[k - 16] >> 4;
      w[p][i] = float(q) * d + m;
    }
#endif
}

// Block b (weights 32b .. 32b + 31) of one row, as PARTS vectors in weight order.
template <DType D>
inline void load_block(const uint8_t* row, int b, vfloat* w) {
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
  } else {  // Q5_0 and the K-quants: decoded by the scalar code of blocks.h
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
  for (int b = 0; b < n_full; ++b) {
    vfloat wb[NR][PARTS];
    for (int r = 0; r < NR; ++r) load_block<D>(w + r * rb, b, wb[r]);
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

// Tokens [t0, t1) of rows [n, n + NR) of y.
template <DType D, int NR>
inline void row_tile(float* y, const float* x, const uint8_t* w, size_t rb, int t0, int t1, int K, int N, int n) {
  int t = t0;
  for (; t + TILE_T <= t1; t += TILE_T)
    tile<D, TILE_T, NR>(y + size_t(t) * N + n, N, x + size_t(t) * K, K, w + n * rb, rb);
  for (; t < t1; ++t) tile<D, 1, NR>(y + size_t(t) * N + n, N, x + size_t(t) * K, K, w + n * rb, rb);
}

// Rows [n0, n1) of y, every token.
template <DType D>
void rows(float* y, const float* x, const uint8_t* w, int T, int K, int N, int n0, int n1) {
  const size_t rb = row_bytes(D, K);
  for (int t0 = 0; t0 < T; t0 += BLOCK_T) {
    const int t1 = std::min(T, t0 + BLOCK_T);
    int n = n0;
    for (; n + TILE_N <= n1; n += TILE_N) row_tile<D, TILE_N>(y, x, w, rb, t0, t1, K, N, n);
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
  // One parallel region (one wake-up and one join) for Q, K and V together, or gate and up.
#pragma omp parallel num_threads(n_threads)
  share_outputs(
      n_outs, [&](int i) { return (outs[i].N + TILE_N - 1) / TILE_N; },
      [&](int i, int a, int b) { rows_any(outs[i], x, T, K, a * TILE_N, std::min(outs[i].N, b * TILE_N)); });
}

}  // namespace NT_ISA
}  // namespace nextoken
