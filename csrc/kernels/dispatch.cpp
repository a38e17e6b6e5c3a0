// dispatch.cpp: the one place that picks an instruction set. The per-ISA kernels (isa_kernels.h) are
// built as avx512 (x86-64-v4 + VNNI), avx2 (x86-64-v3) and generic (the compiler's baseline); the CPU is asked
// once which it can run. On non-x86 builds only the generic variant exists.
#include <cstdlib>
#include <cstring>

#define NT_ISA generic
#include "isa_kernels.h"
#undef NT_ISA
#ifdef NT_X86_VARIANTS
#define NT_ISA avx2
#include "isa_kernels.h"
#undef NT_ISA
#define NT_ISA avx512
#include "isa_kernels.h"
#undef NT_ISA
#endif

namespace nextoken {
namespace {

enum class Isa { generic, avx2, avx512 };

// NEXTOKEN_ISA=generic|avx2 forces a lower variant (for testing the portable paths on a fast CPU).
Isa detect_isa() {
  Isa best = Isa::generic;
#ifdef NT_X86_VARIANTS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    best = Isa::avx2;
  if (best == Isa::avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512vnni"))
    best = Isa::avx512;
#endif
  const char* forced = std::getenv("NEXTOKEN_ISA");
  if (forced && std::strcmp(forced, "generic") == 0) return Isa::generic;
  if (forced && std::strcmp(forced, "avx2") == 0 && best == Isa::avx512) return Isa::avx2;
  return best;
}

Isa isa() {
  static const Isa chosen = detect_isa();
  return chosen;
}

}  // namespace

#ifdef NT_X86_VARIANTS
#define NT_DISPATCH(fn, ...)                                           \
  switch (isa()) {                                                     \
    case Isa::avx512: return avx512::fn(__VA_ARGS__);                  \
    case Isa::avx2: return avx2::fn(__VA_ARGS__);                      \
    case Isa::generic: break;                                          \
  }                                                                    \
  return generic::fn(__VA_ARGS__)
#else
#define NT_DISPATCH(fn, ...) return generic::fn(__VA_ARGS__)
#endif

const char* cpu_isa() {
  switch (isa()) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::generic: break;
  }
  return "generic";
}

void matmul_multi(const MatmulOut* outs, int n_outs, const float* x, int T, int K, int n_threads) {
  NT_DISPATCH(matmul_multi, outs, n_outs, x, T, K, n_threads);
}
void quantize_activations(int8_t* xq, float* dx, int32_t* sx, float* dx_sx, const float* x, int T, int K, int n_threads) {
  NT_DISPATCH(quantize_activations, xq, dx, sx, dx_sx, x, T, K, n_threads);
}
void matmul_int8_multi(const PackedOut* outs, int n_outs, const int8_t* xq, const float* dx, const int32_t* sx,
                       const float* dx_sx, int T, int K, int n_threads) {
  NT_DISPATCH(matmul_int8_multi, outs, n_outs, xq, dx, sx, dx_sx, T, K, n_threads);
}
void gated_activation(float* out, const float* gate, const float* up, int64_t n, Activation act) {
  NT_DISPATCH(gated_activation, out, gate, up, n, act);
}
void activation(float* out, const float* x, int64_t n, Activation act) { NT_DISPATCH(activation, out, x, n, act); }
void add_inplace(float* x, const float* y, int64_t n) { NT_DISPATCH(add_inplace, x, y, n); }
void add_bias(float* y, const float* bias, int T, int N) { NT_DISPATCH(add_bias, y, bias, T, N); }
void scale_inplace(float* x, float s, int64_t n) { NT_DISPATCH(scale_inplace, x, s, n); }
void softcap(float* x, float cap, int64_t n) { NT_DISPATCH(softcap, x, cap, n); }
void embedding(float* out, const int32_t* ids, int T, const void* table, DType type, int C) {
  NT_DISPATCH(embedding, out, ids, T, table, type, C);
}
void attention(float* out, const float* q, const AttentionSeq* seqs, int n_seqs, int H, int H_kv, int D, float scale,
               int window, const float* rel_bias, int rel_span, DType kv_type, int n_threads) {
  NT_CHECK(n_seqs <= MAX_ATTENTION_SEQS, "internal: too many sequences in one attention call");
  NT_DISPATCH(attention, out, q, seqs, n_seqs, H, H_kv, D, scale, window, rel_bias, rel_span, kv_type, n_threads);
}

}  // namespace nextoken
