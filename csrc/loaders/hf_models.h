// hf_models.h: what a Hugging Face folder's config.json keys and tensor names mean, for the decoder-only
// families: `llama`, `mistral`, `qwen2` (pre-norm RMSNorm, SwiGLU, RoPE; Mistral's sliding window, Qwen2's
// q/k/v biases), `gpt2` (learned positions, LayerNorm, Conv1D weights stored [in, out]) and
// `gemma3_text` / `gemma3` (sandwich norms stored as w for 1 + w, q/k norms, GeGLU, sliding layers with
// their own RoPE base). Python's loader and the C API both call it. The encoder-decoder families (T5,
// BART, Marian, vision encoder-decoder) are still mapped in python/nextoken/architectures/.
//
// Values are computed in float32 as transformers computes them (RoPE frequencies with their scaling,
// Gemma's scales), config.json's keys read with the defaults transformers gives them (4.x and 5.x
// spellings), and everything a file can get wrong is a nextoken::Error naming the file and the key.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "safetensors.h"
#include "spec.h"

namespace nextoken {

// The model_types spec_from_hf maps.
std::vector<std::string> hf_model_types();

// The spec of a folder from its config.json and its tensors by name (views that the caller keeps alive
// as long as the spec); `name`: the folder's name, for messages.
ModelSpec spec_from_hf(const JSON& config, const std::map<std::string, TensorView>& tensors, const std::string& name);

// The token ids that end a generation by default: generation_config.json's eos_token_id (an id or a
// list), else config.json's; those inside the vocabulary.
std::vector<int32_t> hf_eos_ids(const HFFolder& folder, int vocab_size);

}  // namespace nextoken
