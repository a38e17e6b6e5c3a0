// buffers.h: the two kinds of memory the model layer allocates: zeroed float arrays (KV cache, workspace)
// and the 2 MiB-aligned buffer of repacked weights. Allocated once, never per token.
#pragma once

#include <algorithm>
#include <cstdlib>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <functional>
#include <memory>
#include <new>

#include "../common.h"

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
    data_ = {static_cast<uint8_t*>(std::aligned_alloc(huge, size ? size : huge)), [](uint8_t* p) { std::free(p); }};
    if (!data_) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    madvise(data_.get(), size, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
  }
  // Bytes someone else allocated (a mapped cache file), given back by `release` when this buffer goes.
  PackedBuffer(uint8_t* data, std::function<void(uint8_t*)> release) : data_(data, std::move(release)) {}
  uint8_t* get() const { return data_.get(); }

 private:
  std::unique_ptr<uint8_t, std::function<void(uint8_t*)>> data_{nullptr, [](uint8_t* p) { std::free(p); }};
};

}  // namespace nextoken
