// hf_vocabulary.cpp: see hf_vocabulary.h. A byte-level BPE's GGUF form is the one `nextoken convert`
// writes for the same tokenizer.json, so a folder and its converted file tokenize alike.
#include "hf_vocabulary.h"

#include <sys/stat.h>

namespace nextoken {

namespace {

constexpr int CONTROL = 3, USER_DEFINED = 4, UNUSED = 5;  // GGUF token types

const JSON* member(const JSON& object, const std::string& key) {
  const JSON* v = object.find(key);
  return v && !v->is_null() ? v : nullptr;
}

std::string type_of(const JSON* v) {
  const JSON* t = v ? v->find("type") : nullptr;
  return t && t->is_string() ? t->text : v ? v->describe() : "None";
}

const char* const SPACE_MARK = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// A member that is true or false, else `fallback` (absent, null or not a bool: not what it should be).
bool flag(const JSON& object, const std::string& key, bool fallback) {
  const JSON* v = member(object, key);
  return v && v->kind == JSON::Kind::Bool ? v->boolean : fallback;
}

std::string text_of(const JSON& object, const std::string& key) {
  const JSON* v = member(object, key);
  return v && v->is_string() ? v->text : "";
}

bool is_string_pattern(const JSON& step, const std::string& s) {
  const JSON* pattern = member(step, "pattern");
  return pattern && text_of(*pattern, "String") == s;
}

bool is_gpt2_byte_level(const JSON& p) {
  const JSON* prefix = member(p, "add_prefix_space");
  const JSON* regex = member(p, "use_regex");
  return type_of(&p) == "ByteLevel" && !(prefix && !(prefix->kind == JSON::Kind::Bool && !prefix->boolean)) &&
         !(regex && !(regex->kind == JSON::Kind::Bool && regex->boolean));
}

// Llama 3's and Qwen2's Split patterns (GGUF's "llama-bpe" and "qwen2"), as their tokenizer.json spell them.
const char* const LLAMA3_PATTERN =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
const char* const QWEN2_PATTERN =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";

// A ByteLevel step that only maps bytes (after a Split that did the splitting).
bool is_plain_byte_level(const JSON& p) {
  const JSON* prefix = member(p, "add_prefix_space");
  const JSON* regex = member(p, "use_regex");
  return type_of(&p) == "ByteLevel" && !(prefix && !(prefix->kind == JSON::Kind::Bool && !prefix->boolean)) &&
         regex && regex->kind == JSON::Kind::Bool && !regex->boolean;
}

// llama.cpp's name of the pre-tokenizer: "default" (GPT-2's regex), "smollm" (each digit apart first),
// "llama-bpe" or "qwen2" (their Split regex); anything else is not read.
std::string pre_tokenizer(const JSON* p, const std::string& source) {
  if (p && is_gpt2_byte_level(*p)) return "default";
  const JSON* steps = p && type_of(p) == "Sequence" ? member(*p, "pretokenizers") : nullptr;
  if (steps && steps->is_array() && steps->items.size() == 2) {
    const JSON& first = steps->items[0];
    const JSON* individual = member(first, "individual_digits");
    if (type_of(&first) == "Digits" && is_gpt2_byte_level(steps->items[1]) && individual &&
        individual->kind == JSON::Kind::Bool && individual->boolean)
      return "smollm";
    const JSON* pattern = member(first, "pattern");
    const std::string regex = pattern ? text_of(*pattern, "Regex") : "";
    if (type_of(&first) == "Split" && text_of(first, "behavior") == "Isolated" && !flag(first, "invert", false) &&
        is_plain_byte_level(steps->items[1]) && (regex == LLAMA3_PATTERN || regex == QWEN2_PATTERN))
      return regex == LLAMA3_PATTERN ? "llama-bpe" : "qwen2";
  }
  throw Error(source + ": the pre-tokenizer " + (p ? p->describe() : "None") + " is not read by the core (GPT-2's "
              "ByteLevel, optionally after individual Digits, and Llama 3's and Qwen2's Split regex are)");
}

bool is_file(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

Vocabulary hf_vocabulary(const std::string& folder, int vocab_size, const std::vector<int32_t>& eos_ids) {
  const std::string path = folder + "/tokenizer.json";
  if (!is_file(path)) throw Error(folder + " has no tokenizer.json");
  const JSON tj = read_json_file(path);
  const JSON* model = member(tj, "model");
  if (!model || type_of(model) != "BPE")
    throw Error(path + ": the model " + type_of(model) + " is not read by the core (BPE is)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (const JSON* v = member(*model, key); v && !(v->is_string() && v->text.empty()))
      throw Error(path + ": the BPE's " + key + " is not read by the core");
  if (const JSON* v = member(*model, "dropout"); v && !(v->is_number() && v->number == 0))
    throw Error(path + ": BPE dropout is not read by the core");

  Vocabulary v;
  v.ignore_merges = flag(*model, "ignore_merges", false);
  const JSON* normalizer = member(tj, "normalizer");
  const JSON* pre = member(tj, "pre_tokenizer");
  if (!flag(*model, "byte_fallback", false)) {  // byte-level BPE
    if (normalizer) throw Error(path + ": a normalizer is not read by the core");
    v.model = "gpt2";
    v.pre = pre_tokenizer(pre, path);
    if (type_of(member(tj, "decoder")) != "ByteLevel") throw Error(path + ": a byte-level BPE needs the ByteLevel decoder");
  } else {  // SentencePiece as a BPE with byte fallback: Gemma's form, or Llama 2's
    const bool gemma = normalizer && type_of(normalizer) == "Replace" && is_string_pattern(*normalizer, " ") &&
                       text_of(*normalizer, "content") == SPACE_MARK &&
                       (!pre || (type_of(pre) == "Split" && is_string_pattern(*pre, " ") &&
                                 text_of(*pre, "behavior") == "MergedWithPrevious" && !flag(*pre, "invert", false)));
    const bool llama2 = !normalizer && pre && type_of(pre) == "Metaspace" && text_of(*pre, "replacement") == SPACE_MARK &&
                        text_of(*pre, "prepend_scheme") == "first" && !flag(*pre, "split", true);
    if (!gemma && !llama2)
      throw Error(path + ": the normalizer " + (normalizer ? normalizer->describe() : "None") + " and pre-tokenizer " +
                  (pre ? pre->describe() : "None") + " of a SentencePiece BPE are not read by the core (Gemma's "
                  "Replace(' ', U+2581), or Llama 2's Metaspace prepending U+2581 to the first piece, are)");
    if (!flag(*model, "fuse_unk", false)) throw Error(path + ": a SentencePiece BPE without fuse_unk is not read by the core");
    const JSON* decoder = member(tj, "decoder");
    const JSON* steps = decoder && type_of(decoder) == "Sequence" ? member(*decoder, "decoders") : nullptr;
    std::string kinds;
    for (const JSON& d : steps && steps->is_array() ? steps->items : std::vector<JSON>{}) kinds += type_of(&d) + " ";
    if (kinds != (gemma ? "Replace ByteFallback Fuse " : "Replace ByteFallback Fuse Strip "))
      throw Error(path + ": the decoder " + (decoder ? decoder->describe() : "None") + " is not read by the core");
    v.model = "llama";
    v.gemma = gemma;
  }
  v.tokens.resize(size_t(vocab_size));
  v.types.assign(size_t(vocab_size), UNUSED);
  for (int i = 0; i < vocab_size; ++i) v.tokens[size_t(i)] = "[PAD" + std::to_string(i) + "]";  // ids no token names
  const auto place = [&](const std::string& token, const JSON& id, int type) {
    if (!id.is_integer() || id.integer < 0 || id.integer >= vocab_size)
      throw Error(path + ": the id of '" + token + "' is " + id.describe() + ", outside the model's " +
                  std::to_string(vocab_size) + " tokens");
    v.tokens[size_t(id.integer)] = token;
    v.types[size_t(id.integer)] = type;
  };
  const JSON* vocab = member(*model, "vocab");
  if (!vocab || !vocab->is_object()) throw Error(path + ": the BPE has no vocab object");
  for (const auto& [token, id] : vocab->members) place(token, id, 1);
  if (const JSON* added = member(tj, "added_tokens")) {
    for (const JSON& a : added->is_array() ? added->items : std::vector<JSON>{}) {
      const JSON* content = member(a, "content");
      const JSON* id = member(a, "id");
      if (!content || !content->is_string() || !id)
        throw Error(path + ": an added token needs a content string and an id, got " + a.describe());
      for (const char* rule : {"lstrip", "rstrip", "single_word"})
        if (const JSON* r = member(a, rule); r && !(r->kind == JSON::Kind::Bool && !r->boolean))
          throw Error(path + ": the added token '" + content->text + "' has " + rule + ", which the core does not read");
      const JSON* special = member(a, "special");
      place(content->text, *id, special && special->kind == JSON::Kind::Bool && special->boolean ? CONTROL : USER_DEFINED);
    }
  }
  const JSON* merges = member(*model, "merges");
  v.has_merges = true;
  for (const JSON& m : merges && merges->is_array() ? merges->items : std::vector<JSON>{}) {
    if (m.is_string() && m.text.find(' ') != std::string::npos) v.merges.push_back(m.text);
    else if (m.is_array() && m.items.size() == 2 && m.items[0].is_string() && m.items[1].is_string())
      v.merges.push_back(m.items[0].text + " " + m.items[1].text);
    else throw Error(path + ": a merge must be 'left right' or [left, right], got " + m.describe());
  }

  // The post-processor may put a BOS first; anything else it would add is not read.
  if (const JSON* post = member(tj, "post_processor"); post && type_of(post) != "ByteLevel") {
    const JSON* single = type_of(post) == "TemplateProcessing" ? member(*post, "single") : nullptr;
    bool ok = single && single->is_array();
    size_t sequence_at = 0;
    std::string bos;
    for (size_t i = 0; ok && i < single->items.size(); ++i) {
      const JSON& piece = single->items[i];
      if (const JSON* s = member(piece, "SpecialToken"); s && i == 0 && member(*s, "id") && member(*s, "id")->is_string())
        bos = member(*s, "id")->text;
      else if (member(piece, "Sequence")) sequence_at = i;
      else ok = false;
    }
    ok = ok && single->items.size() == (bos.empty() ? 1u : 2u) && sequence_at == single->items.size() - 1;
    if (!ok) throw Error(path + ": the post-processor " + post->describe() + " is not read by the core");
    if (!bos.empty()) {
      for (size_t i = 0; i < v.tokens.size() && v.bos < 0; ++i)
        if (v.tokens[i] == bos && v.types[i] != UNUSED) v.bos = int64_t(i);
      if (v.bos < 0) throw Error(path + ": the post-processor adds '" + bos + "', which is not a token");
      v.add_bos = true;
    }
  }
  v.eos_ids = eos_ids;
  const std::string config_path = folder + "/tokenizer_config.json";
  if (is_file(config_path)) {
    const JSON config = read_json_file(config_path);
    if (const JSON* t = member(config, "chat_template"); t && t->is_string()) v.chat_template = t->text;
  }
  return v;
}

}  // namespace nextoken
