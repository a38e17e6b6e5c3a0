// kv_cache.h: one sequence's keys and values, separate from the weights so that a model can hold
// several sequences (each its own KVCache) over one set of weights.
#pragma once

#include <algorithm>
#include <cstring>

#include "../kernels/kernels.h"
#include "buffers.h"
#include "config.h"

namespace nextoken {

// Keys and values of every layer: (n_layers, H_kv, S, D) each, S = capacity in positions, stored as
// config.kv_type (F32; F16 / BF16: half the memory and half the bytes each decode step reads; Q8_0: 34
// bytes per 32 values).
// Zeroed lazily (buffers.h), so a cache sized for the whole context costs memory only for the positions written.
// With config.device CUDA the cache is GPU memory.
struct KVCache {
  KVCache(const ModelConfig& c, int capacity)
      : capacity(capacity),
        n_layers(c.n_layers),
        n_kv_heads(c.n_kv_heads),
        head_dim(c.head_dim),
        type(c.kv_type),
        row_bytes(kv_row_bytes(c.kv_type, c.head_dim)),
        layer_bytes(size_t(c.n_kv_heads) * capacity * row_bytes),
        device(c.device),
        k((layer_bytes * c.n_layers + 3) / 4, c.device),
        v((layer_bytes * c.n_layers + 3) / 4, c.device) {}
  uint8_t* keys(int layer) const { return bytes(k) + layer * layer_bytes; }
  uint8_t* values(int layer) const { return bytes(v) + layer * layer_bytes; }
  // The row of head h at position p in a layer's keys or values.
  uint8_t* row(uint8_t* layer_base, int h, int p) const { return layer_base + (size_t(h) * capacity + p) * row_bytes; }

  // Positions [0, src.length) of src (same model and capacity) into this cache.
  void copy_prefix(const KVCache& src) {
    for_each_head([&](size_t offset) {
      const size_t n = size_t(src.length) * row_bytes;
      copy(bytes(k) + offset, bytes(src.k) + offset, n);
      copy(bytes(v) + offset, bytes(src.v) + offset, n);
    });
    length = src.length;
  }

  // Positions [from, length) moved down to [from - by, length - by) (keys as stored: callers re-rotate).
  void move_down(int from, int by) {
    for_each_head([&](size_t offset) {
      const size_t a = offset + size_t(from) * row_bytes, n = size_t(length - from) * row_bytes;
      const size_t to = a - size_t(by) * row_bytes;
      move(bytes(k) + to, bytes(k) + a, n, size_t(by) * row_bytes);
      move(bytes(v) + to, bytes(v) + a, n, size_t(by) * row_bytes);
    });
    length -= by;
  }

  int capacity;
  int n_layers, n_kv_heads, head_dim;
  DType type;
  size_t row_bytes, layer_bytes;
  Device device;
  FloatBuffer k, v;  // used as bytes
  int length = 0;    // positions 0 .. length - 1 hold valid keys and values

 private:
  static uint8_t* bytes(const FloatBuffer& b) { return reinterpret_cast<uint8_t*>(b.get()); }
  void copy(uint8_t* dst, const uint8_t* src, size_t n) const {
    if (device == Device::CUDA) cuda::copy(dst, src, n);
    else std::memcpy(dst, src, n);
  }
  // n bytes from src down to dst = src - gap: on the GPU in pieces of at most gap bytes, lowest first, so
  // that no piece overlaps its source (a device copy must not overlap).
  void move(uint8_t* dst, const uint8_t* src, size_t n, size_t gap) const {
    if (device != Device::CUDA) {
      std::memmove(dst, src, n);
      return;
    }
    for (size_t done = 0; done < n; done += gap) cuda::copy(dst + done, src + done, std::min(gap, n - done));
  }
  template <class F>
  void for_each_head(const F& fn) const {
    for (int l = 0; l < n_layers; ++l)
      for (int h = 0; h < n_kv_heads; ++h) fn(size_t(l) * layer_bytes + size_t(h) * capacity * row_bytes);
  }
};

}  // namespace nextoken
