// elementwise.cu: activations, the residual add and embedding lookup on the GPU, with elementwise.cpp's
// formulas (GELU-tanh as x / (1 + e^(-2u)); exact GELU through erf in double) and the CPU's weight decoding.
#include <cuda_runtime.h>

#include "cuda.h"
#include "weight_blocks.cuh"

namespace nextoken {
namespace cuda {
namespace {

constexpr int THREADS = 256;

template <Activation A>
__device__ inline float act(float x) {
  if constexpr (A == Activation::SiLU) {
    return x / (1.0f + expf(-x));
  } else if constexpr (A == Activation::GeluTanh) {
    const float u = x * (0.7978845608028654f + 0.7978845608028654f * 0.044715f * x * x);
    return x / (1.0f + expf(-2.0f * u));
  } else if constexpr (A == Activation::ReLU) {
    return x > 0.0f ? x : 0.0f;
  } else {
    return float(0.5 * double(x) * (1.0 + erf(double(x) * 0.7071067811865476)));
  }
}

template <Activation A>
__global__ void activation_kernel(float* out, const float* x, const float* up, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * THREADS + threadIdx.x;
  if (i < n) out[i] = up ? act<A>(x[i]) * up[i] : act<A>(x[i]);
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * THREADS + threadIdx.x;
  if (i < n) x[i] += y[i];
}

// One warp per token: lane l decodes the row's 32-weight blocks l, l + 32, ...
template <DType TYPE>
__global__ void embedding_kernel(float* out, const int32_t* ids, const uint8_t* table, size_t row_bytes, int C) {
  const int lane = threadIdx.x % 32, t = blockIdx.x;
  const uint8_t* row = table + size_t(ids[t]) * row_bytes;
  float* o = out + size_t(t) * C;
  for (int b = lane; b * QK < C; b += 32) {
    float w[QK];
    load_weight_block<TYPE>(w, row, b, C);
    for (int j = 0; j < QK && QK * b + j < C; ++j) o[QK * b + j] = w[j];
  }
}

unsigned blocks_for(int64_t n) { return unsigned((n + THREADS - 1) / THREADS); }

}  // namespace

void activation(float* out, const float* x, const float* up, int64_t n, Activation act) {
  if (n == 0) return;
  switch (act) {
    case Activation::SiLU: NT_LAUNCH(activation_kernel<Activation::SiLU>, blocks_for(n), THREADS)(out, x, up, n); break;
    case Activation::GeluTanh: NT_LAUNCH(activation_kernel<Activation::GeluTanh>, blocks_for(n), THREADS)(out, x, up, n); break;
    case Activation::Gelu: NT_LAUNCH(activation_kernel<Activation::Gelu>, blocks_for(n), THREADS)(out, x, up, n); break;
    case Activation::ReLU: NT_LAUNCH(activation_kernel<Activation::ReLU>, blocks_for(n), THREADS)(out, x, up, n); break;
  }
  check_launch("activation");
}

void add_inplace(float* x, const float* y, int64_t n) {
  if (n == 0) return;
  NT_LAUNCH(add_kernel, blocks_for(n), THREADS)(x, y, n);
  check_launch("add");
}

void embedding(float* out, const int32_t* ids, int T, const void* table, DType type, int C) {
  if (T == 0) return;
  with_weight_type(type, [&](auto t) {
    constexpr DType TYPE = decltype(t)::value;
    NT_LAUNCH(embedding_kernel<TYPE>, T, 32)(out, ids, static_cast<const uint8_t*>(table), row_bytes(TYPE, C), C);
  });
  check_launch("embedding");
}

}  // namespace cuda
}  // namespace nextoken
