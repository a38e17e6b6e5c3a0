// transformer.cpp: see transformer.h.
#include "transformer.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>

#include "../kernels/kernels.h"

namespace nextoken {
namespace {

// One product of project(): y (T, N) = x (T, K) @ W^T (+ bias).
struct Product {
  float* y;
  const Matrix* m;
  const float* bias;
};

// Products that share their input x, on the path each matrix is set up for (fp32, or int8 against
// its packed copy), biases added after.
void project(Workspace& ws, std::initializer_list<Product> outs, const float* x, int T, int K, int n_threads) {
  constexpr int MAX_OUTS = 3;  // at most Q, K and V share an input
  NT_CHECK(outs.size() <= MAX_OUTS, "internal: too many products share one input");
  MatmulOut floats[MAX_OUTS];
  PackedOut packed[MAX_OUTS];
  int n_float = 0, n_packed = 0;
  for (const Product& p : outs) {
    const int N = int(p.m->view.rows);
    if (p.m->packed) packed[n_packed++] = PackedOut{p.y, p.m->packed, packed_bits(p.m->view.type), N};
    else floats[n_float++] = MatmulOut{p.y, p.m->view.data, p.m->view.type, N};
  }
  if (n_float) matmul_multi(floats, n_float, x, T, K, n_threads);
  if (n_packed) {
    quantize_activations(ws.xq.data(), ws.dx.data(), ws.sx.data(), x, T, K, n_threads);
    matmul_int8_multi(packed, n_packed, ws.xq.data(), ws.dx.data(), ws.sx.data(), T, K, n_threads);
  }
  for (const Product& p : outs)
    if (p.bias) add_bias(p.y, p.bias, T, int(p.m->view.rows));
}

// fn(t0, t1) over token ranges, split across the threads when there are enough tokens (prefill).
// For row-wise ops (norms, RoPE, residual adds, activations): results do not depend on the split.
template <class F>
void by_tokens(int T, int n_threads, const F& fn) {
  if (T < 2 * n_threads) return fn(0, T);  // decode: not worth waking the threads
#pragma omp parallel num_threads(n_threads)
  {
    int t0, t1;
    thread_share(T, 1, t0, t1);
    if (t0 < t1) fn(t0, t1);
  }
}

void apply_norm(const ModelConfig& c, const Norm& n, float* out, const float* x, int T) {
  if (c.norm == NormKind::RMS) rmsnorm(out, x, n.weight, T, c.dim, c.norm_eps);
  else layernorm(out, x, n.weight, n.bias, T, c.dim, c.norm_eps);
}

}  // namespace

Transformer::Transformer(const ModelConfig& config, const TensorMap& tensors, int max_positions,
                         ComputeType compute, bool weights_file_mapped, int n_threads)
    : config_(config), weights_(bind_weights(config_, tensors)), max_positions_(max_positions) {
  NT_CHECK(max_positions > 0, "n_ctx must be positive, got " + std::to_string(max_positions));
  NT_CHECK(n_threads > 0, "n_threads must be positive, got " + std::to_string(n_threads));
  if (config_.positions == Positions::Rope) {
    const int half = config_.head_dim / 2;
    for (const std::vector<float>& inv_freq : config_.rope_inv_freq) {
      rope_cos_.emplace_back(size_t(max_positions) * half);
      rope_sin_.emplace_back(size_t(max_positions) * half);
      rope_table(rope_cos_.back().get(), rope_sin_.back().get(), max_positions, half, inv_freq.data());
    }
  }
  if (compute == ComputeType::Int8) pack_matrices(weights_, packed_, weights_file_mapped, n_threads);
}

void Transformer::check_tokens(const int32_t* tokens, int T, int pos0, int capacity) const {
  NT_CHECK(T > 0, "no tokens given");
  NT_CHECK(pos0 >= 0 && int64_t(pos0) + T <= capacity,
           "context overflow: positions " + std::to_string(pos0) + " .. " + std::to_string(int64_t(pos0) + T - 1) +
               " do not fit in n_ctx = " + std::to_string(capacity));
  if (config_.positions == Positions::Learned) {
    const int64_t n_pos = weights_.pos_embd.rows - config_.position_offset;
    NT_CHECK(int64_t(pos0) + T <= n_pos, "positions " + std::to_string(pos0) + " .. " +
                                             std::to_string(int64_t(pos0) + T - 1) + " exceed the model's " +
                                             std::to_string(n_pos) + " learned positions");
  }
  for (int t = 0; t < T; ++t)
    NT_CHECK(tokens[t] >= 0 && tokens[t] < config_.vocab_size,
             "token id " + std::to_string(tokens[t]) + " at index " + std::to_string(t) + " is outside the vocabulary [0, " +
                 std::to_string(config_.vocab_size) + ")");
}

void Transformer::forward(KVCache& cache, Workspace& ws, const int32_t* tokens, int T, int pos0, float* logits,
                          bool all_logits, int n_threads) const {
  for (int t0 = 0; t0 < T; t0 += ws.batch) {
    const int n = std::min(ws.batch, T - t0);
    const bool last_chunk = t0 + n == T;
    float* out = all_logits ? logits + size_t(t0) * config_.vocab_size : last_chunk ? logits : nullptr;
    forward_chunk(cache, ws, tokens + t0, n, pos0 + t0, out, all_logits, n_threads);
  }
  cache.length = pos0 + T;
}

void Transformer::forward_chunk(KVCache& cache, Workspace& ws, const int32_t* tokens, int T, int pos0,
                                float* logits, bool all_logits, int nt) const {
  const ModelConfig& c = config_;
  const int C = c.dim, H = c.n_heads, H_kv = c.n_kv_heads, D = c.head_dim, S = cache.capacity;
  const int q_dim = H * D, kv_dim = H_kv * D, hid = c.hidden_dim;
  const float scale = c.attn_scale > 0.0f ? c.attn_scale : 1.0f / std::sqrt(float(D));
  const bool pre = c.norm_placement != NormPlacement::Post, sandwich = c.norm_placement == NormPlacement::Sandwich;
  float *x = ws.x.get(), *xn = ws.xn.get(), *q = ws.q.get(), *k = ws.k.get(), *v = ws.v.get();
  float *att = ws.att.get(), *gate = ws.gate.get(), *up = ws.up.get();

  embedding(x, tokens, T, weights_.token_embd.data, weights_.token_embd.type, C);
  by_tokens(T, nt, [&](int t0, int t1) {
    float* rows = x + size_t(t0) * C;
    if (c.embed_scale != 1.0f) scale_inplace(rows, c.embed_scale, size_t(t1 - t0) * C);
    if (c.positions == Positions::Learned)
      for (int t = t0; t < t1; ++t) {
        const int32_t row = pos0 + t + c.position_offset;
        float* pe = xn + size_t(t) * C;
        embedding(pe, &row, 1, weights_.pos_embd.data, weights_.pos_embd.type, C);
        add_inplace(x + size_t(t) * C, pe, C);
      }
    // xn holds the normed input of each pre-norm attention sublayer: here for layer 0, for the others
    // with the previous layer's last residual add.
    if (pre) apply_norm(c, weights_.layers[0].attn_norm, xn + size_t(t0) * C, rows, t1 - t0);
  });
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = weights_.layers[l];
    const LayerConfig& lc = c.layers[l];
    float *k_cache = cache.keys(l), *v_cache = cache.values(l);
    // Attention sublayer: x += Wo attn(rope(Wq h), rope(Wk h), Wv h), h the (normed) input
    project(ws, {{q, &w.wq, w.bq}, {k, &w.wk, w.bk}, {v, &w.wv, w.bv}}, pre ? xn : x, T, C, nt);
    by_tokens(T, nt, [&](int t0, int t1) {
      float *qt = q + size_t(t0) * q_dim, *kt = k + size_t(t0) * kv_dim;
      if (c.qk_norm) {
        rmsnorm(qt, qt, w.q_norm, (t1 - t0) * H, D, c.norm_eps);
        rmsnorm(kt, kt, w.k_norm, (t1 - t0) * H_kv, D, c.norm_eps);
      }
      if (c.positions == Positions::Rope) {
        const size_t row = size_t(pos0 + t0) * (D / 2);
        const float *cos = rope_cos_[lc.rope_table].get() + row, *sin = rope_sin_[lc.rope_table].get() + row;
        const bool half = c.rope_layout == RopeLayout::Half;
        rope(qt, cos, sin, t1 - t0, H, D, half);
        rope(kt, cos, sin, t1 - t0, H_kv, D, half);
      }
      for (int t = t0; t < t1; ++t)
        for (int h = 0; h < H_kv; ++h) {
          const size_t src = (size_t(t) * H_kv + h) * D, dst = (size_t(h) * S + pos0 + t) * D;
          std::copy(k + src, k + src + D, k_cache + dst);
          std::copy(v + src, v + src + D, v_cache + dst);
        }
    });
    if (T == 1) attention_decode(att, q, k_cache, v_cache, pos0 + 1, H, H_kv, D, S, scale, lc.sliding_window, nt);
    else attention_prefill(att, q, k_cache, v_cache, T, pos0, H, H_kv, D, S, scale, lc.sliding_window, nt);
    project(ws, {{xn, &w.wo, w.bo}}, att, T, q_dim, nt);
    by_tokens(T, nt, [&](int t0, int t1) {
      float *xt = x + size_t(t0) * C, *ot = xn + size_t(t0) * C;
      if (sandwich) apply_norm(c, w.post_attention_norm, ot, ot, t1 - t0);
      add_inplace(xt, ot, size_t(t1 - t0) * C);
      if (pre) apply_norm(c, w.ffn_norm, ot, xt, t1 - t0);
      else apply_norm(c, w.attn_norm, xt, xt, t1 - t0);
    });
    // Feed-forward sublayer: x += W_down act(W_gate h) * W_up h  (not gated: W_down act(W_up h))
    const float* h = pre ? xn : x;
    if (c.gated) project(ws, {{gate, &w.w_gate, w.b_gate}, {up, &w.w_up, w.b_up}}, h, T, C, nt);
    else project(ws, {{up, &w.w_up, w.b_up}}, h, T, C, nt);
    by_tokens(T, nt, [&](int t0, int t1) {
      const size_t a = size_t(t0) * hid, n = size_t(t1 - t0) * hid;
      if (c.gated) gated_activation(gate + a, gate + a, up + a, n, c.activation);
      else activation(gate + a, up + a, n, c.activation);
    });
    project(ws, {{xn, &w.w_down, w.b_down}}, gate, T, hid, nt);
    const Norm* next_norm = pre && l + 1 < c.n_layers ? &weights_.layers[l + 1].attn_norm : nullptr;
    by_tokens(T, nt, [&](int t0, int t1) {
      float *xt = x + size_t(t0) * C, *ot = xn + size_t(t0) * C;
      if (sandwich) apply_norm(c, w.post_ffw_norm, ot, ot, t1 - t0);
      add_inplace(xt, ot, size_t(t1 - t0) * C);
      if (!pre) apply_norm(c, w.ffn_norm, xt, xt, t1 - t0);
      if (next_norm) apply_norm(c, *next_norm, ot, xt, t1 - t0);
    });
  }
  if (!logits) return;
  const int n_rows = all_logits ? T : 1;
  const float* last = all_logits ? x : x + size_t(T - 1) * C;
  const float* h = last;
  if (weights_.output_norm.weight) {
    apply_norm(c, weights_.output_norm, xn, last, n_rows);
    h = xn;
  }
  project(ws, {{logits, &weights_.output, nullptr}}, h, n_rows, C, nt);
  if (c.final_softcap > 0.0f) softcap(logits, c.final_softcap, size_t(n_rows) * c.vocab_size);
}

}  // namespace nextoken
