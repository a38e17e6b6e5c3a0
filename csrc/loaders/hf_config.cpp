// hf_config.cpp: see hf_config.h. Built with -ffp-contract=off: the llama3 RoPE scaling below must
// round each step to float32 as torch does, never fuse a multiply and an add.
#include "hf_config.h"

#include <algorithm>
#include <cmath>

#include "spec.h"

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

}  // namespace

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

JSON json_number(double x) {
  JSON v;
  v.kind = JSON::Kind::Number;
  v.number = x;
  return v;
}

JSON json_integer(int64_t x) {
  JSON v = json_number(double(x));
  v.integral = true;
  v.integer = x;
  return v;
}

JSON json_string(const std::string& s) {
  JSON v;
  v.kind = JSON::Kind::String;
  v.text = s;
  return v;
}

JSON json_object() {
  JSON v;
  v.kind = JSON::Kind::Object;
  return v;
}

void json_set(JSON& object, const std::string& key, JSON value) {
  for (auto& [k, v] : object.members)
    if (k == key) v = std::move(value);
  if (!object.find(key)) object.members.emplace_back(key, std::move(value));
}

namespace {

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

}  // namespace

HFConfig::HFConfig(const JSON& values, std::string source) : v_(values), source_(std::move(source)) {
  if (!values.is_object())
    throw Error(source_ + ": expected a JSON object, got " + type_name(values) + " " + values.describe().substr(0, 40));
}

const JSON* HFConfig::get(const std::string& key) const {
  const JSON* x = v_.find(key);
  return x && !x->is_null() ? x : nullptr;
}
bool HFConfig::truthy(const std::string& key, bool fallback) const {
  const JSON* x = get(key);
  return x ? nextoken::truthy(x) : fallback;
}
const JSON& HFConfig::require(const std::string& key) const {
  const JSON* x = get(key);
  if (!x) throw Error(source_ + " lacks '" + key + "'");
  return *x;
}
int HFConfig::positive_int(const std::string& key) const { return nextoken::positive_int(&require(key), what(key)); }

int HFConfig::positive_int(const std::string& key, int64_t fallback) const {
  if (const JSON* x = get(key)) return nextoken::positive_int(x, what(key));
  if (fallback <= 0 || fallback >= (int64_t(1) << 31))
    throw Error(what(key) + " must be a positive integer, got " + std::to_string(fallback));
  return int(fallback);
}
double HFConfig::positive_float(const std::string& key) const {
return nextoken::positive_float(&require(key), what(key));
}

double HFConfig::positive_float(const std::string& key, double fallback) const {
  const JSON* x = get(key);
  return x ? nextoken::positive_float(x, what(key)) : fallback;
}

Activation HFConfig::activation(const std::string& key) const {
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

JSON HFConfig::rope_parameters(const std::string& layer_type) const {
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
  const JSON kind = type ? *type : json_string("default");
  params.members.erase(std::remove_if(params.members.begin(), params.members.end(),
                                      [](const auto& m) { return m.first == "type"; }),
                       params.members.end());
  if (!params.find("rope_type")) json_set(params, "rope_type", kind);
  const JSON* theta = get("rope_theta");
  json_set(params, "rope_theta", theta ? *theta : json_number(10000.0));
  return params;
}

std::vector<float> HFConfig::rope_inv_freq(int head_dim, const std::string& layer_type) const {
  const JSON params = rope_parameters(layer_type);
  if (const JSON* partial = params.find("partial_rotary_factor"); partial && !(partial->is_number() && partial->number == 1.0))
    throw Error(source_ + ": partial rotary embeddings are not supported");
  const double base = nextoken::positive_float(params.find("rope_theta"), source_ + ": rope_theta");
  return scaled_rope_inv_freq(base, head_dim, params, source_ + ": rope scaling");
}

std::vector<bool> HFConfig::sliding_layers(int n_layers, const std::vector<bool>& fallback) const {
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

std::vector<int> HFConfig::sliding_windows(const std::vector<bool>& sliding) const {
  std::vector<int> windows(sliding.size(), 0);
  for (size_t i = 0; i < sliding.size(); ++i)
    if (sliding[i]) windows[i] = positive_int("sliding_window");
  return windows;
}

int HFConfig::context_length(const std::string& key, const std::string& folder) const {
  const JSON* x = get(key);
  if (!x) return 0;
  if (!x->is_integer() || x->integer < 0 || x->integer >= (int64_t(1) << 31))
    throw Error(folder + ": the context length it was trained for must be an integer >= 0, got " + x->describe());
  return int(x->integer);
}

}  // namespace nextoken
