// tokenizer.cpp: see tokenizer.h. Where a step copies a `tokenizers` component, the comment names it.
#include "tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <queue>
#include <unordered_set>

#include "../common.h"
#include "../loaders/gguf.h"
#include "../loaders/gguf_models.h"
#include "unicode.h"

namespace nextoken {

namespace {

constexpr int32_t CONTROL = 3, USER_DEFINED = 4;  // GGUF token types (llama_token_type)
const char* const SPACE_MARK = "\xE2\x96\x81";      // U+2581, SentencePiece's space

// --- typed reads of the tokenizer keys: a key of the wrong type is named, whatever the file holds ---

[[noreturn]] void wrong_type(const std::string& key, const char* what) {
  throw Error("the GGUF metadata '" + key + "' must be " + what);
}

const std::string* string_key(const GGUFFile& f, const std::string& key) {
  const GGUFValue* v = f.find(key);
  if (!v) return nullptr;
  if (v->is_array || v->type != GGUFType::String) wrong_type(key, "a string");
  return &v->text;
}

const std::vector<std::string>* strings_key(const GGUFFile& f, const std::string& key) {
  const GGUFValue* v = f.find(key);
  if (!v) return nullptr;
  if (!v->is_array || v->type != GGUFType::String) wrong_type(key, "an array of strings");
  return &v->strings;
}

// An array of numbers as doubles; `integers`: only integer element types are accepted.
bool numbers_key(const GGUFFile& f, const std::string& key, bool integers, std::vector<double>& out) {
  const GGUFValue* v = f.find(key);
  if (!v) return false;
  static const GGUFType ints[] = {GGUFType::U8, GGUFType::I8, GGUFType::U16, GGUFType::I16, GGUFType::U32,
                                  GGUFType::I32, GGUFType::U64, GGUFType::I64};
  const bool is_int = std::find(std::begin(ints), std::end(ints), v->type) != std::end(ints);
  const bool is_float = v->type == GGUFType::F32 || v->type == GGUFType::F64;
  if (!v->is_array || !(is_int || (!integers && is_float)))
    wrong_type(key, integers ? "an array of integers" : "an array of numbers");
  const size_t item = v->count ? v->raw.size() / v->count : 0;
  out.resize(v->count);
  for (size_t i = 0; i < v->count; ++i) {
    const uint8_t* p = v->raw.data() + i * item;
    uint64_t bits = 0;
    std::memcpy(&bits, p, item);
    switch (v->type) {
      case GGUFType::I8: out[i] = double(int8_t(bits)); break;
      case GGUFType::I16: out[i] = double(int16_t(bits)); break;
      case GGUFType::I32: out[i] = double(int32_t(bits)); break;
      case GGUFType::I64: out[i] = double(int64_t(bits)); break;
      case GGUFType::F32: { float x; std::memcpy(&x, p, 4); out[i] = x; break; }
      case GGUFType::F64: { double x; std::memcpy(&x, p, 8); out[i] = x; break; }
      default: out[i] = double(bits);  // unsigned
    }
  }
  return true;
}

int64_t id_key(const GGUFFile& f, const std::string& key) {
  const GGUFValue* v = f.find(key);
  if (!v) return -1;
  if (v->is_array || !v->is_integer()) wrong_type(key, "an integer");
  return v->as_int();
}

bool bool_key(const GGUFFile& f, const std::string& key, bool fallback) {
  const GGUFValue* v = f.find(key);
  if (!v) return fallback;
  if (v->is_array || !(v->type == GGUFType::Bool || (v->is_integer() && (v->as_int() == 0 || v->as_int() == 1))))
    wrong_type(key, "true or false");
  return v->bits != 0;
}

std::vector<uint32_t> code_points(const std::string& s) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < s.size();) out.push_back(uint32_t(next_code_point(s, i)));
  return out;
}

int32_t length_in_characters(const std::string& s) {
  int32_t n = 0;
  for (const char c : s) n += (uint8_t(c) & 0xC0) != 0x80;
  return n;
}

// Python's str.isspace(), which transformers' conversion uses to find Gemma's whitespace tokens.
bool python_isspace(uint32_t c) {
  return (c >= 0x9 && c <= 0xD) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// GPT-2's byte alphabet (the ByteLevel pre-tokenizer and decoder): printable bytes stand for themselves,
// the others for U+0100 + n in order.
struct ByteAlphabet {
  std::string spelling[256];
  std::unordered_map<uint32_t, uint8_t> byte_of;
  ByteAlphabet() {
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      const uint32_t c = printable ? b : 256 + n++;
      append_utf8(spelling[b], c);
      byte_of[c] = uint8_t(b);
    }
  }
};
const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

// GPT-2's pattern (the ByteLevel pre-tokenizer's regex), matched by hand on code points [begin, end):
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// The alternatives are tried in order at each position, as the regex engine does; the piece ends are
// appended to `ends`.
void split_gpt2(const std::vector<uint32_t>& c, size_t begin, size_t end, std::vector<size_t>& ends) {
  const auto other = [](uint32_t x) { return !is_whitespace(x) && !is_letter(x) && !is_number(x); };
  size_t i = begin;
  while (i < end) {
    size_t j = i;
    if (c[i] == '\'' && i + 1 < end) {
      static const char* const suffixes[] = {"s", "t", "re", "ve", "m", "ll", "d"};
      for (const char* s : suffixes) {
        const size_t n = std::strlen(s);
        bool ok = i + 1 + n <= end;
        for (size_t k = 0; ok && k < n; ++k) ok = c[i + 1 + k] == uint32_t(s[k]);
        if (ok) { j = i + 1 + n; break; }
      }
    }
    if (j == i) {
      for (bool (*cls)(uint32_t) : {&is_letter, &is_number, +other}) {
        const size_t start = c[i] == ' ' && i + 1 < end && cls(c[i + 1]) ? i + 1 : i;
        if (!cls(c[start])) continue;
        j = start;
        while (j < end && cls(c[j])) ++j;
        break;
      }
    }
    if (j == i) {  // whitespace: the run, less its last character if a non-space follows (\s+(?!\S))
      while (j < end && is_whitespace(c[j])) ++j;
      if (j < end && j - i > 1) --j;
    }
    ends.push_back(j);
    i = j;
  }
}

// Llama 3's pattern (its Split pre-tokenizer's regex; Qwen2's with max_digits 1 instead of 3), matched by
// hand on code points [begin, end) like split_gpt2:
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
void split_llama3(const std::vector<uint32_t>& c, size_t begin, size_t end, size_t max_digits, std::vector<size_t>& ends) {
  const auto newline = [](uint32_t x) { return x == '\r' || x == '\n'; };
  const auto other = [](uint32_t x) { return !is_whitespace(x) && !is_letter(x) && !is_number(x); };
  const auto lower = [](uint32_t x) { return x >= 'A' && x <= 'Z' ? x + 32 : x; };
  size_t i = begin;
  while (i < end) {
    size_t j = i;
    if (c[i] == '\'' && i + 1 < end) {  // contractions, any case
      static const char* const suffixes[] = {"s", "t", "re", "ve", "m", "ll", "d"};
      for (const char* s : suffixes) {
        const size_t n = std::strlen(s);
        bool ok = i + 1 + n <= end;
        for (size_t k = 0; ok && k < n; ++k) ok = lower(c[i + 1 + k]) == uint32_t(s[k]);
        if (ok) { j = i + 1 + n; break; }
      }
    }
    if (j == i) {  // [^\r\n\p{L}\p{N}]?\p{L}+
      const size_t start = !newline(c[i]) && !is_letter(c[i]) && !is_number(c[i]) && i + 1 < end && is_letter(c[i + 1])
                               ? i + 1 : i;
      if (is_letter(c[start])) {
        j = start;
        while (j < end && is_letter(c[j])) ++j;
      }
    }
    if (j == i && is_number(c[i])) {  // \p{N}{1,max_digits}
      while (j < end && j - i < max_digits && is_number(c[j])) ++j;
    }
    if (j == i) {  //  ?[^\s\p{L}\p{N}]+[\r\n]*
      const size_t start = c[i] == ' ' && i + 1 < end && other(c[i + 1]) ? i + 1 : i;
      if (other(c[start])) {
        j = start;
        while (j < end && other(c[j])) ++j;
        while (j < end && newline(c[j])) ++j;
      }
    }
    if (j == i) {  // whitespace: up to its last \r or \n if it has one, else as GPT-2's \s+(?!\S)|\s+
      size_t run = i, last_newline = i;
      while (run < end && is_whitespace(c[run])) {
        if (newline(c[run])) last_newline = run + 1;
        ++run;
      }
      j = last_newline > i ? last_newline : run < end && run - i > 1 ? run - 1 : run;
    }
    ends.push_back(j);
    i = j;
  }
}

}  // namespace

// Added tokens, found in text leftmost-longest (as tokenizers' AddedVocabulary does with Aho-Corasick).
struct Tokenizer::AddedTokens {
  struct Node {
    std::unordered_map<uint8_t, int32_t> next;
    int32_t id = -1;
    bool special = false;
  };
  std::vector<Node> nodes{Node{}};

  void add(const std::string& text, int32_t id, bool special) {
    if (text.empty()) return;
    int32_t at = 0;
    for (const char ch : text) {
      const auto it = nodes[size_t(at)].next.find(uint8_t(ch));
      if (it != nodes[size_t(at)].next.end()) { at = it->second; continue; }
      nodes[size_t(at)].next[uint8_t(ch)] = int32_t(nodes.size());
      at = int32_t(nodes.size());
      nodes.emplace_back();
    }
    nodes[size_t(at)].id = id;
    nodes[size_t(at)].special = special;
  }
  // The longest added token starting at text[i]: its end, or i if none.
  size_t longest(const std::string& text, size_t i, const Node*& found) const {
    size_t end = i;
    int32_t at = 0;
    for (size_t k = i; k < text.size(); ++k) {
      const auto it = nodes[size_t(at)].next.find(uint8_t(text[k]));
      if (it == nodes[size_t(at)].next.end()) break;
      at = it->second;
      if (nodes[size_t(at)].id >= 0) { end = k + 1; found = &nodes[size_t(at)]; }
    }
    return end;
  }
};

bool Tokenizer::Merge::operator<(const Merge& o) const {
  if (primary != o.primary) return primary < o.primary;
  if (left != o.left) return left < o.left;
  if (right != o.right) return right < o.right;
  return position < o.position;
}

Tokenizer::~Tokenizer() = default;

Vocabulary gguf_vocabulary(const GGUFFile& f, int vocab_size) {
  Vocabulary v;
  const std::vector<std::string>* tokens = strings_key(f, "tokenizer.ggml.tokens");
  if (!tokens || tokens->empty()) throw Error("the GGUF file has no tokenizer (tokenizer.ggml.tokens)");
  NT_CHECK(tokens->size() == size_t(vocab_size), "tokenizer.ggml.tokens lists " + std::to_string(tokens->size()) +
                                                     " tokens for the model's " + std::to_string(vocab_size));
  v.tokens = *tokens;
  const std::string* model = string_key(f, "tokenizer.ggml.model");
  v.model = model ? *model : "";
  if (const std::string* pre = string_key(f, "tokenizer.ggml.pre")) v.pre = *pre;
  if (const std::vector<std::string>* merges = strings_key(f, "tokenizer.ggml.merges")) {
    v.merges = *merges;
    v.has_merges = true;
  }
  if (const std::string* t = string_key(f, "tokenizer.chat_template")) v.chat_template = *t;
  numbers_key(f, "tokenizer.ggml.token_type", true, v.types);
  numbers_key(f, "tokenizer.ggml.scores", false, v.scores);
  v.bos = id_key(f, "tokenizer.ggml.bos_token_id");
  v.eos = id_key(f, "tokenizer.ggml.eos_token_id");
  v.unk = id_key(f, "tokenizer.ggml.unknown_token_id");
  v.pad = id_key(f, "tokenizer.ggml.padding_token_id");
  id_key(f, "tokenizer.ggml.eot_token_id");  // read by gguf_eos_ids below: its type checked here too
  const std::string* arch = string_key(f, "general.architecture");
  v.gemma = v.model == "llama" && arch && (*arch == "gemma" || *arch == "gemma2" || *arch == "gemma3");
  v.add_bos = bool_key(f, "tokenizer.ggml.add_bos_token", v.model == "llama");
  v.eos_ids = gguf_eos_ids(f, vocab_size);
  return v;
}

Tokenizer::Tokenizer(const GGUFFile& f, int vocab_size) : Tokenizer(gguf_vocabulary(f, vocab_size)) {}

Tokenizer::Tokenizer(const Vocabulary& v) : added_(std::make_unique<AddedTokens>()) {
  const std::vector<std::string>* raw = &v.tokens;
  const size_t n = raw->size();
  NT_CHECK(n > 0, "the vocabulary is empty");
  const std::vector<std::string>* merges = v.has_merges ? &v.merges : nullptr;
  chat_template_ = v.chat_template;
  const bool typed = !v.types.empty(), scored = !v.scores.empty();
  std::vector<double> types = typed ? v.types : std::vector<double>(n, 1.0);
  std::vector<double> scores = scored ? v.scores : std::vector<double>(n, 0.0);
  const int64_t named[] = {v.bos, v.eos, v.unk, v.pad};
  const std::string& kind = v.model;
  NT_CHECK(kind == "gpt2" || kind == "llama",
           "tokenizer model '" + kind + "' is not supported (supported: gpt2 byte-level BPE, llama SentencePiece)");
  kind_ = kind == "gpt2" ? Kind::ByteLevel : Kind::SentencePiece;
  const bool gemma = kind_ == Kind::SentencePiece && v.gemma;

  if (kind_ == Kind::ByteLevel) {
    const std::string& p = v.pre;
    NT_CHECK(p == "default" || p == "gpt2" || p == "smollm" || p == "starcoder" || p == "llama-bpe" || p == "qwen2",
             "pre-tokenizer '" + p + "' is not supported (supported: default, gpt2, smollm, starcoder, llama-bpe, qwen2)");
    split_digits_ = p == "smollm" || p == "starcoder";  // llama.cpp's LLAMA_VOCAB_PRE_TYPE_SMOLLM / STARCODER
    pattern_ = p == "llama-bpe" ? Pattern::Llama3 : p == "qwen2" ? Pattern::Qwen2 : Pattern::GPT2;
    // llama.cpp looks a whole Llama 3 word up before merging (tokenizers' ignore_merges, which Llama 3's
    // tokenizer.json sets)
    ignore_merges_ = v.ignore_merges || p == "llama-bpe";
    NT_CHECK(!typed || types.size() == n, "tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                                              " entries for " + std::to_string(n) + " tokens");
    tokens_ = *raw;
  } else {
    NT_CHECK((!typed || types.size() == n) && (!scored || scores.size() == n),
             "tokenizer.ggml.token_type / scores must have one entry per token (" + std::to_string(n) + ")");
    gemma_spaces_ = gemma;
    tokens_.reserve(n);
    for (const std::string& t : *raw) {  // Gemma: whitespace tokens with a space are respelled '▁' * length
      const std::vector<uint32_t> c = code_points(t);
      const bool respell = gemma && t.find(' ') != std::string::npos && std::all_of(c.begin(), c.end(), python_isspace);
      std::string s;
      for (size_t k = 0; respell && k < c.size(); ++k) s += SPACE_MARK;
      tokens_.push_back(respell ? s : t);
    }
  }
  for (const std::string& t : tokens_)
    NT_CHECK(first_invalid_utf8(t) == std::string::npos, "tokenizer.ggml.tokens holds a token that is not UTF-8");

  ids_.reserve(n);
  first_position_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    auto [it, fresh] = ids_.try_emplace(tokens_[i], int32_t(i));
    first_position_[i] = fresh ? int32_t(i) : first_position_[size_t(it->second)];
    it->second = int32_t(i);  // the last of repeated spellings, as a Python dict keeps it
  }
  reachable_.assign(n, 0);
  for (const auto& [t, id] : ids_) reachable_[size_t(id)] = 1;
  length_.resize(n);
  for (size_t i = 0; i < n; ++i) length_[i] = length_in_characters(tokens_[i]);

  if (merges) {
    merges_from_file_ = true;
    file_merges_.reserve(merges->size());
    for (size_t r = 0; r < merges->size(); ++r) {
      const std::string& m = (*merges)[r];
      const size_t space = m.find(' ');
      NT_CHECK(space != std::string::npos,
               "tokenizer.ggml.merges holds '" + m + "': a merge is two tokens separated by a space");
      const std::string a = m.substr(0, space), b = m.substr(space + 1);
      const auto ia = ids_.find(a), ib = ids_.find(b), iab = ids_.find(a + b);
      NT_CHECK(ia != ids_.end() && ib != ids_.end() && iab != ids_.end(),
               "the vocabulary is not a valid BPE: the merge '" + m + "' names or makes a token that is not in it");
      file_merges_[(uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second)] = {int32_t(r), iab->second};
    }
  } else if (kind_ == Kind::SentencePiece) {  // transformers' generate_merges: by score (Gemma: position)
    order_.resize(n);
    for (size_t i = 0; i < n; ++i) order_[i] = gemma ? double(i) : -scores[i];
  }
  if (kind_ == Kind::SentencePiece) {
    byte_token_.assign(256, -1);
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      if (const auto it = ids_.find(name); it != ids_.end()) byte_token_[size_t(b)] = it->second;
    }
    if (gemma)
      if (const auto it = ids_.find("<unk>"); it != ids_.end()) unk_ = it->second;
  }

  // Added tokens: control ones special, user-defined ones plain; SentencePiece also names its special
  // tokens by id (and transformers adds Gemma's "<mask>"). A token's id is its spelling's.
  std::unordered_set<std::string> special_texts;
  std::unordered_map<std::string, bool> added;
  const auto add = [&](const std::string& text, bool special) {
    const auto it = ids_.find(text);
    if (it == ids_.end() || added.count(text)) return;
    added[text] = special;
    added_->add(text, it->second, special);
    if (special) special_texts.insert(text);
  };
  for (size_t i = 0; i < n; ++i)
    if (int32_t(types[i]) == CONTROL) add((*raw)[i], true);
  for (size_t i = 0; i < n; ++i)
    if (int32_t(types[i]) == USER_DEFINED) add((*raw)[i], false);
  if (kind_ == Kind::SentencePiece) {
    for (const int64_t id : named)
      if (id >= 0 && id < int64_t(n)) add((*raw)[size_t(id)], true);
    if (gemma) add("<mask>", true);
  }
  special_.assign(n, 0);
  for (size_t i = 0; i < n; ++i)
    special_[i] = reachable_[i] && special_texts.count(tokens_[i]);

  if (v.add_bos && named[0] != -1) {
    NT_CHECK(named[0] >= 0 && named[0] < int64_t(n), "tokenizer.ggml.bos_token_id " + std::to_string(named[0]) +
                                                         " is outside the vocabulary of " + std::to_string(n) + " tokens");
    bos_ = int32_t(named[0]);
  }
  eos_ = v.eos_ids;
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && size_t(id) < special_.size() && special_[size_t(id)]; }

std::string Tokenizer::token_text(int32_t id) const {
  return id >= 0 && size_t(id) < tokens_.size() && reachable_[size_t(id)] ? tokens_[size_t(id)] : std::string();
}

bool Tokenizer::find_merge(int32_t a, int32_t b, Merge& rank, int32_t& merged) const {
  if (merges_from_file_) {
    const auto it = file_merges_.find((uint64_t(uint32_t(a)) << 32) | uint32_t(b));
    if (it == file_merges_.end()) return false;
    rank = Merge{double(it->second.first), 0, 0, 0};
    merged = it->second.second;
    return true;
  }
  if (order_.empty()) return false;
  const auto it = ids_.find(tokens_[size_t(a)] + tokens_[size_t(b)]);
  if (it == ids_.end()) return false;
  merged = it->second;
  rank = Merge{order_[size_t(merged)], -length_[size_t(a)], -length_[size_t(b)], first_position_[size_t(merged)]};
  return true;
}

// tokenizers' BPE on one word (models/bpe: merge_word then Word::merge_all): its characters as tokens
// (SentencePiece: unknown ones as their bytes' <0xXX> tokens, else <unk>), then the adjacent pair of
// lowest rank merged, leftmost first, until no pair merges.
void Tokenizer::bpe(const std::string& word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {  // a word that is a token is that token, whatever the merges would make of it
    const auto it = ids_.find(word);
    if (it != ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool gone;
  };
  std::vector<Symbol> sym;
  const auto push = [&](int32_t id) {
    sym.push_back(Symbol{id, int32_t(sym.size()) - 1, int32_t(sym.size()) + 1, false});
  };
  for (size_t i = 0; i < word.size();) {
    const size_t start = i;
    next_code_point(word, i);
    const std::string ch = word.substr(start, i - start);
    if (const auto it = ids_.find(ch); it != ids_.end()) { push(it->second); continue; }
    if (kind_ == Kind::SentencePiece &&
        std::all_of(ch.begin(), ch.end(), [&](char c) { return byte_token_[uint8_t(c)] >= 0; })) {
      for (const char c : ch) push(byte_token_[uint8_t(c)]);
      continue;
    }
    if (unk_ >= 0 && !(kind_ == Kind::SentencePiece && !sym.empty() && sym.back().id == unk_)) push(unk_);  // fuse_unk
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  struct Candidate {
    Merge rank;
    int32_t pos, merged;
    bool operator>(const Candidate& o) const {
      if (rank < o.rank) return false;
      if (o.rank < rank) return true;
      return pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto consider = [&](int32_t pos) {
    Merge rank{};
    int32_t merged = 0;
    const int32_t next = sym[size_t(pos)].next;
    if (next >= 0 && find_merge(sym[size_t(pos)].id, sym[size_t(next)].id, rank, merged))
      queue.push(Candidate{rank, pos, merged});
  };
  for (int32_t p = 0; p + 1 < int32_t(sym.size()); ++p) consider(p);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& s = sym[size_t(top.pos)];
    if (s.gone || s.next < 0) continue;
    Merge rank{};
    int32_t merged = 0;
    if (!find_merge(s.id, sym[size_t(s.next)].id, rank, merged) || merged != top.merged) continue;  // stale
    Symbol& right = sym[size_t(s.next)];
    right.gone = true;
    s.id = merged;
    s.next = right.next;
    if (s.next >= 0) sym[size_t(s.next)].prev = top.pos;
    if (s.prev >= 0) consider(s.prev);
    consider(top.pos);
  }
  for (const Symbol& s : sym)
    if (!s.gone) out.push_back(s.id);
}

// One piece of text between added tokens; `at_start`: it begins the text (Llama 2's Metaspace "first").
void Tokenizer::encode_text(const std::string& text, bool at_start, std::vector<int32_t>& out) const {
  if (kind_ == Kind::SentencePiece) {
    std::string s;
    for (const char c : text) {
      if (c == ' ') s += SPACE_MARK;
      else s += c;
    }
    if (!gemma_spaces_ && at_start && s.compare(0, 3, SPACE_MARK) != 0) s = SPACE_MARK + s;
    bpe(s, out);
    return;
  }
  const std::vector<uint32_t> c = code_points(text);
  std::vector<size_t> ends;
  for (size_t i = 0; i < c.size();) {  // Digits(individual_digits): each numeric character a piece
    size_t j = i;
    if (split_digits_ && is_numeric(c[i])) j = i + 1;
    else while (j < c.size() && !(split_digits_ && is_numeric(c[j]))) ++j;
    if (pattern_ == Pattern::GPT2) split_gpt2(c, i, j, ends);
    else split_llama3(c, i, j, pattern_ == Pattern::Llama3 ? 3 : 1, ends);
    i = j;
  }
  const ByteAlphabet& alphabet = byte_alphabet();
  size_t begin = 0;
  std::string bytes, word;
  for (const size_t end : ends) {
    bytes.clear();
    for (size_t k = begin; k < end; ++k) append_utf8(bytes, c[k]);
    word.clear();
    for (const char b : bytes) word += alphabet.spelling[uint8_t(b)];
    bpe(word, out);
    begin = end;
  }
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool parse_special, bool add_bos) const {
  const size_t bad = first_invalid_utf8(text);
  NT_CHECK(bad == std::string::npos, "the text is not valid UTF-8 (at byte " + std::to_string(bad) + ")");
  std::vector<int32_t> out;
  if (add_bos && bos_ >= 0) out.push_back(bos_);
  size_t done = 0;  // text before this is encoded
  for (size_t i = 0; i < text.size();) {
    const AddedTokens::Node* token = nullptr;
    const size_t end = added_->longest(text, i, token);
    if (end == i) { ++i; continue; }
    if (token->special && !parse_special) { i = end; continue; }  // read as text, yet not searched inside
    if (i > done) encode_text(text.substr(done, i - done), done == 0, out);
    out.push_back(token->id);
    done = i = end;
  }
  if (done < text.size()) encode_text(text.substr(done), done == 0, out);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::vector<const std::string*> pieces;  // tokenizers: id_to_token, special tokens filtered, then the decoder
  for (const int32_t id : ids) {
    NT_CHECK(id >= 0 && size_t(id) < tokens_.size(), "token id " + std::to_string(id) + " is outside the vocabulary");
    if (reachable_[size_t(id)] && !(skip_special && special_[size_t(id)])) pieces.push_back(&tokens_[size_t(id)]);
  }
  std::string out;
  if (kind_ == Kind::ByteLevel) {  // ByteLevel decoder: a token all in the byte alphabet is its bytes, else itself
    const ByteAlphabet& alphabet = byte_alphabet();
    for (const std::string* t : pieces) {
      std::string bytes;
      bool all = true;
      for (size_t i = 0; all && i < t->size();) {
        const auto it = alphabet.byte_of.find(uint32_t(next_code_point(*t, i)));
        all = it != alphabet.byte_of.end();
        if (all) bytes += char(it->second);
      }
      out += all ? bytes : *t;
    }
    return utf8_lossy(out);
  }
  // Replace('▁', ' '), then ByteFallback (a run of <0xXX> tokens is its bytes if they are UTF-8, else one
  // U+FFFD per token), Fuse, and for Llama 2 Strip(' ', 1, 0).
  const auto hex = [](char c) { return std::isxdigit(uint8_t(c)) != 0; };
  std::string run;
  size_t run_tokens = 0;
  const auto flush = [&] {
    if (first_invalid_utf8(run) == std::string::npos) out += run;
    else for (size_t k = 0; k < run_tokens; ++k) out += "\xEF\xBF\xBD";
    run.clear();
    run_tokens = 0;
  };
  for (const std::string* p : pieces) {
    std::string t;
    for (size_t i = 0; i < p->size(); ++i) {
      if (p->compare(i, 3, SPACE_MARK) == 0) { t += ' '; i += 2; }
      else t += (*p)[i];
    }
    // u8::from_str_radix(&t[3..5], 16), which takes a leading '+'
    if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && hex(t[4]) && (hex(t[3]) || t[3] == '+')) {
      run += char(std::stoi(t.substr(3, 2), nullptr, 16));
      ++run_tokens;
      continue;
    }
    flush();
    out += t;
  }
  flush();
  if (!gemma_spaces_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

}  // namespace nextoken
