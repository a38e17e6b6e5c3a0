// norm.cpp: RMSNorm, CPU.
#include <cmath>

#include "kernels.h"

namespace nextoken {

void rmsnorm(float* out, const float* x, const float* weight, int T, int C, float eps) {
  for (int t = 0; t < T; ++t) {
    const float* xt = x + size_t(t) * C;
    float* ot = out + size_t(t) * C;
    double sum_sq = 0.0;  // in double: C terms, and the result scales the whole row
    for (int c = 0; c < C; ++c) sum_sq += double(xt[c]) * xt[c];
    const float inv_rms = float(1.0 / std::sqrt(sum_sq / C + eps));
    for (int c = 0; c < C; ++c) ot[c] = xt[c] * inv_rms * weight[c];
  }
}

}  // namespace nextoken
