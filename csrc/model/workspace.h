// workspace.h: the activations of one forward pass, allocated once; nothing is allocated per token.
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "buffers.h"
#include "../kernels/kernels.h"
#include "config.h"

namespace nextoken {

// Activations for up to `batch` tokens at once; longer prompts run in chunks of `batch`. With config.device
// CUDA the activations are GPU memory (and int8 compute, CPU only, has no buffers).
struct Workspace {
  Workspace(const ModelConfig& c, int batch)
      : batch(batch),
        x(size_t(batch) * c.dim, c.device),
        xn(size_t(batch) * c.dim, c.device),
        q(size_t(batch) * c.n_heads * c.head_dim, c.device),
        k(size_t(batch) * c.n_kv_heads * c.head_dim, c.device),
        v(size_t(batch) * c.n_kv_heads * c.head_dim, c.device),
        att(size_t(batch) * c.n_heads * c.head_dim, c.device),
        gate(size_t(batch) * c.hidden_dim, c.device),
        up(size_t(batch) * c.hidden_dim, c.device),
        xq(c.device == Device::CPU ? size_t(batch) * max_in(c) : 0),
        dx(c.device == Device::CPU ? size_t(batch) * max_in(c) / QK : 0),
        sx(c.device == Device::CPU ? size_t(batch) * max_in(c) / QK : 0),
        dx_sx(c.device == Device::CPU ? size_t(batch) * max_in(c) / QK : 0),
        row_pos(batch),
        row_chunk(batch),
        attention_seqs(std::min(batch, MAX_ATTENTION_SEQS)),
        device(c.device) {
    if (device == Device::CUDA) {
      row_ids.resize(size_t(batch));
      device_ids = std::make_unique<FloatBuffer>(size_t(batch), device);
    }
  }

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
  // On the GPU: the pass's token ids (or positions), int32, staged in row_ids; attention's split-K partial
  // results and the logits of the rows asked for, grown to the largest pass seen.
  Device device;
  std::vector<int32_t> row_ids;
  std::unique_ptr<FloatBuffer> device_ids;
  int32_t* ids_on_device() const { return reinterpret_cast<int32_t*>(device_ids->get()); }
  float* scratch(size_t n) { return grown(device_scratch, device_scratch_n, n); }
  float* logits_on_device(size_t n) { return grown(device_logits, device_logits_n, n); }

 private:
  std::unique_ptr<FloatBuffer> device_scratch, device_logits;
  size_t device_scratch_n = 0, device_logits_n = 0;
  float* grown(std::unique_ptr<FloatBuffer>& b, size_t& have, size_t n) {
    if (!b || have < n) {
      b.reset();  // the old one goes first: GPU memory may not hold both
      b = std::make_unique<FloatBuffer>(n, device);
      have = n;
    }
    return b->get();
  }
};

}  // namespace nextoken
