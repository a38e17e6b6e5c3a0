// rope.cpp: rotary position embedding, CPU, in both pair layouts (kernels.h).
#include <cmath>

#include "kernels.h"

namespace nextoken {

void rope_table(float* cos, float* sin, int n_pos, int half, const float* inv_freq) {
  for (int i = 0; i < half; ++i)
    for (int p = 0; p < n_pos; ++p) {
      // As Hugging Face: angle = p * inv_freq in fp32, then its cosine and sine (here through double,
      // so the only rounding is the final one).
      const float angle = float(p) * inv_freq[i];
      cos[size_t(p) * half + i] = float(std::cos(double(angle)));
      sin[size_t(p) * half + i] = float(std::sin(double(angle)));
    }
}

void rope(float* x, const float* cos, const float* sin, int T, int n_heads, int D, bool half_layout) {
  const int half = D / 2;
  // Pair i of a head is (x[i], x[i + D/2]) in the half layout, (x[2i], x[2i+1]) in the adjacent one.
  const int first_step = half_layout ? 1 : 2, second = half_layout ? half : 1;
  for (int t = 0; t < T; ++t) {
    const float* c = cos + size_t(t) * half;
    const float* s = sin + size_t(t) * half;
    for (int h = 0; h < n_heads; ++h) {
      float* xh = x + (size_t(t) * n_heads + h) * D;
      for (int i = 0; i < half; ++i) {
        float* a = xh + i * first_step;
        float* b = a + second;
        const float x0 = *a, x1 = *b;
        *a = x0 * c[i] - x1 * s[i];
        *b = x0 * s[i] + x1 * c[i];
      }
    }
  }
}

}  // namespace nextoken
