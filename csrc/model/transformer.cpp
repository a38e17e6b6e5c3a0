// transformer.cpp: see transformer.h.
#include "transformer.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <string>

#include "../kernels/kernels.h"
#include "../parallel.h"

namespace nextoken {
namespace {

// One product of project(): y (T, N) = x (T, K) @ W^T (+ bias).
struct Product {
  float* y;
  const Matrix* m;
  const float* bias;
};

// Products that share their input x, on the path each matrix is set up for (fp32, or int8 against
// its packed copy; on the GPU, fp32), biases added after.
void project(Workspace& ws, std::initializer_list<Product> outs, const float* x, int T, int K, int n_threads) {
  if (ws.device == Device::CUDA) {
    for (const Product& p : outs) {
      const int N = int(p.m->view.rows);
      cuda::matmul(p.y, x, p.m->view.data, p.m->view.type, T, K, N);
      if (p.bias) cuda::add_bias(p.y, p.bias, T, N);
    }
    return;
  }
  constexpr int MAX_OUTS = 3;  // at most Q, K and V share an input
  NT_CHECK(outs.size() <= MAX_OUTS, "internal: too many products share one input");
  MatmulOut floats[MAX_OUTS];
  PackedOut packed[MAX_OUTS];
  int n_float = 0, n_packed = 0;
  for (const Product& p : outs) {
    const int N = int(p.m->view.rows);
    if (p.m->packed) packed[n_packed++] = PackedOut{p.y, p.m->packed, packed_format(p.m->view.type), N};
    else floats[n_float++] = MatmulOut{p.y, p.m->view.data, p.m->view.type, N};
  }
  if (n_float) matmul_multi(floats, n_float, x, T, K, n_threads);
  if (n_packed) {
    quantize_activations(ws.xq.data(), ws.dx.data(), ws.sx.data(), ws.dx_sx.data(), x, T, K, n_threads);
    matmul_int8_multi(packed, n_packed, ws.xq.data(), ws.dx.data(), ws.sx.data(), ws.dx_sx.data(), T, K, n_threads);
  }
  for (const Product& p : outs)
    if (p.bias) add_bias(p.y, p.bias, T, int(p.m->view.rows));
}

// fn(t0, t1) over token ranges, split across the threads when there are enough tokens (prefill).
// For row-wise ops (norms, RoPE, residual adds, activations): results do not depend on the split.
// On the GPU (n_threads 0) one call for all rows: its kernels spread them over the device.
template <class F>
void by_tokens(int T, int n_threads, const F& fn) {
  if (n_threads == 0 || T < 2 * n_threads) return fn(0, T);  // decode: not worth waking the threads
  parallel_for(T, n_threads, 1, fn);
}

// The row-wise ops forward_batch uses, on the model's device: the CPU kernels or their CUDA twins.
void apply_norm(const ModelConfig& c, const Norm& n, float* out, const float* x, int T) {
  const bool gpu = c.device == Device::CUDA;
  if (c.norm == NormKind::RMS) {
    if (gpu) cuda::rmsnorm(out, x, n.weight, T, c.dim, c.norm_eps);
    else rmsnorm(out, x, n.weight, T, c.dim, c.norm_eps);
  } else if (gpu) {
    cuda::layernorm(out, x, n.weight, n.bias, T, c.dim, c.norm_eps);
  } else {
    layernorm(out, x, n.weight, n.bias, T, c.dim, c.norm_eps);
  }
}
void add_rows(Device d, float* x, const float* y, size_t n) {
  if (d == Device::CUDA) cuda::add_inplace(x, y, int64_t(n));
  else add_inplace(x, y, int64_t(n));
}
void scale_rows(Device d, float* x, float s, size_t n) {
  if (d == Device::CUDA) cuda::scale_inplace(x, s, int64_t(n));
  else scale_inplace(x, s, int64_t(n));
}
void copy_floats(Device d, float* dst, const float* src, size_t n) {
  if (d == Device::CUDA) cuda::copy(dst, src, n * sizeof(float));
  else std::copy(src, src + n, dst);
}

// The tensors as the device needs them: the same views on the CPU; on the GPU, copies made there (kept
// alive by `keep`). Checks first what the GPU path does not run yet.
TensorMap placed(const ModelConfig& c, ComputeType compute, const TensorMap& tensors,
                 std::vector<std::unique_ptr<cuda::Buffer>>& keep) {
  if (c.device == Device::CPU) return tensors;
  NT_CHECK(compute == ComputeType::Float32, "device='cuda' computes in float32: compute_type='int8' runs on the CPU only");
  NT_CHECK(c.kv_type != DType::Q8_0, "device='cuda' keeps the KV cache as f32, f16 or bf16 (not q8_0)");
  NT_CHECK(c.head_dim <= cuda::MAX_HEAD_DIM, "device='cuda' takes head dims up to " + std::to_string(cuda::MAX_HEAD_DIM));
  TensorMap on_device;
  for (const auto& [role, view] : tensors) {
    keep.push_back(std::make_unique<cuda::Buffer>(size_t(view.rows) * row_bytes(view.type, view.cols), view.data));
    on_device[role] = TensorView{view.type, keep.back()->as<void>(), view.rows, view.cols};
  }
  return on_device;
}

}  // namespace

Transformer::Transformer(const ModelConfig& config, const TensorMap& tensors, int max_positions,
                         ComputeType compute, bool weights_file_mapped, int n_threads,
                         const PackedCache& packed_cache)
    : config_(config),
      weights_(bind_weights(config_, placed(config, compute, tensors, device_tensors_))),
      max_positions_(max_positions) {
  NT_CHECK(max_positions > 0, "n_ctx must be positive, got " + std::to_string(max_positions));
  NT_CHECK(n_threads > 0, "n_threads must be positive, got " + std::to_string(n_threads));
  NT_CHECK(config_.relative_span == 0 || max_positions <= config_.relative_span,
           "the relative-position bias table spans fewer positions than n_ctx");
  // One sequence's KV cache at full length must fit in this machine's memory. It is allocated lazily, but a
  // context that could never be filled is a mistake to report now, before the tables sized by it are built.
  const double kv_bytes = 2.0 * config_.n_layers * config_.n_kv_heads *
                          double(kv_row_bytes(config_.kv_type, config_.head_dim)) * max_positions;
  const double memory = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE));
  const auto gib = [](double bytes) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.1f", bytes / double(1 << 30));
    return std::string(text);
  };
  NT_CHECK(memory <= 0 || kv_bytes <= memory,
           "n_ctx = " + std::to_string(max_positions) + " needs " + gib(kv_bytes) + " GiB of KV cache for one sequence, more than the " +
               gib(memory) + " GiB of memory this machine has");
  if (config_.positions == Positions::Rope) {
    const int half = config_.head_dim / 2;
    for (const std::vector<float>& inv_freq : config_.rope_inv_freq) {
      const size_t n = size_t(max_positions) * half;
      FloatBuffer cos(n), sin(n);
      rope_table(cos.get(), sin.get(), max_positions, half, inv_freq.data());
      if (config_.device == Device::CPU) {
        rope_cos_.push_back(std::move(cos));
        rope_sin_.push_back(std::move(sin));
        continue;
      }
      rope_cos_.emplace_back(n, config_.device);
      rope_sin_.emplace_back(n, config_.device);
      cuda::copy(rope_cos_.back().get(), cos.get(), n * sizeof(float));
      cuda::copy(rope_sin_.back().get(), sin.get(), n * sizeof(float));
    }
  }
  if (compute == ComputeType::Int8)
    packed_from_cache_ = pack_matrices(weights_, packed_, weights_file_mapped, n_threads, packed_cache);
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
                          bool all_logits, int n_threads, const KVCache* cross) const {
  cache.length = pos0;
  for (int t0 = 0; t0 < T; t0 += ws.batch) {
    const int n = std::min(ws.batch, T - t0);
    const bool last_pass = t0 + n == T;
    float* out = all_logits ? logits + size_t(t0) * config_.vocab_size : last_pass ? logits : nullptr;
    ForwardChunk chunk{&cache, tokens + t0, n, out, all_logits};
    chunk.cross = cross;
    forward_batch(&chunk, 1, ws, n_threads);
  }
}

void Transformer::forward_batch(const ForwardChunk* chunks, int n_chunks, Workspace& ws, int nt) const {
  const ModelConfig& c = config_;
  const Device dev = c.device;
  const bool gpu = dev == Device::CUDA;
  if (gpu) nt = 0;  // by_tokens: one call for all rows
  const int C = c.dim, H = c.n_heads, H_kv = c.n_kv_heads, D = c.head_dim, V = c.vocab_size;
  const int q_dim = H * D, kv_dim = H_kv * D, hid = c.hidden_dim;
  const float scale = c.attn_scale > 0.0f ? c.attn_scale : 1.0f / std::sqrt(float(D));
  const bool pre = c.norm_placement != NormPlacement::Post, sandwich = c.norm_placement == NormPlacement::Sandwich;
  float *x = ws.x.get(), *xn = ws.xn.get(), *q = ws.q.get(), *k = ws.k.get(), *v = ws.v.get();
  float *att = ws.att.get(), *gate = ws.gate.get(), *up = ws.up.get();

  // Rows of the pass: chunk by chunk; row_pos / row_chunk say where each sits.
  int T = 0;
  for (int i = 0; i < n_chunks; ++i) {
    const ForwardChunk& ch = chunks[i];
    NT_CHECK(ch.T > 0 && T + ch.T <= ws.batch && n_chunks <= int(ws.attention_seqs.size()) &&
                 ch.cache->length + ch.T <= ch.cache->capacity && (ch.cross != nullptr) == c.cross_attention &&
                 (ch.tokens != nullptr || ch.embeddings != nullptr),
             "internal: a forward pass larger than its workspace or cache, or without its inputs");
    if (ch.tokens && gpu) {
      cuda::copy(ws.ids_on_device() + T, ch.tokens, size_t(ch.T) * sizeof(int32_t));
      cuda::embedding(x + size_t(T) * C, ws.ids_on_device() + T, ch.T, weights_.token_embd.data, weights_.token_embd.type, C);
    } else if (ch.tokens) {
      embedding(x + size_t(T) * C, ch.tokens, ch.T, weights_.token_embd.data, weights_.token_embd.type, C);
    } else {
      copy_floats(dev, x + size_t(T) * C, ch.embeddings, size_t(ch.T) * C);
    }
    for (int t = 0; t < ch.T; ++t) {
      ws.row_pos[T + t] = ch.cache->length + t;
      ws.row_chunk[T + t] = i;
    }
    T += ch.T;
  }
  by_tokens(T, nt, [&](int t0, int t1) {
    float* rows = x + size_t(t0) * C;
    if (c.embed_scale != 1.0f) scale_rows(dev, rows, c.embed_scale, size_t(t1 - t0) * C);
    if (c.positions == Positions::Learned && gpu) {  // all rows at once: their positions as ids
      int32_t* ids = ws.row_ids.data();
      for (int t = t0; t < t1; ++t) ids[t - t0] = ws.row_pos[t] + c.position_offset;
      cuda::copy(ws.ids_on_device(), ids, size_t(t1 - t0) * sizeof(int32_t));
      cuda::embedding(xn + size_t(t0) * C, ws.ids_on_device(), t1 - t0, weights_.pos_embd.data, weights_.pos_embd.type, C);
      cuda::add_inplace(rows, xn + size_t(t0) * C, int64_t(t1 - t0) * C);
    } else if (c.positions == Positions::Learned) {
      for (int t = t0; t < t1; ++t) {
        const int32_t row = ws.row_pos[t] + c.position_offset;
        float* pe = xn + size_t(t) * C;
        embedding(pe, &row, 1, weights_.pos_embd.data, weights_.pos_embd.type, C);
        add_inplace(x + size_t(t) * C, pe, C);
      }
    }
    if (c.embed_norm) apply_norm(c, weights_.embd_norm, rows, rows, t1 - t0);
    // xn holds the normed input of each pre-norm attention sublayer: here for layer 0, for the others
    // with the previous layer's last residual add.
    if (pre) apply_norm(c, weights_.layers[0].attn_norm, xn + size_t(t0) * C, rows, t1 - t0);
  });
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = weights_.layers[l];
    const LayerConfig& lc = c.layers[l];
    // Attention sublayer: x += Wo attn(rope(Wq h), rope(Wk h), Wv h), h the (normed) input
    project(ws, {{q, &w.attn.q, w.attn.bq}, {k, &w.attn.k, w.attn.bk}, {v, &w.attn.v, w.attn.bv}}, pre ? xn : x, T, C, nt);
    if (gpu) rope_and_store_on_device(chunks, n_chunks, ws, l);
    else by_tokens(T, nt, [&](int t0, int t1) {
      if (c.qk_norm) {
        rmsnorm(q + size_t(t0) * q_dim, q + size_t(t0) * q_dim, w.q_norm, (t1 - t0) * H, D, c.norm_eps);
        rmsnorm(k + size_t(t0) * kv_dim, k + size_t(t0) * kv_dim, w.k_norm, (t1 - t0) * H_kv, D, c.norm_eps);
      }
      for (int t = t0; t < t1; ++t) {
        float *qt = q + size_t(t) * q_dim, *kt = k + size_t(t) * kv_dim, *vt = v + size_t(t) * kv_dim;
        const int pos = ws.row_pos[t];
        if (c.positions == Positions::Rope) {
          const size_t row = size_t(pos) * (D / 2);
          const float *cos = rope_cos_[lc.rope_table].get() + row, *sin = rope_sin_[lc.rope_table].get() + row;
          const bool half = c.rope_layout == RopeLayout::Half;
          rope(qt, cos, sin, 1, H, D, half);
          rope(kt, cos, sin, 1, H_kv, D, half);
        }
        const KVCache& cache = *chunks[ws.row_chunk[t]].cache;
        for (int h = 0; h < H_kv; ++h) {
          store_kv(cache.row(cache.keys(l), h, pos), kt + size_t(h) * D, D, cache.type);
          store_kv(cache.row(cache.values(l), h, pos), vt + size_t(h) * D, D, cache.type);
        }
      }
    });
    for (int i = 0; i < n_chunks; ++i) {
      const KVCache& cache = *chunks[i].cache;
      const int n_keys = c.causal ? 0 : cache.length + chunks[i].T;  // an encoder: the whole input
      ws.attention_seqs[i] = AttentionSeq{cache.keys(l), cache.values(l), cache.capacity, chunks[i].T, cache.length, n_keys};
    }
    if (gpu)
      cuda::attention(att, q, ws.attention_seqs.data(), n_chunks, H, H_kv, D, scale, lc.sliding_window, weights_.rel_bias,
                      c.relative_span, c.kv_type, ws.scratch(cuda::attention_scratch_floats(ws.attention_seqs.data(), n_chunks, H, D)));
    else
      attention(att, q, ws.attention_seqs.data(), n_chunks, H, H_kv, D, scale, lc.sliding_window, weights_.rel_bias,
                c.relative_span, c.kv_type, nt);
    project(ws, {{xn, &w.attn.o, w.attn.bo}}, att, T, q_dim, nt);
    const Norm& next_pre_norm = c.cross_attention ? w.cross_norm : w.ffn_norm;
    by_tokens(T, nt, [&](int t0, int t1) {
      float *xt = x + size_t(t0) * C, *ot = xn + size_t(t0) * C;
      if (sandwich) apply_norm(c, w.post_attention_norm, ot, ot, t1 - t0);
      add_rows(dev, xt, ot, size_t(t1 - t0) * C);
      if (pre) apply_norm(c, next_pre_norm, ot, xt, t1 - t0);
      else apply_norm(c, w.attn_norm, xt, xt, t1 - t0);
    });
    // Cross-attention sublayer: x += Wo attn(Wq h, K_enc, V_enc), over every encoder state
    if (c.cross_attention) {
      project(ws, {{q, &w.cross.q, w.cross.bq}}, pre ? xn : x, T, C, nt);
      for (int i = 0; i < n_chunks; ++i) {
        const KVCache& cross = *chunks[i].cross;
        ws.attention_seqs[i] = AttentionSeq{cross.keys(l), cross.values(l), cross.capacity, chunks[i].T, 0, cross.length};
      }
      if (gpu)
        cuda::attention(att, q, ws.attention_seqs.data(), n_chunks, H, H_kv, D, scale, 0, nullptr, 0, c.kv_type,
                        ws.scratch(cuda::attention_scratch_floats(ws.attention_seqs.data(), n_chunks, H, D)));
      else
        attention(att, q, ws.attention_seqs.data(), n_chunks, H, H_kv, D, scale, 0, nullptr, 0, c.kv_type, nt);
      project(ws, {{xn, &w.cross.o, w.cross.bo}}, att, T, q_dim, nt);
      by_tokens(T, nt, [&](int t0, int t1) {
        float *xt = x + size_t(t0) * C, *ot = xn + size_t(t0) * C;
        add_rows(dev, xt, ot, size_t(t1 - t0) * C);
        if (pre) apply_norm(c, w.ffn_norm, ot, xt, t1 - t0);
        else apply_norm(c, w.cross_norm, xt, xt, t1 - t0);
      });
    }
    // Feed-forward sublayer: x += W_down act(W_gate h) * W_up h  (not gated: W_down act(W_up h))
    const float* h = pre ? xn : x;
    if (c.gated) project(ws, {{gate, &w.w_gate, w.b_gate}, {up, &w.w_up, w.b_up}}, h, T, C, nt);
    else project(ws, {{up, &w.w_up, w.b_up}}, h, T, C, nt);
    by_tokens(T, nt, [&](int t0, int t1) {
      const size_t a = size_t(t0) * hid, n = size_t(t1 - t0) * hid;
      if (gpu) cuda::activation(gate + a, c.gated ? gate + a : up + a, c.gated ? up + a : nullptr, int64_t(n), c.activation);
      else if (c.gated) gated_activation(gate + a, gate + a, up + a, n, c.activation);
      else activation(gate + a, up + a, n, c.activation);
    });
    project(ws, {{xn, &w.w_down, w.b_down}}, gate, T, hid, nt);
    const Norm* next_norm = pre && l + 1 < c.n_layers ? &weights_.layers[l + 1].attn_norm : nullptr;
    by_tokens(T, nt, [&](int t0, int t1) {
      float *xt = x + size_t(t0) * C, *ot = xn + size_t(t0) * C;
      if (sandwich) apply_norm(c, w.post_ffw_norm, ot, ot, t1 - t0);
      add_rows(dev, xt, ot, size_t(t1 - t0) * C);
      if (!pre) apply_norm(c, w.ffn_norm, xt, xt, t1 - t0);
      if (next_norm) apply_norm(c, *next_norm, ot, xt, t1 - t0);
    });
  }
  // Logits: the rows asked for (each chunk's last, or all of its rows) gathered into xn, normed, and
  // projected by the head; straight into the caller's buffer when one chunk asks. The caches' lengths
  // move on last, once nothing can throw.
  for (int i = 0, row = 0; i < n_chunks; row += chunks[i].T, ++i) {
    const ForwardChunk& ch = chunks[i];
    if (!ch.hidden) continue;
    float* hidden = gpu ? ws.logits_on_device(size_t(ch.T) * C) : ch.hidden;  // staged on the GPU
    if (weights_.output_norm.weight) apply_norm(c, weights_.output_norm, hidden, x + size_t(row) * C, ch.T);
    else copy_floats(dev, hidden, x + size_t(row) * C, size_t(ch.T) * C);
    if (gpu) cuda::copy(ch.hidden, hidden, size_t(ch.T) * C * sizeof(float));
  }
  int n_out = 0;
  for (int i = 0, row = 0; i < n_chunks; row += chunks[i].T, ++i) {
    const ForwardChunk& ch = chunks[i];
    if (!ch.logits) continue;
    const int first = ch.all_logits ? row : row + ch.T - 1, n = ch.all_logits ? ch.T : 1;
    copy_floats(dev, xn + size_t(n_out) * C, x + size_t(first) * C, size_t(n) * C);
    n_out += n;
  }
  const bool direct = n_chunks == 1 && !gpu;  // the head writes the caller's logits (host memory) itself
  if (!direct && !gpu && ws.head.size() < size_t(n_out) * V) ws.head.resize(size_t(n_out) * V);
  for (int i = 0; i < n_chunks; ++i) chunks[i].cache->length += chunks[i].T;
  if (n_out == 0) return;
  if (weights_.output_norm.weight) apply_norm(c, weights_.output_norm, xn, xn, n_out);
  if (c.head_scale != 1.0f) scale_rows(dev, xn, c.head_scale, size_t(n_out) * C);
  float* out = direct ? chunks[0].logits : gpu ? ws.logits_on_device(size_t(n_out) * V) : ws.head.data();
  project(ws, {{out, &weights_.output, weights_.output_bias}}, xn, n_out, C, nt);
  if (c.final_softcap > 0.0f) {
    if (gpu) cuda::softcap(out, c.final_softcap, int64_t(n_out) * V);
    else softcap(out, c.final_softcap, size_t(n_out) * V);
  }
  if (direct) return;
  for (int i = 0, row = 0; i < n_chunks; ++i) {  // into each caller's logits (from the GPU: its only copy back)
    const ForwardChunk& ch = chunks[i];
    if (!ch.logits) continue;
    const int n = ch.all_logits ? ch.T : 1;
    if (gpu) cuda::copy(ch.logits, out + size_t(row) * V, size_t(n) * V * sizeof(float));
    else std::copy(out + size_t(row) * V, out + size_t(row + n) * V, ch.logits);
    row += n;
  }
}

void Transformer::rope_and_store_on_device(const ForwardChunk* chunks, int n_chunks, Workspace& ws, int l) const {
  const ModelConfig& c = config_;
  const LayerWeights& w = weights_.layers[l];
  const int H = c.n_heads, H_kv = c.n_kv_heads, D = c.head_dim, q_dim = H * D, kv_dim = H_kv * D;
  float *q = ws.q.get(), *k = ws.k.get(), *v = ws.v.get();
  int T = 0;
  for (int i = 0; i < n_chunks; ++i) T += chunks[i].T;
  if (c.qk_norm) {
    cuda::rmsnorm(q, q, w.q_norm, T * H, D, c.norm_eps);
    cuda::rmsnorm(k, k, w.k_norm, T * H_kv, D, c.norm_eps);
  }
  for (int i = 0, row = 0; i < n_chunks; row += chunks[i].T, ++i) {
    const KVCache& cache = *chunks[i].cache;
    const int n = chunks[i].T, pos0 = cache.length;
    float *qc = q + size_t(row) * q_dim, *kc = k + size_t(row) * kv_dim, *vc = v + size_t(row) * kv_dim;
    if (c.positions == Positions::Rope) {
      const size_t at = size_t(pos0) * (D / 2);
      const int table = c.layers[l].rope_table;
      const float *cos = rope_cos_[table].get() + at, *sin = rope_sin_[table].get() + at;
      const bool half = c.rope_layout == RopeLayout::Half;
      cuda::rope(qc, cos, sin, n, H, D, half);
      cuda::rope(kc, cos, sin, n, H_kv, D, half);
    }
    for (int h = 0; h < H_kv; ++h) {
      cuda::store_kv_rows(cache.row(cache.keys(l), h, pos0), kc + size_t(h) * D, n, kv_dim, D, cache.type);
      cuda::store_kv_rows(cache.row(cache.values(l), h, pos0), vc + size_t(h) * D, n, kv_dim, D, cache.type);
    }
  }
}

void Transformer::rerotate_keys(KVCache& cache, int from, int to, int delta) const {
  const ModelConfig& c = config_;
  if (c.positions != Positions::Rope || delta == 0) return;
  const int half = c.head_dim / 2;
  const bool gpu = cache.device == Device::CUDA;
  // A GPU cache's keys are rotated on the CPU (a rare operation): each head's rows [from, to), which lie
  // one after another, go down and back up in one copy each.
  std::vector<uint8_t> staged(gpu ? size_t(to - from) * cache.row_bytes : 0);
  std::vector<float> cos(half), sin(half), key(c.head_dim);
  for (int l = 0; l < c.n_layers; ++l) {
    const int table = c.layers[l].rope_table;
    const size_t at = size_t(delta) * half;
    copy_floats(c.device, cos.data(), rope_cos_[table].get() + at, size_t(half));  // tables on the model's device
    copy_floats(c.device, sin.data(), rope_sin_[table].get() + at, size_t(half));
    for (int i = 0; i < half; ++i) sin[i] = -sin[i];  // the angle of -delta: cos is even, sin odd
    for (int h = 0; h < c.n_kv_heads; ++h) {
      uint8_t* first = cache.row(cache.keys(l), h, from);
      uint8_t* rows = gpu ? staged.data() : first;
      if (gpu) cuda::copy(rows, first, staged.size());
      for (int p = from; p < to; ++p) {
        uint8_t* row = rows + size_t(p - from) * cache.row_bytes;
        load_kv(key.data(), row, c.head_dim, cache.type);
        rope(key.data(), cos.data(), sin.data(), 1, 1, c.head_dim, c.rope_layout == RopeLayout::Half);
        store_kv(row, key.data(), c.head_dim, cache.type);
      }
      if (gpu) cuda::copy(first, rows, staged.size());
    }
  }
}

void Transformer::encode(const int32_t* tokens, const float* embeddings, int T, float* hidden, int n_threads) const {
  NT_CHECK(!config_.causal, "internal: encode() needs an encoder (causal = false)");
  KVCache cache(config_, T);  // every position attends to every other: the whole input in one pass
  Workspace ws(config_, T);
  ForwardChunk chunk{&cache, tokens, T, nullptr, false};
  chunk.embeddings = embeddings;
  chunk.hidden = hidden;
  forward_batch(&chunk, 1, ws, n_threads);
}

std::unique_ptr<KVCache> Transformer::cross_cache(const float* states, int S, int n_threads) const {
  const ModelConfig& c = config_;
  NT_CHECK(c.cross_attention, "internal: cross_cache() needs a cross-attention decoder");
  const int D = c.head_dim, H_kv = c.n_kv_heads, kv_dim = H_kv * D;
  auto cache = std::make_unique<KVCache>(c, S);
  Workspace ws(c, std::min(S, 512));
  const bool gpu = c.device == Device::CUDA;
  std::unique_ptr<FloatBuffer> on_device;  // the states, on the GPU
  if (gpu) {
    on_device = std::make_unique<FloatBuffer>(size_t(S) * c.dim, c.device);
    cuda::copy(on_device->get(), states, size_t(S) * c.dim * sizeof(float));
    states = on_device->get();
  }
  for (int s0 = 0; s0 < S; s0 += ws.batch) {
    const int n = std::min(ws.batch, S - s0);
    for (int l = 0; l < c.n_layers; ++l) {
      const LayerWeights& w = weights_.layers[l];
      project(ws, {{ws.k.get(), &w.cross.k, w.cross.bk}, {ws.v.get(), &w.cross.v, w.cross.bv}}, states + size_t(s0) * c.dim, n, c.dim, n_threads);
      if (gpu) {  // each head's n rows go to consecutive positions
        for (int h = 0; h < H_kv; ++h) {
          cuda::store_kv_rows(cache->row(cache->keys(l), h, s0), ws.k.get() + size_t(h) * D, n, kv_dim, D, cache->type);
          cuda::store_kv_rows(cache->row(cache->values(l), h, s0), ws.v.get() + size_t(h) * D, n, kv_dim, D, cache->type);
        }
        continue;
      }
      for (int t = 0; t < n; ++t)  // (n, H_kv, D) rows into the (H_kv, S, D) layout
        for (int h = 0; h < H_kv; ++h) {
          const size_t src = size_t(t) * kv_dim + size_t(h) * D;
          store_kv(cache->row(cache->keys(l), h, s0 + t), ws.k.get() + src, D, cache->type);
          store_kv(cache->row(cache->values(l), h, s0 + t), ws.v.get() + src, D, cache->type);
        }
    }
  }
  cache->length = S;
  return cache;
}

}  // namespace nextoken
