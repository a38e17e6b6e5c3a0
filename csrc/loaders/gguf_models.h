// gguf_models.h: what a GGUF file's architecture keys and tensor names mean, for the architectures
// llama.cpp stores under `llama` (Llama, SmolLM, Mistral-style GQA) and `gemma3`.
//
// This is the one place that maps GGUF files (Python's loader and the C API both call it); hf_models.h
// maps Hugging Face folders.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gguf.h"
#include "spec.h"

namespace nextoken {

// Names of the GGUF architectures spec_from_gguf maps.
std::vector<std::string> gguf_architectures();

// The spec of a GGUF file, by its general.architecture; throws nextoken::Error naming what is missing,
// malformed or left over (a tensor no role takes).
ModelSpec spec_from_gguf(std::shared_ptr<const GGUFFile> file);

// The token ids that end a generation by default: tokenizer.ggml.eos_token_id and eot_token_id, those
// inside the vocabulary.
std::vector<int32_t> gguf_eos_ids(const GGUFFile& file, int vocab_size);

}  // namespace nextoken
