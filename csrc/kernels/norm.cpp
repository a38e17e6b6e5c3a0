// norm.cpp: RMSNorm and LayerNorm, CPU. Row statistics in double: C terms, and the result scales
// the whole row.
#include <cmath>

#include "kernels.h"

namespace nextoken {

void rmsnorm(float* out, const float* x, const float* weight, int T, int C, float eps) {
  for (int t = 0; t < T; ++t) {
    const float* xt = x + size_t(t) * C;
    float* ot = out + size_t(t) * C;
    double sum_sq = 0.0;
    for (int c = 0; c < C; ++c) sum_sq += double(xt[c]) * xt[c];
    const float inv_rms = float(1.0 / std::sqrt(sum_sq / C + eps));
    for (int c = 0; c < C; ++c) ot[c] = xt[c] * inv_rms * weight[c];
  }
}

void layernorm(float* out, const float* x, const float* weight, const float* bias, int T, int C, float eps) {
  for (int t = 0; t < T; ++t) {
    const float* xt = x + size_t(t) * C;
    float* ot = out + size_t(t) * C;
    double sum = 0.0;
    for (int c = 0; c < C; ++c) sum += xt[c];
    const double mean = sum / C;
    double sum_sq = 0.0;  // around the mean: no cancellation
    for (int c = 0; c < C; ++c) sum_sq += (xt[c] - mean) * (xt[c] - mean);
    const float inv_std = float(1.0 / std::sqrt(sum_sq / C + eps)), mean_f = float(mean);
    for (int c = 0; c < C; ++c) ot[c] = (xt[c] - mean_f) * inv_std * weight[c] + bias[c];
  }
}

}  // namespace nextoken
