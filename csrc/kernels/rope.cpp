// rope.cpp: rotary position embedding in the GGUF/llama layout (adjacent pairs), CPU.
#include <cmath>

#include "kernels.h"

namespace nextoken {

void rope_table(float* cos, float* sin, int n_pos, int D, float base) {
  const int half = D / 2;
  for (int i = 0; i < half; ++i) {
    // As Hugging Face's LlamaRotaryEmbedding: inv_freq = 1 / base^(2i/D) and angle = p * inv_freq, in fp32.
    const float inv_freq = 1.0f / std::pow(base, float(2 * i) / float(D));
    for (int p = 0; p < n_pos; ++p) {
      const float angle = float(p) * inv_freq;
      cos[size_t(p) * half + i] = float(std::cos(double(angle)));
      sin[size_t(p) * half + i] = float(std::sin(double(angle)));
    }
  }
}

void rope(float* x, const float* cos, const float* sin, int T, int n_heads, int D) {
  const int half = D / 2;
  for (int t = 0; t < T; ++t) {
    const float* c = cos + size_t(t) * half;
    const float* s = sin + size_t(t) * half;
    for (int h = 0; h < n_heads; ++h) {
      float* xh = x + (size_t(t) * n_heads + h) * D;
      for (int i = 0; i < half; ++i) {
        const float x0 = xh[2 * i], x1 = xh[2 * i + 1];
        xh[2 * i] = x0 * c[i] - x1 * s[i];
        xh[2 * i + 1] = x0 * s[i] + x1 * c[i];
      }
    }
  }
}

}  // namespace nextoken
