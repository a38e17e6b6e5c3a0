// kv_cache.h: one sequence's keys and values, separate from the weights so that a model can hold
// several sequences (each its own KVCache) over one set of weights.
#pragma once

#include "buffers.h"
#include "config.h"

namespace nextoken {

// Keys and values of every layer: (n_layers, H_kv, S, D) each, S = capacity in positions. calloc'd,
// so a cache sized for the whole context costs memory only for the positions written.
struct KVCache {
  KVCache(const ModelConfig& c, int capacity)
      : capacity(capacity),
        layer_size(size_t(c.n_kv_heads) * capacity * c.head_dim),
        k(layer_size * c.n_layers),
        v(layer_size * c.n_layers) {}
  float* keys(int layer) const { return k.get() + layer * layer_size; }
  float* values(int layer) const { return v.get() + layer * layer_size; }

  int capacity;
  size_t layer_size;
  FloatBuffer k, v;
  int length = 0;  // positions 0 .. length - 1 hold valid keys and values
};

}  // namespace nextoken
