// isa_kernels.h: the kernels compiled once per instruction set (their files build with -DNT_ISA=avx512,
// avx2 or generic and matching compiler flags). dispatch.cpp includes this once per ISA and forwards the
// public entry points of kernels.h to the variant the CPU supports. No include guard on purpose.
#include "kernels.h"

#ifndef NT_ISA
#error "define NT_ISA before including isa_kernels.h"
#endif

namespace nextoken {
namespace NT_ISA {
void matmul_multi(const MatmulOut* outs, int n_outs, const float* x, int T, int K, int n_threads);
void quantize_activations(int8_t* xq, float* dx, int32_t* sx, float* dx_sx, const float* x, int T, int K, int n_threads);
void matmul_int8_multi(const PackedOut* outs, int n_outs, const int8_t* xq, const float* dx, const int32_t* sx,
                       const float* dx_sx, int T, int K, int n_threads);
void gated_activation(float* out, const float* gate, const float* up, int64_t n, Activation act);
void activation(float* out, const float* x, int64_t n, Activation act);
void add_inplace(float* x, const float* y, int64_t n);
void add_bias(float* y, const float* bias, int T, int N);
void scale_inplace(float* x, float s, int64_t n);
void softcap(float* x, float cap, int64_t n);
void embedding(float* out, const int32_t* ids, int T, const void* table, DType type, int C);
void attention(float* out, const float* q, const AttentionSeq* seqs, int n_seqs, int H, int H_kv, int D, float scale,
               int window, const float* rel_bias, int rel_span, DType kv_type, int n_threads);
}  // namespace NT_ISA
}  // namespace nextoken
