// hf_vocabulary.h: a Hugging Face folder's tokenizer.json as a Vocabulary (tokenizer.h), for the
// tokenizers the core encodes exactly as the `tokenizers` library does: byte-level BPE with GPT-2's
// pre-tokenizer (ByteLevel, use_regex, no prefix space), optionally after Digits(individual_digits)
// as SmolLM2 has it, no normalizer, no dropout, merges applied (not ignore_merges), added tokens without
// strip or single-word rules, and a post-processor that adds nothing or a BOS. Others (SentencePiece
// models, Llama 3's split regex, WordPiece...) are a nextoken::Error naming what is not read; the
// Python API reads those with the `tokenizers` library.
#pragma once

#include <string>

#include "../common.h"
#include "../loaders/json.h"
#include "tokenizer.h"

namespace nextoken {

// The vocabulary of `folder`/tokenizer.json (chat template from tokenizer_config.json) for a model of
// `vocab_size` tokens whose generations end at `eos_ids`.
Vocabulary hf_vocabulary(const std::string& folder, int vocab_size, const std::vector<int32_t>& eos_ids);

}  // namespace nextoken
