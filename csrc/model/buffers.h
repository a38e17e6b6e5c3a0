// buffers.h: the two kinds of memory the model layer allocates: zeroed float arrays (KV cache, workspace)
// and the 2 MiB-aligned buffer of repacked weights. Allocated once per model or sequence, never per token.
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
#include "../kernels/cuda.h"

namespace nextoken {

// Zeroed floats. Large arrays are mapped from the kernel directly, not taken from calloc: once glibc has
// freed a mapped block it serves blocks up to 32 MiB from its heap, where calloc must clear reused memory
// and so touches every page (8 sequences with f16 KV caches of n_ctx 2184 cost 335 MiB of resident
// memory for their 192 positions). Mapped, a cache sized for the full context costs resident memory only
// for the positions actually written, and goes back to the system when freed.
// On Device::CUDA the floats are GPU memory, not zeroed (what is read there is always written first).
class FloatBuffer {
 public:
  explicit FloatBuffer(size_t n, Device device = Device::CPU)
      : data_(nullptr, Release{std::max<size_t>(n, 1) * sizeof(float), device}) {
    const size_t bytes = data_.get_deleter().bytes;
    if (device == Device::CUDA) {
      data_.reset(static_cast<float*>(cuda::alloc(bytes)));
      return;
    }
    void* p = nullptr;
#ifdef MAP_ANONYMOUS
    if (bytes >= MAPPED_BYTES) {
      p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
    }
#endif
    if (!p) p = std::calloc(bytes / sizeof(float), sizeof(float));
    if (!p) throw std::bad_alloc();
    data_.reset(static_cast<float*>(p));
  }
  float* get() const { return data_.get(); }

 private:
  static constexpr size_t MAPPED_BYTES = size_t(1) << 20;  // below this, calloc (small workspaces, tiny models)
  struct Release {
    size_t bytes;
    Device device;
    void operator()(float* p) const {
      if (device == Device::CUDA) {
        cuda::free(p);
        return;
      }
#ifdef MAP_ANONYMOUS
      if (bytes >= MAPPED_BYTES) {
        munmap(p, bytes);
        return;
      }
#endif
      std::free(p);
    }
  };
  std::unique_ptr<float, Release> data_;
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
