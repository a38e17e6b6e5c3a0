// json.h: JSON text (RFC 8259) read into a tree, for the Hugging Face files the core reads itself
// (config.json, generation_config.json, safetensors headers, tokenizer.json).
//
// The text is untrusted: nesting deeper than 256 levels, bytes that are not UTF-8, lone surrogates
// and anything after the value are a nextoken::Error naming the source and the byte offset.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nextoken {

struct JSON {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0;      // every number
  bool integral = false;  // written without fraction or exponent
  int64_t integer = 0;    // its value, saturated to the int64 range
  std::string text;                                   // String (UTF-8)
  std::vector<JSON> items;                            // Array
  std::vector<std::pair<std::string, JSON>> members;  // Object, in the text's order

  bool is_null() const { return kind == Kind::Null; }
  bool is_object() const { return kind == Kind::Object; }
  bool is_array() const { return kind == Kind::Array; }
  bool is_string() const { return kind == Kind::String; }
  bool is_number() const { return kind == Kind::Number; }
  bool is_integer() const { return kind == Kind::Number && integral; }
  // An object's member (the last one, where a key repeats, as Python's json reads it); null if absent.
  const JSON* find(const std::string& key) const;
  // The value as Python's repr() prints it, cut to about 60 characters (for messages).
  std::string describe() const;

 private:
  void describe_into(std::string& out, size_t limit) const;
};

// Throws nextoken::Error "<source>: not valid JSON (...)" unless `size` bytes of `data` are one value.
JSON parse_json(const char* data, size_t size, const std::string& source);
// The JSON object in a file; a missing, unreadable or non-object file is a nextoken::Error naming it.
JSON read_json_file(const std::string& path);

}  // namespace nextoken
