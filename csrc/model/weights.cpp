// weights.cpp: checking a config and binding weights to their roles; repacking for int8 compute.
#include "weights.h"

#include <cmath>
#include <set>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "../kernels/kernels.h"

namespace nextoken {
namespace {

std::string shape_str(int64_t rows, int64_t cols) {
  return "(" + std::to_string(rows) + ", " + std::to_string(cols) + ")";
}

// Looks roles up and remembers which were used, so that a role the config does not use is an error
// rather than silently ignored.
class Roles {
 public:
  explicit Roles(const TensorMap& tensors) : tensors_(tensors) {}

  const TensorView* find(const std::string& role) {
    auto it = tensors_.find(role);
    if (it == tensors_.end()) return nullptr;
    used_.insert(role);
    return &it->second;
  }
  const TensorView& require(const std::string& role) {
    const TensorView* t = find(role);
    NT_CHECK(t, "the model has no weight for '" + role + "'");
    return *t;
  }
  // A (rows, cols) matrix of any supported type; an empty view when optional and absent.
  TensorView matrix(const std::string& role, int64_t rows, int64_t cols, bool required = true) {
    const TensorView* t = required ? &require(role) : find(role);
    if (!t) return TensorView{};
    NT_CHECK(t->rows == rows && t->cols == cols, "weight '" + role + "' has shape " + shape_str(t->rows, t->cols) +
                                                     ", expected " + shape_str(rows, cols));
    NT_CHECK(!dtype_is_blocked(t->type) || cols % dtype_block(t->type) == 0,
             "weight '" + role + "' is " + dtype_name(t->type) + " but its rows are not whole blocks");
    return *t;
  }
  // An F32 vector of n elements (norm weights, biases); nullptr when optional and absent.
  const float* vector(const std::string& role, int64_t n, bool required = true) {
    const TensorView* t = required ? &require(role) : find(role);
    if (!t) return nullptr;
    NT_CHECK(t->type == DType::F32, "weight '" + role + "' must be F32, got " + dtype_name(t->type));
    NT_CHECK(t->rows * t->cols == n, "weight '" + role + "' has " + std::to_string(t->rows * t->cols) +
                                         " elements, expected " + std::to_string(n));
    return static_cast<const float*>(t->data);
  }
  Norm norm(const ModelConfig& c, const std::string& role, bool required = true) {
    Norm n;
    n.weight = vector(role, c.dim, required);
    if (n.weight && c.norm == NormKind::Layer) n.bias = vector(role + ".bias", c.dim);
    return n;
  }
  // prefix + q, k, v, output [+ .bias each] of one attention sublayer.
  AttentionWeights attention(const std::string& prefix, int q_dim, int kv_dim, int dim) {
    AttentionWeights a;
    a.q.view = matrix(prefix + "q", q_dim, dim);
    a.k.view = matrix(prefix + "k", kv_dim, dim);
    a.v.view = matrix(prefix + "v", kv_dim, dim);
    a.o.view = matrix(prefix + "output", dim, q_dim);
    a.bq = vector(prefix + "q.bias", q_dim, false);
    a.bk = vector(prefix + "k.bias", kv_dim, false);
    a.bv = vector(prefix + "v.bias", kv_dim, false);
    a.bo = vector(prefix + "output.bias", dim, false);
    return a;
  }
  void check_all_used() const {
    for (const auto& [role, view] : tensors_)
      NT_CHECK(used_.count(role), "weight '" + role + "' is not used by this model's configuration");
  }

 private:
  const TensorMap& tensors_;
  std::set<std::string> used_;
};

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

}  // namespace

void check_config(const ModelConfig& c) {
  NT_CHECK(c.n_layers > 0 && c.dim > 0 && c.hidden_dim > 0 && c.vocab_size > 0, "model sizes must be positive");
  NT_CHECK(c.n_heads > 0 && c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0,
           "n_heads (" + std::to_string(c.n_heads) + ") must be a multiple of n_kv_heads (" +
               std::to_string(c.n_kv_heads) + ")");
  NT_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0 && c.head_dim <= 256,
           "head_dim must be even and at most 256, got " + std::to_string(c.head_dim));
  NT_CHECK(std::isfinite(c.norm_eps) && c.norm_eps > 0.0f, "norm_eps must be positive, got " + std::to_string(c.norm_eps));
  NT_CHECK(std::isfinite(c.attn_scale) && c.attn_scale >= 0.0f, "attn_scale must be finite and >= 0");
  NT_CHECK(std::isfinite(c.embed_scale), "embed_scale must be finite");
  NT_CHECK(std::isfinite(c.final_softcap) && c.final_softcap >= 0.0f, "final_softcap must be finite and >= 0");
  NT_CHECK(int(c.layers.size()) == c.n_layers, "the config describes " + std::to_string(c.layers.size()) +
                                                   " layers, expected n_layers = " + std::to_string(c.n_layers));
  NT_CHECK(c.position_offset >= 0, "position_offset must be >= 0");
  NT_CHECK(c.relative_span >= 0, "relative_span must be >= 0");
  NT_CHECK(c.kv_type != DType::Q8_0 || c.head_dim % 32 == 0,
           "kv_cache 'q8_0' needs a head dim that is a multiple of 32, got " + std::to_string(c.head_dim));
  NT_CHECK(std::isfinite(c.head_scale), "head_scale must be finite");
  NT_CHECK(!c.cross_attention || (c.causal && c.norm_placement != NormPlacement::Sandwich),
           "cross-attention needs a causal decoder with pre or post norms");
  if (c.positions == Positions::Rope) {
    NT_CHECK(!c.rope_inv_freq.empty(), "a RoPE model needs at least one table of inverse frequencies");
    for (const auto& table : c.rope_inv_freq) {
      NT_CHECK(int(table.size()) == c.head_dim / 2, "a RoPE table must have head_dim / 2 inverse frequencies");
      for (float f : table) NT_CHECK(std::isfinite(f) && f >= 0.0f, "RoPE inverse frequencies must be finite and >= 0");
    }
  }
  for (int i = 0; i < c.n_layers; ++i) {
    const LayerConfig& l = c.layers[i];
    NT_CHECK(l.sliding_window >= 0, "layer " + std::to_string(i) + ": sliding_window must be >= 0");
    NT_CHECK(c.positions != Positions::Rope || (l.rope_table >= 0 && l.rope_table < int(c.rope_inv_freq.size())),
             "layer " + std::to_string(i) + ": no RoPE table " + std::to_string(l.rope_table));
  }
}

ModelWeights bind_weights(const ModelConfig& c, const TensorMap& tensors) {
  check_config(c);
  const int q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  const bool sandwich = c.norm_placement == NormPlacement::Sandwich;
  Roles roles(tensors);
  ModelWeights w;
  w.token_embd = roles.matrix("token_embd", c.vocab_size, c.dim);
  if (c.positions == Positions::Learned) {
    w.pos_embd = roles.matrix("pos_embd", roles.require("pos_embd").rows, c.dim);
    NT_CHECK(w.pos_embd.rows > c.position_offset, "weight 'pos_embd' has no row past position_offset");
  }
  w.output_norm = roles.norm(c, "output_norm", c.norm_placement != NormPlacement::Post);
  w.output.view = roles.matrix("output", c.vocab_size, c.dim, false);
  w.output_bias = roles.vector("output.bias", c.vocab_size, false);
  if (c.embed_norm) w.embd_norm = roles.norm(c, "embd_norm");
  if (c.relative_span > 0) w.rel_bias = roles.vector("attn_rel_bias", int64_t(c.n_heads) * (2 * c.relative_span - 1));
  if (!w.output.present()) w.output.view = w.token_embd;
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights l;
    l.attn_norm = roles.norm(c, p + "attn_norm");
    l.ffn_norm = roles.norm(c, p + "ffn_norm");
    if (sandwich) {
      l.post_attention_norm = roles.norm(c, p + "post_attention_norm");
      l.post_ffw_norm = roles.norm(c, p + "post_ffw_norm");
    }
    l.attn = roles.attention(p + "attn_", q_dim, kv_dim, c.dim);
    if (c.qk_norm) {
      l.q_norm = roles.vector(p + "attn_q_norm", c.head_dim);
      l.k_norm = roles.vector(p + "attn_k_norm", c.head_dim);
    }
    if (c.gated) {
      l.w_gate.view = roles.matrix(p + "ffn_gate", c.hidden_dim, c.dim);
      l.b_gate = roles.vector(p + "ffn_gate.bias", c.hidden_dim, false);
    }
    l.w_up.view = roles.matrix(p + "ffn_up", c.hidden_dim, c.dim);
    l.w_down.view = roles.matrix(p + "ffn_down", c.dim, c.hidden_dim);
    l.b_up = roles.vector(p + "ffn_up.bias", c.hidden_dim, false);
    l.b_down = roles.vector(p + "ffn_down.bias", c.dim, false);
    if (c.cross_attention) {
      l.cross_norm = roles.norm(c, p + "cross_attn_norm");
      l.cross = roles.attention(p + "cross_attn_", q_dim, kv_dim, c.dim);
    }
    w.layers.push_back(l);
  }
  roles.check_all_used();
  return w;
}

bool pack_matrices(ModelWeights& w, PackedBuffer& buffer, bool file_mapped, int n_threads, const PackedCache& cache) {
  std::vector<Matrix*> all{&w.output};
  for (LayerWeights& l : w.layers)
    for (Matrix* m : {&l.attn.q, &l.attn.k, &l.attn.v, &l.attn.o, &l.w_gate, &l.w_up, &l.w_down, &l.cross.q, &l.cross.k,
                      &l.cross.v, &l.cross.o})
      if (m->present()) all.push_back(m);
  std::vector<size_t> offsets;
  size_t total = 0;
  for (Matrix* m : all) {
    offsets.push_back(total);
    total += packed_bytes(m->view.type, int(m->view.rows), int(m->view.cols));
  }
  // The layout's version and the matrices' shapes belong to the key: a cache made by another engine or
  // for other shapes is not this model's.
  PackedCache keyed = cache;
  keyed.key += "\npacked layout 3";
  for (Matrix* m : all)
    keyed.key += " " + std::to_string(int(m->view.type)) + ":" + std::to_string(m->view.rows) + "x" + std::to_string(m->view.cols);
  if (read_packed_cache(keyed, total, buffer)) {
    for (size_t i = 0; i < all.size(); ++i)
      if (packed_format(all[i]->view.type).bits) all[i]->packed = buffer.get() + offsets[i];
    return true;
  }
  buffer = PackedBuffer(total);
  for (size_t i = 0; i < all.size(); ++i) {
    const TensorView& v = all[i]->view;
    if (!packed_format(v.type).bits) continue;  // other types keep the fp32 path
    NT_CHECK(pack_fits(v.data, v.type, int(v.rows), int(v.cols)),
             std::string("a ") + dtype_name(v.type) + " weight has a block scale too large for compute_type 'int8' "
             "(its packed offset would overflow f16); use compute_type 'float32'");
    pack_weight(buffer.get() + offsets[i], v.data, v.type, int(v.rows), int(v.cols), n_threads);
    all[i]->packed = buffer.get() + offsets[i];
    if (file_mapped) release_pages(v.data, v.rows * row_bytes(v.type, v.cols));
  }
  write_packed_cache(keyed, buffer.get(), total);
  return false;
}

}  // namespace nextoken
