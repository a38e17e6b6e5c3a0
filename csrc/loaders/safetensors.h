// safetensors.h: Hugging Face model folders read in place: config.json, generation_config.json and
// preprocessor_config.json parsed (json.h), the weights of model.safetensors (or of the shards that
// model.safetensors.index.json lists) left in read-only memory maps.
//
// The safetensors layout: an 8-byte little-endian header length, a JSON header of name -> dtype, shape
// and byte offsets, then the data. Only F32, F16 and BF16 tensors are accepted. The files are untrusted:
// every shape and offset is checked against the file before a view is made, and whatever is wrong is a
// nextoken::Error naming the file. What a folder's names mean is in hf_models.h.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../model/weights.h"
#include "json.h"

namespace nextoken {

// The tensors of safetensors files, by name, as views of their mappings (or, for a tensor that is not
// 64-byte aligned in its file, of a copy), alive as long as this object.
class SafetensorsFiles {
 public:
  SafetensorsFiles() = default;
  ~SafetensorsFiles();
  SafetensorsFiles(const SafetensorsFiles&) = delete;
  SafetensorsFiles& operator=(const SafetensorsFiles&) = delete;

  // Maps `path` and adds its tensors; `placed(name)` says whether the index puts a tensor in this file
  // (a tensor elsewhere, or one already read from another file, is an error).
  void add(const std::string& path, const std::map<std::string, std::string>* index_placement = nullptr);
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }

 private:
  struct Mapping { const uint8_t* data; size_t size; };
  std::vector<Mapping> maps_;
  std::vector<std::vector<uint8_t>> copies_;
  std::map<std::string, TensorView> tensors_;
};

struct HFFolder {
  std::string path;  // the folder
  std::string name;  // its last component, for messages
  JSON config, generation_config, preprocessor_config;  // objects; the last two empty when the file is absent
  std::shared_ptr<const SafetensorsFiles> weights;
};

// Throws nextoken::Error unless `path` is a folder with a readable config.json and safetensors weights.
HFFolder read_hf_folder(const std::string& path);

}  // namespace nextoken
