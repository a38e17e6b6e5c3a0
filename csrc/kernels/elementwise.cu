// elementwise.cu: activations, adds, scaling, soft-capping, embedding lookup and KV cache rows on the GPU,
// with elementwise.cpp's formulas (GELU-tanh as x / (1 + e^(-2u)); exact GELU through erf in double; the
// soft cap's tanh in double), the CPU's weight decoding and its f16 / bf16 rounding (common.h).
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

__global__ void scale_kernel(float* x, float s, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * THREADS + threadIdx.x;
  if (i < n) x[i] *= s;
}

__global__ void softcap_kernel(float* x, float cap, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * THREADS + threadIdx.x;
  if (i < n) x[i] = float(tanh(double(x[i] / cap))) * cap;  // as the CPU: tanh in double
}

__global__ void add_bias_kernel(float* y, const float* bias, int N, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * THREADS + threadIdx.x;
  if (i < n) y[i] += bias[i % N];
}

template <DType KV>
__global__ void store_kv_kernel(uint8_t* dst, const float* src, size_t src_stride, int D, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * THREADS + threadIdx.x;
  if (i >= n) return;
  const int64_t row = i / D, d = i % D;
  const float value = src[row * src_stride + d];
  if constexpr (KV == DType::F32) reinterpret_cast<float*>(dst)[i] = value;
  else if constexpr (KV == DType::F16) reinterpret_cast<uint16_t*>(dst)[i] = f32_to_f16(value);
  else reinterpret_cast<uint16_t*>(dst)[i] = f32_to_bf16(value);
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

void scale_inplace(float* x, float s, int64_t n) {
  if (n == 0) return;
  NT_LAUNCH(scale_kernel, blocks_for(n), THREADS)(x, s, n);
  check_launch("scale");
}

void softcap(float* x, float cap, int64_t n) {
  if (n == 0) return;
  NT_LAUNCH(softcap_kernel, blocks_for(n), THREADS)(x, cap, n);
  check_launch("softcap");
}

void add_bias(float* y, const float* bias, int T, int N) {
  const int64_t n = int64_t(T) * N;
  if (n == 0) return;
  NT_LAUNCH(add_bias_kernel, blocks_for(n), THREADS)(y, bias, N, n);
  check_launch("add_bias");
}

void store_kv_rows(void* dst, const float* src, int n, size_t src_stride, int D, DType type) {
  const int64_t count = int64_t(n) * D;
  if (count == 0) return;
  uint8_t* d = static_cast<uint8_t*>(dst);
  switch (type) {
    case DType::F32: NT_LAUNCH(store_kv_kernel<DType::F32>, blocks_for(count), THREADS)(d, src, src_stride, D, count); break;
    case DType::F16: NT_LAUNCH(store_kv_kernel<DType::F16>, blocks_for(count), THREADS)(d, src, src_stride, D, count); break;
    case DType::BF16: NT_LAUNCH(store_kv_kernel<DType::BF16>, blocks_for(count), THREADS)(d, src, src_stride, D, count); break;
    default: throw Error("CUDA: the KV cache must be f32, f16 or bf16");
  }
  check_launch("store_kv_rows");
}

}  // namespace cuda
}  // namespace nextoken
