// elementwise.cpp: activations, residual and bias adds, scaling, soft-capping and embedding lookup,
// CPU, compiled once per ISA.
#include <cmath>

#include "isa_kernels.h"
#include "simd.h"

namespace nextoken {
namespace NT_ISA {
namespace {

// act(x) for one vector. GELU with the tanh approximation, 0.5 x (1 + tanh(u)) with
// u = sqrt(2/pi) (x + 0.044715 x^3), is rewritten x / (1 + e^(-2u)): the same function, one exp and
// no cancellation near 0.
template <Activation A>
inline vfloat act_v(vfloat x) {
  if constexpr (A == Activation::SiLU) {
    return x / (1.0f + expv(-x));
  } else if constexpr (A == Activation::GeluTanh) {
    const vfloat u = x * (splat(0.7978845608028654f) + splat(0.7978845608028654f * 0.044715f) * x * x);
    return x / (1.0f + expv(-2.0f * u));
  } else if constexpr (A == Activation::ReLU) {
    return x > 0.0f ? x : splat(0.0f);
  } else {  // exact GELU: erf has no vector form here
    vfloat y;
    for (int i = 0; i < VL; ++i) y[i] = float(0.5 * double(x[i]) * (1.0 + std::erf(double(x[i]) * 0.7071067811865476)));
    return y;
  }
}

// out (n) = act(x) * (up ? up : 1); tails go through a zero-padded vector, so every element is
// computed by the same code.
template <Activation A>
void apply(float* out, const float* x, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + VL <= n; i += VL) {
    const vfloat y = act_v<A>(loadv(x + i));
    storev(out + i, up ? y * loadv(up + i) : y);
  }
  if (i < n) {
    const int rest = int(n - i);
    const vfloat y = act_v<A>(loadv_partial(x + i, rest));
    float tmp[VL];
    storev(tmp, up ? y * loadv_partial(up + i, rest) : y);
    for (int j = 0; j < rest; ++j) out[i + j] = tmp[j];
  }
}

void apply_any(float* out, const float* x, const float* up, int64_t n, Activation act) {
  switch (act) {
    case Activation::SiLU: return apply<Activation::SiLU>(out, x, up, n);
    case Activation::GeluTanh: return apply<Activation::GeluTanh>(out, x, up, n);
    case Activation::Gelu: return apply<Activation::Gelu>(out, x, up, n);
    case Activation::ReLU: return apply<Activation::ReLU>(out, x, up, n);
  }
}

}  // namespace

void gated_activation(float* out, const float* gate, const float* up, int64_t n, Activation act) {
  apply_any(out, gate, up, n, act);
}

void activation(float* out, const float* x, int64_t n, Activation act) { apply_any(out, x, nullptr, n, act); }

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void add_bias(float* y, const float* bias, int T, int N) {
  for (int t = 0; t < T; ++t) add_inplace(y + size_t(t) * N, bias, N);
}

void scale_inplace(float* x, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void softcap(float* x, float cap, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = float(std::tanh(double(x[i] / cap))) * cap;
}

void embedding(float* out, const int32_t* ids, int T, const void* table, DType type, int C) {
  const size_t rb = row_bytes(type, C);
  for (int t = 0; t < T; ++t)
    dequantize_row(out + size_t(t) * C, static_cast<const uint8_t*>(table) + size_t(ids[t]) * rb, type, C);
}

}  // namespace NT_ISA
}  // namespace nextoken
