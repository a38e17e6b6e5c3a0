// bindings.cpp: the one Python module, nextoken._core.
//
// Weights arrive by role as numpy views of the memory-mapped file and are used where they lie (the
// Transformer object keeps the arrays alive). The GIL is released around the calls that compute at length
// or wait for a session's lock (loading, forward, generation steps, matmul, attention); the small ops keep
// it. nextoken::Error (bad input) becomes ValueError. Low-level kernels are exposed under _core.ops on numpy arrays, for tests
// and for embedding in other stacks.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cmath>
#include <memory>
#include <optional>
#include <string>

#include "kernels/cuda.h"
#include "kernels/kernels.h"
#include "loaders/gguf_models.h"
#include "loaders/hf_models.h"
#include "model/beam_search.h"
#include "model/session.h"
#include "parallel.h"
#include "tokenizer/hf_vocabulary.h"
#include "tokenizer/tokenizer.h"

namespace py = pybind11;
using namespace nextoken;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IdArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using ByteArray = py::array_t<uint8_t, py::array::c_style>;

DType checked_dtype(int type) {
  std::string names;
  for (const DTypeInfo& info : DTYPES) names += std::string(names.empty() ? "" : ", ") + info.name;
  NT_CHECK(dtype_known(type), "unsupported weight type " + std::to_string(type) + " (supported: " + names + ")");
  return DType(type);
}

// Device from a user's string: "cpu", or "cuda" where this build and machine have a GPU.
Device parse_device(const std::string& device) {
  if (device == "cpu") return Device::CPU;
  NT_CHECK(device == "cuda", "device must be 'cpu' or 'cuda', not '" + device + "'");
  NT_CHECK(cuda::built(), "device='cuda': this build of nextoken has no CUDA kernels (no CUDA compiler was found "
                          "when it was built)");
  NT_CHECK(cuda::device_count() > 0, "device='cuda': no CUDA device is visible (no GPU, or no driver)");
  return Device::CUDA;
}

// A (rows, cols) weight of `type` in `data`: checks the byte count and block alignment.
TensorView tensor_view(const std::string& name, const ByteArray& data, int type, int64_t rows, int64_t cols) {
  const DType t = checked_dtype(type);
  NT_CHECK(rows > 0 && cols > 0, "tensor '" + name + "' has an empty shape");
  NT_CHECK(rows < (int64_t(1) << 31) && cols < (int64_t(1) << 31) && double(rows) * double(cols) < 0x1p50,
           "tensor '" + name + "' is impossibly large (" + std::to_string(rows) + " x " + std::to_string(cols) + ")");
  NT_CHECK(cols % dtype_block(t) == 0, "tensor '" + name + "': " + dtype_name(t) + " rows must be a multiple of " +
                                           std::to_string(dtype_block(t)) + " weights, got " + std::to_string(cols));
  const size_t expected = size_t(rows) * row_bytes(t, cols);
  NT_CHECK(size_t(data.nbytes()) == expected, "tensor '" + name + "' has " + std::to_string(data.nbytes()) +
                                                  " bytes, expected " + std::to_string(expected) + " for " +
                                                  dtype_name(t) + " (" + std::to_string(rows) + ", " +
                                                  std::to_string(cols) + ")");
  return TensorView{t, data.data(), rows, cols};
}

int checked_threads(int n) { return check_threads(n); }

// ---- the model -----------------------------------------------------------------------------------

// A value of the model config dict, as T; a missing key or a value of the wrong type is a
// nextoken::Error naming the key (never pybind11's cast error).
template <class T>
T dict_value(const py::dict& d, const char* key, const char* what) {
  NT_CHECK(d.contains(key), std::string(what) + " lacks '" + key + "'");
  try {
    return d[key].cast<T>();
  } catch (const py::cast_error&) {
    throw Error(std::string(what) + ": '" + key + "' has the wrong type (" +
                std::string(py::str(py::type::of(d[key]).attr("__name__"))) + ")");
  }
}

template <class T>
T config_value(const py::dict& config, const char* key) {
  return dict_value<T>(config, key, "model config");
}

// The sampling parameters nextoken.sampling.checked_params() validated: temperature, top_k, top_p and the
// LogitsParams processors.
SamplingParams sampling_params(const py::dict& d, uint64_t seed) {
  const char* what = "sampling parameters";
  SamplingParams s{dict_value<float>(d, "temperature", what), dict_value<int>(d, "top_k", what),
                   dict_value<float>(d, "top_p", what), seed, {}};
  LogitsParams& p = s.more;
  p.min_p = dict_value<float>(d, "min_p", what);
  p.typical_p = dict_value<float>(d, "typical_p", what);
  p.repetition_penalty = dict_value<float>(d, "repetition_penalty", what);
  p.presence_penalty = dict_value<float>(d, "presence_penalty", what);
  p.frequency_penalty = dict_value<float>(d, "frequency_penalty", what);
  p.no_repeat_ngram_size = dict_value<int>(d, "no_repeat_ngram_size", what);
  p.logit_bias = dict_value<std::vector<std::pair<int32_t, float>>>(d, "logit_bias", what);
  p.bad_words_ids = dict_value<std::vector<std::vector<int32_t>>>(d, "bad_words_ids", what);
  return s;
}

template <class E>
E config_choice(const py::dict& config, const char* key, std::initializer_list<std::pair<const char*, E>> choices) {
  const std::string value = config_value<std::string>(config, key);
  std::string names;
  for (const auto& [name, e] : choices) {
    if (value == name) return e;
    names += std::string(names.empty() ? "" : ", ") + name;
  }
  throw Error(std::string("model config: '") + key + "' is '" + value + "' (supported: " + names + ")");
}

ModelConfig model_config(const py::dict& d) {
  ModelConfig c;
  c.n_layers = config_value<int>(d, "n_layers");
  c.dim = config_value<int>(d, "dim");
  c.hidden_dim = config_value<int>(d, "hidden_dim");
  c.n_heads = config_value<int>(d, "n_heads");
  c.n_kv_heads = config_value<int>(d, "n_kv_heads");
  c.head_dim = config_value<int>(d, "head_dim");
  c.vocab_size = config_value<int>(d, "vocab_size");
  c.norm = config_choice<NormKind>(d, "norm", {{"rms", NormKind::RMS}, {"layer", NormKind::Layer}});
  c.norm_placement = config_choice<NormPlacement>(
      d, "norm_placement",
      {{"pre", NormPlacement::Pre}, {"post", NormPlacement::Post}, {"sandwich", NormPlacement::Sandwich}});
  c.norm_eps = config_value<float>(d, "norm_eps");
  c.activation = config_choice<Activation>(d, "activation",
                                           {{"silu", Activation::SiLU}, {"gelu_tanh", Activation::GeluTanh},
                                            {"gelu", Activation::Gelu}, {"relu", Activation::ReLU}});
  c.gated = config_value<bool>(d, "gated");
  c.positions = config_choice<Positions>(
      d, "positions", {{"rope", Positions::Rope}, {"learned", Positions::Learned}, {"none", Positions::None}});
  if (c.positions == Positions::Rope) {
    c.rope_layout = config_choice<RopeLayout>(d, "rope_layout", {{"adjacent", RopeLayout::Adjacent}, {"half", RopeLayout::Half}});
    for (const py::handle& table : config_value<py::list>(d, "rope_inv_freq")) {
      const FloatArray arr = FloatArray::ensure(table);
      NT_CHECK(arr && arr.ndim() == 1, "model config: each 'rope_inv_freq' entry must be a 1-D array of floats");
      c.rope_inv_freq.emplace_back(arr.data(), arr.data() + arr.size());
    }
  }
  if (c.positions == Positions::Learned) c.position_offset = config_value<int>(d, "position_offset");
  c.attn_scale = config_value<float>(d, "attn_scale");
  c.qk_norm = config_value<bool>(d, "qk_norm");
  c.embed_scale = config_value<float>(d, "embed_scale");
  c.final_softcap = config_value<float>(d, "final_softcap");
  const auto windows = config_value<std::vector<int>>(d, "sliding_window");
  const auto tables = config_value<std::vector<int>>(d, "rope_table");
  NT_CHECK(int(windows.size()) == c.n_layers && int(tables.size()) == c.n_layers,
           "model config: 'sliding_window' and 'rope_table' need one entry per layer");
  for (int i = 0; i < c.n_layers; ++i) c.layers.push_back(LayerConfig{windows[i], tables[i]});
  // Encoder-decoder choices: absent for decoder-only models.
  auto optional = [&](const char* key, auto fallback) {
    return d.contains(key) ? config_value<decltype(fallback)>(d, key) : fallback;
  };
  c.causal = optional("causal", true);
  c.cross_attention = optional("cross_attention", false);
  c.embed_norm = optional("embed_norm", false);
  c.relative_span = optional("relative_span", 0);
  c.head_scale = optional("head_scale", 1.0f);
  const std::string kv = optional("kv_cache", std::string("f32"));
  NT_CHECK(kv == "f32" || kv == "f16" || kv == "bf16" || kv == "q8_0",
           "kv_cache must be 'f32', 'f16', 'bf16' or 'q8_0', got '" + kv + "'");
  c.kv_type = kv == "f16" ? DType::F16 : kv == "bf16" ? DType::BF16 : kv == "q8_0" ? DType::Q8_0 : DType::F32;
  c.device = parse_device(optional("device", std::string("cpu")));
  return c;
}

// model_config()'s inverse: the dict the Python side keeps as Model.config.
py::dict config_dict(const ModelConfig& c) {
  auto name = [](auto value, std::initializer_list<std::pair<const char*, decltype(value)>> names) {
    for (const auto& [n, v] : names)
      if (v == value) return std::string(n);
    return std::string();
  };
  py::dict d;
  d["n_layers"] = c.n_layers;
  d["dim"] = c.dim;
  d["hidden_dim"] = c.hidden_dim;
  d["n_heads"] = c.n_heads;
  d["n_kv_heads"] = c.n_kv_heads;
  d["head_dim"] = c.head_dim;
  d["vocab_size"] = c.vocab_size;
  d["norm"] = name(c.norm, {{"rms", NormKind::RMS}, {"layer", NormKind::Layer}});
  d["norm_placement"] = name(c.norm_placement, {{"pre", NormPlacement::Pre}, {"post", NormPlacement::Post},
                                                {"sandwich", NormPlacement::Sandwich}});
  d["norm_eps"] = c.norm_eps;
  d["activation"] = name(c.activation, {{"silu", Activation::SiLU}, {"gelu_tanh", Activation::GeluTanh},
                                        {"gelu", Activation::Gelu}, {"relu", Activation::ReLU}});
  d["gated"] = c.gated;
  d["positions"] = name(c.positions, {{"rope", Positions::Rope}, {"learned", Positions::Learned}, {"none", Positions::None}});
  d["rope_layout"] = name(c.rope_layout, {{"adjacent", RopeLayout::Adjacent}, {"half", RopeLayout::Half}});
  py::list tables;
  for (const auto& inv : c.rope_inv_freq) tables.append(py::array_t<float>(py::ssize_t(inv.size()), inv.data()));
  d["rope_inv_freq"] = tables;
  d["position_offset"] = c.position_offset;
  d["attn_scale"] = c.attn_scale;
  d["qk_norm"] = c.qk_norm;
  d["embed_scale"] = c.embed_scale;
  d["final_softcap"] = c.final_softcap;
  d["causal"] = c.causal;
  d["cross_attention"] = c.cross_attention;
  d["embed_norm"] = c.embed_norm;
  d["relative_span"] = c.relative_span;
  d["head_scale"] = c.head_scale;
  std::vector<int> windows, rope_tables;
  for (const LayerConfig& l : c.layers) {
    windows.push_back(l.sliding_window);
    rope_tables.push_back(l.rope_table);
  }
  d["sliding_window"] = windows;
  d["rope_table"] = rope_tables;
  return d;
}

// Text from a file: UTF-8, with U+FFFD for bytes that are not.
py::object file_text(const std::string& s) {
  return py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(s.data(), py::ssize_t(s.size()), "replace"));
}

// A GGUF metadata value as Python reads it: numbers, bools and strings as such (strings decoded with
// U+FFFD for bad UTF-8), arrays of numbers as numpy arrays, other arrays as lists.
py::object metadata_value(const GGUFValue& v) {
  if (!v.is_array) {
    if (v.type == GGUFType::String) return file_text(v.text);
    if (v.type == GGUFType::Bool) return py::bool_(v.bits != 0);
    if (v.type == GGUFType::F32 || v.type == GGUFType::F64) return py::float_(v.as_double());
    if (v.type == GGUFType::U64) return py::int_(v.bits);
    return py::int_(v.as_int());
  }
  if (v.type == GGUFType::String) {
    py::list out;
    for (const std::string& s : v.strings) out.append(file_text(s));
    return out;
  }
  if (v.type == GGUFType::Array) {
    py::list out;
    for (const GGUFValue& item : v.items) out.append(metadata_value(item));
    return out;
  }
  static const std::map<GGUFType, const char*> dtypes = {
      {GGUFType::U8, "<u1"}, {GGUFType::I8, "<i1"}, {GGUFType::U16, "<u2"}, {GGUFType::I16, "<i2"},
      {GGUFType::U32, "<u4"}, {GGUFType::I32, "<i4"}, {GGUFType::F32, "<f4"}, {GGUFType::Bool, "?"},
      {GGUFType::U64, "<u8"}, {GGUFType::I64, "<i8"}, {GGUFType::F64, "<f8"}};
  const py::dtype dtype(dtypes.at(v.type));
  py::array out(dtype, std::vector<py::ssize_t>{py::ssize_t(v.count)});
  if (!v.raw.empty()) std::memcpy(out.mutable_data(), v.raw.data(), v.raw.size());
  return std::move(out);
}

// A GGUF file read and mapped by csrc/loaders: its metadata, and its spec as the Python loaders give it
// (the weights are numpy views of the file mapping, which they keep alive).
py::dict read_gguf(const std::string& path) {
  std::unique_ptr<ModelSpec> spec;
  std::shared_ptr<Tokenizer> tokenizer;
  {
    py::gil_scoped_release release;
    spec = std::make_unique<ModelSpec>(spec_from_gguf(std::make_shared<const GGUFFile>(path)));
    tokenizer = std::make_shared<Tokenizer>(*spec->file, spec->config.vocab_size);
  }
  py::dict metadata;
  for (const auto& [key, value] : spec->file->metadata()) metadata[file_text(key)] = metadata_value(value);
  py::dict out;
  out["metadata"] = metadata;
  out["architecture"] = spec->architecture;
  out["config"] = config_dict(spec->config);
  out["context_length"] = spec->context_length;
  out["identity"] = spec->file->identity();
  out["tokenizer"] = tokenizer;
  const ModelSpec* raw = spec.get();
  const py::capsule owner(spec.release(), [](void* p) { delete static_cast<ModelSpec*>(p); });
  py::list tensors;
  for (const auto& [role, t] : raw->tensors) {
    const size_t nbytes = size_t(t.rows) * row_bytes(t.type, t.cols);
    py::array_t<uint8_t> data({py::ssize_t(nbytes)}, {py::ssize_t(1)}, static_cast<const uint8_t*>(t.data), owner);
    data.attr("setflags")(py::arg("write") = false);  // a read-only file mapping
    tensors.append(py::make_tuple(role, int(t.type), t.rows, t.cols, data));
  }
  out["tensors"] = tensors;
  return out;
}

// ---- Hugging Face folders (csrc/loaders/safetensors.h, hf_models.h) ----

// A JSON value as Python's json module reads it (integers beyond int64 saturated).
py::object json_value(const JSON& v) {
  switch (v.kind) {
    case JSON::Kind::Null: return py::none();
    case JSON::Kind::Bool: return py::bool_(v.boolean);
    case JSON::Kind::Number: return v.integral ? py::object(py::int_(v.integer)) : py::object(py::float_(v.number));
    case JSON::Kind::String: return file_text(v.text);
    case JSON::Kind::Array: {
      py::list out;
      for (const JSON& item : v.items) out.append(json_value(item));
      return std::move(out);
    }
    case JSON::Kind::Object: {
      py::dict out;
      for (const auto& [key, item] : v.members) out[file_text(key)] = json_value(item);
      return std::move(out);
    }
  }
  return py::none();
}

// A value of a config dict (what json.loads gives) as JSON; anything else is a nextoken::Error.
JSON to_json(const py::handle& o, const std::string& what, int depth = 0) {
  NT_CHECK(depth <= 256, what + " is nested deeper than 256 levels");
  JSON v;
  if (o.is_none()) return v;
  if (py::isinstance<py::bool_>(o)) {
    v.kind = JSON::Kind::Bool;
    v.boolean = o.cast<bool>();
  } else if (py::isinstance<py::int_>(o)) {
    v.kind = JSON::Kind::Number;
    v.integral = true;
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(o.ptr(), &overflow);
    v.integer = overflow > 0 ? INT64_MAX : overflow < 0 ? INT64_MIN : x;
    v.number = double(v.integer);
  } else if (py::isinstance<py::float_>(o)) {
    v.kind = JSON::Kind::Number;
    v.number = o.cast<double>();
  } else if (py::isinstance<py::str>(o)) {
    v.kind = JSON::Kind::String;
    py::ssize_t n = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(o.ptr(), &n);
    if (!utf8) {
      PyErr_Clear();
      throw Error(what + " holds a string that is not valid Unicode");
    }
    v.text.assign(utf8, size_t(n));
  } else if (py::isinstance<py::list>(o) || py::isinstance<py::tuple>(o)) {
    v.kind = JSON::Kind::Array;
    for (const py::handle& item : o) v.items.push_back(to_json(item, what, depth + 1));
  } else if (py::isinstance<py::dict>(o)) {
    v.kind = JSON::Kind::Object;
    for (const auto& [key, item] : o.cast<py::dict>()) {
      NT_CHECK(py::isinstance<py::str>(key), what + " has a key that is not a string");
      v.members.emplace_back(to_json(key, what, depth + 1).text, to_json(item, what, depth + 1));
    }
  } else {
    throw Error(what + " holds a value of type " + std::string(py::str(py::type::of(o).attr("__name__"))));
  }
  return v;
}

// Safetensors tensors as {name: (ggml type, rows, cols, uint8 array)}, the arrays keeping `owner` alive.
py::dict tensor_dict(const std::map<std::string, TensorView>& tensors, const py::object& owner) {
  py::dict out;
  for (const auto& [name, t] : tensors) {
    const size_t nbytes = size_t(t.rows) * row_bytes(t.type, t.cols);
    py::array_t<uint8_t> data({py::ssize_t(nbytes)}, {py::ssize_t(1)}, static_cast<const uint8_t*>(t.data), owner);
    data.attr("setflags")(py::arg("write") = false);  // a read-only file mapping
    out[file_text(name)] = py::make_tuple(int(t.type), t.rows, t.cols, data);
  }
  return out;
}

py::object owner_of(std::shared_ptr<const SafetensorsFiles> files) {
  return py::capsule(new std::shared_ptr<const SafetensorsFiles>(std::move(files)),
                     [](void* p) { delete static_cast<std::shared_ptr<const SafetensorsFiles>*>(p); });
}

py::dict read_hf(const std::string& path) {
  std::optional<HFFolder> folder;
  {
    py::gil_scoped_release release;
    folder.emplace(read_hf_folder(path));
  }
  py::dict out;
  out["config"] = json_value(folder->config);
  out["generation_config"] = json_value(folder->generation_config);
  out["preprocessor_config"] = json_value(folder->preprocessor_config);
  out["tensors"] = tensor_dict(folder->weights->tensors(), owner_of(folder->weights));
  return out;
}

py::dict read_safetensors(const std::string& path) {
  auto files = std::make_shared<SafetensorsFiles>();
  {
    py::gil_scoped_release release;
    files->add(path);
  }
  return tensor_dict(files->tensors(), owner_of(files));
}

// A spec's {architecture, config, context_length, tensors [(role, type, rows, cols, uint8 array)]}, the
// arrays keeping `owner` alive.
py::dict spec_dict(const ModelSpec& spec, const py::object& owner) {
  py::dict out;
  out["architecture"] = spec.architecture;
  out["config"] = config_dict(spec.config);
  out["context_length"] = spec.context_length;
  py::list roles;
  for (const auto& [role, t] : spec.tensors) {
    const size_t nbytes = size_t(t.rows) * row_bytes(t.type, t.cols);
    py::array_t<uint8_t> data({py::ssize_t(nbytes)}, {py::ssize_t(1)}, static_cast<const uint8_t*>(t.data), owner);
    data.attr("setflags")(py::arg("write") = false);
    roles.append(py::make_tuple(role, int(t.type), t.rows, t.cols, data));
  }
  out["tensors"] = roles;
  return out;
}

// The spec of a folder's config and generation_config (dicts) and tensors ({name: (type, rows, cols, uint8
// array)}), as read_gguf gives one: its weights view the given arrays or the spec's converted copies. Adds
// rope_parameters, and for encoder-decoder models encoder (a spec dict), generation and vision (dicts).
py::dict spec_from_hf_dict(const py::dict& config, const py::dict& generation_config, const py::dict& tensors,
                           const std::string& name, int n_ctx) {
  const JSON c = to_json(config, name + "/config.json");
  const JSON g = to_json(generation_config, name + "/generation_config.json");
  std::map<std::string, TensorView> views;
  py::list arrays;  // what the views point into, kept alive with the spec
  for (const auto& [key, value] : tensors) {
    const std::string tensor = py::str(key);
    auto [type, rows, cols, data] = value.cast<std::tuple<int, int64_t, int64_t, ByteArray>>();
    const DType t = checked_dtype(type);
    NT_CHECK(t == DType::F32 || t == DType::F16 || t == DType::BF16,
             "tensor '" + tensor + "' of a folder must be F32, F16 or BF16");
    const size_t item = t == DType::F32 ? 4 : 2;
    NT_CHECK(rows >= 0 && cols >= 0 && rows < (int64_t(1) << 31) && cols < (int64_t(1) << 31) &&
                 size_t(data.nbytes()) == size_t(rows) * size_t(cols) * item,
             "tensor '" + tensor + "' has " + std::to_string(data.nbytes()) + " bytes for its shape");
    views[tensor] = TensorView{t, data.data(), rows, cols};
    arrays.append(data);
  }
  auto spec = std::make_unique<ModelSpec>();
  {
    py::gil_scoped_release release;
    *spec = spec_from_hf(c, g, views, name, n_ctx);
  }
  const ModelSpec* raw = spec.get();
  const py::object owner = py::make_tuple(py::capsule(spec.release(), [](void* p) { delete static_cast<ModelSpec*>(p); }),
                                          arrays);
  py::dict out = spec_dict(*raw, owner);
  py::list rope;
  for (const JSON& p : raw->rope_parameters) rope.append(json_value(p));
  out["rope_parameters"] = rope;
  out["encoder"] = raw->encoder ? py::object(spec_dict(*raw->encoder, owner)) : py::object(py::none());
  out["generation"] = raw->generation.is_object() ? json_value(raw->generation) : py::object(py::dict());
  py::dict vision = raw->vision.is_object() ? json_value(raw->vision).cast<py::dict>() : py::dict();
  for (const auto& [key, t] : raw->vision_tensors) {
    py::array_t<float> values({py::ssize_t(t.rows), py::ssize_t(t.cols)}, static_cast<const float*>(t.data), owner);
    values.attr("setflags")(py::arg("write") = false);
    vision[key.c_str()] = t.rows == 1 ? values.attr("reshape")(-1) : py::object(values);
  }
  out["vision"] = vision;
  return out;
}

// The shared weights plus the Python objects that own their memory.
struct PyTransformer {
  PyTransformer(const py::dict& config, const py::list& tensors, int max_positions, const std::string& compute_type,
                bool weights_file_mapped, int n_threads, const std::string& packed_cache,
                const std::string& packed_cache_key) {
    NT_CHECK(compute_type == "float32" || compute_type == "int8",
             "compute_type must be 'float32' or 'int8', got '" + compute_type + "'");
    const ModelConfig c = model_config(config);
    checked_threads(n_threads);
    TensorMap map;
    for (const py::handle& item : tensors) {
      auto [name, type, rows, cols, data] = item.cast<std::tuple<std::string, int, int64_t, int64_t, ByteArray>>();
      NT_CHECK(!map.count(name), "two weights for '" + name + "'");
      map[name] = tensor_view(name, data, type, rows, cols);
      keep_alive.append(data);
    }
    py::gil_scoped_release release;
    model = std::make_shared<Transformer>(c, map, max_positions,
                                          compute_type == "int8" ? ComputeType::Int8 : ComputeType::Float32,
                                          weights_file_mapped, n_threads, PackedCache{packed_cache, packed_cache_key});
  }

  // The encoder's last hidden states (T, C) of token ids, or of input vectors (T, C).
  py::array_t<float> encode(const py::object& tokens, const py::object& embeddings, int n_threads) {
    const ModelConfig& c = model->config();
    NT_CHECK(!c.causal, "encode() needs an encoder");
    checked_threads(n_threads);
    std::vector<int32_t> ids;
    std::vector<float> vectors;
    int T = 0;
    if (!tokens.is_none()) {
      const IdArray arr = IdArray::ensure(tokens);
      NT_CHECK(arr && arr.ndim() == 1 && arr.size() > 0, "the source must be a non-empty 1-D array of ids");
      T = int(arr.size());
      model->check_tokens(arr.data(), T, 0, model->max_positions());
      ids.assign(arr.data(), arr.data() + T);
    } else {
      const FloatArray arr = FloatArray::ensure(embeddings);
      NT_CHECK(arr && arr.ndim() == 2 && arr.shape(0) > 0 && arr.shape(1) == c.dim,
               "input vectors must be (T, " + std::to_string(c.dim) + ")");
      T = int(arr.shape(0));
      const int32_t zero = 0;
      model->check_tokens(&zero, 1, T - 1, model->max_positions());  // positions for T rows
      vectors.assign(arr.data(), arr.data() + arr.size());
    }
    py::array_t<float> hidden({T, c.dim});
    float* out = hidden.mutable_data();
    py::gil_scoped_release release;
    model->encode(ids.empty() ? nullptr : ids.data(), vectors.empty() ? nullptr : vectors.data(), T, out, n_threads);
    return hidden;
  }

  std::shared_ptr<const Transformer> model;
  py::list keep_alive;
};

// Encoder states (S, C) for a cross-attention decoder: a C-contiguous float32 copy, checked.
std::vector<float> encoder_states(const Transformer& model, const py::object& states, int& n_states) {
  n_states = 0;
  if (states.is_none()) return {};
  const FloatArray arr = FloatArray::ensure(states);
  const int C = model.config().dim;
  NT_CHECK(arr && arr.ndim() == 2 && arr.shape(0) > 0 && arr.shape(1) == C,
           "encoder_hidden_states must be (S, " + std::to_string(C) + ") floats");
  for (py::ssize_t i = 0; i < arr.size(); ++i)
    NT_CHECK(std::isfinite(arr.data()[i]), "encoder_hidden_states holds NaN or infinity");
  n_states = int(arr.shape(0));
  return std::vector<float>(arr.data(), arr.data() + arr.size());
}

// A session plus a reference to the Python transformer object that owns its weights.
struct PySession {
  PySession(py::object transformer, int n_ctx, int n_threads) : owner(transformer) {
    auto model = transformer.cast<PyTransformer&>().model;
    py::gil_scoped_release release;
    session = std::make_unique<Session>(model, n_ctx, n_threads);
  }

  py::array_t<float> forward(const IdArray& tokens, int pos0, bool all_logits, const py::object& states) {
    NT_CHECK(tokens.ndim() == 1, "tokens must be a 1-D array of ids");
    const int T = int(tokens.shape(0)), V = session->model().config().vocab_size;
    int n_states;
    const std::vector<float> enc = encoder_states(session->model(), states, n_states);
    py::array_t<float> logits = all_logits ? py::array_t<float>({T, V}) : py::array_t<float>({V});
    const int32_t* ids = tokens.data();
    float* out = logits.mutable_data();
    {
      py::gil_scoped_release release;
      session->forward(ids, T, pos0, out, all_logits, enc.empty() ? nullptr : enc.data(), n_states);
    }
    return logits;
  }

  uint64_t add(const IdArray& prompt, int max_new_tokens, int min_new_tokens, uint64_t seed,
               const std::vector<int32_t>& eos_ids, const py::dict& sampling, int logprobs, bool context_shift,
               int n_keep, bool pulled, const py::object& states, int32_t forced_bos) {
    NT_CHECK(prompt.ndim() == 1, "the prompt must be a 1-D array of ids");
    SequenceOptions o;
    o.max_new_tokens = max_new_tokens;
    o.min_new_tokens = min_new_tokens;
    o.sampling = sampling_params(sampling, seed);
    o.eos_ids = eos_ids;
    o.logprobs = logprobs;
    o.context_shift = context_shift;
    o.n_keep = n_keep;
    o.forced_bos = forced_bos;
    std::vector<int32_t> ids(prompt.data(), prompt.data() + prompt.size());
    int n_states;
    const std::vector<float> enc = encoder_states(session->model(), states, n_states);
    py::gil_scoped_release release;  // waits for the session's lock
    return session->add(std::move(ids), o, pulled, enc.empty() ? nullptr : enc.data(), n_states);
  }

  // The session's calls that wait for its lock or compute, without the GIL.
  template <class F>
  auto unlocked(const F& fn) {
    py::gil_scoped_release release;
    return fn(*session);
  }

  py::object owner;
  std::unique_ptr<Session> session;
};

// ---- ops: kernels on numpy arrays ------------------------------------------------------------------

// device="cuda": the op's CUDA twin on device copies of the arrays (for tests and benchmarks of the twins).
// False for "cpu"; true once run() has run the op on the GPU.
template <class Run>
bool ran_on_cuda(const std::string& device, const Run& run) {
  if (parse_device(device) == Device::CPU) return false;
  py::gil_scoped_release release;
  run();
  return true;
}

// A device copy of a host array, for ran_on_cuda's ops.
template <class T>
cuda::Buffer to_device(const T* host, size_t n) { return cuda::Buffer(n * sizeof(T), host); }

py::array_t<float> op_matmul(const FloatArray& x, const ByteArray& w, int type, int n_out, int n_threads,
                             const std::string& device) {
  NT_CHECK(x.ndim() == 2, "x must be 2-D (T, K)");
  const int T = int(x.shape(0)), K = int(x.shape(1));
  TensorView wv = tensor_view("w", w, type, n_out, K);
  checked_threads(n_threads);
  py::array_t<float> y({T, n_out});
  float* yp = y.mutable_data();
  const float* xp = x.data();
  if (ran_on_cuda(device, [&] {
        const cuda::Buffer dx = to_device(xp, size_t(T) * K), dy(size_t(T) * n_out * sizeof(float));
        const cuda::Buffer dw(row_bytes(wv.type, K) * n_out, wv.data);
        cuda::matmul(dy.as<float>(), dx.as<float>(), dw.as<void>(), wv.type, T, K, n_out);
        dy.to_host(yp);
      }))
    return y;
  py::gil_scoped_release release;
  matmul(yp, xp, wv.data, wv.type, T, K, n_out, n_threads);
  return y;
}

std::vector<py::array_t<float>> op_matmul_multi(const FloatArray& x, const std::vector<std::tuple<ByteArray, int, int>>& weights,
                                                int n_threads) {
  NT_CHECK(x.ndim() == 2, "x must be 2-D (T, K)");
  const int T = int(x.shape(0)), K = int(x.shape(1));
  checked_threads(n_threads);
  std::vector<py::array_t<float>> ys;
  std::vector<MatmulOut> outs;
  for (const auto& [w, type, n_out] : weights) {
    const TensorView wv = tensor_view("w", w, type, n_out, K);
    ys.emplace_back(std::vector<py::ssize_t>{T, n_out});
    outs.push_back(MatmulOut{ys.back().mutable_data(), wv.data, wv.type, n_out});
  }
  const float* xp = x.data();
  {
    py::gil_scoped_release release;
    matmul_multi(outs.data(), int(outs.size()), xp, T, K, n_threads);
  }
  return ys;
}

py::array_t<uint8_t> op_pack_weight(const ByteArray& w, int type, int rows, int cols) {
  const TensorView wv = tensor_view("w", w, type, rows, cols);
  NT_CHECK(packed_format(wv.type).bits,
           std::string("no packed form for ") + dtype_name(wv.type) + " (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K only)");
  NT_CHECK(pack_fits(wv.data, wv.type, rows, cols), "a block scale of w is too large for the packed f16 scales");
  py::array_t<uint8_t> out(py::ssize_t(packed_bytes(wv.type, rows, cols)));
  pack_weight(out.mutable_data(), wv.data, wv.type, rows, cols, 1);
  return out;
}

py::tuple op_quantize_activations(const FloatArray& x) {
  NT_CHECK(x.ndim() == 2 && x.shape(1) % QK == 0, "x must be (T, K) with K a multiple of 32");
  const int T = int(x.shape(0)), K = int(x.shape(1));
  py::array_t<int8_t> xq({T, K});
  py::array_t<float> dx({T, K / QK});
  py::array_t<int32_t> sx({T, K / QK});
  std::vector<float> dx_sx(size_t(T) * K / QK);
  quantize_activations(xq.mutable_data(), dx.mutable_data(), sx.mutable_data(), dx_sx.data(), x.data(), T, K, 1);
  return py::make_tuple(xq, dx, sx);
}

py::array_t<float> op_matmul_int8(const FloatArray& x, const ByteArray& packed, int type, int n_out, int n_threads) {
  NT_CHECK(x.ndim() == 2 && x.shape(1) % QK == 0, "x must be (T, K) with K a multiple of 32");
  const int T = int(x.shape(0)), K = int(x.shape(1));
  const DType t = checked_dtype(type);
  NT_CHECK(packed_format(t).bits, std::string("no packed form for ") + dtype_name(t));
  NT_CHECK(n_out > 0 && size_t(packed.nbytes()) == packed_bytes(t, n_out, K), "packed weight has the wrong size");
  checked_threads(n_threads);
  std::vector<int8_t> xq(size_t(T) * K);
  std::vector<float> dx(size_t(T) * K / QK);
  std::vector<int32_t> sx(size_t(T) * K / QK);
  std::vector<float> dx_sx(size_t(T) * K / QK);
  py::array_t<float> y({T, n_out});
  const PackedOut out{y.mutable_data(), packed.data(), packed_format(t), n_out};
  const float* xp = x.data();
  py::gil_scoped_release release;
  quantize_activations(xq.data(), dx.data(), sx.data(), dx_sx.data(), xp, T, K, n_threads);
  matmul_int8_multi(&out, 1, xq.data(), dx.data(), sx.data(), dx_sx.data(), T, K, n_threads);
  return y;
}

py::array_t<uint8_t> op_quantize(const FloatArray& x, int type, int n_threads) {
  NT_CHECK(x.ndim() == 2, "quantize: x must be 2-D (rows, cols)");
  const DType t = checked_dtype(type);
  NT_CHECK(t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K, "quantize: the types are Q8_0, Q4_0 and Q4_K");
  const int64_t rows = x.shape(0), cols = x.shape(1);
  NT_CHECK(rows > 0 && cols > 0 && cols % dtype_block(t) == 0,
           std::string("quantize: rows must be whole ") + dtype_name(t) + " blocks of " + std::to_string(dtype_block(t)));
  checked_threads(n_threads);
  py::array_t<uint8_t> out(py::ssize_t(size_t(rows) * row_bytes(t, cols)));
  uint8_t* o = out.mutable_data();
  const float* xp = x.data();
  py::gil_scoped_release release;
  quantize_rows(o, xp, rows, cols, t, n_threads);
  return out;
}

py::array_t<float> op_dequantize(const ByteArray& w, int type, int64_t rows, int64_t cols) {
  TensorView wv = tensor_view("w", w, type, rows, cols);
  py::array_t<float> out({rows, cols});
  const size_t rb = row_bytes(wv.type, cols);
  for (int64_t r = 0; r < rows; ++r)
    dequantize_row(out.mutable_data() + r * cols, static_cast<const uint8_t*>(wv.data) + r * rb, wv.type, cols);
  return out;
}

py::array_t<float> op_rmsnorm(const FloatArray& x, const FloatArray& weight, float eps, const std::string& device) {
  NT_CHECK(x.ndim() == 2 && weight.ndim() == 1 && weight.shape(0) == x.shape(1), "rmsnorm: x (T, C), weight (C)");
  const int T = int(x.shape(0)), C = int(x.shape(1));
  py::array_t<float> out({T, C});
  float* o = out.mutable_data();
  const float *xp = x.data(), *wp = weight.data();
  if (ran_on_cuda(device, [&] {
        const cuda::Buffer dx = to_device(xp, size_t(T) * C), dw = to_device(wp, C);
        cuda::rmsnorm(dx.as<float>(), dx.as<float>(), dw.as<float>(), T, C, eps);
        dx.to_host(o);
      }))
    return out;
  rmsnorm(o, xp, wp, T, C, eps);
  return out;
}

py::array_t<float> op_layernorm(const FloatArray& x, const FloatArray& weight, const FloatArray& bias, float eps,
                                const std::string& device) {
  NT_CHECK(x.ndim() == 2 && weight.ndim() == 1 && weight.shape(0) == x.shape(1) && bias.ndim() == 1 &&
               bias.shape(0) == x.shape(1),
           "layernorm: x (T, C), weight (C), bias (C)");
  const int T = int(x.shape(0)), C = int(x.shape(1));
  py::array_t<float> out({T, C});
  float* o = out.mutable_data();
  const float *xp = x.data(), *wp = weight.data(), *bp = bias.data();
  if (ran_on_cuda(device, [&] {
        const cuda::Buffer dx = to_device(xp, size_t(T) * C), dw = to_device(wp, C), db = to_device(bp, C);
        cuda::layernorm(dx.as<float>(), dx.as<float>(), dw.as<float>(), db.as<float>(), T, C, eps);
        dx.to_host(o);
      }))
    return out;
  layernorm(o, xp, wp, bp, T, C, eps);
  return out;
}

py::tuple op_rope_table(int n_pos, const FloatArray& inv_freq) {
  NT_CHECK(n_pos > 0 && inv_freq.ndim() == 1 && inv_freq.size() > 0, "rope_table: n_pos > 0 and a 1-D inv_freq");
  const int half = int(inv_freq.size());
  py::array_t<float> cos({n_pos, half}), sin({n_pos, half});
  rope_table(cos.mutable_data(), sin.mutable_data(), n_pos, half, inv_freq.data());
  return py::make_tuple(cos, sin);
}

py::array_t<float> op_rope(const FloatArray& x, const FloatArray& cos, const FloatArray& sin, bool half_layout,
                           const std::string& device) {
  NT_CHECK(x.ndim() == 3 && x.shape(2) % 2 == 0, "rope: x must be (T, n_heads, D) with D even");
  const int T = int(x.shape(0)), H = int(x.shape(1)), D = int(x.shape(2));
  NT_CHECK(cos.ndim() == 2 && sin.ndim() == 2 && cos.shape(0) == T && cos.shape(1) == D / 2 &&
               sin.shape(0) == T && sin.shape(1) == D / 2,
           "rope: cos and sin must be (T, D/2)");
  py::array_t<float> out({T, H, D});
  float* o = out.mutable_data();
  const float *xp = x.data(), *cp = cos.data(), *sp = sin.data();
  if (ran_on_cuda(device, [&] {
        const size_t n = size_t(T) * H * D, n_table = size_t(T) * (D / 2);
        const cuda::Buffer dx = to_device(xp, n), dc = to_device(cp, n_table), ds = to_device(sp, n_table);
        cuda::rope(dx.as<float>(), dc.as<float>(), ds.as<float>(), T, H, D, half_layout);
        dx.to_host(o);
      }))
    return out;
  std::copy(xp, xp + x.size(), o);
  rope(o, cp, sp, T, H, D, half_layout);
  return out;
}

Activation activation_kind(const std::string& kind) {
  if (kind == "silu") return Activation::SiLU;
  if (kind == "gelu_tanh") return Activation::GeluTanh;
  if (kind == "gelu") return Activation::Gelu;
  if (kind == "relu") return Activation::ReLU;
  throw Error("activation: unknown kind '" + kind + "' (silu, gelu_tanh, gelu, relu)");
}

py::array_t<float> op_activation(const FloatArray& x, const std::string& kind, const std::optional<FloatArray>& up,
                                 const std::string& device) {
  const Activation act = activation_kind(kind);
  NT_CHECK(!up || up->request().shape == x.request().shape, "activation: x and up must have the same shape");
  py::array_t<float> out(x.request().shape);
  float* o = out.mutable_data();
  const float *xp = x.data(), *up_p = up ? up->data() : nullptr;
  const size_t n = size_t(x.size());
  if (ran_on_cuda(device, [&] {
        const cuda::Buffer dx = to_device(xp, n), du(up_p ? n * sizeof(float) : 0, up_p);
        cuda::activation(dx.as<float>(), dx.as<float>(), up_p ? du.as<float>() : nullptr, int64_t(n), act);
        dx.to_host(o);
      }))
    return out;
  if (up_p) gated_activation(o, xp, up_p, int64_t(n), act);
  else activation(o, xp, int64_t(n), act);
  return out;
}

py::array_t<float> op_add(const FloatArray& x, const FloatArray& y, const std::string& device) {
  NT_CHECK(x.request().shape == y.request().shape, "add: x and y must have the same shape");
  py::array_t<float> out(x.request().shape);
  float* o = out.mutable_data();
  const float *xp = x.data(), *yp = y.data();
  const size_t n = size_t(x.size());
  if (ran_on_cuda(device, [&] {
        const cuda::Buffer dx = to_device(xp, n), dy = to_device(yp, n);
        cuda::add_inplace(dx.as<float>(), dy.as<float>(), int64_t(n));
        dx.to_host(o);
      }))
    return out;
  std::copy(xp, xp + n, o);
  add_inplace(o, yp, int64_t(n));
  return out;
}

py::array_t<float> op_embedding(const py::array& ids, const ByteArray& table, int type, int vocab, int C,
                                const std::string& device) {
  NT_CHECK(ids.ndim() == 1, "embedding: ids must be 1-D");
  NT_CHECK(ids.size() == 0 || ids.dtype().kind() == 'i' || ids.dtype().kind() == 'u', "embedding: ids must be integers");
  const auto wide = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(ids);
  TensorView tv = tensor_view("table", table, type, vocab, C);
  std::vector<int32_t> narrow(size_t(wide.size()));
  for (py::ssize_t t = 0; t < wide.size(); ++t) {
    const int64_t id = wide.data()[t];
    NT_CHECK(id >= 0 && id < vocab, "embedding: token id " + std::to_string(id) + " outside [0, " + std::to_string(vocab) + ")");
    narrow[t] = int32_t(id);
  }
  const int T = int(narrow.size());
  py::array_t<float> out({py::ssize_t(T), py::ssize_t(C)});
  float* o = out.mutable_data();
  if (ran_on_cuda(device, [&] {
        const cuda::Buffer d_ids = to_device(narrow.data(), narrow.size()), d_out(size_t(T) * C * sizeof(float));
        const cuda::Buffer d_table(row_bytes(tv.type, C) * vocab, tv.data);
        cuda::embedding(d_out.as<float>(), d_ids.as<int32_t>(), T, d_table.as<void>(), tv.type, C);
        d_out.to_host(o);
      }))
    return out;
  embedding(o, narrow.data(), T, tv.data, tv.type, C);
  return out;
}

// q: (T, H, D) for prefill, k, v: (H_kv, S, D).
void check_attention(const FloatArray& q, const FloatArray& k, const FloatArray& v, int q_rank) {
  NT_CHECK(q.ndim() == q_rank && k.ndim() == 3 && v.ndim() == 3, "attention: wrong number of dimensions");
  NT_CHECK(k.shape(0) == v.shape(0) && k.shape(1) == v.shape(1) && k.shape(2) == v.shape(2), "attention: k and v differ in shape");
  const py::ssize_t H = q.shape(q_rank - 2), D = q.shape(q_rank - 1), H_kv = k.shape(0);
  NT_CHECK(k.shape(2) == D, "attention: q and k head dims differ");
  NT_CHECK(H_kv > 0 && H % H_kv == 0, "attention: query heads must be a multiple of key/value heads");
  NT_CHECK(D > 0 && D <= 256, "attention: head dim must be in [1, 256]");
}

// One sequence's attention (T query rows at pos0 ..) on the CPU or, with device="cuda", on the GPU.
void attention_one(float* out, const float* q, const float* k, const float* v, int T, int pos0, int S, int H, int H_kv,
                   int D, int window, int n_threads, const std::string& device) {
  const float scale = 1.0f / std::sqrt(float(D));
  if (ran_on_cuda(device, [&] {
        const size_t n_q = size_t(T) * H * D, n_kv = size_t(H_kv) * S * D;
        const cuda::Buffer dq = to_device(q, n_q), dk = to_device(k, n_kv), dv = to_device(v, n_kv);
        const cuda::Buffer dout(n_q * sizeof(float));
        const AttentionSeq seq{dk.as<float>(), dv.as<float>(), S, T, pos0, 0};
        const cuda::Buffer scratch(cuda::attention_scratch_floats(&seq, 1, H, D) * sizeof(float));
        cuda::attention(dout.as<float>(), dq.as<float>(), &seq, 1, H, H_kv, D, scale, window, nullptr, 0, DType::F32,
                        scratch.as<float>());
        dout.to_host(out);
      }))
    return;
  const AttentionSeq seq{k, v, S, T, pos0, 0};
  py::gil_scoped_release release;
  attention(out, q, &seq, 1, H, H_kv, D, scale, window, nullptr, 0, DType::F32, n_threads);
}

py::array_t<float> op_attention_prefill(const FloatArray& q, const FloatArray& k, const FloatArray& v, int pos0,
                                        int window, int n_threads, const std::string& device) {
  check_attention(q, k, v, 3);
  const int T = int(q.shape(0)), H = int(q.shape(1)), D = int(q.shape(2)), H_kv = int(k.shape(0)), S = int(k.shape(1));
  NT_CHECK(pos0 >= 0 && int64_t(pos0) + T <= S, "attention_prefill: pos0 + T exceeds the cache length");
  NT_CHECK(window >= 0, "attention_prefill: window must be >= 0");
  checked_threads(n_threads);
  py::array_t<float> out({T, H, D});
  attention_one(out.mutable_data(), q.data(), k.data(), v.data(), T, pos0, S, H, H_kv, D, window, n_threads, device);
  return out;
}

py::array_t<float> op_attention_decode(const FloatArray& q, const FloatArray& k, const FloatArray& v, int n_keys,
                                       int window, int n_threads, const std::string& device) {
  check_attention(q, k, v, 2);
  const int H = int(q.shape(0)), D = int(q.shape(1)), H_kv = int(k.shape(0)), S = int(k.shape(1));
  NT_CHECK(n_keys > 0 && n_keys <= S, "attention_decode: n_keys must be in [1, cache length]");
  NT_CHECK(window >= 0, "attention_decode: window must be >= 0");
  checked_threads(n_threads);
  py::array_t<float> out({H, D});
  attention_one(out.mutable_data(), q.data(), k.data(), v.data(), 1, n_keys - 1, S, H, H_kv, D, window, n_threads, device);
  return out;
}

int op_sample(const FloatArray& logits, float temperature, int top_k, float top_p, float u) {
  NT_CHECK(logits.ndim() == 1 && logits.size() > 0, "sample: logits must be a non-empty 1-D array");
  for (py::ssize_t i = 0; i < logits.size(); ++i)  // -inf is a removed token; NaN and +inf have no softmax
    NT_CHECK(!std::isnan(logits.data()[i]) && logits.data()[i] != INFINITY, "sample: logits hold NaN or +infinity");
  check_sampling_params(SamplingParams{temperature, top_k, top_p, 0, {}}, int(logits.size()));
  NT_CHECK(u >= 0.0f && u < 1.0f, "sample: u must be in [0, 1)");
  const int n = int(logits.size());
  if (temperature == 0.0f) return argmax(logits.data(), n);
  std::vector<int32_t> order(n);
  std::vector<float> probs(n);
  return sample_top_k_top_p(logits.data(), n, temperature, top_k, top_p, u, order.data(), probs.data());
}

py::array_t<float> op_sampling_distribution(const FloatArray& logits, const IdArray& history, const py::dict& sampling) {
  NT_CHECK(logits.ndim() == 1 && logits.size() > 0, "logits must be a non-empty 1-D array");
  NT_CHECK(history.ndim() == 1, "previous_ids must be a 1-D sequence of ids");
  const int V = int(logits.size()), n = int(history.size());
  for (int t = 0; t < n; ++t)
    NT_CHECK(history.data()[t] >= 0 && history.data()[t] < V,
             "previous id " + std::to_string(history.data()[t]) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
  SamplingParams s = sampling_params(sampling, 0);
  check_sampling_params(s, V);
  NT_CHECK(s.temperature > 0.0f, "temperature must be > 0: greedy decoding has no distribution");
  LogitsParams p = s.more;
  p.temperature = s.temperature;
  p.top_k = s.top_k;
  p.top_p = s.top_p;
  std::vector<float> work(logits.data(), logits.data() + V);
  LogitsScratch scratch;
  process_logits(work.data(), V, history.data(), n, p, scratch);
  py::array_t<float> probs(V);
  softmax(probs.mutable_data(), work.data(), V);
  return probs;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "nextoken's C++ core: kernels and the transformer";
  // Error -> nextoken.Error (a ValueError). Messages quote file contents, which need not be UTF-8: decoded with
  // U+FFFD for bad bytes (pybind11's own translation would raise UnicodeDecodeError instead).
  // Never destroyed: its destructor would run after the interpreter has gone (pybind11 keeps its own the same way).
  static const auto* error_type = new py::exception<Error>(m, "Error", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      const std::string what = e.what();
      py::object message = py::reinterpret_steal<py::object>(
          PyUnicode_DecodeUTF8(what.data(), py::ssize_t(what.size()), "replace"));
      PyErr_SetObject(error_type->ptr(), message.ptr());
    }
  });
  m.def("cpu_isa", &cpu_isa, "The instruction set the CPU kernels run with.");
  m.def("cuda_devices", [] {
    std::vector<std::string> names;
    for (int i = 0; i < cuda::device_count(); ++i) names.push_back(cuda::device_name(i));
    return names;
  }, "Names of the GPUs the CUDA kernels can run on: empty without a GPU, or in a build without CUDA.");

  m.def("read_gguf", &read_gguf, py::arg("path"),
        "A GGUF file: {metadata, architecture, config, context_length, tensors [(role, type, rows, cols, bytes)]}\n"
        "mapped by csrc/loaders (the architectures it knows: gguf_architectures()).");
  py::class_<Tokenizer, std::shared_ptr<Tokenizer>>(m, "CoreTokenizer",
                                                    "A vocabulary as text <-> ids (csrc/tokenizer).")
      .def("encode", [](const Tokenizer& t, const std::string& text, bool parse_special, bool add_bos) {
             py::gil_scoped_release release;
             return t.encode(text, parse_special, add_bos);
           }, py::arg("text"), py::arg("parse_special") = true, py::arg("add_bos") = true)
      .def("decode", [](const Tokenizer& t, const std::vector<int32_t>& ids, bool skip_special) {
             py::gil_scoped_release release;
             return t.decode(ids, skip_special);
           }, py::arg("ids"), py::arg("skip_special_tokens") = true)
      .def("is_special", &Tokenizer::is_special)
      .def("token_text", &Tokenizer::token_text)
      .def_property_readonly("vocab_size", &Tokenizer::vocab_size)
      .def_property_readonly("bos_id", &Tokenizer::bos_id)
      .def_property_readonly("eos_ids", &Tokenizer::eos_ids)
      .def_property_readonly("chat_template", &Tokenizer::chat_template);
  m.def("read_hf_folder", &read_hf, py::arg("path"),
        "A Hugging Face folder: {config, generation_config, preprocessor_config (dicts), tensors {name: (type,\n"
        "rows, cols, bytes)}} read by csrc/loaders/safetensors (views of the mapped files).");
  m.def("read_safetensors", &read_safetensors, py::arg("path"),
        "The tensors of one safetensors file: {name: (ggml type, rows, cols, bytes)}.");
  m.def("spec_from_hf", &spec_from_hf_dict, py::arg("config"), py::arg("generation_config"), py::arg("tensors"),
        py::arg("name"), py::arg("n_ctx"),
        "The spec of a folder's config and generation_config dicts and tensors {name: (type, rows, cols, bytes)}:\n"
        "{architecture, config, context_length, tensors [(role, type, rows, cols, bytes)], rope_parameters, encoder\n"
        "(such a dict, or None), generation, vision}, for the model_types hf_model_types() lists\n"
        "(csrc/loaders/hf_models).");
  m.def("hf_model_types", &hf_model_types, "The Hugging Face model_types spec_from_hf maps.");
  m.def("folder_tokenizer", [](const std::string& folder, int vocab_size, const std::vector<int32_t>& eos_ids) {
        py::gil_scoped_release release;
        return std::make_shared<Tokenizer>(hf_vocabulary(folder, vocab_size, eos_ids));
      }, py::arg("folder"), py::arg("vocab_size"), py::arg("eos_ids"),
      "A folder's tokenizer.json read by the core (csrc/tokenizer/hf_vocabulary.h: the byte-level BPEs it reads),\n"
      "as the C API reads it.");
  m.def("gguf_architectures", &gguf_architectures, "The GGUF architectures read_gguf maps.");
  m.def("weight_types", [] {
    py::dict types;
    for (const DTypeInfo& info : DTYPES) types[py::int_(int(info.type))] = py::make_tuple(info.name, info.block, info.block_bytes);
    return types;
  }, "{ggml type number: (name, weights per block, bytes per block)} of every weight type the kernels take.");

  py::class_<PyTransformer>(m, "Transformer")
      .def(py::init<const py::dict&, const py::list&, int, const std::string&, bool, int, const std::string&,
                    const std::string&>(),
           py::arg("config"), py::arg("tensors"), py::arg("max_positions"), py::arg("compute_type") = "float32",
           py::arg("weights_file_mapped") = false, py::arg("n_threads") = 1, py::arg("packed_cache") = "",
           py::arg("packed_cache_key") = "",
           "The immutable part of a model: config (dict of the choices in csrc/model/config.h) and weights\n"
           "[(role, ggml type, rows, cols, uint8 array)]. weights_file_mapped: the arrays view a read-only file\n"
           "mapping, so int8 compute may drop their pages after repacking. Never set it for arrays in RAM.\n"
           "packed_cache: a file for int8 compute's repacked weights, read when it was made from packed_cache_key\n"
           "(the source's identity), else written.")
      .def_property_readonly("packed_from_cache", [](const PyTransformer& t) { return t.model->packed_from_cache(); })
      .def("encode", &PyTransformer::encode, py::arg("tokens") = py::none(), py::arg("embeddings") = py::none(),
           py::arg("n_threads") = 1, "An encoder's last hidden states (T, C) of ids, or of input vectors (T, C).");

  m.def("beam_search", [](const PyTransformer& t, const IdArray& prompt, int n_ctx, int num_beams, int num_return_sequences,
                          int max_new_tokens, int min_new_tokens, double length_penalty, const std::string& early_stopping,
                          const std::vector<int32_t>& eos_ids, const py::dict& sampling, int n_threads,
                          const py::object& states, int32_t forced_bos, bool renormalize) {
    NT_CHECK(prompt.ndim() == 1, "the prompt must be a 1-D array of ids");
    checked_threads(n_threads);
    BeamOptions o;
    o.num_beams = num_beams;
    o.num_return_sequences = num_return_sequences;
    o.max_new_tokens = max_new_tokens;
    o.min_new_tokens = min_new_tokens;
    o.length_penalty = length_penalty;
    NT_CHECK(early_stopping == "false" || early_stopping == "true" || early_stopping == "never",
             "early_stopping must be True, False or 'never'");
    o.early_stopping = early_stopping == "true" ? EarlyStopping::Stop : early_stopping == "never" ? EarlyStopping::Never
                                                                                                  : EarlyStopping::Heuristic;
    o.eos_ids = eos_ids;
    o.processors = sampling_params(sampling, 0).more;
    o.forced_bos = forced_bos;
    o.renormalize = renormalize;
    std::vector<int32_t> ids(prompt.data(), prompt.data() + prompt.size());
    int n_states;
    const std::vector<float> enc = encoder_states(*t.model, states, n_states);
    std::vector<Hypothesis> beams;
    {
      py::gil_scoped_release release;  // reads the immutable transformer only: runs beside other calls
      beams = beam_search(*t.model, n_ctx, ids, o, n_threads, enc.empty() ? nullptr : enc.data(), n_states);
    }
    py::list out;
    for (const Hypothesis& h : beams) out.append(py::make_tuple(h.tokens, h.score));
    return out;
  }, py::arg("transformer"), py::arg("prompt"), py::arg("n_ctx"), py::arg("num_beams"), py::arg("num_return_sequences"),
     py::arg("max_new_tokens"), py::arg("min_new_tokens"), py::arg("length_penalty"), py::arg("early_stopping"),
     py::arg("eos_ids"), py::arg("sampling"), py::arg("n_threads"), py::arg("encoder_states") = py::none(),
     py::arg("forced_bos") = -1, py::arg("renormalize") = false,
     "Hugging Face's beam search: [(generated ids, score)] best first; sampling: checked_params() (processors only).");

  py::class_<StepOutput>(m, "StepOutput", "One token of one sequence.")
      .def_readonly("id", &StepOutput::id)
      .def_readonly("token", &StepOutput::token, "-1 when the sequence had already finished")
      .def_readonly("finished", &StepOutput::finished, "this token ended the sequence")
      .def_readonly("logprob", &StepOutput::logprob, "log softmax of the raw logits at token (logprobs >= 0)")
      .def_readonly("top", &StepOutput::top, "[(id, log-probability)] of the `logprobs` most likely ids")
      .def("__repr__", [](const StepOutput& o) {
        return "StepOutput(id=" + std::to_string(o.id) + ", token=" + std::to_string(o.token) +
               ", finished=" + (o.finished ? "True" : "False") + ", logprob=" + std::to_string(o.logprob) + ")";
      });

  py::class_<PySession>(m, "Session")
      .def(py::init<py::object, int, int>(), py::arg("transformer"), py::arg("n_ctx"), py::arg("n_threads"))
      .def("forward", &PySession::forward, py::arg("tokens"), py::arg("pos0") = 0, py::arg("all_logits") = true,
           py::arg("encoder_states") = py::none())
      .def("add", &PySession::add, py::arg("prompt"), py::arg("max_new_tokens"), py::arg("min_new_tokens"),
           py::arg("seed"), py::arg("eos_ids"), py::arg("sampling"), py::arg("logprobs") = -1,
           py::arg("context_shift") = false, py::arg("n_keep") = 0, py::arg("pulled") = false,
           py::arg("encoder_states") = py::none(), py::arg("forced_bos") = -1,
           "A new sequence (its id); sampling: the dict nextoken.sampling.checked_params() returns. pulled: driven\n"
           "by next() (generate/stream) instead of step(). Computes nothing.")
      .def("step", [](PySession& s, const std::vector<uint64_t>& ids) { return s.unlocked([&](Session& x) { return x.step(ids); }); },
           py::arg("ids"), "One token for each of ids (every unfinished step()-driven sequence when empty), in one pass.")
      .def("next", [](PySession& s, uint64_t id) { return s.unlocked([&](Session& x) { return x.next(id); }); },
           py::arg("id"), "The next token of a pulled sequence (token -1 once it has finished).")
      .def("fork", [](PySession& s, uint64_t id, uint64_t seed) { return s.unlocked([&](Session& x) { return x.fork(id, seed); }); },
           py::arg("id"), py::arg("seed"))
      .def("free", [](PySession& s, uint64_t id) { s.unlocked([&](Session& x) { x.free(id); }); }, py::arg("id"))
      .def("tokens", [](PySession& s, uint64_t id) { return s.unlocked([&](Session& x) { return x.tokens(id); }); },
           py::arg("id"))
      .def("finished", [](PySession& s, uint64_t id) { return s.unlocked([&](Session& x) { return x.finished(id); }); },
           py::arg("id"))
      .def_property_readonly("n_ctx", [](const PySession& s) { return s.session->n_ctx(); })
      .def_property_readonly("tokens_run", [](const PySession& s) { return s.session->tokens_run(); },
                             "Tokens run through the model by step()/next() so far (reused prefixes are not).")
      .def_property("n_threads", [](const PySession& s) { return s.session->n_threads(); },
                    [](PySession& s, int n) { s.session->set_n_threads(n); });

  py::module_ ops = m.def_submodule("ops", "Kernels on numpy arrays (float32 activations, raw GGUF weight bytes).");
  ops.def("matmul", &op_matmul, py::arg("x"), py::arg("w"), py::arg("w_type"), py::arg("n_out"), py::arg("n_threads") = 1,
          py::arg("device") = "cpu", "y (T, N) = x (T, K) @ W^T; w holds N rows of K weights of GGUF type w_type.");
  ops.def("matmul_multi", &op_matmul_multi, py::arg("x"), py::arg("weights"), py::arg("n_threads") = 1,
          "[x @ W_i^T for (w_i, w_type_i, n_out_i) in weights], in one pass over the threads.");
  ops.def("pack_weight", &op_pack_weight, py::arg("w"), py::arg("w_type"), py::arg("rows"), py::arg("cols"),
          "A Q4_0 / Q4_1 / Q5_0 / Q8_0 / Q4_K / Q5_K weight in the packed layout of the int8 matmul.");
  ops.def("quantize_activations", &op_quantize_activations, py::arg("x"), "(xq, dx, sx) per 32-block of x (T, K).");
  ops.def("matmul_int8", &op_matmul_int8, py::arg("x"), py::arg("packed"), py::arg("w_type"), py::arg("n_out"),
          py::arg("n_threads") = 1, "x quantized to int8 per 32-block, times a packed weight.");
  ops.def("quantize", &op_quantize, py::arg("x"), py::arg("w_type"), py::arg("n_threads") = 1,
          "Raw GGUF bytes of x (rows, cols) as Q8_0, Q4_0 or Q4_K, rounded as llama.cpp's reference quantizers.");
  ops.def("dequantize", &op_dequantize, py::arg("w"), py::arg("w_type"), py::arg("rows"), py::arg("cols"));
  ops.def("rmsnorm", &op_rmsnorm, py::arg("x"), py::arg("weight"), py::arg("eps"), py::arg("device") = "cpu");
  ops.def("layernorm", &op_layernorm, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("eps"),
          py::arg("device") = "cpu");
  ops.def("rope_table", &op_rope_table, py::arg("n_pos"), py::arg("inv_freq"), "cos, sin (n_pos, len(inv_freq)).");
  ops.def("rope", &op_rope, py::arg("x"), py::arg("cos"), py::arg("sin"), py::arg("half_layout") = false,
          py::arg("device") = "cpu");
  ops.def("activation", &op_activation, py::arg("x"), py::arg("kind"), py::arg("up") = py::none(),
          py::arg("device") = "cpu", "act(x), or act(x) * up (gated); kind: silu, gelu_tanh, gelu, relu.");
  ops.def("add", &op_add, py::arg("x"), py::arg("y"), py::arg("device") = "cpu");
  ops.def("embedding", &op_embedding, py::arg("ids"), py::arg("table"), py::arg("w_type"), py::arg("vocab"), py::arg("dim"),
          py::arg("device") = "cpu");
  ops.def("attention_prefill", &op_attention_prefill, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("pos0") = 0,
          py::arg("window") = 0, py::arg("n_threads") = 1, py::arg("device") = "cpu",
          "q (T, H, D); k, v (H_kv, S, D); query t at position pos0 + t (sees the last `window` keys if > 0).");
  ops.def("attention_decode", &op_attention_decode, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("n_keys"),
          py::arg("window") = 0, py::arg("n_threads") = 1, py::arg("device") = "cpu",
          "q (H, D); k, v (H_kv, S, D); attends to keys 0 .. n_keys - 1 (the last `window` if > 0).");
  ops.def("philox4x32_10", [](std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
    std::array<uint32_t, 4> out;
    philox4x32_10(out.data(), counter.data(), key.data());
    return out;
  }, py::arg("counter"), py::arg("key"), "The four output words of Philox4x32-10 for a 4-word counter and a 2-word key.");
  ops.def("uniform_draw", &uniform_draw, py::arg("seed"), py::arg("step"), "Draw `step` of the sequence seeded `seed`, in [0, 1).");
  ops.def("log_probabilities", [](const FloatArray& logits, int32_t token, int k) {
    NT_CHECK(logits.ndim() == 1 && logits.size() > 0, "logits must be a non-empty 1-D array");
    NT_CHECK(token >= 0 && token < logits.size() && k >= 0 && k <= logits.size(), "token or k out of range");
    std::vector<std::pair<int32_t, float>> top;
    const float lp = log_probabilities(logits.data(), int(logits.size()), token, k, top);
    return py::make_tuple(lp, top);
  }, py::arg("logits"), py::arg("token"), py::arg("k"), "(log softmax(logits)[token], the k largest [(id, log-probability)]).");
  ops.def("sampling_distribution", &op_sampling_distribution, py::arg("logits"), py::arg("history"), py::arg("sampling"),
          "softmax of the logits after the processors (nextoken.sampling_distribution checks the parameters).");
  ops.def("sample", &op_sample, py::arg("logits"), py::arg("temperature"), py::arg("top_k"), py::arg("top_p"),
          py::arg("u"), "One draw with uniform u in [0, 1); temperature 0 is argmax.");
}
