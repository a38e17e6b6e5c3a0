// buffers.h: the memory a model holds besides its weights, allocated once when the model is made:
// the KV cache and the activation workspace. Nothing here is allocated per token.
#pragma once

#include <algorithm>
#include <cstdlib>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <memory>
#include <new>
#include <vector>

#include "config.h"

namespace nextoken {

// Zeroed floats from calloc: for large sizes the pages are mapped lazily, so a cache sized for the full
// context costs resident memory only for the positions actually written.
class FloatBuffer {
 public:
  explicit FloatBuffer(size_t n) : data_(static_cast<float*>(std::calloc(n ? n : 1, sizeof(float)))) {
    if (!data_) throw std::bad_alloc();
  }
  float* get() const { return data_.get(); }

 private:
  struct Free { void operator()(float* p) const { std::free(p); } };
  std::unique_ptr<float, Free> data_;
};

// Repacked weights: one allocation, on 2 MiB boundaries and marked for transparent huge pages where
// the system has them, so that streaming ~100 MB per token walks few TLB entries (and the load faults
// in 2 MiB at a time rather than 4 KiB).
class PackedBuffer {
 public:
  PackedBuffer() = default;
  explicit PackedBuffer(size_t n) {
    constexpr size_t huge = size_t(2) << 20;
    const size_t size = (n + huge - 1) / huge * huge;
    data_.reset(static_cast<uint8_t*>(std::aligned_alloc(huge, size ? size : huge)));
    if (!data_) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    madvise(data_.get(), size, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
  }
  uint8_t* get() const { return data_.get(); }

 private:
  struct Free { void operator()(uint8_t* p) const { std::free(p); } };
  std::unique_ptr<uint8_t, Free> data_;
};

// Keys and values of every layer: (n_layers, H_kv, S, D) each, S = context capacity.
struct KVCache {
  KVCache(const LlamaConfig& c, int capacity)
      : capacity(capacity),
        layer_size(size_t(c.n_kv_heads) * capacity * c.head_dim),
        k(layer_size * c.n_layers),
        v(layer_size * c.n_layers) {}
  float* keys(int layer) const { return k.get() + layer * layer_size; }
  float* values(int layer) const { return v.get() + layer * layer_size; }

  int capacity;
  size_t layer_size;
  FloatBuffer k, v;
};

// Activations for up to `batch` tokens at once; longer prompts run in chunks of `batch`.
struct Workspace {
  Workspace(const LlamaConfig& c, int batch)
      : batch(batch),
        x(size_t(batch) * c.dim),
        xn(size_t(batch) * c.dim),
        q(size_t(batch) * c.n_heads * c.head_dim),
        k(size_t(batch) * c.n_kv_heads * c.head_dim),
        v(size_t(batch) * c.n_kv_heads * c.head_dim),
        att(size_t(batch) * c.n_heads * c.head_dim),
        gate(size_t(batch) * c.hidden_dim),
        up(size_t(batch) * c.hidden_dim),
        logits(size_t(c.vocab_size)),
        xq(size_t(batch) * max_in(c)),
        dx(size_t(batch) * max_in(c) / QK),
        sx(size_t(batch) * max_in(c) / QK) {}

  static int max_in(const LlamaConfig& c) { return std::max({c.dim, c.hidden_dim, c.n_heads * c.head_dim}); }

  int batch;
  FloatBuffer x;      // (T, C) residual stream
  FloatBuffer xn;     // (T, C) normed input / sublayer output
  FloatBuffer q;      // (T, H, D)
  FloatBuffer k, v;   // (T, H_kv, D) new keys and values before they go into the cache
  FloatBuffer att;    // (T, H, D) attention output
  FloatBuffer gate;   // (T, hidden)
  FloatBuffer up;     // (T, hidden)
  FloatBuffer logits; // (vocab) last position's logits while generating
  // int8 compute: the quantized input of a matmul (T, K), its block scales and block sums (T, K/32)
  std::vector<int8_t> xq;
  std::vector<float> dx;
  std::vector<int32_t> sx;
};

}  // namespace nextoken
