// spec.h: what the loaders make of a model file (gguf_models.h: GGUF files; hf_models.h: Hugging Face
// folders): the one transformer's config (config.h) and its weights by role (weights.h), plus the
// helper both use to hand out a file's tensors by name, once each.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../model/config.h"
#include "../model/weights.h"
#include "json.h"

namespace nextoken {

class GGUFFile;

// A model's config and its weights by role, as views of the file (or of `converted`: norms and biases as
// float32, which weights.h takes, and GPT-2's transposed matrices).
struct ModelSpec {
  ModelSpec() = default;
  ModelSpec(ModelSpec&&) = default;
  ModelSpec& operator=(ModelSpec&&) = default;
  ModelSpec(const ModelSpec&) = delete;  // a copy's views would point into the original's `converted`
  ModelSpec& operator=(const ModelSpec&) = delete;

  std::string architecture;
  ModelConfig config;
  TensorMap tensors;                        // role -> view
  int context_length = 0;                   // what the model was trained for (0: unknown)
  std::shared_ptr<const GGUFFile> file;     // GGUF: keeps the views alive (folders: the caller keeps them)
  std::vector<std::vector<uint8_t>> converted;
  std::vector<JSON> rope_parameters;        // folders: per RoPE table, the rope_theta / scaling it came from
  // Encoder-decoder models: the encoder (its views point into this spec's `converted` and files), and what
  // generation takes from the folder's configs (decoder_start_token_id, forced_bos_token_id, bad_words_ids,
  // renormalize_logits), as the files spell them.
  std::shared_ptr<ModelSpec> encoder;
  JSON generation;
  // Image encoders: image_size, patch_size, channels, and the patch embedding's F32 tensors by name
  // (patch_weight (C, channels * patch * patch), patch_bias, cls), which the caller applies to pixels.
  JSON vision;
  TensorMap vision_tensors;
};

// Hands out a file's tensors by name, once each (so that a missing one and a left-over one are both
// reported by name), and collects them by role into `spec`.
class WeightCollector {
 public:
  // `tensors` must outlive the collector; `source` names the file in messages.
  WeightCollector(const std::map<std::string, TensorView>& tensors, std::string source)
      : tensors_(tensors), source_(std::move(source)) {}

  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // A tensor by name without taking it (null if absent).
  const TensorView* find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
  }
  const std::string& source() const { return source_; }
  const TensorView* take(const std::string& name, bool required = true);
  void matrix(const std::string& role, const std::string& name, bool required = true);
  // A norm weight or bias, as float32, plus `offset` (Gemma stores w for 1 + w), added in float32.
  void vector(const std::string& role, const std::string& name, bool required = true, float offset = 0.0f);
  void vector(const std::string& role, const std::string& name, const TensorView& t, float offset = 0.0f);
  // A layer weight by role: a norm (role ending in "norm") as a float32 vector plus `norm_offset`,
  // anything else a matrix with its bias if the file has one.
  void layer(const std::string& role, const std::string& name, float norm_offset = 0.0f);
  // A vector's values as float32 (F32, F16 or BF16; else nextoken::Error naming it).
  std::vector<float> floats(const std::string& name, const TensorView& t) const;
  // Any F32 / F16 / BF16 tensor's values as float32, row after row.
  std::vector<float> values(const std::string& name, const TensorView& t) const;
  // A float32 (rows, cols) view of `v`, kept with the spec.
  TensorView keep(const std::vector<float>& v, int64_t rows, int64_t cols);
  // Bytes that views in the spec point into, kept with it.
  const uint8_t* keep(std::vector<uint8_t> bytes);
  // nextoken::Error naming up to three tensors no role took; `hint` follows "not used by this model".
  void check_all_taken(const std::string& hint) const;

  ModelSpec spec;

 private:
  const std::map<std::string, TensorView>& tensors_;
  std::string source_;
  std::set<std::string> taken_;
};

// ModelConfig's defaults (Llama's) for n_layers layers.
ModelConfig base_config(int n_layers);
// 1 / base^(2i / dim): the exponent in float32, the power in double rounded to float32 once, as
// transformers computes RoPE frequencies.
std::vector<float> rope_inv_freq(double base, int dim);

}  // namespace nextoken
