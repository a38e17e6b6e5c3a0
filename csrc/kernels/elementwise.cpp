// elementwise.cpp: SwiGLU, residual add and embedding lookup, CPU, compiled once per ISA.
#include "isa_kernels.h"
#include "simd.h"

namespace nextoken {
namespace NT_ISA {

void swiglu(float* out, const float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + VL <= n; i += VL) {
    const vfloat g = loadv(gate + i);
    storev(out + i, g / (1.0f + expv(-g)) * loadv(up + i));
  }
  for (; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void embedding(float* out, const int32_t* ids, int T, const void* table, DType type, int C) {
  const size_t rb = row_bytes(type, C);
  for (int t = 0; t < T; ++t)
    dequantize_row(out + size_t(t) * C, static_cast<const uint8_t*>(table) + size_t(ids[t]) * rb, type, C);
}

}  // namespace NT_ISA
}  // namespace nextoken
