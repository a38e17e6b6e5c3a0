// hf_vocabulary.h: a Hugging Face folder's tokenizer.json as a Vocabulary (tokenizer.h), for the
// tokenizers the core encodes exactly as the `tokenizers` library does:
//   - byte-level BPE with GPT-2's pre-tokenizer (ByteLevel, use_regex, no prefix space), optionally after
//     Digits(individual_digits) as SmolLM2 has it, or Llama 3's or Qwen2's Split regex, no normalizer, the
//     ByteLevel decoder;
//   - SentencePiece as a BPE with byte fallback (fuse_unk): Gemma's form (normalizer Replace(' ', U+2581))
//     or Llama 2's (pre-tokenizer Metaspace prepending U+2581 to the first piece), with the matching
//     Replace / ByteFallback / Fuse (/ Strip) decoder;
// with or without ignore_merges, no dropout, added tokens without strip or single-word rules, and a
// post-processor that adds nothing or a BOS. Others (Unigram, WordPiece, other split patterns...) are a
// nextoken::Error naming what is not read; the Python API reads those with the `tokenizers` library.
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
