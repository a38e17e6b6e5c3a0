// attention.cpp: fused causal attention over the KV cache, CPU, compiled once per ISA.
//
// H = query heads, H_kv = key/value heads, D = head dim (a multiple of 16, at most 256), S = cache
// capacity. Both entry points reduce one query row at a time with attend_row(), so a token decoded
// through the cache gets exactly the output it gets inside a prefill.
#include <algorithm>
#include <cmath>

#include "isa_kernels.h"
#include "simd.h"

namespace nextoken {
namespace NT_ISA {
namespace {

constexpr int KEY_BLOCK = 32;     // keys scored together before the running softmax is rescaled
constexpr int MAX_D16 = 256 / 16; // vectors per head row

// out (D) = softmax(scale * k[0:n] q) v[0:n]; k, v: (n, D) rows. Online softmax (Milakov &
// Gimelshein): a running max m, running denominator l, and the output accumulator rescaled by
// e^(m_old - m_new) whenever a block of keys raises the max.
void attend_row(float* out, const float* q, const float* k, const float* v, int n, int D, float scale) {
  const int d16 = D / 16;
  f32x16 qv[MAX_D16], acc[MAX_D16];
  for (int i = 0; i < d16; ++i) {
    qv[i] = load16(q + 16 * i) * scale;
    acc[i] = splat(0.0f);
  }
  float m = -INFINITY, l = 0.0f;
  alignas(64) float s[KEY_BLOCK];
  for (int j0 = 0; j0 < n; j0 += KEY_BLOCK) {
    const int nb = std::min(KEY_BLOCK, n - j0);
    float block_max = -INFINITY;
    for (int j = 0; j < nb; ++j) {
      const float* kj = k + size_t(j0 + j) * D;
      f32x16 dot = qv[0] * load16(kj);
      for (int i = 1; i < d16; ++i) dot += qv[i] * load16(kj + 16 * i);
      s[j] = hsum(dot);
      block_max = std::max(block_max, s[j]);
    }
    for (int j = nb; j < KEY_BLOCK; ++j) s[j] = -INFINITY;
    const float m_new = std::max(m, block_max);
    const float correction = std::exp(m - m_new);  // 0 on the first block (m = -inf)
    for (int j = 0; j < KEY_BLOCK; j += 16) store16(s + j, exp16(load16(s + j) - m_new));
    float block_sum = 0.0f;
    for (int j = 0; j < nb; ++j) block_sum += s[j];
    l = l * correction + block_sum;
    for (int i = 0; i < d16; ++i) acc[i] *= correction;
    for (int j = 0; j < nb; ++j) {
      const float* vj = v + size_t(j0 + j) * D;
      const f32x16 p = splat(s[j]);
      for (int i = 0; i < d16; ++i) acc[i] += p * load16(vj + 16 * i);
    }
    m = m_new;
  }
  const float inv_l = 1.0f / l;
  for (int i = 0; i < d16; ++i) store16(out + 16 * i, acc[i] * inv_l);
}

}  // namespace

void attention_prefill(float* out, const float* q, const float* k, const float* v, int T, int pos0,
                       int H, int H_kv, int D, int S, float scale, int n_threads) {
  const int group = H / H_kv;
  // Rows get longer with t; interleaving (t, h) pairs round-robin keeps the threads' shares even.
#pragma omp parallel for schedule(static, 1) num_threads(n_threads)
  for (int row = 0; row < T * H; ++row) {
    const int t = row / H, h = row % H;
    const size_t kv = size_t(h / group) * S * D;
    attend_row(out + size_t(row) * D, q + size_t(row) * D, k + kv, v + kv, pos0 + t + 1, D, scale);
  }
}

void attention_decode(float* out, const float* q, const float* k, const float* v, int n_keys, int H,
                      int H_kv, int D, int S, float scale, int n_threads) {
  const int group = H / H_kv;
#pragma omp parallel for schedule(static) num_threads(n_threads)
  for (int h = 0; h < H; ++h) {
    const size_t kv = size_t(h / group) * S * D;
    attend_row(out + size_t(h) * D, q + size_t(h) * D, k + kv, v + kv, n_keys, D, scale);
  }
}

}  // namespace NT_ISA
}  // namespace nextoken
