// hf_models.cpp: see hf_models.h. Built with -ffp-contract=off: the llama3 RoPE scaling below must round
// each step to float32 as torch does, never fuse a multiply and an add.
#include "hf_models.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace nextoken {

namespace {

const char* type_name(const JSON& v) {
  switch (v.kind) {
    case JSON::Kind::Null: return "NoneType";
    case JSON::Kind::Bool: return "bool";
    case JSON::Kind::Number: return v.integral ? "int" : "float";
    case JSON::Kind::String: return "str";
    case JSON::Kind::Array: return "list";
    case JSON::Kind::Object: return "dict";
  }
  return "";
}

// As Python's bool(): what `if config.get(key):` tests.
bool truthy(const JSON* v) {
  if (!v) return false;
  switch (v->kind) {
    case JSON::Kind::Null: return false;
    case JSON::Kind::Bool: return v->boolean;
    case JSON::Kind::Number: return v->number != 0;
    case JSON::Kind::String: return !v->text.empty();
    case JSON::Kind::Array: return !v->items.empty();
    case JSON::Kind::Object: return !v->members.empty();
  }
  return false;
}

JSON number(double x) {
  JSON v;
  v.kind = JSON::Kind::Number;
  v.number = x;
  return v;
}

JSON string(const std::string& s) {
  JSON v;
  v.kind = JSON::Kind::String;
  v.text = s;
  return v;
}

void set(JSON& object, const std::string& key, JSON value) {
  for (auto& [k, v] : object.members)
    if (k == key) v = std::move(value);
  if (!object.find(key)) object.members.emplace_back(key, std::move(value));
}

int positive_int(const JSON* v, const std::string& what) {
  if (!v->is_integer() || v->integer <= 0 || v->integer >= (int64_t(1) << 31))
    throw Error(what + " must be a positive integer, got " + v->describe());
  return int(v->integer);
}

double positive_float(const JSON* v, const std::string& what) {
  if (!v || !v->is_number() || !std::isfinite(v->number) || v->number <= 0)
    throw Error(what + " must be a positive number, got " + (v ? v->describe() : "None"));
  return v->number;
}

// RoPE inverse frequencies of a rope_parameters object: default, linear or llama3 scaling.
std::vector<float> scaled_rope_inv_freq(double base, int dim, const JSON& params, const std::string& what) {
  std::vector<float> inv = rope_inv_freq(base, dim);
  const JSON* kind = params.find("rope_type");
  if (!kind) kind = params.find("type");
  const std::string name = !kind ? "default" : kind->is_string() ? kind->text : kind->describe();
  if (name == "default") return inv;
  if (name == "linear") {
    const float factor = float(positive_float(params.find("factor"), what + " factor"));
    for (float& x : inv) x = x / factor;
    return inv;
  }
  if (name != "llama3") throw Error(what + ": RoPE scaling '" + name + "' is not supported (default, linear, llama3)");
  const double factor = positive_float(params.find("factor"), what + " factor");
  const double low = positive_float(params.find("low_freq_factor"), what + " low_freq_factor");
  const double high = positive_float(params.find("high_freq_factor"), what + " high_freq_factor");
  const double old = positive_float(params.find("original_max_position_embeddings"),
                                    what + " original_max_position_embeddings");
  if (high <= low) throw Error(what + ": high_freq_factor must exceed low_freq_factor");
  // As transformers' _compute_llama3_parameters in float32: Python numbers meet float32 tensors rounded to
  // float32, and every step rounds.
  const float low_wavelen = float(old / low), high_wavelen = float(old / high), f = float(factor);
  for (float& x : inv) {
    const float wavelen = float(2 * M_PI) / x;
    const float scaled = wavelen > low_wavelen ? x / f : x;
    const float smooth = (float(old) / wavelen - float(low)) / float(high - low);
    const float smoothed = (1.0f - smooth) * scaled / f + smooth * scaled;
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    x = medium ? smoothed : scaled;
  }
  return inv;
}

// config.json (or a sub-config), read with errors that name the file and the key.
class HFConfig {
 public:
  HFConfig(const JSON& values, std::string source) : v_(values), source_(std::move(source)) {
    if (!values.is_object())
      throw Error(source_ + ": expected a JSON object, got " + type_name(values) + " " + values.describe().substr(0, 40));
  }

  const std::string& source() const { return source_; }
  const JSON& values() const { return v_; }
  // The value of `key`, or null where it is absent or null (then the caller's default applies).
  const JSON* get(const std::string& key) const {
    const JSON* x = v_.find(key);
    return x && !x->is_null() ? x : nullptr;
  }
  bool truthy(const std::string& key, bool fallback = false) const {
    const JSON* x = get(key);
    return x ? nextoken::truthy(x) : fallback;
  }
  const JSON& require(const std::string& key) const {
    const JSON* x = get(key);
    if (!x) throw Error(source_ + " lacks '" + key + "'");
    return *x;
  }
  int positive_int(const std::string& key) const { return nextoken::positive_int(&require(key), what(key)); }
  int positive_int(const std::string& key, int64_t fallback) const {
    if (const JSON* x = get(key)) return nextoken::positive_int(x, what(key));
    if (fallback <= 0 || fallback >= (int64_t(1) << 31))
      throw Error(what(key) + " must be a positive integer, got " + std::to_string(fallback));
    return int(fallback);
  }
  double positive_float(const std::string& key) const { return nextoken::positive_float(&require(key), what(key)); }
  double positive_float(const std::string& key, double fallback) const {
    const JSON* x = get(key);
    return x ? nextoken::positive_float(x, what(key)) : fallback;
  }

  Activation activation(const std::string& key) const {
    static const std::pair<const char*, Activation> names[] = {
        {"silu", Activation::SiLU}, {"swish", Activation::SiLU}, {"gelu_pytorch_tanh", Activation::GeluTanh},
        {"gelu_new", Activation::GeluTanh}, {"gelu_fast", Activation::GeluTanh}, {"gelu", Activation::Gelu},
        {"relu", Activation::ReLU}};
    const JSON& act = require(key);
    std::string known;
    for (const auto& [name, a] : names) {
      if (act.is_string() && act.text == name) return a;
      known += (known.empty() ? "" : ", ") + std::string(name);
    }
    throw Error(source_ + ": '" + key + "' is '" + (act.is_string() ? act.text : act.describe()) + "' (supported: " +
                known + ")");
  }

  // transformers 5's rope_parameters (per layer type where the model has several), or transformers 4's
  // rope_theta + rope_scaling, as one object with rope_type and rope_theta.
  JSON rope_parameters(const std::string& layer_type = "") const {
    if (const JSON* params = get("rope_parameters")) {
      if (!params->is_object())
        throw Error(source_ + ": 'rope_parameters' must be an object, got " + params->describe());
      if (!layer_type.empty())
        if (const JSON* per_type = params->find(layer_type)) params = per_type;
      if (!params->is_object() || !params->find("rope_theta"))
        throw Error(source_ + ": 'rope_parameters' has no rope_theta" + (layer_type.empty() ? "" : " for " + layer_type));
      return *params;
    }
    JSON params;
    params.kind = JSON::Kind::Object;
    if (const JSON* scaling = get("rope_scaling"); nextoken::truthy(scaling)) {
      if (!scaling->is_object())
        throw Error(source_ + ": 'rope_scaling' must be an object, got " + scaling->describe());
      params = *scaling;
    }
    const JSON* type = params.find("type");  // transformers 4.x's older spelling of rope_type
    const JSON kind = type ? *type : string("default");
    params.members.erase(std::remove_if(params.members.begin(), params.members.end(),
                                        [](const auto& m) { return m.first == "type"; }),
                         params.members.end());
    if (!params.find("rope_type")) set(params, "rope_type", kind);
    const JSON* theta = get("rope_theta");
    set(params, "rope_theta", theta ? *theta : number(10000.0));
    return params;
  }

  std::vector<float> rope_inv_freq(int head_dim, const std::string& layer_type = "") const {
    const JSON params = rope_parameters(layer_type);
    if (const JSON* partial = params.find("partial_rotary_factor"); partial && !(partial->is_number() && partial->number == 1.0))
      throw Error(source_ + ": partial rotary embeddings are not supported");
    const double base = nextoken::positive_float(params.find("rope_theta"), source_ + ": rope_theta");
    return scaled_rope_inv_freq(base, head_dim, params, source_ + ": rope scaling");
  }

  // Per layer: whether it attends to a sliding window; `layer_types` where the file lists them.
  std::vector<bool> sliding_layers(int n_layers, const std::vector<bool>& fallback) const {
    const JSON* types = get("layer_types");
    if (!types) return fallback;
    bool ok = types->is_array() && types->items.size() == size_t(n_layers);
    std::vector<bool> sliding;
    for (const JSON& t : ok ? types->items : std::vector<JSON>{}) {
      ok = ok && t.is_string() && (t.text == "full_attention" || t.text == "sliding_attention");
      sliding.push_back(ok && t.text == "sliding_attention");
    }
    if (!ok)
      throw Error(source_ + ": 'layer_types' must list 'full_attention' or 'sliding_attention' for each of the " +
                  std::to_string(n_layers) + " layers");
    return sliding;
  }

  std::vector<int> sliding_windows(const std::vector<bool>& sliding) const {
    std::vector<int> windows(sliding.size(), 0);
    for (size_t i = 0; i < sliding.size(); ++i)
      if (sliding[i]) windows[i] = positive_int("sliding_window");
    return windows;
  }

  // What the model was trained for (0: the file does not say).
  int context_length(const std::string& key, const std::string& folder) const {
    const JSON* x = get(key);
    if (!x) return 0;
    if (!x->is_integer() || x->integer < 0 || x->integer >= (int64_t(1) << 31))
      throw Error(folder + ": the context length it was trained for must be an integer >= 0, got " + x->describe());
    return int(x->integer);
  }

 private:
  std::string what(const std::string& key) const { return source_ + ": '" + key + "'"; }

  const JSON& v_;
  std::string source_;
};

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

void map_llama(WeightCollector& w, const HFConfig& c, const std::string& model_type, const std::string& folder) {
  const int n_layers = c.positive_int("num_hidden_layers"), dim = c.positive_int("hidden_size");
  const int n_heads = c.positive_int("num_attention_heads");
  const int head_dim = c.positive_int("head_dim", dim / n_heads);
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

void map_gpt2(WeightCollector& w, const HFConfig& c, const std::string& folder) {
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
  w.spec.config = m;
  w.spec.context_length = c.context_length("n_positions", folder);

  const std::string p = w.has("transformer.wte.weight") ? "transformer." : "";
  w.matrix("token_embd", p + "wte.weight");
  w.matrix("pos_embd", p + "wpe.weight");
  w.vector("output_norm", p + "ln_f.weight");
  w.vector("output_norm.bias", p + "ln_f.bias");
  tied_head(w, c);
  for (int i = 0; i < n_layers; ++i) {
    const std::string h = p + "h." + std::to_string(i) + ".", b = "blk." + std::to_string(i) + ".";
    for (const auto& [role, name] : {std::pair{"attn_norm", "ln_1"}, std::pair{"ffn_norm", "ln_2"}}) {
      w.vector(b + role, h + name + ".weight");
      w.vector(b + role + ".bias", h + name + ".bias");
    }
    const TensorView qkv = transposed(w, *w.take(h + "attn.c_attn.weight"));
    if (qkv.rows != 3 * int64_t(dim))
      throw Error(folder + ": '" + h + "attn.c_attn.weight' has " + std::to_string(qkv.rows) + " outputs, expected " +
                  std::to_string(3 * int64_t(dim)));
    const TensorView bias = *w.take(h + "attn.c_attn.bias");
    if (bias.rows * bias.cols != 3 * int64_t(dim))  // split in three below: q, k and v biases of dim each
      throw Error(folder + ": '" + h + "attn.c_attn.bias' has " + std::to_string(bias.rows * bias.cols) +
                  " values, expected " + std::to_string(3 * int64_t(dim)));
    const size_t row_bytes = size_t(qkv.cols) * (qkv.type == DType::F32 ? 4 : 2);
    const size_t bias_bytes = size_t(dim) * (bias.type == DType::F32 ? 4 : 2);
    const char* parts[] = {"attn_q", "attn_k", "attn_v"};
    for (int j = 0; j < 3; ++j) {
      w.spec.tensors[b + parts[j]] =
          TensorView{qkv.type, static_cast<const uint8_t*>(qkv.data) + size_t(j) * size_t(dim) * row_bytes, dim, qkv.cols};
      w.vector(b + parts[j] + ".bias", h + "attn.c_attn.bias",
               TensorView{bias.type, static_cast<const uint8_t*>(bias.data) + size_t(j) * bias_bytes, 1, dim});
    }
    for (const auto& [role, name] : {std::pair{"attn_output", "attn.c_proj"}, std::pair{"ffn_up", "mlp.c_fc"},
                                     std::pair{"ffn_down", "mlp.c_proj"}}) {
      w.spec.tensors[b + role] = transposed(w, *w.take(h + name + ".weight"));
      w.vector(b + role + ".bias", h + name + ".bias");
    }
    for (const char* buffer : {"attn.bias", "attn.masked_bias"})  // causal-mask buffers of old checkpoints
      w.take(h + buffer, false);
  }
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
    set(local, "rope_type", string("default"));
    const JSON* base = c4.get("rope_local_base_freq");
    set(local, "rope_theta", base ? *base : number(10000.0));
    set(both, "sliding_attention", local);
    set(both, "full_attention", c4.rope_parameters());
    set(values, "rope_parameters", both);
  }
  const HFConfig c(values, top.source());
  if (c.truthy("attn_logit_softcapping")) throw Error(c.source() + ": attn_logit_softcapping is not supported");
  const int n_layers = c.positive_int("num_hidden_layers"), dim = c.positive_int("hidden_size");
  const int n_heads = c.positive_int("num_attention_heads");
  const int head_dim = c.positive_int("head_dim", 256);
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

// Every layer has tensors, so a config.json that claims more layers than the folder has tensors is wrong;
// said before anything is sized by the count.
void check_layer_counts(const HFConfig& c, size_t n_tensors) {
  const JSON* text = c.get("text_config");
  for (const JSON* values : {&c.values(), text}) {
    if (!values || !values->is_object()) continue;
    for (const char* key : {"num_hidden_layers", "n_layer"}) {
      const JSON* n = values->find(key);
      if (n && n->is_integer() && n->integer > int64_t(n_tensors))
        throw Error(c.source() + ": '" + key + "' is " + std::to_string(n->integer) +
                    ", more layers than the folder has tensors (" + std::to_string(n_tensors) + ")");
    }
  }
}

}  // namespace

std::vector<std::string> hf_model_types() { return {"llama", "mistral", "qwen2", "gpt2", "gemma3_text", "gemma3"}; }

ModelSpec spec_from_hf(const JSON& config, const std::map<std::string, TensorView>& tensors, const std::string& name) {
  const HFConfig c(config, name + "/config.json");
  check_layer_counts(c, tensors.size());
  const JSON* type = c.get("model_type");
  const std::string model_type = type && type->is_string() ? type->text : type ? type->describe() : "None";
  WeightCollector w(tensors, name);
  w.spec.architecture = model_type;
  if (model_type == "llama" || model_type == "mistral" || model_type == "qwen2") map_llama(w, c, model_type, name);
  else if (model_type == "gpt2") map_gpt2(w, c, name);
  else if (model_type == "gemma3_text" || model_type == "gemma3") map_gemma3(w, c, name);
  else {
    std::string known;
    for (const std::string& t : hf_model_types()) known += (known.empty() ? "" : ", ") + t;
    throw Error("unsupported model_type '" + model_type + "' in " + c.source() + " (supported: " + known + ")");
  }
  return std::move(w.spec);
}

std::vector<int32_t> hf_eos_ids(const HFFolder& folder, int vocab_size) {
  const JSON* eos = folder.generation_config.find("eos_token_id");
  if (!eos || eos->is_null()) eos = folder.config.find("eos_token_id");
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
