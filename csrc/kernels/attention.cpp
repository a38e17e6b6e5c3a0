// attention.cpp: fused causal attention over the KV cache, CPU, compiled once per ISA.
//
// H = query heads, H_kv = key/value heads, D = head dim (at most 256; fastest a multiple of 16), S = cache
// capacity. Every query row is reduced alone by attend_row(), in the same order whatever the other rows
// of the call: a token decoded through the cache gets exactly the output it gets inside a prefill or a
// batch of other sequences.
#include <algorithm>
#include <cmath>

#include "../parallel.h"
#include "isa_kernels.h"
#include "simd.h"

namespace nextoken {
namespace NT_ISA {
namespace {

constexpr int KEY_BLOCK = 32;  // keys scored together before the running softmax is rescaled

// out (D) = softmax(scale * k[0:n] q + bias[0:n]) v[0:n]; k, v: (n, D) rows; bias may be null. Online softmax (Milakov &
// Gimelshein): a running max m, running denominator l, and the output accumulator rescaled by
// e^(m_old - m_new) whenever a block of keys raises the max. DV = D / VL vectors per head row is a
// template parameter so that the row lives in registers; the output accumulates in two copies (even and
// odd keys), so each key's FMAs need not wait for the previous key's.
// Vector i (elements VL i .. VL i + VL - 1) and element i of a key or value row as stored in the cache.
template <DType KV>
inline vfloat row_vector(const uint8_t* row, int i) {
  if constexpr (KV == DType::F32) {
    return loadv(reinterpret_cast<const float*>(row) + VL * i);
  } else if constexpr (KV == DType::F16) {
    return loadv_f16(reinterpret_cast<const uint16_t*>(row) + VL * i);
  } else if constexpr (KV == DType::BF16) {
    return loadv_bf16(reinterpret_cast<const uint16_t*>(row) + VL * i);
  } else {  // Q8_0: blocks of an f16 scale and 32 int8; a vector lies within one block (VL divides 32)
    const uint8_t* block = row + size_t(VL * i / QK) * 34;
    uint16_t d;
    std::memcpy(&d, block, 2);
    return loadv_i8(reinterpret_cast<const int8_t*>(block + 2) + (VL * i) % QK) * half_to_float(d);
  }
}
template <DType KV>
inline float row_value(const uint8_t* row, int i) {
  if constexpr (KV == DType::F32) {
    return reinterpret_cast<const float*>(row)[i];
  } else if constexpr (KV == DType::F16) {
    return half_to_float(reinterpret_cast<const uint16_t*>(row)[i]);
  } else if constexpr (KV == DType::BF16) {
    return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
  } else {
    const uint8_t* block = row + size_t(i / QK) * 34;
    uint16_t d;
    std::memcpy(&d, block, 2);
    return float(reinterpret_cast<const int8_t*>(block + 2)[i % QK]) * half_to_float(d);
  }
}

template <int DV, DType KV>
void attend_row(float* out, const float* q, const void* k_rows, const void* v_rows, int n, float scale,
                const float* bias, int) {
  constexpr int D = VL * DV;
  const size_t rb = kv_row_bytes(KV, D);
  const uint8_t* k = static_cast<const uint8_t*>(k_rows);
  const uint8_t* v = static_cast<const uint8_t*>(v_rows);
  vfloat qv[DV], acc[2][DV];
  for (int i = 0; i < DV; ++i) {
    qv[i] = loadv(q + VL * i) * scale;
    acc[0][i] = acc[1][i] = splat(0.0f);
  }
  float m = -INFINITY, l = 0.0f;
  alignas(64) float s[KEY_BLOCK];
  for (int j0 = 0; j0 < n; j0 += KEY_BLOCK) {
    const int nb = std::min(KEY_BLOCK, n - j0);
    float block_max = -INFINITY;
    for (int j = 0; j < nb; ++j) {
      const uint8_t* kj = k + size_t(j0 + j) * rb;
      vfloat dot = qv[0] * row_vector<KV>(kj, 0);
      for (int i = 1; i < DV; ++i) dot += qv[i] * row_vector<KV>(kj, i);
      s[j] = bias ? hsum(dot) + bias[j0 + j] : hsum(dot);
      block_max = std::max(block_max, s[j]);
    }
    for (int j = nb; j < KEY_BLOCK; ++j) s[j] = -INFINITY;
    const float m_new = std::max(m, block_max);
    const float correction = std::exp(m - m_new);  // 0 on the first block (m = -inf)
    for (int j = 0; j < KEY_BLOCK; j += VL) storev(s + j, expv(loadv(s + j) - m_new));
    float block_sum = 0.0f;
    for (int j = 0; j < nb; ++j) block_sum += s[j];
    l = l * correction + block_sum;
    for (int i = 0; i < DV; ++i) {
      acc[0][i] *= correction;
      acc[1][i] *= correction;
    }
    int j = 0;
    for (; j + 2 <= nb; j += 2) {
      const uint8_t* vj = v + size_t(j0 + j) * rb;
      const vfloat p0 = splat(s[j]), p1 = splat(s[j + 1]);
      for (int i = 0; i < DV; ++i) {
        acc[0][i] += p0 * row_vector<KV>(vj, i);
        acc[1][i] += p1 * row_vector<KV>(vj + rb, i);
      }
    }
    if (j < nb) {
      const uint8_t* vj = v + size_t(j0 + j) * rb;
      const vfloat p0 = splat(s[j]);
      for (int i = 0; i < DV; ++i) acc[0][i] += p0 * row_vector<KV>(vj, i);
    }
    m = m_new;
  }
  const float inv_l = 1.0f / l;
  for (int i = 0; i < DV; ++i) storev(out + VL * i, (acc[0][i] + acc[1][i]) * inv_l);
}

// The same for head dims that are not a multiple of 16 (tiny models), a float at a time.
template <DType KV>
void attend_row_any(float* out, const float* q, const void* k_rows, const void* v_rows, int n, float scale,
                    const float* bias, int D) {
  const size_t rb = kv_row_bytes(KV, D);
  const uint8_t* k = static_cast<const uint8_t*>(k_rows);
  const uint8_t* v = static_cast<const uint8_t*>(v_rows);
  float acc[256] = {}, s[KEY_BLOCK];
  float m = -INFINITY, l = 0.0f;
  for (int j0 = 0; j0 < n; j0 += KEY_BLOCK) {
    const int nb = std::min(KEY_BLOCK, n - j0);
    float block_max = -INFINITY;
    for (int j = 0; j < nb; ++j) {
      const uint8_t* kj = k + size_t(j0 + j) * rb;
      float dot = 0.0f;
      for (int i = 0; i < D; ++i) dot += q[i] * scale * row_value<KV>(kj, i);
      s[j] = bias ? dot + bias[j0 + j] : dot;
      block_max = std::max(block_max, s[j]);
    }
    const float m_new = std::max(m, block_max), correction = std::exp(m - m_new);
    float block_sum = 0.0f;
    for (int j = 0; j < nb; ++j) block_sum += s[j] = std::exp(s[j] - m_new);
    l = l * correction + block_sum;
    for (int i = 0; i < D; ++i) acc[i] *= correction;
    for (int j = 0; j < nb; ++j)
      for (int i = 0; i < D; ++i) acc[i] += s[j] * row_value<KV>(v + size_t(j0 + j) * rb, i);
    m = m_new;
  }
  for (int i = 0; i < D; ++i) out[i] = acc[i] / l;
}

using AttendRow = void (*)(float*, const float*, const void*, const void*, int, float, const float*, int);

// The instantiation for head dim D (at most 256; vectorised for multiples of 16) and cache type KV.
template <DType KV>
AttendRow attend_row_for(int D) {
  if (D % 16 != 0) return attend_row_any<KV>;
  constexpr int U = 16 / VL;  // vectors per 16 floats
  static constexpr AttendRow table[16] = {
      attend_row<1 * U, KV>,  attend_row<2 * U, KV>,  attend_row<3 * U, KV>,  attend_row<4 * U, KV>,
      attend_row<5 * U, KV>,  attend_row<6 * U, KV>,  attend_row<7 * U, KV>,  attend_row<8 * U, KV>,
      attend_row<9 * U, KV>,  attend_row<10 * U, KV>, attend_row<11 * U, KV>, attend_row<12 * U, KV>,
      attend_row<13 * U, KV>, attend_row<14 * U, KV>, attend_row<15 * U, KV>, attend_row<16 * U, KV>};
  return table[D / 16 - 1];
}

// The first key a query at position p sees: 0, or with a sliding window of W the last W positions.
inline int first_key(int p, int window) { return window > 0 && p >= window ? p - window + 1 : 0; }

}  // namespace

void attention(float* out, const float* q, const AttentionSeq* seqs, int n_seqs, int H, int H_kv, int D, float scale,
               int window, const float* rel_bias, int rel_span, DType kv_type, int n_threads) {
  const int group = H / H_kv;
  const AttendRow attend_row = kv_type == DType::F16    ? attend_row_for<DType::F16>(D)
                               : kv_type == DType::BF16 ? attend_row_for<DType::BF16>(D)
                               : kv_type == DType::Q8_0 ? attend_row_for<DType::Q8_0>(D)
                                                        : attend_row_for<DType::F32>(D);
  const size_t row_bytes = kv_row_bytes(kv_type, D);
  // first_row[s]: the index of sequence s's first query row among all rows.
  int first_row[MAX_ATTENTION_SEQS + 1];
  first_row[0] = 0;
  for (int s = 0; s < n_seqs; ++s) first_row[s + 1] = first_row[s] + seqs[s].T;
  const int n_items = first_row[n_seqs] * H;  // one item per (query row, head)
  // Items are claimed in chunks of consecutive (row, head) pairs: in decode a chunk holds neighbouring
  // heads, which share their keys in a GQA group; in prefill, later rows cost more, and chunks claimed
  // one at a time even the threads' loads out. Each item is reduced by one thread in one fixed order.
  parallel_for(n_items, n_threads, 1, [&](int begin, int end) {
    for (int item = begin; item < end; ++item) {
      const int row = item / H, h = item % H;
      const int s = int(std::upper_bound(first_row, first_row + n_seqs + 1, row) - first_row) - 1;
      const AttentionSeq& seq = seqs[s];
      const int p = seq.pos0 + row - first_row[s];
      const int first = seq.n_keys > 0 ? 0 : first_key(p, window), last = seq.n_keys > 0 ? seq.n_keys - 1 : p;
      const size_t kv = (size_t(h / group) * seq.S + first) * row_bytes;
      // T5's bias of key j for the query at p: rel_bias[h][(j - p) + rel_span - 1]
      const float* bias = rel_bias ? rel_bias + size_t(h) * (2 * rel_span - 1) + (rel_span - 1) - p + first : nullptr;
      attend_row(out + size_t(item) * D, q + size_t(item) * D, static_cast<const uint8_t*>(seq.k) + kv,
                 static_cast<const uint8_t*>(seq.v) + kv, last + 1 - first, scale, bias, D);
    }
  });
}

}  // namespace NT_ISA
}  // namespace nextoken
