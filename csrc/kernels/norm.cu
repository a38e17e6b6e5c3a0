// norm.cu: RMSNorm and LayerNorm on the GPU, one thread block per row; row statistics in double as on
// the CPU (norm.cpp), summed by the block in a fixed order.
#include <cuda_runtime.h>

#include "cuda.h"

namespace nextoken {
namespace cuda {
namespace {

constexpr int THREADS = 256;

// The sum of every thread's v, returned to all threads of the block.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[THREADS / 32];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < THREADS / 32; ++w) total += warp_sums[w];
  __syncthreads();  // warp_sums is reused by the next call
  return total;
}

__global__ void rmsnorm_kernel(float* out, const float* x, const float* weight, int C, float eps) {
  const float* xt = x + size_t(blockIdx.x) * C;
  float* ot = out + size_t(blockIdx.x) * C;
  double sum_sq = 0.0;
  for (int c = threadIdx.x; c < C; c += THREADS) sum_sq += double(xt[c]) * xt[c];
  const float inv_rms = float(1.0 / sqrt(block_sum(sum_sq) / C + eps));
  for (int c = threadIdx.x; c < C; c += THREADS) ot[c] = xt[c] * inv_rms * weight[c];
}

__global__ void layernorm_kernel(float* out, const float* x, const float* weight, const float* bias, int C, float eps) {
  const float* xt = x + size_t(blockIdx.x) * C;
  float* ot = out + size_t(blockIdx.x) * C;
  double sum = 0.0;
  for (int c = threadIdx.x; c < C; c += THREADS) sum += xt[c];
  const double mean = block_sum(sum) / C;
  double sum_sq = 0.0;  // around the mean: no cancellation
  for (int c = threadIdx.x; c < C; c += THREADS) sum_sq += (xt[c] - mean) * (xt[c] - mean);
  const float inv_std = float(1.0 / sqrt(block_sum(sum_sq) / C + eps)), mean_f = float(mean);
  for (int c = threadIdx.x; c < C; c += THREADS) ot[c] = (xt[c] - mean_f) * inv_std * weight[c] + bias[c];
}

}  // namespace

void rmsnorm(float* out, const float* x, const float* weight, int T, int C, float eps) {
  if (T == 0) return;
  NT_LAUNCH(rmsnorm_kernel, T, THREADS)(out, x, weight, C, eps);
  check_launch("rmsnorm");
}

void layernorm(float* out, const float* x, const float* weight, const float* bias, int T, int C, float eps) {
  if (T == 0) return;
  NT_LAUNCH(layernorm_kernel, T, THREADS)(out, x, weight, bias, C, eps);
  check_launch("layernorm");
}

}  // namespace cuda
}  // namespace nextoken
