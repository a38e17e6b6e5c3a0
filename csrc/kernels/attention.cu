// attention.cu: fused attention on the GPU, kernels.h's attention() with its conventions (causal with an
// optional window, or every query over n_keys keys; GQA; T5's relative bias; an f32, f16, bf16 or Q8_0 cache).
//
// One warp per (query row, head): lane l holds elements l, l + 32, ... of the query and of the output
// accumulator; each key's score is the warp's sum (a fixed butterfly) and enters an online softmax, key by key
// in order. A row's result depends on its own query and keys only, so decode reproduces prefill bit for bit.
// A first, plain version: FlashAttention-2's tiling for prefill and split-K for long-context decode are
// still to come (issue 12).
#include <cuda_runtime.h>

#include <cmath>

#include "cuda.h"

namespace nextoken {
namespace cuda {
namespace {

constexpr int HEADS_PER_BLOCK = 4;                 // warps per thread block, one head each
constexpr int MAX_PER_LANE = MAX_HEAD_DIM / 32;  // elements of a row per lane

// Element i of a key or value row as stored in the cache.
template <DType KV>
__device__ inline float row_value(const uint8_t* row, int i) {
  if constexpr (KV == DType::F32) {
    return reinterpret_cast<const float*>(row)[i];
  } else if constexpr (KV == DType::F16) {
    return f16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
  } else if constexpr (KV == DType::BF16) {
    return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
  } else {  // Q8_0: per 32 elements an f16 scale, then 32 int8
    const BlockQ8_0& block = reinterpret_cast<const BlockQ8_0*>(row)[i / QK];
    return float(block.qs[i % QK]) * f16_to_f32(block.d);
  }
}

// The query rows of one sequence: q, out (T, H, D), its k, v (H_kv, S, D) of type KV.
template <DType KV>
__global__ void attention_kernel(float* out, const float* q, const uint8_t* k, const uint8_t* v, int S, int T,
                                 size_t rb, int pos0, int n_keys, int H, int H_kv, int D, float scale, int window,
                                 const float* rel_bias, int rel_span) {
  const int lane = threadIdx.x % 32;
  const int h = blockIdx.x * HEADS_PER_BLOCK + threadIdx.x / 32, t = blockIdx.y;
  if (h >= H) return;  // the whole warp
  const int kv_head = h / (H / H_kv), p = pos0 + t;
  int first = 0, end = n_keys;  // keys [first, end)
  if (n_keys == 0) {
    end = p + 1;
    if (window > 0) first = max(0, p - window + 1);
  }
  const uint8_t* k_head = k + size_t(kv_head) * S * rb;
  const uint8_t* v_head = v + size_t(kv_head) * S * rb;
  const float* bias = rel_bias ? rel_bias + size_t(h) * (2 * rel_span - 1) + (rel_span - 1) - p : nullptr;

  float qr[MAX_PER_LANE], acc[MAX_PER_LANE];
#pragma unroll
  for (int i = 0; i < MAX_PER_LANE; ++i) {
    const int d = lane + 32 * i;
    qr[i] = d < D ? q[(size_t(t) * H + h) * D + d] : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int j = first; j < end; ++j) {
    const uint8_t* kj = k_head + size_t(j) * rb;
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < MAX_PER_LANE; ++i) {
      const int d = lane + 32 * i;
      if (d < D) dot = fmaf(qr[i], row_value<KV>(kj, d), dot);
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    // a butterfly adds the same two operands on both lanes of every pair, so all lanes hold the same sum
    const float score = dot * scale + (bias ? bias[j] : 0.0f);
    const float m_new = fmaxf(m, score);
    const float rescale = expf(m - m_new), weight = expf(score - m_new);
    l = l * rescale + weight;
    m = m_new;
    const uint8_t* vj = v_head + size_t(j) * rb;
#pragma unroll
    for (int i = 0; i < MAX_PER_LANE; ++i) {
      const int d = lane + 32 * i;
      if (d < D) acc[i] = fmaf(weight, row_value<KV>(vj, d), acc[i] * rescale);
    }
  }
#pragma unroll
  for (int i = 0; i < MAX_PER_LANE; ++i) {
    const int d = lane + 32 * i;
    if (d < D) out[(size_t(t) * H + h) * D + d] = acc[i] / l;
  }
}

template <DType KV>
void launch(float* out, const float* q, const AttentionSeq& s, int H, int H_kv, int D, float scale, int window,
            const float* rel_bias, int rel_span) {
  const dim3 grid((H + HEADS_PER_BLOCK - 1) / HEADS_PER_BLOCK, s.T);
  NT_LAUNCH(attention_kernel<KV>, grid, 32 * HEADS_PER_BLOCK)(out, q, static_cast<const uint8_t*>(s.k),
                                                        static_cast<const uint8_t*>(s.v), s.S, s.T, kv_row_bytes(KV, D),
                                                        s.pos0, s.n_keys,
                                                        H, H_kv, D, scale, window, rel_bias, rel_span);
}

}  // namespace

void attention(float* out, const float* q, const AttentionSeq* seqs, int n_seqs, int H, int H_kv, int D, float scale,
               int window, const float* rel_bias, int rel_span, DType kv_type) {
  NT_CHECK(D <= MAX_HEAD_DIM, "CUDA attention takes head dims up to " + std::to_string(MAX_HEAD_DIM));
  size_t row = 0;  // the sequences' query rows lie one after another
  for (int i = 0; i < n_seqs; ++i) {
    const AttentionSeq& s = seqs[i];
    if (s.T > 0) {
      float* o = out + row * H * D;
      const float* qs = q + row * H * D;
      switch (kv_type) {
        case DType::F32: launch<DType::F32>(o, qs, s, H, H_kv, D, scale, window, rel_bias, rel_span); break;
        case DType::F16: launch<DType::F16>(o, qs, s, H, H_kv, D, scale, window, rel_bias, rel_span); break;
        case DType::BF16: launch<DType::BF16>(o, qs, s, H, H_kv, D, scale, window, rel_bias, rel_span); break;
        case DType::Q8_0: launch<DType::Q8_0>(o, qs, s, H, H_kv, D, scale, window, rel_bias, rel_span); break;
        default: throw Error("CUDA attention: the cache type must be f32, f16, bf16 or q8_0");
      }
      check_launch("attention");
    }
    row += size_t(s.T);
  }
}

}  // namespace cuda
}  // namespace nextoken
