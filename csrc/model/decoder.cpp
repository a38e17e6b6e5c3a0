// decoder.cpp: see decoder.h.
#include "decoder.h"

#include <algorithm>
#include <cmath>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "../kernels/kernels.h"

namespace nextoken {
namespace {

constexpr int PREFILL_BATCH = 512;  // tokens per prefill chunk: bounds the workspace

std::string shape_str(int64_t rows, int64_t cols) {
  return "(" + std::to_string(rows) + ", " + std::to_string(cols) + ")";
}

const TensorView& find(const TensorMap& tensors, const std::string& name) {
  auto it = tensors.find(name);
  NT_CHECK(it != tensors.end(), "the model file has no tensor '" + name + "'");
  return it->second;
}

// A weight matrix (rows, cols) of any supported type.
TensorView matrix_view(const TensorMap& tensors, const std::string& name, int64_t rows, int64_t cols) {
  const TensorView& t = find(tensors, name);
  NT_CHECK(t.rows == rows && t.cols == cols, "tensor '" + name + "' has shape " + shape_str(t.rows, t.cols) +
                                                 ", expected " + shape_str(rows, cols));
  NT_CHECK(!dtype_is_blocked(t.type) || cols % QK == 0,
           "tensor '" + name + "' is " + dtype_name(t.type) + " but its rows are not whole blocks");
  return t;
}

// A norm weight (n) stored as F32.
const float* vector(const TensorMap& tensors, const std::string& name, int64_t n) {
  const TensorView& t = find(tensors, name);
  NT_CHECK(t.type == DType::F32, "tensor '" + name + "' must be F32, got " + dtype_name(t.type));
  NT_CHECK(t.rows * t.cols == n, "tensor '" + name + "' has " + std::to_string(t.rows * t.cols) +
                                     " elements, expected " + std::to_string(n));
  return static_cast<const float*>(t.data);
}

LlamaWeights bind_weights(const LlamaConfig& c, const TensorMap& tensors) {
  const int q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  LlamaWeights w;
  w.token_embd = matrix_view(tensors, "token_embd.weight", c.vocab_size, c.dim);
  w.output_norm = vector(tensors, "output_norm.weight", c.dim);
  w.output.view = tensors.count("output.weight") ? matrix_view(tensors, "output.weight", c.vocab_size, c.dim) : w.token_embd;
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LlamaLayer l;
    l.attn_norm = vector(tensors, p + "attn_norm.weight", c.dim);
    l.ffn_norm = vector(tensors, p + "ffn_norm.weight", c.dim);
    l.wq.view = matrix_view(tensors, p + "attn_q.weight", q_dim, c.dim);
    l.wk.view = matrix_view(tensors, p + "attn_k.weight", kv_dim, c.dim);
    l.wv.view = matrix_view(tensors, p + "attn_v.weight", kv_dim, c.dim);
    l.wo.view = matrix_view(tensors, p + "attn_output.weight", c.dim, q_dim);
    l.w_gate.view = matrix_view(tensors, p + "ffn_gate.weight", c.hidden_dim, c.dim);
    l.w_up.view = matrix_view(tensors, p + "ffn_up.weight", c.hidden_dim, c.dim);
    l.w_down.view = matrix_view(tensors, p + "ffn_down.weight", c.dim, c.hidden_dim);
    w.layers.push_back(l);
  }
  return w;
}

// Drops the whole pages of [p, p + n) from this process's resident set. Only for read-only file
// mappings: their pages come back from the page cache if touched again (the embedding table, tied to
// the output matrix, is still read a row per token). On anonymous memory this would zero the data.
void release_pages(const void* p, size_t n) {
#if defined(__linux__)
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (uintptr_t(p) + page - 1) / page * page, end = (uintptr_t(p) + n) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // advice: failure is harmless
#else
  (void)p;
  (void)n;
#endif
}

const LlamaConfig& checked(const LlamaConfig& c) {
  NT_CHECK(c.n_layers > 0 && c.dim > 0 && c.hidden_dim > 0 && c.vocab_size > 0, "model sizes must be positive");
  NT_CHECK(c.n_heads > 0 && c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0,
           "n_heads (" + std::to_string(c.n_heads) + ") must be a multiple of n_kv_heads (" +
               std::to_string(c.n_kv_heads) + ")");
  NT_CHECK(c.head_dim % 16 == 0 && c.head_dim <= 256,
           "head_dim must be a multiple of 16 and at most 256, got " + std::to_string(c.head_dim));
  return c;
}

int checked_ctx(int n_ctx) {
  NT_CHECK(n_ctx > 0, "n_ctx must be positive, got " + std::to_string(n_ctx));
  return n_ctx;
}

}  // namespace

LlamaModel::LlamaModel(const LlamaConfig& config, const TensorMap& tensors, int n_ctx, int n_threads,
                       ComputeType compute, bool weights_file_mapped)
    : config_(checked(config)),
      weights_(bind_weights(config_, tensors)),
      n_threads_(1),
      cache_(config_, checked_ctx(n_ctx)),
      workspace_(config_, std::min(n_ctx, PREFILL_BATCH)),
      rope_cos_(size_t(n_ctx) * config_.head_dim / 2),
      rope_sin_(size_t(n_ctx) * config_.head_dim / 2),
      release_file_pages_(weights_file_mapped) {
  set_n_threads(n_threads);
  rope_table(rope_cos_.get(), rope_sin_.get(), n_ctx, config_.head_dim, config_.rope_base);
  if (compute == ComputeType::Int8) pack_matrices();
}

void LlamaModel::pack_matrices() {
  std::vector<Matrix*> all{&weights_.output};
  for (LlamaLayer& l : weights_.layers)
    for (Matrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) all.push_back(m);
  std::vector<size_t> offsets;
  size_t total = 0;
  for (Matrix* m : all) {
    offsets.push_back(total);
    total += packed_bytes(m->view.type, int(m->view.rows), int(m->view.cols));
  }
  packed_ = PackedBuffer(total);
  for (size_t i = 0; i < all.size(); ++i) {
    const TensorView& v = all[i]->view;
    if (!packed_bits(v.type)) continue;  // F32 / F16 weights keep the fp32 path
    pack_weight(packed_.get() + offsets[i], v.data, v.type, int(v.rows), int(v.cols), n_threads_);
    all[i]->packed = packed_.get() + offsets[i];
    if (release_file_pages_) release_pages(v.data, v.rows * row_bytes(v.type, v.cols));
  }
}

void LlamaModel::project(std::initializer_list<std::pair<float*, const Matrix*>> outs, const float* x, int T, int K) {
  MatmulOut floats[3];  // at most Q, K and V share an input
  PackedOut packed[3];
  int n_float = 0, n_packed = 0;
  for (const auto& [y, m] : outs) {
    const int N = int(m->view.rows);
    if (m->packed) packed[n_packed++] = PackedOut{y, m->packed, packed_bits(m->view.type), N};
    else floats[n_float++] = MatmulOut{y, m->view.data, m->view.type, N};
  }
  if (n_float) matmul_multi(floats, n_float, x, T, K, n_threads_);
  if (n_packed) {
    Workspace& ws = workspace_;
    quantize_activations(ws.xq.data(), ws.dx.data(), ws.sx.data(), x, T, K, n_threads_);
    matmul_int8_multi(packed, n_packed, ws.xq.data(), ws.dx.data(), ws.sx.data(), T, K, n_threads_);
  }
}

template <class F>
void LlamaModel::by_tokens(int T, const F& fn) const {
  if (T < 2 * n_threads_) return fn(0, T);  // decode: not worth waking the threads
#pragma omp parallel num_threads(n_threads_)
  {
    int t0, t1;
    thread_share(T, 1, t0, t1);
    if (t0 < t1) fn(t0, t1);
  }
}

void LlamaModel::set_n_threads(int n) {
  NT_CHECK(n > 0, "n_threads must be positive, got " + std::to_string(n));
  std::lock_guard<std::mutex> lock(busy_);
  n_threads_ = n;
}

void LlamaModel::check_tokens(const int32_t* tokens, int T, int pos0) const {
  NT_CHECK(T > 0, "no tokens given");
  NT_CHECK(pos0 >= 0 && int64_t(pos0) + T <= n_ctx(),
           "context overflow: positions " + std::to_string(pos0) + " .. " + std::to_string(int64_t(pos0) + T - 1) +
               " do not fit in n_ctx = " + std::to_string(n_ctx()));
  for (int t = 0; t < T; ++t)
    NT_CHECK(tokens[t] >= 0 && tokens[t] < config_.vocab_size,
             "token id " + std::to_string(tokens[t]) + " at index " + std::to_string(t) + " is outside the vocabulary [0, " +
                 std::to_string(config_.vocab_size) + ")");
}

void LlamaModel::forward(const int32_t* tokens, int T, int pos0, float* logits, bool all_logits) {
  std::lock_guard<std::mutex> lock(busy_);
  ++cache_owner_;
  run(tokens, T, pos0, logits, all_logits);
}

void LlamaModel::run(const int32_t* tokens, int T, int pos0, float* logits, bool all_logits) {
  check_tokens(tokens, T, pos0);
  for (int t0 = 0; t0 < T; t0 += workspace_.batch) {
    const int n = std::min(workspace_.batch, T - t0);
    const bool last_chunk = t0 + n == T;
    if (all_logits) forward_chunk(tokens + t0, n, pos0 + t0, logits + size_t(t0) * config_.vocab_size, true);
    else forward_chunk(tokens + t0, n, pos0 + t0, last_chunk ? logits : nullptr, false);
  }
}

void LlamaModel::forward_chunk(const int32_t* tokens, int T, int pos0, float* logits, bool all_logits) {
  const LlamaConfig& c = config_;
  const int C = c.dim, H = c.n_heads, H_kv = c.n_kv_heads, D = c.head_dim, S = cache_.capacity;
  const int q_dim = H * D, kv_dim = H_kv * D, nt = n_threads_;
  const float scale = 1.0f / std::sqrt(float(D));
  Workspace& ws = workspace_;
  float *x = ws.x.get(), *xn = ws.xn.get(), *q = ws.q.get(), *k = ws.k.get(), *v = ws.v.get();
  float *att = ws.att.get(), *gate = ws.gate.get(), *up = ws.up.get();
  const float* cos = rope_cos_.get() + size_t(pos0) * (D / 2);
  const float* sin = rope_sin_.get() + size_t(pos0) * (D / 2);

  embedding(x, tokens, T, weights_.token_embd.data, weights_.token_embd.type, C);
  // xn holds the normed input of each attention sublayer: here for layer 0, for the others with the
  // previous layer's last residual add.
  by_tokens(T, [&](int t0, int t1) {
    rmsnorm(xn + size_t(t0) * C, x + size_t(t0) * C, weights_.layers[0].attn_norm, t1 - t0, C, c.norm_eps);
  });
  for (int l = 0; l < c.n_layers; ++l) {
    const LlamaLayer& w = weights_.layers[l];
    float *k_cache = cache_.keys(l), *v_cache = cache_.values(l);
    // Attention sublayer: x += Wo attn(rope(Wq n(x)), rope(Wk n(x)), Wv n(x))
    project({{q, &w.wq}, {k, &w.wk}, {v, &w.wv}}, xn, T, C);
    by_tokens(T, [&](int t0, int t1) {
      rope(q + size_t(t0) * q_dim, cos + size_t(t0) * (D / 2), sin + size_t(t0) * (D / 2), t1 - t0, H, D);
      rope(k + size_t(t0) * kv_dim, cos + size_t(t0) * (D / 2), sin + size_t(t0) * (D / 2), t1 - t0, H_kv, D);
      for (int t = t0; t < t1; ++t)
        for (int h = 0; h < H_kv; ++h) {
          const size_t src = (size_t(t) * H_kv + h) * D, dst = (size_t(h) * S + pos0 + t) * D;
          std::copy(k + src, k + src + D, k_cache + dst);
          std::copy(v + src, v + src + D, v_cache + dst);
        }
    });
    if (T == 1) attention_decode(att, q, k_cache, v_cache, pos0 + 1, H, H_kv, D, S, scale, nt);
    else attention_prefill(att, q, k_cache, v_cache, T, pos0, H, H_kv, D, S, scale, nt);
    project({{xn, &w.wo}}, att, T, q_dim);
    by_tokens(T, [&](int t0, int t1) {
      add_inplace(x + size_t(t0) * C, xn + size_t(t0) * C, size_t(t1 - t0) * C);
      rmsnorm(xn + size_t(t0) * C, x + size_t(t0) * C, w.ffn_norm, t1 - t0, C, c.norm_eps);
    });
    // Feed-forward sublayer: x += W_down (silu(W_gate n(x)) * W_up n(x))
    project({{gate, &w.w_gate}, {up, &w.w_up}}, xn, T, C);
    by_tokens(T, [&](int t0, int t1) {
      const size_t a = size_t(t0) * c.hidden_dim;
      swiglu(gate + a, gate + a, up + a, size_t(t1 - t0) * c.hidden_dim);
    });
    project({{xn, &w.w_down}}, gate, T, c.hidden_dim);
    const float* next_norm = l + 1 < c.n_layers ? weights_.layers[l + 1].attn_norm : nullptr;
    by_tokens(T, [&](int t0, int t1) {
      add_inplace(x + size_t(t0) * C, xn + size_t(t0) * C, size_t(t1 - t0) * C);
      if (next_norm) rmsnorm(xn + size_t(t0) * C, x + size_t(t0) * C, next_norm, t1 - t0, C, c.norm_eps);
    });
  }
  if (!logits) return;
  if (all_logits) {
    rmsnorm(xn, x, weights_.output_norm, T, C, c.norm_eps);
    project({{logits, &weights_.output}}, xn, T, C);
  } else {
    rmsnorm(xn, x + size_t(T - 1) * C, weights_.output_norm, 1, C, c.norm_eps);
    project({{logits, &weights_.output}}, xn, 1, C);
  }
}

Generation::Generation(LlamaModel& model, std::vector<int32_t> prompt, const GenerateOptions& options)
    : model_(model),
      prompt_(std::move(prompt)),
      options_(options),
      sampler_(model.config().vocab_size, options.sampling) {
  const int n_prompt = int(prompt_.size());
  NT_CHECK(n_prompt > 0, "the prompt is empty");
  NT_CHECK(options.max_new_tokens >= 0, "max_new_tokens must be >= 0, got " + std::to_string(options.max_new_tokens));
  NT_CHECK(options.min_new_tokens >= 0, "min_new_tokens must be >= 0, got " + std::to_string(options.min_new_tokens));
  NT_CHECK(int64_t(n_prompt) + options.max_new_tokens <= model.n_ctx(),
           "context overflow: a prompt of " + std::to_string(n_prompt) + " tokens plus max_new_tokens = " +
               std::to_string(options.max_new_tokens) + " exceeds n_ctx = " + std::to_string(model.n_ctx()));
  for (int32_t id : options.eos_ids)
    NT_CHECK(id >= 0 && id < model.config().vocab_size, "EOS id " + std::to_string(id) + " is outside the vocabulary");
  model.check_tokens(prompt_.data(), n_prompt, 0);
  done_ = options.max_new_tokens == 0;
  std::lock_guard<std::mutex> lock(model.busy_);
  owner_id_ = ++model.cache_owner_;
}

int32_t Generation::next() {
  if (done_) return -1;
  std::lock_guard<std::mutex> lock(model_.busy_);
  NT_CHECK(model_.cache_owner_ == owner_id_,
           "this generation was interrupted: the model ran another forward() or generation since it started");
  float* logits = model_.workspace_.logits.get();
  const int n_prompt = int(prompt_.size());
  if (n_generated_ == 0) model_.run(prompt_.data(), n_prompt, 0, logits, false);
  else model_.forward_chunk(&last_token_, 1, n_prompt + n_generated_ - 1, logits, false);
  if (n_generated_ < options_.min_new_tokens)
    for (int32_t id : options_.eos_ids) logits[id] = -INFINITY;
  last_token_ = sampler_.sample(logits);
  ++n_generated_;
  const auto& eos = options_.eos_ids;
  done_ = n_generated_ == options_.max_new_tokens || std::find(eos.begin(), eos.end(), last_token_) != eos.end();
  return last_token_;
}

}  // namespace nextoken
