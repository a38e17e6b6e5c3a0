// hf_models.cpp: see hf_models.h.
#include "hf_models.h"

#include "hf_config.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace nextoken {

namespace {

ModelConfig hf_base_config(int n_layers) {
  ModelConfig c = base_config(n_layers);
  c.rope_layout = RopeLayout::Half;  // Hugging Face rotates the halves of each head (rotate_half)
  return c;
}

void set_windows(ModelConfig& c, const std::vector<int>& windows) {
  for (size_t i = 0; i < windows.size(); ++i) c.layers[i].sliding_window = windows[i];
}

// The output matrix: its own tensor, or none where the embeddings are tied (transformers 5 stores a tied
// weight once).
void tied_head(WeightCollector& w, const HFConfig& c, const std::string& name = "lm_head.weight") {
  if (w.has(name)) w.matrix("output", name);
  else if (!c.truthy("tie_word_embeddings", true))
    throw Error(c.source() + ": tie_word_embeddings is false but the weights have no '" + name + "'");
}

std::string layer_hint(const std::string& type, int n_layers) {
  return " (a " + type + " model of " + std::to_string(n_layers) + " layers)";
}

// The first layer's q projection must have n_heads * head_dim rows: checked before RoPE tables are sized by
// head_dim (the core checks every weight's shape later).
void check_head_dim(const WeightCollector& w, const std::string& q_proj, int n_heads, int head_dim) {
  const TensorView* q = w.find(q_proj);
  if (q && q->rows != int64_t(n_heads) * head_dim)
    throw Error(w.source() + ": '" + q_proj + "' has " + std::to_string(q->rows) + " rows, not num_attention_heads x "
                "head_dim = " + std::to_string(int64_t(n_heads) * head_dim));
}

void map_llama(WeightCollector& w, const HFConfig& c, const std::string& model_type, const std::string& folder) {
  const int n_layers = c.positive_int("num_hidden_layers"), dim = c.positive_int("hidden_size");
  const int n_heads = c.positive_int("num_attention_heads");
  const int head_dim = c.positive_int("head_dim", dim / n_heads);
  check_head_dim(w, "model.layers.0.self_attn.q_proj.weight", n_heads, head_dim);
  std::vector<bool> sliding(size_t(n_layers), false);
  if (model_type == "mistral") {
    sliding.assign(size_t(n_layers), c.truthy("sliding_window"));
  } else if (model_type == "qwen2") {
    const int first = c.truthy("use_sliding_window") ? c.positive_int("max_window_layers", n_layers) : n_layers;
    for (int i = first; i < n_layers; ++i) sliding[size_t(i)] = true;
  }
  ModelConfig m = hf_base_config(n_layers);
  m.dim = dim;
  m.n_heads = n_heads;
  m.head_dim = head_dim;
  m.hidden_dim = c.positive_int("intermediate_size");
  m.n_kv_heads = c.positive_int("num_key_value_heads", n_heads);
  m.vocab_size = c.positive_int("vocab_size");
  m.norm_eps = float(c.positive_float("rms_norm_eps", 1e-6));
  m.activation = c.activation("hidden_act");
  set_windows(m, c.sliding_windows(c.sliding_layers(n_layers, sliding)));
  m.rope_inv_freq = {c.rope_inv_freq(head_dim)};
  w.spec.config = m;
  w.spec.rope_parameters = {c.rope_parameters()};
  w.spec.context_length = c.context_length("max_position_embeddings", folder);

  static const std::pair<const char*, const char*> layer[] = {
      {"attn_norm", "input_layernorm"}, {"ffn_norm", "post_attention_layernorm"}, {"attn_q", "self_attn.q_proj"},
      {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"}, {"attn_output", "self_attn.o_proj"},
      {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"}, {"ffn_down", "mlp.down_proj"}};
  w.matrix("token_embd", "model.embed_tokens.weight");
  w.vector("output_norm", "model.norm.weight");
  tied_head(w, c);
  for (int i = 0; i < n_layers; ++i)
    for (const auto& [role, name] : layer)
      w.layer("blk." + std::to_string(i) + "." + role, "model.layers." + std::to_string(i) + "." + name);
  w.check_all_taken(layer_hint(model_type, n_layers));
}

// The (cols, rows) transpose of an F32 / F16 / BF16 matrix (GPT-2's Conv1D stores [in, out]), kept in `w`.
TensorView transposed(WeightCollector& w, const TensorView& t) {
  const size_t item = t.type == DType::F32 ? 4 : 2;
  std::vector<uint8_t> out(size_t(t.rows * t.cols) * item);
  const auto* in = static_cast<const uint8_t*>(t.data);
  for (int64_t r = 0; r < t.rows; ++r)
    for (int64_t c = 0; c < t.cols; ++c)
      std::memcpy(&out[size_t(c * t.rows + r) * item], in + size_t(r * t.cols + c) * item, item);
  return TensorView{t.type, w.keep(std::move(out)), t.cols, t.rows};
}

// The split of a fused projection's rows (GPT-2's c_attn: q, k, v) into `roles`, `dim` rows each, with the
// matching thirds of its bias `bias_name`.
void split_projection(WeightCollector& w, const std::string& b, const std::vector<const char*>& roles,
                      const std::string& h, const std::string& name, int dim, const std::string& folder) {
  const int64_t n = int64_t(roles.size()) * dim;
  const TensorView fused = transposed(w, *w.take(h + name + ".weight"));
  if (fused.rows != n)
    throw Error(folder + ": '" + h + name + ".weight' has " + std::to_string(fused.rows) + " outputs, expected " +
                std::to_string(n));
  const TensorView bias = *w.take(h + name + ".bias");
  if (bias.rows * bias.cols != n)  // split below: a bias of dim values per role
    throw Error(folder + ": '" + h + name + ".bias' has " + std::to_string(bias.rows * bias.cols) +
                " values, expected " + std::to_string(n));
  const size_t row_bytes = size_t(fused.cols) * (fused.type == DType::F32 ? 4 : 2);
  const size_t bias_bytes = size_t(dim) * (bias.type == DType::F32 ? 4 : 2);
  for (size_t j = 0; j < roles.size(); ++j) {
    w.spec.tensors[b + roles[j]] =
        TensorView{fused.type, static_cast<const uint8_t*>(fused.data) + j * size_t(dim) * row_bytes, dim, fused.cols};
    w.vector(b + roles[j] + ".bias", h + name + ".bias",
             TensorView{bias.type, static_cast<const uint8_t*>(bias.data) + j * bias_bytes, 1, dim});
  }
}

// GPT-2's embeddings, blocks and final norm under `p` ("transformer.", or "decoder.transformer." in a vision
// encoder-decoder, whose blocks add a cross-attention: ln_cross_attn, q_attn from the decoder, c_attn giving
// k and v of the encoder's states, c_proj). Its Conv1D weights are stored [in, out]: transposed (a copy).
void gpt2_blocks(WeightCollector& w, const std::string& p, int n_layers, int dim, bool cross, const std::string& folder) {
  w.matrix("token_embd", p + "wte.weight");
  w.matrix("pos_embd", p + "wpe.weight");
  w.vector("output_norm", p + "ln_f.weight");
  w.vector("output_norm.bias", p + "ln_f.bias");
  for (int i = 0; i < n_layers; ++i) {
    const std::string h = p + "h." + std::to_string(i) + ".", b = "blk." + std::to_string(i) + ".";
    std::vector<std::pair<const char*, const char*>> norms = {{"attn_norm", "ln_1"}, {"ffn_norm", "ln_2"}};
    if (cross) norms.insert(norms.begin() + 1, {"cross_attn_norm", "ln_cross_attn"});
    for (const auto& [role, name] : norms) {
      w.vector(b + role, h + name + ".weight");
      w.vector(b + role + ".bias", h + name + ".bias");
    }
    split_projection(w, b, {"attn_q", "attn_k", "attn_v"}, h, "attn.c_attn", dim, folder);
    std::vector<std::pair<const char*, const char*>> projections = {
        {"attn_output", "attn.c_proj"}, {"ffn_up", "mlp.c_fc"}, {"ffn_down", "mlp.c_proj"}};
    if (cross) {
      split_projection(w, b, {"cross_attn_k", "cross_attn_v"}, h, "crossattention.c_attn", dim, folder);
      projections.push_back({"cross_attn_q", "crossattention.q_attn"});
      projections.push_back({"cross_attn_output", "crossattention.c_proj"});
    }
    for (const auto& [role, name] : projections) {
      w.spec.tensors[b + role] = transposed(w, *w.take(h + name + ".weight"));
      w.vector(b + role + ".bias", h + name + ".bias");
    }
    for (const char* buffer : {"attn.bias", "attn.masked_bias", "crossattention.bias", "crossattention.masked_bias"})
      w.take(h + buffer, false);  // causal-mask buffers of old checkpoints: not weights
  }
}

ModelConfig gpt2_config(const HFConfig& c) {
  const int n_layers = c.positive_int("n_layer"), dim = c.positive_int("n_embd"), n_heads = c.positive_int("n_head");
  if (c.truthy("scale_attn_by_inverse_layer_idx"))
    throw Error(c.source() + ": scale_attn_by_inverse_layer_idx is not supported");
  ModelConfig m = hf_base_config(n_layers);
  m.dim = dim;
  m.n_heads = m.n_kv_heads = n_heads;
  m.head_dim = dim / n_heads;
  m.hidden_dim = c.positive_int("n_inner", int64_t(4) * dim);
  m.vocab_size = c.positive_int("vocab_size");
  m.norm = NormKind::Layer;
  m.norm_eps = float(c.positive_float("layer_norm_epsilon", 1e-5));
  m.activation = c.activation("activation_function");
  m.gated = false;
  m.positions = Positions::Learned;
  m.attn_scale = c.truthy("scale_attn_weights", true) ? 0.0f : 1.0f;
  return m;
}

void map_gpt2(WeightCollector& w, const HFConfig& c, const std::string& folder) {
  w.spec.config = gpt2_config(c);
  const int n_layers = w.spec.config.n_layers, dim = w.spec.config.dim;
  w.spec.context_length = c.context_length("n_positions", folder);

  const std::string p = w.has("transformer.wte.weight") ? "transformer." : "";
  tied_head(w, c);
  gpt2_blocks(w, p, n_layers, dim, false, folder);
  w.check_all_taken(layer_hint("gpt2", n_layers));
}

void map_gemma3(WeightCollector& w, const HFConfig& top, const std::string& folder) {
  const bool wrapper = top.require("model_type").text == "gemma3";  // the multimodal wrapper: its text model only
  JSON empty;
  empty.kind = JSON::Kind::Object;
  const JSON* text = wrapper ? top.get("text_config") : nullptr;
  JSON values = wrapper ? (nextoken::truthy(text) ? *text : empty) : top.values();
  const std::string prefix = wrapper ? "model.language_model." : "model.";
  if (!values.find("rope_parameters") || values.find("rope_parameters")->is_null()) {
    // transformers 4: rope_local_base_freq for the sliding layers, rope_theta (+ scaling) for the others
    const HFConfig c4(values, top.source());
    JSON local, both;
    local.kind = both.kind = JSON::Kind::Object;
    json_set(local, "rope_type", json_string("default"));
    const JSON* base = c4.get("rope_local_base_freq");
    json_set(local, "rope_theta", base ? *base : json_number(10000.0));
    json_set(both, "sliding_attention", local);
    json_set(both, "full_attention", c4.rope_parameters());
    json_set(values, "rope_parameters", both);
  }
  const HFConfig c(values, top.source());
  if (c.truthy("attn_logit_softcapping")) throw Error(c.source() + ": attn_logit_softcapping is not supported");
  const int n_layers = c.positive_int("num_hidden_layers"), dim = c.positive_int("hidden_size");
  const int n_heads = c.positive_int("num_attention_heads");
  const int head_dim = c.positive_int("head_dim", 256);
  check_head_dim(w, prefix + "layers.0.self_attn.q_proj.weight", n_heads, head_dim);
  const int pattern = c.positive_int("sliding_window_pattern", 6);  // every 6th layer global by default
  std::vector<bool> sliding(static_cast<size_t>(n_layers));
  for (int i = 0; i < n_layers; ++i) sliding[size_t(i)] = (i + 1) % pattern != 0;
  sliding = c.sliding_layers(n_layers, sliding);
  ModelConfig m = hf_base_config(n_layers);
  m.dim = dim;
  m.n_heads = n_heads;
  m.head_dim = head_dim;
  m.n_kv_heads = c.positive_int("num_key_value_heads", n_heads);
  m.hidden_dim = c.positive_int("intermediate_size");
  m.vocab_size = c.positive_int("vocab_size");
  m.norm_eps = float(c.positive_float("rms_norm_eps", 1e-6));
  const double query_scalar = c.positive_float("query_pre_attn_scalar", double(head_dim));
  const std::vector<int> windows = c.sliding_windows(sliding);
  m.rope_inv_freq = {c.rope_inv_freq(head_dim, "sliding_attention"), c.rope_inv_freq(head_dim, "full_attention")};
  m.final_softcap = c.truthy("final_logit_softcapping") ? float(c.positive_float("final_logit_softcapping")) : 0.0f;
  if (c.activation("hidden_activation") != Activation::GeluTanh)
    throw Error(c.source() + ": Gemma 3 with hidden_activation '" + c.require("hidden_activation").text +
                "' is not supported");
  m.norm_placement = NormPlacement::Sandwich;
  m.activation = Activation::GeluTanh;
  m.qk_norm = true;
  m.attn_scale = float(std::pow(query_scalar, -0.5));
  m.embed_scale = float(std::sqrt(double(dim)));
  for (int i = 0; i < n_layers; ++i) m.layers[size_t(i)] = LayerConfig{windows[size_t(i)], windows[size_t(i)] ? 0 : 1};
  w.spec.config = m;
  w.spec.architecture = "gemma3";
  w.spec.rope_parameters = {c.rope_parameters("sliding_attention"), c.rope_parameters("full_attention")};
  w.spec.context_length = c.context_length("max_position_embeddings", folder);

  static const std::pair<const char*, const char*> layer[] = {
      {"attn_norm", "input_layernorm"}, {"post_attention_norm", "post_attention_layernorm"},
      {"ffn_norm", "pre_feedforward_layernorm"}, {"post_ffw_norm", "post_feedforward_layernorm"},
      {"attn_q_norm", "self_attn.q_norm"}, {"attn_k_norm", "self_attn.k_norm"}, {"attn_q", "self_attn.q_proj"},
      {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"}, {"attn_output", "self_attn.o_proj"},
      {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"}, {"ffn_down", "mlp.down_proj"}};
  w.matrix("token_embd", prefix + "embed_tokens.weight");
  w.vector("output_norm", prefix + "norm.weight", true, 1.0f);  // Gemma multiplies by 1 + w
  tied_head(w, top);
  for (int i = 0; i < n_layers; ++i)
    for (const auto& [role, name] : layer)
      w.layer("blk." + std::to_string(i) + "." + role, prefix + "layers." + std::to_string(i) + "." + name, 1.0f);
  w.check_all_taken(layer_hint("gemma3", n_layers));
}

// ---- encoder-decoder models: one WeightCollector takes both stacks' weights (the encoder's roles under
// "enc."), so that a tensor neither takes is reported; split_encoder then moves those into spec.encoder.

// `base` as an encoder (every position sees every other) or a decoder (with cross-attention) of n_layers.
ModelConfig stack_config(ModelConfig base, int n_layers, bool encoder) {
  base.n_layers = n_layers;
  base.layers.assign(size_t(n_layers), LayerConfig{});
  base.causal = !encoder;
  base.cross_attention = !encoder;
  return base;
}

void split_encoder(WeightCollector& w, const ModelConfig& encoder, const std::string& architecture) {
  auto e = std::make_shared<ModelSpec>();
  e->architecture = architecture;
  e->config = encoder;
  for (auto it = w.spec.tensors.begin(); it != w.spec.tensors.end();) {
    if (it->first.compare(0, 4, "enc.") == 0) {
      e->tensors[it->first.substr(4)] = it->second;
      it = w.spec.tensors.erase(it);
    } else {
      ++it;
    }
  }
  w.spec.encoder = std::move(e);
}

// A value of the folder's configs as generation takes it: generation_config.json's where it has the key
// (even null), else config.json's (null where absent).
JSON generation_value(const JSON& generation_config, const HFConfig& c, const std::string& key) {
  if (const JSON* g = generation_config.find(key)) return *g;
  const JSON* v = c.get(key);
  return v ? *v : JSON{};
}

// T5's relative-position bucket of each distance key - query, as transformers' _relative_position_bucket
// computes it: the log in float32 (computed in double and rounded once), then float32 division and
// product, truncated toward zero.
int64_t t5_bucket(int64_t relative, bool bidirectional, int num_buckets, int max_distance) {
  int64_t bucket = 0;
  if (bidirectional) {
    num_buckets /= 2;
    bucket += relative > 0 ? num_buckets : 0;
    relative = relative < 0 ? -relative : relative;
  } else {
    relative = relative < 0 ? -relative : 0;
  }
  const int max_exact = num_buckets / 2;
  if (relative < max_exact) return bucket + relative;
  const float log_ratio = float(std::log(double(float(relative) / float(max_exact))));
  const float scaled = log_ratio / float(std::log(double(max_distance) / double(max_exact))) * float(num_buckets - max_exact);
  const int64_t large = max_exact + (std::isfinite(scaled) ? int64_t(scaled) : 0);
  return bucket + std::min<int64_t>(std::max<int64_t>(large, max_exact), num_buckets - 1);
}

const std::map<std::string, std::pair<Activation, bool>>& t5_feed_forwards() {
  static const std::map<std::string, std::pair<Activation, bool>> kinds = {
      {"relu", {Activation::ReLU, false}}, {"gated-gelu", {Activation::GeluTanh, true}},
      {"gated-silu", {Activation::SiLU, true}}, {"gated-relu", {Activation::ReLU, true}}};
  return kinds;
}

// T5: RMS norms without mean or bias, no 1/sqrt(d) attention scale, relative-position buckets (a learned
// bias per head and bucket, computed by the first layer and shared by all, bidirectional in the encoder and
// causal in the decoder) expanded here into a bias per distance over `span` positions (role attn_rel_bias,
// (H, 2 span - 1)). A tied head rescales the decoder's output by d_model^-0.5.
void map_t5(WeightCollector& w, const HFConfig& c, int span, const std::string& folder) {
  const JSON* proj = c.get("feed_forward_proj");
  const std::string kind = !proj ? "relu" : proj->is_string() ? proj->text : proj->describe();
  const auto found = t5_feed_forwards().find(kind);
  if ((proj && !proj->is_string()) || found == t5_feed_forwards().end())
    throw Error(c.source() + ": feed_forward_proj '" + kind + "' is not supported (relu, gated-gelu, gated-silu, gated-relu)");
  const auto [activation, gated] = found->second;
  const int dim = c.positive_int("d_model"), n_heads = c.positive_int("num_heads"), d_kv = c.positive_int("d_kv");
  const int n_buckets = c.positive_int("relative_attention_num_buckets", 32);
  const int max_distance = c.positive_int("relative_attention_max_distance", 128);
  // Distances up to max_exact = buckets / 2 (decoder; / 4 in the encoder) have a bucket each, the rest share
  // log-spaced buckets up to max_distance: which needs max_distance > max_exact.
  if (n_buckets < 4 || max_distance <= n_buckets / 2)
    throw Error(c.source() + ": relative_attention_num_buckets (" + std::to_string(n_buckets) + ") must be at least 4 "
                "and relative_attention_max_distance (" + std::to_string(max_distance) + ") more than half of it");
  const bool tied = c.truthy("tie_word_embeddings", true);
  const int n_enc = c.positive_int("num_layers"), n_dec = c.positive_int("num_decoder_layers", n_enc);
  ModelConfig base = hf_base_config(0);
  base.dim = dim;
  base.n_heads = base.n_kv_heads = n_heads;
  base.head_dim = d_kv;
  base.hidden_dim = c.positive_int("d_ff");
  base.vocab_size = c.positive_int("vocab_size");
  base.norm_eps = float(c.positive_float("layer_norm_epsilon", 1e-6));
  base.activation = activation;
  base.gated = gated;
  base.positions = Positions::None;
  base.attn_scale = 1.0f;
  base.relative_span = span;
  ModelConfig encoder = stack_config(base, n_enc, true), decoder = stack_config(base, n_dec, false);
  decoder.head_scale = c.truthy("scale_decoder_outputs", tied) ? float(std::pow(double(dim), -0.5)) : 1.0f;

  const TensorView shared = *w.take("shared.weight");
  for (const char* stack : {"encoder", "decoder"})  // copies of shared.weight in some files
    w.take(std::string(stack) + ".embed_tokens.weight", false);
  for (const bool is_encoder : {true, false}) {
    const std::string stack = is_encoder ? "encoder" : "decoder", prefix = is_encoder ? "enc." : "";
    const int n_layers = is_encoder ? n_enc : n_dec;
    w.spec.tensors[prefix + "token_embd"] = shared;
    w.vector(prefix + "output_norm", stack + ".final_layer_norm.weight");
    const std::string bias_name = stack + ".block.0.layer.0.SelfAttention.relative_attention_bias.weight";
    const TensorView bucket_bias = *w.take(bias_name);
    if (bucket_bias.rows != n_buckets || bucket_bias.cols != n_heads)
      throw Error(folder + ": " + stack + "'s relative_attention_bias is (" + std::to_string(bucket_bias.rows) + ", " +
                  std::to_string(bucket_bias.cols) + "), expected (" + std::to_string(n_buckets) + ", " +
                  std::to_string(n_heads) + ")");
    const std::vector<float> biases = w.values(bias_name, bucket_bias);
    const int64_t width = 2 * int64_t(span) - 1;
    std::vector<float> table(size_t(n_heads) * size_t(width));
    for (int64_t d = 0; d < width; ++d) {
      const int64_t bucket = t5_bucket(d - (span - 1), is_encoder, n_buckets, max_distance);
      for (int h = 0; h < n_heads; ++h) table[size_t(h) * size_t(width) + size_t(d)] = biases[size_t(bucket) * n_heads + h];
    }
    w.spec.tensors[prefix + "attn_rel_bias"] = w.keep(table, 1, int64_t(table.size()));
    for (int i = 0; i < n_layers; ++i) {
      const std::string h = stack + ".block." + std::to_string(i) + ".layer.", b = prefix + "blk." + std::to_string(i) + ".";
      w.vector(b + "attn_norm", h + "0.layer_norm.weight");
      for (const auto& [role, name] : {std::pair{"attn_q", "q"}, std::pair{"attn_k", "k"}, std::pair{"attn_v", "v"},
                                       std::pair{"attn_output", "o"}})
        w.matrix(b + role, h + "0.SelfAttention." + name + ".weight");
      std::string f = "1";
      if (!is_encoder) {
        w.vector(b + "cross_attn_norm", h + "1.layer_norm.weight");
        for (const auto& [role, name] : {std::pair{"cross_attn_q", "q"}, std::pair{"cross_attn_k", "k"},
                                         std::pair{"cross_attn_v", "v"}, std::pair{"cross_attn_output", "o"}})
          w.matrix(b + role, h + "1.EncDecAttention." + name + ".weight");
        f = "2";
      }
      w.vector(b + "ffn_norm", h + f + ".layer_norm.weight");
      if (gated) {
        w.matrix(b + "ffn_gate", h + f + ".DenseReluDense.wi_0.weight");
        w.matrix(b + "ffn_up", h + f + ".DenseReluDense.wi_1.weight");
      } else {
        w.matrix(b + "ffn_up", h + f + ".DenseReluDense.wi.weight");
      }
      w.matrix(b + "ffn_down", h + f + ".DenseReluDense.wo.weight");
    }
  }
  if (!tied) w.matrix("output", "lm_head.weight");
  else w.take("lm_head.weight", false);  // a copy of shared.weight
  w.check_all_taken(" (a t5 model of " + std::to_string(n_enc) + " + " + std::to_string(n_dec) + " layers)");
  w.spec.config = decoder;
  split_encoder(w, encoder, "t5-encoder");
  const JSON* start = c.get("decoder_start_token_id");
  const JSON* pad = c.get("pad_token_id");
  w.spec.generation = json_object();
  json_set(w.spec.generation, "decoder_start_token_id", start ? *start : pad ? *pad : json_integer(0));
}

// Marian's sinusoidal positions as transformers builds them: angles pos / 10000^(2 (j // 2) / dim) in double,
// sin of the even ones in the first half, cos of the odd ones in the second, rounded to float32.
std::vector<float> sinusoidal_positions(int n_pos, int dim) {
  std::vector<float> table(size_t(n_pos) * size_t(dim));
  const int half = (dim + 1) / 2;
  for (int pos = 0; pos < n_pos; ++pos)
    for (int j = 0; j < dim; ++j) {
      const double angle = double(pos) / std::pow(10000.0, double(2 * (j / 2)) / double(dim));
      const int column = j % 2 == 0 ? j / 2 : half + j / 2;
      table[size_t(pos) * size_t(dim) + size_t(column)] = float(j % 2 == 0 ? std::sin(angle) : std::cos(angle));
    }
  return table;
}

// BART, mBART and Marian: LayerNorms with biases, biases on every projection, an ungated MLP, 1/sqrt(d)
// attention. They differ in positions (BART / mBART: a learned table whose row is position + 2; Marian:
// sinusoidal, not stored), norm placement (BART / Marian: after each residual; mBART: before, plus a final
// norm per stack), a norm of the embeddings (BART / mBART), and embeddings scaled by sqrt(d_model) when
// scale_embedding. The head adds final_logits_bias.
void map_bart(WeightCollector& w, const HFConfig& c, const std::string& kind, const JSON& generation_config,
              int n_ctx) {
  const int dim = c.positive_int("d_model"), vocab = c.positive_int("vocab_size");
  const JSON* decoder_vocab = c.get("decoder_vocab_size");
  const JSON* share = c.get("share_encoder_decoder_embeddings");
  if ((decoder_vocab && !(decoder_vocab->is_number() && decoder_vocab->number == vocab)) ||
      (share && share->kind == JSON::Kind::Bool && !share->boolean))
    throw Error(c.source() + ": separate source and target vocabularies (decoder_vocab_size, "
                "share_encoder_decoder_embeddings false) are not supported");
  const int n_pos = c.positive_int("max_position_embeddings");
  const bool pre = kind == "mbart", marian = kind == "marian";
  ModelConfig base = hf_base_config(0);
  base.dim = dim;
  base.vocab_size = vocab;
  base.norm = NormKind::Layer;
  base.norm_placement = pre ? NormPlacement::Pre : NormPlacement::Post;
  base.norm_eps = 1e-5f;
  base.activation = c.activation("activation_function");
  base.gated = false;
  base.positions = Positions::Learned;
  base.position_offset = marian ? 0 : 2;
  base.embed_scale = c.truthy("scale_embedding") ? float(std::sqrt(double(dim))) : 1.0f;
  base.embed_norm = !marian;
  const int n_enc = c.positive_int("encoder_layers"), n_dec = c.positive_int("decoder_layers");
  const int e_heads = c.positive_int("encoder_attention_heads"), d_heads = c.positive_int("decoder_attention_heads");
  if (dim % e_heads || dim % d_heads) throw Error(c.source() + ": d_model must be a multiple of the head counts");
  ModelConfig encoder = stack_config(base, n_enc, true), decoder = stack_config(base, n_dec, false);
  encoder.n_heads = encoder.n_kv_heads = e_heads;
  encoder.head_dim = dim / e_heads;
  encoder.hidden_dim = c.positive_int("encoder_ffn_dim");
  decoder.n_heads = decoder.n_kv_heads = d_heads;
  decoder.head_dim = dim / d_heads;
  decoder.hidden_dim = c.positive_int("decoder_ffn_dim");

  const std::string p = w.has("model.shared.weight") || w.has("model.encoder.embed_tokens.weight") ? "model." : "";
  const TensorView* shared = w.take(p + "shared.weight", false);
  for (const bool is_encoder : {true, false}) {
    const std::string s = p + (is_encoder ? "encoder." : "decoder."), prefix = is_encoder ? "enc." : "";
    const TensorView* embed = w.take(s + "embed_tokens.weight", shared == nullptr);
    const TensorView& tokens = shared ? *shared : *embed;
    w.spec.tensors[prefix + "token_embd"] = tokens;
    if (marian) {
      w.take(s + "embed_positions.weight", false);  // the sinusoids, when a file stores them
      if (tokens.cols != dim)  // before a table is sized by d_model
        throw Error(c.source() + ": d_model is " + std::to_string(dim) + " but the token embeddings have " +
                    std::to_string(tokens.cols) + " columns");
      const int rows = std::min(n_pos, n_ctx);  // positions past n_ctx are never looked up
      w.spec.tensors[prefix + "pos_embd"] = w.keep(sinusoidal_positions(rows, dim), rows, dim);
    } else {
      w.matrix(prefix + "pos_embd", s + "embed_positions.weight");
      w.layer(prefix + "embd_norm", s + "layernorm_embedding");
      w.vector(prefix + "embd_norm.bias", s + "layernorm_embedding.bias");
    }
    if (pre) {
      w.layer(prefix + "output_norm", s + "layer_norm");
      w.vector(prefix + "output_norm.bias", s + "layer_norm.bias");
    }
    for (int i = 0; i < (is_encoder ? n_enc : n_dec); ++i) {
      const std::string h = s + "layers." + std::to_string(i) + ".", b = prefix + "blk." + std::to_string(i) + ".";
      std::vector<std::pair<std::string, std::string>> sublayers = {{"attn", "self_attn"}};
      if (!is_encoder) sublayers.push_back({"cross_attn", "encoder_attn"});
      for (const auto& [role, name] : sublayers) {
        w.layer(b + role + "_norm", h + name + "_layer_norm");
        w.vector(b + role + "_norm.bias", h + name + "_layer_norm.bias");
        for (const auto& [part, projection] : {std::pair{"q", "q_proj"}, std::pair{"k", "k_proj"},
                                               std::pair{"v", "v_proj"}, std::pair{"output", "out_proj"}})
          w.layer(b + role + "_" + part, h + name + "." + projection);
      }
      w.layer(b + "ffn_norm", h + "final_layer_norm");
      w.vector(b + "ffn_norm.bias", h + "final_layer_norm.bias");
      w.layer(b + "ffn_up", h + "fc1");
      w.layer(b + "ffn_down", h + "fc2");
    }
  }
  const TensorView* head = w.take("lm_head.weight", false);
  if (head && !c.truthy("tie_word_embeddings", true)) w.spec.tensors["output"] = *head;
  const std::string bias_name = w.has(p + "final_logits_bias") ? p + "final_logits_bias" : "final_logits_bias";
  if (const TensorView* bias = w.take(bias_name, false)) w.vector("output.bias", bias_name, *bias);
  w.check_all_taken(" (a " + kind + " model of " + std::to_string(n_enc) + " + " + std::to_string(n_dec) + " layers)");
  w.spec.config = decoder;
  w.spec.context_length = n_pos;
  split_encoder(w, encoder, kind + "-encoder");
  w.spec.generation = json_object();
  for (const char* key : {"decoder_start_token_id", "forced_bos_token_id", "bad_words_ids"})
    json_set(w.spec.generation, key, generation_value(generation_config, c, key));
  const JSON* renormalize = generation_config.find("renormalize_logits");
  JSON flag;
  flag.kind = JSON::Kind::Bool;
  flag.boolean = truthy(renormalize);
  json_set(w.spec.generation, "renormalize_logits", flag);
  if (w.spec.generation.find("decoder_start_token_id")->is_null())
    throw Error(c.source() + " sets no decoder_start_token_id");
}

// Image captioning: a ViT encoder (patches projected by a convolution, which the caller applies to pixels
// with vision_tensors; a CLS vector first; learned positions; pre-norm LayerNorms; a final LayerNorm; its
// pooler unused) and a GPT-2 decoder with cross-attention.
void map_vision_encoder_decoder(WeightCollector& w, const HFConfig& top, const std::string& folder) {
  const HFConfig enc(top.require("encoder"), top.source() + " (encoder)");
  const HFConfig dec(top.require("decoder"), top.source() + " (decoder)");
  const JSON& enc_type = enc.require("model_type");
  const JSON& dec_type = dec.require("model_type");
  if (!(enc_type.is_string() && enc_type.text == "vit" && dec_type.is_string() && dec_type.text == "gpt2"))
    throw Error(top.source() + ": only a vit encoder with a gpt2 decoder is supported, got " +
                (enc_type.is_string() ? enc_type.text : enc_type.describe()) + " + " +
                (dec_type.is_string() ? dec_type.text : dec_type.describe()));
  const int dim = enc.positive_int("hidden_size"), n_embd = dec.positive_int("n_embd");
  if (dim != n_embd)
    throw Error(top.source() + ": the encoder's width (" + std::to_string(dim) + ") must equal the decoder's (" +
                std::to_string(n_embd) + ")");
  const int image = enc.positive_int("image_size"), patch = enc.positive_int("patch_size");
  const int channels = enc.positive_int("num_channels", 3), n_heads = enc.positive_int("num_attention_heads");
  const int n_enc = enc.positive_int("num_hidden_layers");
  ModelConfig encoder = hf_base_config(n_enc);
  encoder.dim = dim;
  encoder.n_heads = encoder.n_kv_heads = n_heads;
  encoder.head_dim = dim / n_heads;
  encoder.hidden_dim = enc.positive_int("intermediate_size");
  encoder.vocab_size = 1;
  encoder.norm = NormKind::Layer;
  encoder.norm_eps = float(enc.positive_float("layer_norm_eps", 1e-12));
  encoder.activation = enc.activation("hidden_act");
  encoder.gated = false;
  encoder.positions = Positions::Learned;
  encoder.causal = false;
  ModelConfig decoder = gpt2_config(dec);
  decoder.cross_attention = true;

  const std::string e = "encoder.";
  const std::string projection_name = e + "embeddings.patch_embeddings.projection.weight";
  const TensorView projection = *w.take(projection_name);
  const int64_t per_patch = projection.rows * projection.cols / dim;
  if (per_patch * dim != projection.rows * projection.cols || per_patch != int64_t(channels) * patch * patch)
    throw Error(folder + ": the patch projection takes " + std::to_string(per_patch) + " values, expected " +
                std::to_string(channels) + " x " + std::to_string(patch) + " x " + std::to_string(patch));
  const std::string bias_name = e + "embeddings.patch_embeddings.projection.bias", cls_name = e + "embeddings.cls_token";
  const TensorView bias = *w.take(bias_name), cls = *w.take(cls_name);
  w.spec.vision_tensors["patch_weight"] = w.keep(w.values(projection_name, projection), dim, per_patch);
  const std::vector<float> bias_values = w.values(bias_name, bias), cls_values = w.values(cls_name, cls);
  w.spec.vision_tensors["patch_bias"] = w.keep(bias_values, 1, int64_t(bias_values.size()));
  w.spec.vision_tensors["cls"] = w.keep(cls_values, 1, int64_t(cls_values.size()));
  w.spec.vision = json_object();
  json_set(w.spec.vision, "image_size", json_integer(image));
  json_set(w.spec.vision, "patch_size", json_integer(patch));
  json_set(w.spec.vision, "channels", json_integer(channels));
  w.take(e + "embeddings.mask_token", false);
  w.spec.tensors["enc.token_embd"] = w.keep(std::vector<float>(size_t(dim), 0.0f), 1, dim);  // inputs are vectors
  w.matrix("enc.pos_embd", e + "embeddings.position_embeddings");
  w.layer("enc.output_norm", e + "layernorm");
  w.vector("enc.output_norm.bias", e + "layernorm.bias");
  for (const char* name : {"pooler.dense.weight", "pooler.dense.bias"}) w.take(e + name, false);  // unused
  for (int i = 0; i < n_enc; ++i) {
    const std::string h = e + "encoder.layer." + std::to_string(i) + ".", b = "enc.blk." + std::to_string(i) + ".";
    for (const auto& [role, name] : {std::pair{"attn_norm", "layernorm_before"}, std::pair{"ffn_norm", "layernorm_after"}}) {
      w.layer(b + role, h + name);
      w.vector(b + role + ".bias", h + name + ".bias");
    }
    for (const auto& [role, name] : {std::pair{"attn_q", "attention.attention.query"},
                                     std::pair{"attn_k", "attention.attention.key"},
                                     std::pair{"attn_v", "attention.attention.value"},
                                     std::pair{"attn_output", "attention.output.dense"},
                                     std::pair{"ffn_up", "intermediate.dense"}, std::pair{"ffn_down", "output.dense"}})
      w.layer(b + role, h + name);
  }
  if (!w.has("decoder.lm_head.weight") || dec.truthy("tie_word_embeddings", true))
    w.take("decoder.lm_head.weight", false);  // tied to wte
  else
    w.matrix("output", "decoder.lm_head.weight");
  gpt2_blocks(w, "decoder.transformer.", decoder.n_layers, n_embd, true, folder);
  w.check_all_taken(" (a vision-encoder-decoder model)");
  w.spec.config = decoder;
  w.spec.context_length = dec.context_length("n_positions", folder);
  split_encoder(w, encoder, "vit");
  const JSON* start = top.get("decoder_start_token_id");
  if (!start) start = dec.get("decoder_start_token_id");
  if (!start) start = dec.get("bos_token_id");
  if (!start) throw Error(top.source() + " sets no decoder_start_token_id");
  w.spec.generation = json_object();
  json_set(w.spec.generation, "decoder_start_token_id", *start);
}

// Every layer has tensors, so a config.json that claims more layers than the folder has tensors is wrong;
// said before anything is sized by the count.
void check_layer_counts(const HFConfig& c, size_t n_tensors) {
  for (const JSON* values : {&c.values(), c.get("text_config"), c.get("encoder"), c.get("decoder")}) {
    if (!values || !values->is_object()) continue;
    for (const char* key : {"num_hidden_layers", "n_layer", "num_layers", "num_decoder_layers", "encoder_layers",
                            "decoder_layers"}) {
      const JSON* n = values->find(key);
      if (n && n->is_integer() && n->integer > int64_t(n_tensors))
        throw Error(c.source() + ": '" + key + "' is " + std::to_string(n->integer) +
                    ", more layers than the folder has tensors (" + std::to_string(n_tensors) + ")");
    }
  }
}

}  // namespace

std::vector<std::string> hf_model_types() {
  return {"llama", "mistral", "qwen2", "gpt2", "gemma3_text", "gemma3", "t5", "bart", "mbart", "marian",
          "vision-encoder-decoder"};
}

ModelSpec spec_from_hf(const JSON& config, const JSON& generation_config, const std::map<std::string, TensorView>& tensors,
                       const std::string& name, int n_ctx) {
  const HFConfig c(config, name + "/config.json");
  check_layer_counts(c, tensors.size());
  NT_CHECK(n_ctx > 0, "n_ctx must be positive, got " + std::to_string(n_ctx));
  const JSON* type = c.get("model_type");
  const std::string model_type = type && type->is_string() ? type->text : type ? type->describe() : "None";
  WeightCollector w(tensors, name);
  w.spec.architecture = model_type;
  if (model_type == "llama" || model_type == "mistral" || model_type == "qwen2") map_llama(w, c, model_type, name);
  else if (model_type == "gpt2") map_gpt2(w, c, name);
  else if (model_type == "gemma3_text" || model_type == "gemma3") map_gemma3(w, c, name);
  else if (model_type == "t5") map_t5(w, c, n_ctx, name);
  else if (model_type == "bart" || model_type == "mbart" || model_type == "marian")
    map_bart(w, c, model_type, generation_config.is_object() ? generation_config : json_object(), n_ctx);
  else if (model_type == "vision-encoder-decoder") map_vision_encoder_decoder(w, c, name);
  else {
    std::string known;
    for (const std::string& t : hf_model_types()) known += (known.empty() ? "" : ", ") + t;
    throw Error("unsupported model_type '" + model_type + "' in " + c.source() + " (supported: " + known + ")");
  }
  return std::move(w.spec);
}

std::vector<int32_t> hf_eos_ids(const HFFolder& folder, int vocab_size) {
  const JSON* eos = folder.generation_config.find("eos_token_id");  // where present, even null (as Python)
  if (!eos) eos = folder.config.find("eos_token_id");
  std::vector<int32_t> ids;
  if (!eos) return ids;
  for (const JSON& v : eos->is_array() ? eos->items : std::vector<JSON>{*eos})
    if (v.is_integer() && v.integer >= 0 && v.integer < vocab_size) {
      bool seen = false;
      for (int32_t x : ids) seen = seen || x == int32_t(v.integer);
      if (!seen) ids.push_back(int32_t(v.integer));
    }
  return ids;
}

}  // namespace nextoken
