// cuda.h: the CUDA twins of kernels.h's ops (the .cu file beside each .cpp) and the device memory they
// work on. Declared without CUDA's headers, so that code built by the host compiler can call them; defined
// by the .cu files in builds with CUDA (CMakeLists.txt turns it on where it finds nvcc), else by
// no_cuda.cpp, where built() is false, device_count() 0 and everything else throws Error.
//
// Pointers passed to the ops are device memory. The ops run in order on the default stream; Buffer::to_host
// waits for them. A failed launch or copy throws Error naming the op and CUDA's message.
//
// The float32 ops compute what their CPU twins compute (weights decoded by the same blocks::decode32, bit
// for bit) but sum in another order, so results agree with the CPU's to float32 rounding, not bitwise.
// Within the GPU the order of a sum depends on the shapes alone: a token's row does not depend on the other
// tokens of the call (decode reproduces prefill bit for bit), as on the CPU.
#pragma once

#include <cstddef>
#include <string>

#include "kernels.h"

// NT_LAUNCH(kernel, grid, block)(args...) launches kernel<<<grid, block>>>(args...); spelled as a macro so
// that tools/cuda_emulated can run the same kernels on a CPU (its cuda_runtime.h defines it first).
#ifndef NT_LAUNCH
#define NT_LAUNCH(kernel, grid, block) kernel<<<grid, block>>>
#endif

namespace nextoken {
namespace cuda {

// ---- device.cu -------------------------------------------------------------------------------------
// Whether this build has the CUDA kernels.
bool built();
// GPUs the driver shows; 0 when there is no driver or device, or no CUDA in the build (never throws).
int device_count();
std::string device_name(int device);
// Throws Error("CUDA: <op>: <message>") when the last launch failed.
void check_launch(const char* op);

// Device memory (alloc throws Error when there is not enough), and copies between any two places, host or
// device (waiting for the ops queued before it).
void* alloc(size_t bytes);
void free(void* p);
void copy(void* dst, const void* src, size_t bytes);

// Device memory, freed when the Buffer goes out of scope; `from_host`, when given, is copied in.
class Buffer {
 public:
  explicit Buffer(size_t bytes, const void* from_host = nullptr);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(data_); }
  // Copies the whole buffer to host memory after the ops queued before it have finished.
  void to_host(void* dst) const;

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// ---- matmul.cu -------------------------------------------------------------------------------------
// y (T, N) = x (T, K) @ W^T for W (N, K) of any weight type, decoded to float32 on the fly.
void matmul(float* y, const float* x, const void* w, DType w_type, int T, int K, int N);

// ---- norm.cu ---------------------------------------------------------------------------------------
void rmsnorm(float* out, const float* x, const float* weight, int T, int C, float eps);
void layernorm(float* out, const float* x, const float* weight, const float* bias, int T, int C, float eps);

// ---- rope.cu ---------------------------------------------------------------------------------------
void rope(float* x, const float* cos, const float* sin, int T, int n_heads, int D, bool half_layout);

// ---- elementwise.cu --------------------------------------------------------------------------------
// out (n) = act(x) * up (up may be null: act(x) alone); out may alias x.
void activation(float* out, const float* x, const float* up, int64_t n, Activation act);
void add_inplace(float* x, const float* y, int64_t n);
// out (T, C) = rows ids[t] of table (vocab, C) as float32; ids (device memory) must already be checked.
void embedding(float* out, const int32_t* ids, int T, const void* table, DType type, int C);
void scale_inplace(float* x, float s, int64_t n);
void softcap(float* x, float cap, int64_t n);
void add_bias(float* y, const float* bias, int T, int N);
// KV cache rows: n rows of D floats, src_stride floats apart, stored as `type` (F32, F16 or BF16) in
// consecutive rows of kv_row_bytes(type, D) at dst.
void store_kv_rows(void* dst, const float* src, int n, size_t src_stride, int D, DType type);

// ---- attention.cu ----------------------------------------------------------------------------------
// kernels.h's attention() on the GPU: seqs is a host array whose k, v point to device memory; q, out and
// rel_bias are device memory. Head dims up to MAX_HEAD_DIM. scratch: device memory of at least
// attention_scratch_floats() floats for the same sequences (the partial results of split-K decode).
constexpr int MAX_HEAD_DIM = 256;
size_t attention_scratch_floats(const AttentionSeq* seqs, int n_seqs, int H, int D);
void attention(float* out, const float* q, const AttentionSeq* seqs, int n_seqs, int H, int H_kv, int D, float scale,
               int window, const float* rel_bias, int rel_span, DType kv_type, float* scratch);

}  // namespace cuda
}  // namespace nextoken
