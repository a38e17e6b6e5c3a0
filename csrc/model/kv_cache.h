// kv_cache.h: one sequence's keys and values, separate from the weights so that a model can hold
// several sequences (each its own KVCache) over one set of weights.
#pragma once

#include <algorithm>

#include "buffers.h"
#include "config.h"

namespace nextoken {

// Keys and values of every layer: (n_layers, H_kv, S, D) each, S = capacity in positions. calloc'd,
// so a cache sized for the whole context costs memory only for the positions written.
struct KVCache {
  KVCache(const ModelConfig& c, int capacity)
      : capacity(capacity),
        n_layers(c.n_layers),
        n_kv_heads(c.n_kv_heads),
        head_dim(c.head_dim),
        layer_size(size_t(c.n_kv_heads) * capacity * c.head_dim),
        k(layer_size * c.n_layers),
        v(layer_size * c.n_layers) {}
  float* keys(int layer) const { return k.get() + layer * layer_size; }
  float* values(int layer) const { return v.get() + layer * layer_size; }

  // Positions [0, src.length) of src (same model and capacity) into this cache.
  void copy_prefix(const KVCache& src) {
    for_each_head([&](size_t offset) {
      const size_t n = size_t(src.length) * head_dim;
      std::copy(src.k.get() + offset, src.k.get() + offset + n, k.get() + offset);
      std::copy(src.v.get() + offset, src.v.get() + offset + n, v.get() + offset);
    });
    length = src.length;
  }

  // Positions [from, length) moved down to [from - by, length - by) (keys as stored: callers re-rotate).
  void move_down(int from, int by) {
    for_each_head([&](size_t offset) {
      const size_t a = offset + size_t(from) * head_dim, n = size_t(length - from) * head_dim;
      const size_t to = a - size_t(by) * head_dim;
      std::copy(k.get() + a, k.get() + a + n, k.get() + to);
      std::copy(v.get() + a, v.get() + a + n, v.get() + to);
    });
    length -= by;
  }

  int capacity;
  int n_layers, n_kv_heads, head_dim;
  size_t layer_size;
  FloatBuffer k, v;
  int length = 0;  // positions 0 .. length - 1 hold valid keys and values

 private:
  template <class F>
  void for_each_head(const F& fn) const {
    for (int l = 0; l < n_layers; ++l)
      for (int h = 0; h < n_kv_heads; ++h) fn(size_t(l) * layer_size + size_t(h) * capacity * head_dim);
  }
};

}  // namespace nextoken
