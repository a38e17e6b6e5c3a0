// rope.cu: rotary position embedding on the GPU, one thread per rotated pair (rope.cpp's pairs and table).
#include <cuda_runtime.h>

#include "cuda.h"

namespace nextoken {
namespace cuda {
namespace {

__global__ void rope_kernel(float* x, const float* cos, const float* sin, int T, int n_heads, int D, bool half_layout) {
  const int half = D / 2;
  const size_t pair = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (pair >= size_t(T) * n_heads * half) return;
  const int i = int(pair % half);
  const size_t head_row = pair / half;  // t * n_heads + h
  const size_t t = head_row / n_heads;
  float* a = x + head_row * D + (half_layout ? i : 2 * i);
  float* b = a + (half_layout ? half : 1);
  const float c = cos[t * half + i], s = sin[t * half + i], x0 = *a, x1 = *b;
  *a = x0 * c - x1 * s;
  *b = x0 * s + x1 * c;
}

}  // namespace

void rope(float* x, const float* cos, const float* sin, int T, int n_heads, int D, bool half_layout) {
  const size_t pairs = size_t(T) * n_heads * (D / 2);
  if (pairs == 0) return;
  NT_LAUNCH(rope_kernel, unsigned((pairs + 255) / 256), 256)(x, cos, sin, T, n_heads, D, half_layout);
  check_launch("rope");
}

}  // namespace cuda
}  // namespace nextoken
