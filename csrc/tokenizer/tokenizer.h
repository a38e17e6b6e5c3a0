// tokenizer.h: text <-> token ids for the vocabulary a GGUF file stores (tokenizer.ggml.*), built the way
// transformers' GGUF conversion builds a Hugging Face tokenizer from it, and equal to that tokenizer on
// every text (tests/test_tokenizers.py checks it against the `tokenizers` library on real and random text).
//
//   "gpt2": byte-level BPE. Text is split at the added tokens, then (pre-tokenizers "smollm", "starcoder")
//       each numeric character is put apart, then GPT-2's regex splits words (Llama 3's for "llama-bpe",
//       Qwen2's for "qwen2"); each piece's bytes are spelled in GPT-2's byte alphabet and merged by the
//       file's merges, lowest rank first ("llama-bpe", as llama.cpp: a piece that is a token is that token).
//   "llama": SentencePiece vocabulary as a BPE with byte fallback. Merges come from the file, or else from
//       the vocabulary itself as transformers' generate_merges makes them: every cut of a token into two
//       tokens, ordered by the token's score (Gemma: its position), then the longer left half, then the
//       longer right half, then the token's position. Spaces become U+2581; other than Gemma (Llama 2)
//       one more goes before the text's first piece.
//
// Control tokens, and for SentencePiece the BOS/EOS/UNK/PAD tokens the file names, are special: written
// in the text they are read as themselves unless parse_special is false, and decoding skips them.
// User-defined tokens are always read as themselves.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace nextoken {

class GGUFFile;

// A vocabulary as a GGUF file's tokenizer.ggml.* keys describe it (also what a Hugging Face tokenizer.json
// is turned into: hf_tokenizer.h).
struct Vocabulary {
  std::string model;                // "gpt2" (byte-level BPE) or "llama" (SentencePiece)
  std::string pre = "default";      // the byte-level pre-tokenizer (llama.cpp's names)
  bool ignore_merges = false;       // a word that is a token is that token (tokenizers' BPE ignore_merges)
  bool gemma = false;               // SentencePiece as Gemma spells it (no space put before the text)
  std::vector<std::string> tokens;
  std::vector<double> types;        // per token (empty: all normal)
  std::vector<double> scores;       // per token (empty: none)
  std::vector<std::string> merges;  // "left right", by rank
  bool has_merges = false;
  int64_t bos = -1, eos = -1, unk = -1, pad = -1;
  bool add_bos = false;             // put the BOS first
  std::string chat_template;
  std::vector<int32_t> eos_ids;     // what ends a generation
};

// The vocabulary of a GGUF file; throws nextoken::Error naming the key if its tokenizer keys are missing
// or of the wrong type.
Vocabulary gguf_vocabulary(const GGUFFile& file, int vocab_size);

class Tokenizer {
 public:
  // Throws nextoken::Error unless `vocabulary` is one this class reads.
  explicit Tokenizer(const Vocabulary& vocabulary);
  // The tokenizer of a GGUF file whose model has `vocab_size` tokens.
  Tokenizer(const GGUFFile& file, int vocab_size);
  ~Tokenizer();

  // `text` must be valid UTF-8 (else nextoken::Error). add_bos: put the BOS first if the file asks for it.
  std::vector<int32_t> encode(const std::string& text, bool parse_special, bool add_bos) const;
  // The text of `ids` (each in the vocabulary, else nextoken::Error); bytes that do not form characters
  // become U+FFFD as Hugging Face's decoders make them.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const;

  int vocab_size() const { return int(tokens_.size()); }
  int32_t bos_id() const { return bos_; }  // -1 when the file does not ask for a BOS
  const std::vector<int32_t>& eos_ids() const { return eos_; }
  bool is_special(int32_t id) const;
  // A token as the tokenizer spells it ("" for one that only an earlier, repeated spelling reaches).
  std::string token_text(int32_t id) const;
  const std::string& chat_template() const { return chat_template_; }

 private:
  enum class Kind { ByteLevel, SentencePiece };
  struct Merge {
    double primary;        // the merges' order, most important first
    int32_t left, right;   // minus the halves' lengths in characters (longer first)
    int32_t position;      // the token's first position
    bool operator<(const Merge& o) const;
  };
  struct AddedTokens;

  bool find_merge(int32_t a, int32_t b, Merge& rank, int32_t& merged) const;
  void bpe(const std::string& word, std::vector<int32_t>& out) const;
  void encode_text(const std::string& text, bool at_start, std::vector<int32_t>& out) const;

  Kind kind_ = Kind::ByteLevel;
  bool gemma_spaces_ = false;                       // SentencePiece: no U+2581 put before the text
  bool split_digits_ = false;
  enum class Pattern { GPT2, Llama3, Qwen2 };          // the byte-level pre-tokenizer's regex
  Pattern pattern_ = Pattern::GPT2;
  bool ignore_merges_ = false;                      // a word that is a token is looked up whole
  std::vector<std::string> tokens_;                 // as the tokenizer spells them
  std::vector<char> reachable_;                     // a token's spelling leads to it (the last of repeats)
  std::unordered_map<std::string, int32_t> ids_;    // spelling -> id (the last of repeats)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> file_merges_;  // (left, right) -> (rank, merged)
  bool merges_from_file_ = false;
  std::vector<double> order_;                       // derived merges: a token's key (lower merges first)
  std::vector<int32_t> first_position_;
  std::vector<int32_t> length_;                     // in characters
  std::vector<int32_t> byte_token_;                 // SentencePiece: <0xXX> ids, -1 where missing
  int32_t unk_ = -1;
  std::vector<char> special_;
  std::unique_ptr<AddedTokens> added_;
  int32_t bos_ = -1;
  std::vector<int32_t> eos_;
  std::string chat_template_;
};

}  // namespace nextoken
