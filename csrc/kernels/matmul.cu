// matmul.cu: y = x @ W^T on the GPU for every weight type, float32, the weights decoded on the fly by
// blocks::decode32, the code the CPU uses (so the decoded weights are the reference's, bit for bit).
//
// One warp per (output row, group of up to 8 tokens): lane l takes the row's 32-weight blocks l, l + 32, ...,
// decodes each once for all the group's tokens and adds its 32 products in order; the lanes' sums then meet
// in a fixed butterfly and lane 0 writes. The order of every sum depends on K alone, never on T or on a
// token's place in its group, so decode reproduces prefill bit for bit. A first, plain version: prefill on
// tensor cores (bf16 / f16 tiles) is still to come (issue 12).
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda.h"
#include "weight_blocks.cuh"

namespace nextoken {
namespace cuda {
namespace {

constexpr int WARPS_PER_BLOCK = 4;  // rows per thread block
constexpr int GROUP = 8;            // tokens a warp carries through a row (accumulators per lane)

template <DType TYPE>
__global__ void matmul_kernel(float* y, const float* x, const uint8_t* w, size_t row_bytes, int T, int K, int N) {
  const int lane = threadIdx.x % 32;
  const int n = blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32;
  if (n >= N) return;  // the whole warp: n is the same for its 32 lanes
  const int t0 = blockIdx.y * GROUP, n_tokens = min(GROUP, T - t0);
  const uint8_t* row = w + size_t(n) * row_bytes;
  float acc[GROUP];
#pragma unroll
  for (int t = 0; t < GROUP; ++t) acc[t] = 0.0f;
  const int n_blocks = (K + QK - 1) / QK;
  for (int b = lane; b < n_blocks; b += 32) {
    float wb[QK];
    load_weight_block<TYPE>(wb, row, b, K);
    const int width = min(QK, K - QK * b);
#pragma unroll
    for (int t = 0; t < GROUP; ++t) {
      if (t < n_tokens) {
        const float* xt = x + size_t(t0 + t) * K + size_t(QK) * b;
        float s = acc[t];
#pragma unroll
        for (int j = 0; j < QK; ++j)
          if (j < width) s = fmaf(wb[j], xt[j], s);
        acc[t] = s;
      }
    }
  }
#pragma unroll
  for (int t = 0; t < GROUP; ++t)
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], offset);
  if (lane == 0) {
#pragma unroll
    for (int t = 0; t < GROUP; ++t)
      if (t < n_tokens) y[size_t(t0 + t) * N + n] = acc[t];
  }
}

}  // namespace

void matmul(float* y, const float* x, const void* w, DType w_type, int T, int K, int N) {
  if (T == 0 || N == 0) return;
  constexpr int MOST_TOKENS = 65535 * GROUP;  // token groups go in grid.y, at most 65535 of them a launch
  with_weight_type(w_type, [&](auto type) {
    constexpr DType TYPE = decltype(type)::value;
    for (int t0 = 0; t0 < T; t0 += MOST_TOKENS) {
      const int n = std::min(MOST_TOKENS, T - t0);
      const dim3 grid((N + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK, (n + GROUP - 1) / GROUP);
      NT_LAUNCH(matmul_kernel<TYPE>, grid, 32 * WARPS_PER_BLOCK)(y + size_t(t0) * N, x + size_t(t0) * K,
                                                                 static_cast<const uint8_t*>(w), row_bytes(TYPE, K), n, K, N);
    }
  });
  check_launch("matmul");
}

}  // namespace cuda
}  // namespace nextoken
