// attention.cu: fused attention on the GPU, kernels.h's attention() with its conventions (causal with an
// optional window, or every query over n_keys keys; GQA; T5's relative bias; an f32, f16, bf16 or Q8_0 cache).
//
// A warp works for one (query row, head): lane l holds elements l, l + 32, ... of the query and of the output
// accumulator; each key's score is the warp's sum (a fixed butterfly) and enters an online softmax, key by key
// in order. A row's keys fall in segments of SEGMENT_KEYS (by key index), each reduced alone and then folded
// into the row's result in order (fold_segment). A call with many (row, head) pairs (prefill) gives each pair
// one warp that does its segments in turn; one with few (decode) gives each segment its own warp and folds
// their partial results in a second kernel (split-K), so that a long context keeps the GPU busy. Both paths
// do the same float operations in the same order: a row's result depends on its own query and keys only,
// and decode reproduces prefill bit for bit. A first, plain version (no tensor cores, float32): prefill on
// FlashAttention-2's tiles is still to come (issue 12).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "cuda.h"

namespace nextoken {
namespace cuda {
namespace {

constexpr int HEADS_PER_BLOCK = 4;               // warps per thread block, one head each
constexpr int MAX_PER_LANE = MAX_HEAD_DIM / 32;  // elements of a row per lane
constexpr int SEGMENT_KEYS = 256;                // keys reduced alone before their segment is folded in
constexpr int SPLIT_BELOW = 256;                 // (row, head) pairs under which segments get warps of their own
constexpr int MAX_GRID_Y = 65535;                // CUDA's limit on gridDim.y (and .z)

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

// Where a row's keys lie: [first, end), and its segments first / SEGMENT_KEYS .. (end - 1) / SEGMENT_KEYS.
struct KeyRange {
  int first, end;
};
__device__ inline KeyRange key_range(int p, int n_keys, int window) {
  if (n_keys > 0) return {0, n_keys};  // every query sees every key
  return {window > 0 ? max(0, p - window + 1) : 0, p + 1};
}

// What a warp needs to score and sum keys for one (row, head).
template <DType KV>
struct RowHead {
  float q[MAX_PER_LANE];  // the lane's elements of the query
  const uint8_t *k, *v;   // the head's key and value rows, rb bytes apart
  size_t rb;
  const float* bias;      // T5: the bias of key j is bias[j]; or null
  int D, lane;
  float scale;
};

// The online softmax of keys [a, b) alone: m (max score), l (sum of e^(s - m)) and acc (the lane's elements
// of the e^(s - m)-weighted sum of values).
template <DType KV>
__device__ void attend_segment(float& m, float& l, float* acc, const RowHead<KV>& r, int a, int b) {
  m = -INFINITY;
  l = 0.0f;
#pragma unroll
  for (int i = 0; i < MAX_PER_LANE; ++i) acc[i] = 0.0f;
  for (int j = a; j < b; ++j) {
    const uint8_t* kj = r.k + size_t(j) * r.rb;
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < MAX_PER_LANE; ++i) {
      const int d = r.lane + 32 * i;
      if (d < r.D) dot = fmaf(r.q[i], row_value<KV>(kj, d), dot);
    }
    // a butterfly adds the same two operands on both lanes of every pair, so all lanes hold the same sum
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    const float score = r.bias ? fmaf(dot, r.scale, r.bias[j]) : dot * r.scale;
    const float m_new = fmaxf(m, score);
    const float rescale = expf(m - m_new), weight = expf(score - m_new);
    l = fmaf(l, rescale, weight);
    m = m_new;
    const uint8_t* vj = r.v + size_t(j) * r.rb;
#pragma unroll
    for (int i = 0; i < MAX_PER_LANE; ++i) {
      const int d = r.lane + 32 * i;
      if (d < r.D) acc[i] = fmaf(weight, row_value<KV>(vj, d), acc[i] * rescale);
    }
  }
}

// Folds a segment's (m_s, l_s, acc_s) into the row's running (m, l, acc), both rescaled to the larger max.
// Written with explicit fmaf so that both kernels below compile it to the same operations.
__device__ inline void fold_segment(float& m, float& l, float* acc, float m_s, float l_s, const float* acc_s) {
  const float m_new = fmaxf(m, m_s);
  const float old_scale = expf(m - m_new), segment_scale = expf(m_s - m_new);
  l = fmaf(l, old_scale, l_s * segment_scale);
#pragma unroll
  for (int i = 0; i < MAX_PER_LANE; ++i) acc[i] = fmaf(acc[i], old_scale, acc_s[i] * segment_scale);
  m = m_new;
}

// The arguments every kernel below takes: one sequence's T query rows at pos0 .., q and out (T, H, D),
// k and v (H_kv, S, D) of type KV.
struct SeqArgs {
  float* out;
  const float* q;
  const uint8_t *k, *v;
  size_t rb;
  int S, T, pos0, n_keys, H, H_kv, D, window, rel_span;
  float scale;
  const float* rel_bias;
};

template <DType KV>
__device__ RowHead<KV> row_head(const SeqArgs& a, int t, int h, int lane) {
  RowHead<KV> r;
  const int kv_head = h / (a.H / a.H_kv), p = a.pos0 + t;
  r.k = a.k + size_t(kv_head) * a.S * a.rb;
  r.v = a.v + size_t(kv_head) * a.S * a.rb;
  r.rb = a.rb;
  r.bias = a.rel_bias ? a.rel_bias + size_t(h) * (2 * a.rel_span - 1) + (a.rel_span - 1) - p : nullptr;
  r.D = a.D;
  r.lane = lane;
  r.scale = a.scale;
#pragma unroll
  for (int i = 0; i < MAX_PER_LANE; ++i) {
    const int d = lane + 32 * i;
    r.q[i] = d < a.D ? a.q[(size_t(t) * a.H + h) * a.D + d] : 0.0f;
  }
  return r;
}

__device__ inline void write_row(const SeqArgs& a, int t, int h, int lane, const float* acc, float l) {
#pragma unroll
  for (int i = 0; i < MAX_PER_LANE; ++i) {
    const int d = lane + 32 * i;
    if (d < a.D) a.out[(size_t(t) * a.H + h) * a.D + d] = acc[i] / l;
  }
}

// One warp per (row, head), grid (heads / HEADS_PER_BLOCK, T): the row's segments in turn.
template <DType KV>
__global__ void attention_kernel(SeqArgs a) {
  const int lane = threadIdx.x % 32, h = blockIdx.x * HEADS_PER_BLOCK + threadIdx.x / 32, t = blockIdx.y;
  if (h >= a.H) return;  // the whole warp
  const RowHead<KV> r = row_head<KV>(a, t, h, lane);
  const KeyRange keys = key_range(a.pos0 + t, a.n_keys, a.window);
  float m = -INFINITY, l = 0.0f, acc[MAX_PER_LANE];
#pragma unroll
  for (int i = 0; i < MAX_PER_LANE; ++i) acc[i] = 0.0f;
  for (int s = keys.first / SEGMENT_KEYS; s * SEGMENT_KEYS < keys.end; ++s) {
    float m_s, l_s, acc_s[MAX_PER_LANE];
    attend_segment<KV>(m_s, l_s, acc_s, r, max(keys.first, s * SEGMENT_KEYS), min(keys.end, (s + 1) * SEGMENT_KEYS));
    fold_segment(m, l, acc, m_s, l_s, acc_s);
  }
  write_row(a, t, h, lane, acc, l);
}

// Split-K, first part: one warp per (row, head, segment), grid (heads / HEADS_PER_BLOCK, T, segments);
// partial (T, H, n_segments, 2 + D) gets each segment's m, l and acc.
template <DType KV>
__global__ void attention_segments_kernel(SeqArgs a, float* partial, int n_segments) {
  const int lane = threadIdx.x % 32, h = blockIdx.x * HEADS_PER_BLOCK + threadIdx.x / 32, t = blockIdx.y;
  const int s = blockIdx.z;
  if (h >= a.H) return;
  const KeyRange keys = key_range(a.pos0 + t, a.n_keys, a.window);
  const int a_key = max(keys.first, s * SEGMENT_KEYS), b_key = min(keys.end, (s + 1) * SEGMENT_KEYS);
  if (a_key >= b_key) return;  // not one of this row's segments
  const RowHead<KV> r = row_head<KV>(a, t, h, lane);
  float m_s, l_s, acc_s[MAX_PER_LANE];
  attend_segment<KV>(m_s, l_s, acc_s, r, a_key, b_key);
  float* p = partial + ((size_t(t) * a.H + h) * n_segments + s) * (2 + a.D);
  if (lane == 0) p[0] = m_s, p[1] = l_s;
#pragma unroll
  for (int i = 0; i < MAX_PER_LANE; ++i) {
    const int d = lane + 32 * i;
    if (d < a.D) p[2 + d] = acc_s[i];
  }
}

// Split-K, second part: one warp per (row, head) folds the row's segments in order, as attention_kernel does.
__global__ void attention_fold_kernel(SeqArgs a, const float* partial, int n_segments) {
  const int lane = threadIdx.x % 32, h = blockIdx.x * HEADS_PER_BLOCK + threadIdx.x / 32, t = blockIdx.y;
  if (h >= a.H) return;
  const KeyRange keys = key_range(a.pos0 + t, a.n_keys, a.window);
  float m = -INFINITY, l = 0.0f, acc[MAX_PER_LANE];
#pragma unroll
  for (int i = 0; i < MAX_PER_LANE; ++i) acc[i] = 0.0f;
  for (int s = keys.first / SEGMENT_KEYS; s * SEGMENT_KEYS < keys.end; ++s) {
    const float* p = partial + ((size_t(t) * a.H + h) * n_segments + s) * (2 + a.D);
    float acc_s[MAX_PER_LANE];
#pragma unroll
    for (int i = 0; i < MAX_PER_LANE; ++i) {
      const int d = lane + 32 * i;
      acc_s[i] = d < a.D ? p[2 + d] : 0.0f;
    }
    fold_segment(m, l, acc, p[0], p[1], acc_s);
  }
  write_row(a, t, h, lane, acc, l);
}

// Segments of the longest row of a sequence (its last query's, or n_keys').
int segments_of(const AttentionSeq& s) {
  const int end = s.n_keys > 0 ? s.n_keys : s.pos0 + s.T;
  return (end + SEGMENT_KEYS - 1) / SEGMENT_KEYS;
}

bool split(const AttentionSeq& s, int H) { return s.T * H < SPLIT_BELOW && segments_of(s) > 1; }

template <DType KV>
void launch(const SeqArgs& a, const AttentionSeq& s, float* scratch) {
  const unsigned head_blocks = (a.H + HEADS_PER_BLOCK - 1) / HEADS_PER_BLOCK;
  if (!split(s, a.H)) {
    for (int r0 = 0; r0 < a.T; r0 += MAX_GRID_Y) {  // rows go in grid.y: at most MAX_GRID_Y a launch
      SeqArgs rows = a;
      rows.T = std::min(MAX_GRID_Y, a.T - r0);
      rows.pos0 = a.pos0 + r0;
      rows.q = a.q + size_t(r0) * a.H * a.D;
      rows.out = a.out + size_t(r0) * a.H * a.D;
      NT_LAUNCH(attention_kernel<KV>, dim3(head_blocks, rows.T), 32 * HEADS_PER_BLOCK)(rows);
    }
    return;
  }
  const dim3 grid(head_blocks, a.T);  // split: fewer than SPLIT_BELOW rows
  const int n_segments = segments_of(s);
  NT_LAUNCH(attention_segments_kernel<KV>, dim3(grid.x, grid.y, n_segments), 32 * HEADS_PER_BLOCK)(a, scratch, n_segments);
  NT_LAUNCH(attention_fold_kernel, grid, 32 * HEADS_PER_BLOCK)(a, scratch, n_segments);
}

}  // namespace

size_t attention_scratch_floats(const AttentionSeq* seqs, int n_seqs, int H, int D) {
  size_t most = 0;
  for (int i = 0; i < n_seqs; ++i)
    if (split(seqs[i], H)) most = std::max(most, size_t(seqs[i].T) * H * segments_of(seqs[i]) * (2 + D));
  return most;
}

void attention(float* out, const float* q, const AttentionSeq* seqs, int n_seqs, int H, int H_kv, int D, float scale,
               int window, const float* rel_bias, int rel_span, DType kv_type, float* scratch) {
  NT_CHECK(D <= MAX_HEAD_DIM, "CUDA attention takes head dims up to " + std::to_string(MAX_HEAD_DIM));
  size_t row = 0;  // the sequences' query rows lie one after another
  for (int i = 0; i < n_seqs; ++i) {
    const AttentionSeq& s = seqs[i];
    if (s.T > 0) {
      const SeqArgs a{out + row * H * D, q + row * H * D, static_cast<const uint8_t*>(s.k), static_cast<const uint8_t*>(s.v),
                      kv_row_bytes(kv_type, D), s.S, s.T, s.pos0, s.n_keys, H, H_kv, D, window, rel_span, scale, rel_bias};
      switch (kv_type) {
        case DType::F32: launch<DType::F32>(a, s, scratch); break;
        case DType::F16: launch<DType::F16>(a, s, scratch); break;
        case DType::BF16: launch<DType::BF16>(a, s, scratch); break;
        case DType::Q8_0: launch<DType::Q8_0>(a, s, scratch); break;
        default: throw Error("CUDA attention: the cache type must be f32, f16, bf16 or q8_0");
      }
      check_launch("attention");
    }
    row += size_t(s.T);
  }
}

}  // namespace cuda
}  // namespace nextoken
