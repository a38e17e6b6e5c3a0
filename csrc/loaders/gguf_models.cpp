// gguf_models.cpp: see gguf_models.h. Values are computed in float32 as transformers computes them
// (RoPE frequencies, Gemma's scales), so a GGUF file and the Hugging Face folder it came from agree.
#include "gguf_models.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace nextoken {

namespace {

std::string describe(const GGUFValue& v) {
  if (v.is_array) return "an array of " + std::to_string(v.count);
  if (v.type == GGUFType::String) {  // messages are text: bytes that are not UTF-8 shown as '?'
    std::string shown;
    for (char c : v.text) shown += uint8_t(c) < 0x80 ? c : '?';
    return "'" + shown + "'";
  }
  if (v.type == GGUFType::Bool) return v.bits ? "True" : "False";
  std::ostringstream s;
  if (v.is_integer()) s << v.as_int();
  else s << v.as_double();
  return s.str();
}

// Reads one architecture's keys; hands out the file's tensors by role (spec.h).
class Mapper : public WeightCollector {
 public:
  Mapper(std::shared_ptr<const GGUFFile> file, const std::string& arch)
      : WeightCollector(file->tensors(), file->name()), f_(*file), arch_(arch) {
    spec.architecture = arch;
    spec.file = std::move(file);
  }

  const GGUFValue* find(const std::string& key) const { return f_.find(arch_ + "." + key); }
  std::string full(const std::string& key) const { return arch_ + "." + key; }

  int positive_int(const std::string& key, int64_t fallback = -1) const {
    const GGUFValue* v = find(key);
    if (!v && fallback < 0) throw Error("the GGUF metadata of " + f_.name() + " lacks '" + full(key) + "'");
    const int64_t x = v ? (v->is_integer() ? v->as_int() : -1) : fallback;
    if (x <= 0 || x >= (int64_t(1) << 31))
      throw Error(full(key) + " must be a positive integer, got " + (v ? describe(*v) : std::to_string(fallback)));
    return int(x);
  }

  double positive_float(const std::string& key, double fallback) const {  // fallback < 0: required
    const GGUFValue* v = find(key);
    if (!v && fallback < 0) throw Error("the GGUF metadata of " + f_.name() + " lacks '" + full(key) + "'");
    const double x = v ? (v->is_number() ? v->as_double() : NAN) : fallback;
    if (!std::isfinite(x) || x <= 0)
      throw Error(full(key) + " must be a positive number, got " + (v ? describe(*v) : std::to_string(fallback)));
    return x;
  }

  std::string text(const std::string& key, const std::string& fallback) const {
    const GGUFValue* v = find(key);
    if (!v) return fallback;
    if (v->is_array || v->type != GGUFType::String) throw Error(full(key) + " must be a string, got " + describe(*v));
    return v->text;
  }

  int vocab_size() const {  // the key, else the tokenizer's length
    const GGUFValue* tokens = f_.find("tokenizer.ggml.tokens");
    return positive_int("vocab_size", tokens && tokens->is_array ? int64_t(tokens->count) : 0);
  }

  // block_count, bounded by the tensors the file holds (each layer has several) before anything is sized by it.
  int layer_count() const {
    const int n = positive_int("block_count");
    if (size_t(n) > f_.tensors().size())
      throw Error(full("block_count") + " is " + std::to_string(n) + " but " + f_.name() + " holds only " +
                  std::to_string(f_.tensors().size()) + " tensors");
    return n;
  }

  void check_all_taken(int n_layers) const {
    WeightCollector::check_all_taken(" (a " + arch_ + " model of " + std::to_string(n_layers) + " layers)");
  }

 private:
  const GGUFFile& f_;
  std::string arch_;
};

void map_llama(Mapper& m) {
  ModelConfig c = base_config(m.layer_count());
  c.dim = m.positive_int("embedding_length");
  c.n_heads = m.positive_int("attention.head_count");
  c.head_dim = m.positive_int("attention.key_length", c.dim / c.n_heads);
  if (m.positive_int("rope.dimension_count", c.head_dim) != c.head_dim)
    throw Error(m.spec.file->name() + ": RoPE on part of the head dimensions is not supported");
  c.hidden_dim = m.positive_int("feed_forward_length");
  c.n_kv_heads = m.positive_int("attention.head_count_kv", c.n_heads);
  c.vocab_size = m.vocab_size();
  c.norm_eps = float(m.positive_float("attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_layout = RopeLayout::Adjacent;
  std::vector<float> inv = rope_inv_freq(m.positive_float("rope.freq_base", 10000.0), c.head_dim);
  const std::string scaling = m.text("rope.scaling.type", "none");
  if (scaling == "linear") {
    const float factor = float(m.positive_float("rope.scaling.factor", -1.0));
    for (float& x : inv) x /= factor;
  } else if (scaling != "none") {
    throw Error(m.spec.file->name() + ": RoPE scaling '" + scaling + "' is not supported (none, linear)");
  }
  if (m.has("rope_freqs.weight")) {  // per-frequency divisors (Llama 3's scaling, as llama.cpp applies it)
    const std::vector<float> factors = m.floats("rope_freqs.weight", *m.take("rope_freqs.weight", true));
    bool ok = factors.size() == inv.size();
    for (size_t i = 0; ok && i < factors.size(); ++i) ok = std::isfinite(factors[i]) && factors[i] > 0;
    if (!ok)
      throw Error(m.spec.file->name() + ": rope_freqs.weight must hold " + std::to_string(inv.size()) +
                  " positive factors");
    for (size_t i = 0; i < inv.size(); ++i) inv[i] /= factors[i];
  }
  c.rope_inv_freq = {inv};
  if (const GGUFValue* w = m.find("attention.sliding_window"); w && !(w->is_integer() && w->as_int() == 0)) {
    const int window = m.positive_int("attention.sliding_window");  // Mistral-style: every layer
    for (LayerConfig& l : c.layers) l.sliding_window = window;
  }
  m.spec.config = c;
  m.matrix("token_embd", "token_embd.weight");
  m.vector("output_norm", "output_norm.weight");
  m.matrix("output", "output.weight", false);
  static const char* roles[] = {"attn_norm", "ffn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                "ffn_gate", "ffn_up", "ffn_down"};
  for (int i = 0; i < c.n_layers; ++i)
    for (const char* role : roles) {
      const std::string name = "blk." + std::to_string(i) + "." + role;
      m.layer(name, name);
    }
}

// Gemma 3: sandwich RMSNorms (llama.cpp's converter stores Gemma's 1 + w), q/k norms, GeGLU (tanh),
// embeddings times sqrt(C), attention scaled by head_dim^-1/2 (GGUF has no query_pre_attn_scalar),
// sliding-window layers with their own RoPE base between full ones.
void map_gemma3(Mapper& m) {
  ModelConfig c = base_config(m.layer_count());
  c.dim = m.positive_int("embedding_length");
  c.n_heads = m.positive_int("attention.head_count");
  c.head_dim = m.positive_int("attention.key_length", c.dim / c.n_heads);
  const int window = m.positive_int("attention.sliding_window");
  std::vector<bool> sliding(size_t(c.n_layers));
  const GGUFValue* pattern = m.find("attention.sliding_window_pattern");
  if (pattern && pattern->is_array) {  // per layer
    const size_t item = pattern->count ? pattern->raw.size() / pattern->count : 0;
    if (pattern->count != uint64_t(c.n_layers) || item == 0)
      throw Error(m.full("attention.sliding_window_pattern") + " has " + std::to_string(pattern->count) +
                  " entries for " + std::to_string(c.n_layers) + " layers");
    for (size_t i = 0; i < sliding.size(); ++i)
      for (size_t b = 0; b < item; ++b) sliding[i] = sliding[i] || pattern->raw[i * item + b] != 0;
  } else {  // every n-th layer global (6: llama.cpp's and transformers' default)
    const int every = m.positive_int("attention.sliding_window_pattern", 6);
    for (int i = 0; i < c.n_layers; ++i) sliding[size_t(i)] = (i + 1) % every != 0;
  }
  c.n_kv_heads = m.positive_int("attention.head_count_kv", c.n_heads);
  c.hidden_dim = m.positive_int("feed_forward_length");
  c.vocab_size = m.vocab_size();
  c.norm_eps = float(m.positive_float("attention.layer_norm_rms_epsilon", 1e-6));
  c.norm_placement = NormPlacement::Sandwich;
  c.activation = Activation::GeluTanh;
  c.qk_norm = true;
  c.rope_layout = RopeLayout::Half;  // llama.cpp rotates Gemma's halves (NeoX style): q, k stored as in HF
  c.attn_scale = float(std::pow(double(c.head_dim), -0.5));
  c.embed_scale = float(std::sqrt(double(c.dim)));
  if (const GGUFValue* cap = m.find("final_logit_softcapping")) {
    if (!cap->is_number() || !std::isfinite(cap->as_double()) || cap->as_double() < 0)
      throw Error(m.full("final_logit_softcapping") + " must be a number >= 0, got " + describe(*cap));
    c.final_softcap = float(cap->as_double());
  }
  const double scale = m.text("rope.scaling.type", "none") == "linear" ? m.positive_float("rope.scaling.factor", 1.0) : 1.0;
  std::vector<float> global = rope_inv_freq(m.positive_float("rope.freq_base", 1e6), c.head_dim);
  for (float& x : global) x /= float(scale);
  c.rope_inv_freq = {rope_inv_freq(m.positive_float("rope.freq_base_swa", 10000.0), c.head_dim), global};
  for (int i = 0; i < c.n_layers; ++i)
    c.layers[size_t(i)] = LayerConfig{sliding[size_t(i)] ? window : 0, sliding[size_t(i)] ? 0 : 1};
  m.spec.config = c;
  m.matrix("token_embd", "token_embd.weight");
  m.vector("output_norm", "output_norm.weight");
  m.matrix("output", "output.weight", false);
  static const char* roles[] = {"attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm", "attn_q_norm",
                                "attn_k_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                "ffn_down"};
  for (int i = 0; i < c.n_layers; ++i)
    for (const char* role : roles) {
      const std::string name = "blk." + std::to_string(i) + "." + role;
      m.layer(name, name);
    }
}

// The special ids a file names must be tokens of its vocabulary (a wrong one would be dropped silently).
void check_special_ids(const GGUFFile& f, int vocab_size) {
  for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
    const GGUFValue* v = f.find(key);
    if (v && (!v->is_integer() || v->as_int() < 0 || v->as_int() >= vocab_size))
      throw Error(f.name() + ": " + key + " is " + describe(*v) + ", not a token of the " +
                  std::to_string(vocab_size) + "-token vocabulary");
  }
}

}  // namespace

std::vector<std::string> gguf_architectures() { return {"llama", "gemma3"}; }

ModelSpec spec_from_gguf(std::shared_ptr<const GGUFFile> file) {
  const GGUFValue* arch = file->find("general.architecture");
  if (!arch) throw Error("the GGUF metadata of " + file->name() + " lacks 'general.architecture'");
  const bool text = !arch->is_array && arch->type == GGUFType::String &&
                    std::all_of(arch->text.begin(), arch->text.end(), [](char c) { return uint8_t(c) < 0x80; });
  const std::string name = text ? arch->text : describe(*arch);  // messages are text
  Mapper m(file, name);
  int n_layers = 0;
  if (name == "llama") {
    map_llama(m);
  } else if (name == "gemma3") {
    map_gemma3(m);
  } else {
    std::string known;
    for (const std::string& a : gguf_architectures()) known += (known.empty() ? "" : ", ") + a;
    throw Error("unsupported architecture '" + name + "' in " + file->name() + " (supported: " + known + ")");
  }
  n_layers = m.spec.config.n_layers;
  m.check_all_taken(n_layers);
  check_special_ids(*file, m.spec.config.vocab_size);
  if (const GGUFValue* ctx = m.find("context_length"); ctx && ctx->is_integer() && ctx->as_int() > 0 &&
                                                       ctx->as_int() < (int64_t(1) << 31))
    m.spec.context_length = int(ctx->as_int());
  return std::move(m.spec);
}

std::vector<int32_t> gguf_eos_ids(const GGUFFile& file, int vocab_size) {
  std::vector<int32_t> ids;
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
    const GGUFValue* v = file.find(key);
    if (v && v->is_integer() && v->as_int() >= 0 && v->as_int() < vocab_size) {
      const int32_t id = int32_t(v->as_int());
      bool seen = false;
      for (int32_t x : ids) seen = seen || x == id;
      if (!seen) ids.push_back(id);
    }
  }
  return ids;
}

}  // namespace nextoken
