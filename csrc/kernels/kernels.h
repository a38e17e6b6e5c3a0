// kernels.h: every op of the engine, declared once.
//
// Free functions on raw pointers and explicit sizes, outputs first, no allocation inside. Letters used
// throughout: T = tokens in the call, K = input features, N = output features, C = channels (model dim),
// H = query heads, H_kv = key/value heads, D = head dim, S = cache capacity (positions).
// Ops that take n_threads split work so that every output element is computed by one thread in a fixed
// order: results are bitwise identical for any thread count.
#pragma once

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "../common.h"

namespace nextoken {

// ---- matmul.cpp ----------------------------------------------------------------------------------
// One product y (T, N) = x (T, K) @ W^T, W (N, K) stored row by row in `w_type` (blocks of QK along K).
struct MatmulOut {
  float* y;        // (T, N)
  const void* w;   // (N, K) of w_type
  DType w_type;
  int N;
};
// Several products that share x (Q, K and V; gate and up), computed in one pass over the threads.
// The same per-element reduction serves T = 1 (decode GEMV) and T > 1 (prefill GEMM), so decoding
// reproduces prefill bit for bit.
void matmul_multi(const MatmulOut* outs, int n_outs, const float* x, int T, int K, int n_threads);
inline void matmul(float* y, const float* x, const void* w, DType w_type, int T, int K, int N, int n_threads) {
  const MatmulOut out{y, w, w_type, N};
  matmul_multi(&out, 1, x, T, K, n_threads);
}

// ---- matmul_int8.cpp (compute_type "int8") -----------------------------------------------------------
// Integer dot products, as llama.cpp does them: activations quantized to int8 per 32-block, weights
// repacked once at load. Packed layout, per group of 16 rows and per 32-weight block, one chunk:
//   d[16] (f16), then m[16] (f16) for the types with an offset (Q4_1, Q4_K, Q5_K): w = d[j] * u + m[j] for
//   unsigned codes u; the others (Q4_0, Q5_0, Q8_0, Q6_K) have w = d[j] * (u - z) with z = 2^(bits - 1),
//   and z times the activations' code sum comes off the exact integer sum, so they store no m; Q6_K's
//   int8 scale per 16 weights follows d: sc[2][16], sub-block s (weights 16s .. 16s + 15) of row j at
//   byte 16s + j, and w = d[j] * sc[s][j] * (u - 32), which the integer sum takes in too;
//   codes: 4-bit: 4 x 64 bytes, byte 4j + k of vector p holds u(j, 8p + k) low and u(j, 8p + 4 + k) high;
//          5- and 6-bit: the 4-bit layout of the low 4 bits, then 64 bytes for each higher bit, whose byte
//                 4j + k holds bit g of u(j, 4g + k) in its bit g (Q5_0, Q5_K; Q6_K): 5 or 6 bits per
//                 code, as in the files;
//          8-bit (Q8_0): 8 x 64 bytes, byte 4j + k of vector g is u(j, 4g + k).
// so that one 64-byte vector holds 4 consecutive codes of each of the 16 rows: the shape of VNNI's
// vpdpbusd, which sums 4 u8 x s8 products per int32 lane. Rows past N in the last group are zero.
struct PackedFormat {
  int bits = 0;         // 4, 5, 6 (Q6_K, with its scales per 16 weights) or 8; 0: the type has no packed form
  bool offset = false;  // m stored (w = d u + m), else w = d (u - 2^(bits - 1))
};
// Bytes of one chunk (16 rows x 32 weights): scales, then codes.
constexpr size_t packed_chunk_bytes(PackedFormat f) {
  return 32 * (1 + (f.offset ? 1 : 0) + (f.bits == 6 ? 1 : 0)) + 64 * size_t(f.bits);
}
struct PackedOut {
  float* y;              // (T, N)
  const uint8_t* w;      // pack_weight() output
  PackedFormat format;
  int N;
};
// Bytes pack_weight() writes for a (N, K) weight; 0 when the type has no packed form (F32, F16).
size_t packed_bytes(DType type, int N, int K);
PackedFormat packed_format(DType type);
void pack_weight(uint8_t* out, const void* w, DType type, int N, int K, int n_threads);
// Whether every block scale and offset of a K-quant w fits the packed f16 ones (false for damaged or extreme files).
bool pack_fits(const void* w, DType type, int N, int K);
// xq (T, K) = round(x / dx) per 32-block, dx (T, K/32) = max|x| / 127, sx (T, K/32) = sum of the block's xq.
// dx_sx (T, K/32) = dx * float(sx), which matmul_int8_multi needs per token and block.
void quantize_activations(int8_t* xq, float* dx, int32_t* sx, float* dx_sx, const float* x, int T, int K, int n_threads);
// y_i (T, N_i) = sum over blocks of d dx (u . xq) + m dx sx, or d dx (u . xq - z sx), for outputs that share
// the quantized x.
void matmul_int8_multi(const PackedOut* outs, int n_outs, const int8_t* xq, const float* dx, const int32_t* sx,
                       const float* dx_sx, int T, int K, int n_threads);

// ---- quant.cpp -----------------------------------------------------------------------------------
// out (n,) = the n weights of one stored row, as float.
void dequantize_row(float* out, const void* row, DType type, int64_t n);

// ---- quantize_weights.cpp ------------------------------------------------------------------------
// out (rows, row_bytes(type, cols)) = x (rows, cols) quantized to type (Q8_0, Q4_0 or Q4_K; cols a
// multiple of its block) exactly as llama.cpp's reference quantizers do it. Rows split over threads.
void quantize_rows(void* out, const float* x, int64_t rows, int64_t cols, DType type, int n_threads);

// ---- norm.cpp ------------------------------------------------------------------------------------
// out (T, C) = x / sqrt(mean(x^2) + eps) * weight, row by row; out may alias x.
void rmsnorm(float* out, const float* x, const float* weight, int T, int C, float eps);
// out (T, C) = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias, row by row; out may alias x.
void layernorm(float* out, const float* x, const float* weight, const float* bias, int T, int C, float eps);

// ---- rope.cpp ------------------------------------------------------------------------------------
// cos, sin (n_pos, half): angle (p, i) = p * inv_freq[i] in fp32, as Hugging Face computes it.
void rope_table(float* cos, float* sin, int n_pos, int half, const float* inv_freq);
// x (T, n_heads, D) rotated in place by angle (t, i) of the table (callers pass it offset by the first
// position). Pair i of a head: (x[2i], x[2i+1]) (GGUF's Llama layout), or with half_layout
// (x[i], x[i + D/2]) (Hugging Face's rotate_half; GGUF's NeoX-style models).
void rope(float* x, const float* cos, const float* sin, int T, int n_heads, int D, bool half_layout);

// ---- elementwise.cpp -----------------------------------------------------------------------------
// out (n) = act(gate) * up (SwiGLU with SiLU, GeGLU with GeluTanh); out may alias gate.
void gated_activation(float* out, const float* gate, const float* up, int64_t n, Activation act);
// out (n) = act(x); out may alias x.
void activation(float* out, const float* x, int64_t n, Activation act);
// x (n) += y (n)
void add_inplace(float* x, const float* y, int64_t n);
// y (T, N) += bias (N), row by row
void add_bias(float* y, const float* bias, int T, int N);
// x (n) *= s
void scale_inplace(float* x, float s, int64_t n);
// x (n) = cap * tanh(x / cap)
void softcap(float* x, float cap, int64_t n);
// out (T, C) = rows ids[t] of table (vocab, C); ids must already be checked against vocab.
void embedding(float* out, const int32_t* ids, int T, const void* table, DType type, int C);

// ---- attention.cpp -------------------------------------------------------------------------------
// Attention, fused: softmax(q k^T * scale + bias) v with an online softmax over blocks of keys, never
// forming the score matrix. Query head h reads key/value head h / (H / H_kv).
// A call serves a ragged batch: sequence s has T query rows at positions pos0 .. pos0 + T - 1 over its
// own keys and values k, v: (H_kv, S, D). Causal (n_keys = 0): a query at position p sees keys 0 .. p,
// or with window W > 0 keys p - W + 1 .. p. Otherwise (an encoder, cross-attention) every query sees keys
// 0 .. n_keys - 1. q, out: (sum of T, H, D), the rows of the sequences one after another.
// rel_bias (H, 2 rel_span - 1), or null: an additive bias by relative position (T5): key j, query p get
// rel_bias[h][j - p + rel_span - 1]; |j - p| < rel_span must hold.
// Each row's result depends on its own sequence only (not on the batch or threads).
struct AttentionSeq {
  const void* k;  // elements of kv_type (F32, F16 or BF16)
  const void* v;
  int S;       // positions the k, v rows are laid out for (cache capacity)
  int T;
  int pos0;
  int n_keys;  // 0: causal; > 0: every query sees keys 0 .. n_keys - 1
};
constexpr int MAX_ATTENTION_SEQS = 1024;  // sequences per call
void attention(float* out, const float* q, const AttentionSeq* seqs, int n_seqs, int H, int H_kv, int D, float scale,
               int window, const float* rel_bias, int rel_span, DType kv_type, int n_threads);

// ---- sampling.cpp --------------------------------------------------------------------------------
// Index of the largest logit (the first one on ties).
int argmax(const float* logits, int n);
// Draws a token from softmax(logits / temperature) restricted to the top_k largest (top_k = 0: all)
// and then to the smallest head of that list whose probability reaches top_p (Hugging Face's rule).
// u is a uniform draw in [0, 1). order (n,), probs (n,) are scratch.
int sample_top_k_top_p(const float* logits, int n, float temperature, int top_k, float top_p, float u,
                       int32_t* order, float* probs);

// The logits processors of Hugging Face's generate(), in its order, plus OpenAI's presence and frequency
// penalties (applied beside the repetition penalty, as llama.cpp does). Neutral values switch each off.
struct LogitsParams {
  std::vector<std::pair<int32_t, float>> logit_bias;  // id -> added value
  float repetition_penalty = 1.0f;  // HF: a seen id's logit l -> l / p if l > 0, l * p if l < 0
  float presence_penalty = 0.0f;    // l -= presence * (count > 0) + frequency * count
  float frequency_penalty = 0.0f;
  int no_repeat_ngram_size = 0;     // ban the ids that would repeat an n-gram of the history
  std::vector<std::vector<int32_t>> bad_words_ids;  // ban each one's last id when the history ends with the rest
  float temperature = 1.0f;         // > 0
  int top_k = 0;                    // keep the k largest (and ties with the k-th); 0: off
  float top_p = 1.0f;               // keep the smallest head whose probability exceeds top_p
  float min_p = 0.0f;               // drop ids below min_p x the largest probability
  float typical_p = 1.0f;           // locally typical sampling's mass
};
// Working memory of process_logits, kept by the caller so that a sampler allocates it once, not per token.
struct LogitsScratch {
  std::vector<int> count;
  std::vector<float> probs, values;
  std::vector<int32_t> order;
  std::vector<char> remove;
};
// logits (V) processed in place (removed ids become -inf); history (n) is the prompt and the tokens so far.
void process_logits(float* logits, int V, const int32_t* history, int n, const LogitsParams& p, LogitsScratch& s);
// probs (V) = softmax(logits), -inf giving 0.
void softmax(float* probs, const float* logits, int V);
// Philox4x32-10 (Salmon et al., SC 2011): four random words from a 128-bit counter and a 64-bit key;
// counter-based, so a sequence's draws depend on (seed, step) only, never on what else ran.
void philox4x32_10(uint32_t out[4], const uint32_t counter[4], const uint32_t key[2]);
// The uniform in [0, 1) of draw `step` of a sequence seeded with `seed` (24 bits of Philox's first word).
float uniform_draw(uint64_t seed, uint64_t step);
// log softmax(logits)[token]; top = the k largest (id, log-probability), largest first, ties to the smaller id.
float log_probabilities(const float* logits, int V, int32_t token, int k, std::vector<std::pair<int32_t, float>>& top);

// ---- dispatch.cpp --------------------------------------------------------------------------------
// The instruction set the hot kernels run with: "avx512", "avx2" or "generic".
const char* cpu_isa();

// ---- KV cache rows (quant.cpp's and quantize_weights.cpp's conversions) ---------------------------------
// A head's row of D keys or values stored as `type`: F32, F16, BF16, or Q8_0 (per 32: an f16 scale and 32
// int8, llama.cpp's rounding; D a multiple of 32).
inline size_t kv_row_bytes(DType type, int D) {
  return type == DType::F32 ? size_t(D) * 4 : type == DType::Q8_0 ? size_t(D) / QK * 34 : size_t(D) * 2;
}
inline void store_kv(void* dst, const float* src, int n, DType type) {
  if (type == DType::F32) {
    std::memcpy(dst, src, size_t(n) * 4);
  } else if (type == DType::Q8_0) {
    quantize_rows(dst, src, 1, n, DType::Q8_0, 1);
  } else {
    uint16_t* d = static_cast<uint16_t*>(dst);
    for (int i = 0; i < n; ++i) d[i] = type == DType::F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
  }
}
inline void load_kv(float* dst, const void* src, int n, DType type) {
  if (type == DType::F32) std::memcpy(dst, src, size_t(n) * 4);
  else dequantize_row(dst, src, type, n);
}

}  // namespace nextoken
