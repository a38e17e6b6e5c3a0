// json.cpp: see json.h. A recursive descent over the bytes, with the depth bounded so that a hostile
// file cannot exhaust the stack.
#include "json.h"

#include <locale.h>  // newlocale, strtod_l (POSIX / glibc)
#include <stdlib.h>
#include <sys/stat.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "../common.h"
#include "../tokenizer/unicode.h"

namespace nextoken {

namespace {

constexpr int MAX_DEPTH = 256;

class Parser {
 public:
  Parser(const char* data, size_t size, const std::string& source) : p_(data), size_(size), source_(source) {}

  JSON document() {
    JSON v = value(0);
    space();
    if (pos_ != size_) fail("text after the value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(source_ + ": not valid JSON (" + what + " at byte " + std::to_string(pos_) + ")");
  }
  void space() {
    while (pos_ < size_ && (p_[pos_] == ' ' || p_[pos_] == '\t' || p_[pos_] == '\n' || p_[pos_] == '\r')) ++pos_;
  }
  bool eat(char c) {
    space();
    if (pos_ < size_ && p_[pos_] == c) return ++pos_, true;
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  bool word(const char* w) {
    const size_t n = std::strlen(w);
    if (size_ - pos_ >= n && std::memcmp(p_ + pos_, w, n) == 0) return pos_ += n, true;
    return false;
  }

  JSON value(int depth) {
    if (depth > MAX_DEPTH) fail("nested deeper than " + std::to_string(MAX_DEPTH) + " levels");
    space();
    if (pos_ == size_) fail("the text ends where a value should be");
    JSON v;
    const char c = p_[pos_];
    if (c == '{') {
      ++pos_;
      v.kind = JSON::Kind::Object;
      if (eat('}')) return v;
      do {
        space();
        if (pos_ == size_ || p_[pos_] != '"') fail("expected a key");
        std::string key = string();
        expect(':');
        v.members.emplace_back(std::move(key), value(depth + 1));
      } while (eat(','));
      expect('}');
    } else if (c == '[') {
      ++pos_;
      v.kind = JSON::Kind::Array;
      if (eat(']')) return v;
      do v.items.push_back(value(depth + 1));
      while (eat(','));
      expect(']');
    } else if (c == '"') {
      v.kind = JSON::Kind::String;
      v.text = string();
    } else if (word("true")) {
      v.kind = JSON::Kind::Bool;
      v.boolean = true;
    } else if (word("false")) {
      v.kind = JSON::Kind::Bool;
    } else if (word("null")) {
    } else if (word("NaN") || word("Infinity") || word("-Infinity")) {  // Python's json writes and reads these
      v.kind = JSON::Kind::Number;
      v.number = c == 'N' ? NAN : c == '-' ? -INFINITY : INFINITY;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      number(v);
    } else {
      fail("unexpected character");
    }
    return v;
  }

  void number(JSON& v) {
    const size_t begin = pos_;
    auto digits = [&] {
      const size_t from = pos_;
      while (pos_ < size_ && p_[pos_] >= '0' && p_[pos_] <= '9') ++pos_;
      if (pos_ == from) fail("a number without digits");
    };
    if (p_[pos_] == '-') ++pos_;
    if (pos_ < size_ && p_[pos_] == '0') ++pos_;
    else digits();
    bool integral = true;
    if (pos_ < size_ && p_[pos_] == '.') ++pos_, digits(), integral = false;
    if (pos_ < size_ && (p_[pos_] == 'e' || p_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < size_ && (p_[pos_] == '+' || p_[pos_] == '-')) ++pos_;
      digits();
      integral = false;
    }
    // strtod in the "C" locale: plain strtod reads the process's, where a host may have set a comma as the
    // decimal point. Out of range: +-inf or 0, as Python's float() gives.
    static const locale_t c_locale = newlocale(LC_ALL_MASK, "C", nullptr);
    const char* first = p_ + begin;
    const std::string text(first, pos_ - begin);
    v.kind = JSON::Kind::Number;
    v.number = strtod_l(text.c_str(), nullptr, c_locale);
    v.integral = integral;
    if (integral) {  // beyond int64: saturated
      const auto [end2, error2] = std::from_chars(first, p_ + pos_, v.integer);
      if (error2 == std::errc::result_out_of_range) v.integer = *first == '-' ? INT64_MIN : INT64_MAX;
    }
  }

  uint32_t hex4() {
    if (size_ - pos_ < 4) fail("a short \\u escape");
    uint32_t x = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = p_[pos_++];
      x = x * 16 + uint32_t(h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                           : h >= 'A' && h <= 'F' ? h - 'A' + 10 : (fail("a bad \\u escape"), 0));
    }
    return x;
  }

  std::string string() {
    ++pos_;  // the opening quote
    std::string out;
    while (true) {
      if (pos_ >= size_) fail("an unterminated string");
      const char c = p_[pos_];
      if (c == '"') break;
      if (uint8_t(c) < 0x20) fail("a control character in a string");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      if (++pos_ >= size_) fail("an unterminated string");
      const char e = p_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair spells a code point above U+FFFF
            if (!word("\\u")) fail("a lone surrogate");
            const uint32_t low = hex4();
            if (low < 0xDC00 || low >= 0xE000) fail("a lone surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("a lone surrogate");
          }
          append_utf8(out, cp);
          break;
        }
        default: fail("a bad escape");
      }
    }
    ++pos_;
    if (first_invalid_utf8(out) != std::string::npos) fail("a string that is not UTF-8");
    return out;
  }

  const char* p_;
  size_t size_, pos_ = 0;
  const std::string& source_;
};

}  // namespace

const JSON* JSON::find(const std::string& key) const {
  for (auto it = members.rbegin(); it != members.rend(); ++it)
    if (it->first == key) return &it->second;
  return nullptr;
}

std::string JSON::describe() const {
  std::string out;
  describe_into(out, 60);
  return out.size() > 60 ? out.substr(0, 57) + "..." : out;
}

void JSON::describe_into(std::string& out, size_t limit) const {
  if (out.size() > limit) return;
  switch (kind) {
    case Kind::Null: out += "None"; break;
    case Kind::Bool: out += boolean ? "True" : "False"; break;
    case Kind::Number: {
      if (integral) {
        out += std::to_string(integer);
      } else if (std::isnan(number)) {
        out += "nan";
      } else if (std::isinf(number)) {
        out += number < 0 ? "-inf" : "inf";
      } else {  // the shortest spelling that reads back, as Python's repr (locale-independent)
        char buf[32];
        const auto [end, error] = std::to_chars(buf, buf + sizeof buf, number);
        const std::string text(buf, error == std::errc() ? end : buf);
        out += text;
        if (text.find_first_of(".e") == std::string::npos) out += ".0";
      }
      break;
    }
    case Kind::String: out += "'" + text + "'"; break;
    case Kind::Array:
      out += "[";
      for (size_t i = 0; i < items.size() && out.size() <= limit; ++i) {
        if (i) out += ", ";
        items[i].describe_into(out, limit);
      }
      out += "]";
      break;
    case Kind::Object:
      out += "{";
      for (size_t i = 0; i < members.size() && out.size() <= limit; ++i) {
        out += (i ? ", '" : "'") + members[i].first + "': ";
        members[i].second.describe_into(out, limit);
      }
      out += "}";
      break;
  }
}

JSON parse_json(const char* data, size_t size, const std::string& source) {
  return Parser(data, size, source).document();
}

JSON read_json_file(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) throw Error(path + ": no such file");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) throw Error(path + ": not a readable file");
  const std::string bytes = text.str();
  JSON v = parse_json(bytes.data(), bytes.size(), path);
  if (!v.is_object()) throw Error(path + ": expected a JSON object");
  return v;
}

}  // namespace nextoken
