// hf_models.h: what a Hugging Face folder's config.json keys and tensor names mean, for every family
// nextoken loads: `llama`, `mistral`, `qwen2` (pre-norm RMSNorm, SwiGLU, RoPE; Mistral's sliding window,
// Qwen2's q/k/v biases), `gpt2` (learned positions, LayerNorm, Conv1D weights stored [in, out]),
// `gemma3_text` / `gemma3` (sandwich norms stored as w for 1 + w, q/k norms, GeGLU, sliding layers with
// their own RoPE base), and the encoder-decoders `t5` (relative-position buckets), `bart` / `mbart` /
// `marian` and `vision-encoder-decoder` (ViT + GPT-2). Python's loader and the C API both call it.
//
// Values are computed in float32 as transformers computes them (RoPE frequencies with their scaling,
// Gemma's scales), config.json's keys read with the defaults transformers gives them (4.x and 5.x
// spellings), and everything a file can get wrong is a nextoken::Error naming the file and the key.
// Bit for bit what the Python modules that mapped these families before computed (RoPE tables, T5's
// bucket table, Marian's sinusoids), as the fixtures' logits against transformers check.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "safetensors.h"
#include "spec.h"

namespace nextoken {

// The model_types spec_from_hf maps.
std::vector<std::string> hf_model_types();

// The spec of a folder from its config.json, generation_config.json (an object, empty where absent) and
// its tensors by name (views that the caller keeps alive as long as the spec); `name`: the folder's name,
// for messages; n_ctx: the longest sequence (T5's relative-position table spans it).
ModelSpec spec_from_hf(const JSON& config, const JSON& generation_config, const std::map<std::string, TensorView>& tensors,
                       const std::string& name, int n_ctx);

// The token ids that end a generation by default: generation_config.json's eos_token_id (an id or a
// list), else config.json's; those inside the vocabulary.
std::vector<int32_t> hf_eos_ids(const HFFolder& folder, int vocab_size);

}  // namespace nextoken
