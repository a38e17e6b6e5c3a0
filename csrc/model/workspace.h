// workspace.h: the activations of one forward pass, allocated once; nothing is allocated per token.
#pragma once

#include <algorithm>
#include <vector>

#include "buffers.h"
#include "../kernels/kernels.h"
#include "config.h"

namespace nextoken {

// Activations for up to `batch` tokens at once; longer prompts run in chunks of `batch`.
struct Workspace {
  Workspace(const ModelConfig& c, int batch)
      : batch(batch),
        x(size_t(batch) * c.dim),
        xn(size_t(batch) * c.dim),
        q(size_t(batch) * c.n_heads * c.head_dim),
        k(size_t(batch) * c.n_kv_heads * c.head_dim),
        v(size_t(batch) * c.n_kv_heads * c.head_dim),
        att(size_t(batch) * c.n_heads * c.head_dim),
        gate(size_t(batch) * c.hidden_dim),
        up(size_t(batch) * c.hidden_dim),
        xq(size_t(batch) * max_in(c)),
        dx(size_t(batch) * max_in(c) / QK),
        sx(size_t(batch) * max_in(c) / QK),
        dx_sx(size_t(batch) * max_in(c) / QK),
        row_pos(batch),
        row_chunk(batch),
        attention_seqs(std::min(batch, MAX_ATTENTION_SEQS)) {}

  static int max_in(const ModelConfig& c) { return std::max({c.dim, c.hidden_dim, c.n_heads * c.head_dim}); }

  int batch;
  FloatBuffer x;      // (T, C) residual stream
  FloatBuffer xn;     // (T, C) normed input / sublayer output
  FloatBuffer q;      // (T, H, D)
  FloatBuffer k, v;   // (T, H_kv, D) new keys and values before they go into the cache
  FloatBuffer att;    // (T, H, D) attention output
  FloatBuffer gate;   // (T, hidden)
  FloatBuffer up;     // (T, hidden)
  // int8 compute: the quantized input of a matmul (T, K), its block scales, block sums and their products
  // (T, K/32)
  std::vector<int8_t> xq;
  std::vector<float> dx;
  std::vector<int32_t> sx;
  std::vector<float> dx_sx;
  // A ragged pass: each row's position and chunk, each chunk's attention view; the logits of a pass with
  // several chunks (grown to the largest pass seen, then reused).
  std::vector<int> row_pos, row_chunk;
  std::vector<AttentionSeq> attention_seqs;
  std::vector<float> head;
};

}  // namespace nextoken
