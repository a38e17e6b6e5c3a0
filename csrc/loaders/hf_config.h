// hf_config.h: reading a Hugging Face config.json (or a sub-config) the way transformers does, with the
// defaults it gives missing keys (4.x and 5.x spellings), and errors that name the file and the key.
// Used by hf_models.cpp. Values that Python tests for truth (`if config.get(key):`) are read as Python
// would, so that a folder means what it means to transformers.
#pragma once

#include <string>
#include <vector>

#include "../common.h"
#include "json.h"

namespace nextoken {

// As Python's bool() of the value (null: false).
bool truthy(const JSON* v);
// A JSON number / integer / string / empty object, and an object's member set (replaced where present).
JSON json_number(double x);
JSON json_integer(int64_t x);
JSON json_string(const std::string& s);
JSON json_object();
void json_set(JSON& object, const std::string& key, JSON value);

class HFConfig {
 public:
  // Throws nextoken::Error unless `values` (which must outlive this) is an object.
  HFConfig(const JSON& values, std::string source);

  const std::string& source() const { return source_; }
  const JSON& values() const { return v_; }
  // The value of `key`, or null where it is absent or null (then the caller's default applies).
  const JSON* get(const std::string& key) const;
  bool truthy(const std::string& key, bool fallback = false) const;
  const JSON& require(const std::string& key) const;  // "<source> lacks '<key>'" if absent
  int positive_int(const std::string& key) const;
  int positive_int(const std::string& key, int64_t fallback) const;
  double positive_float(const std::string& key) const;
  double positive_float(const std::string& key, double fallback) const;
  Activation activation(const std::string& key) const;

  // transformers 5's rope_parameters (per layer type where the model has several), or transformers 4's
  // rope_theta + rope_scaling, as one object with rope_type and rope_theta.
  JSON rope_parameters(const std::string& layer_type = "") const;
  // Its inverse frequencies: default, linear or llama3 scaling, in float32 as transformers computes them.
  std::vector<float> rope_inv_freq(int head_dim, const std::string& layer_type = "") const;
  // Per layer: whether it attends to a sliding window (`layer_types` where the file lists them), and
  // the windows (sliding_window for those, 0 for the others).
  std::vector<bool> sliding_layers(int n_layers, const std::vector<bool>& fallback) const;
  std::vector<int> sliding_windows(const std::vector<bool>& sliding) const;
  // What the model was trained for (0: the file does not say); `folder` names it in the message.
  int context_length(const std::string& key, const std::string& folder) const;

 private:
  std::string what(const std::string& key) const { return source_ + ": '" + key + "'"; }

  const JSON& v_;
  std::string source_;
};

}  // namespace nextoken
