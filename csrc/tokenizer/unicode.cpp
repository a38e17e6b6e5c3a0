// unicode.cpp: see unicode.h.
#include "unicode.h"

#include <algorithm>
#include <iterator>

#include "unicode_tables.h"

namespace nextoken {

namespace {

template <size_t N>
bool in(const CodePointRange (&table)[N], uint32_t c) {
  const CodePointRange* r = std::upper_bound(std::begin(table), std::end(table), c,
                                             [](uint32_t x, const CodePointRange& range) { return x < range.first; });
  return r != std::begin(table) && c <= (r - 1)->last;
}

}  // namespace

int32_t next_code_point(const std::string& s, size_t& i) {
  const auto byte = [&](size_t k) { return uint8_t(s[k]); };
  const uint8_t c = byte(i);
  if (c < 0x80) { ++i; return c; }
  // The sequence's length and the range its second byte must fall in (which excludes overlong forms,
  // surrogates and code points above U+10FFFF); later continuation bytes are 0x80..0xBF.
  int len = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
  else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
  if (len == 0) { ++i; return -1; }
  int32_t cp = c & (0x7F >> len);
  for (int k = 1; k < len; ++k) {
    const size_t at = i + size_t(k);
    const uint8_t min = k == 1 ? lo : 0x80, max = k == 1 ? hi : 0xBF;
    if (at >= s.size() || byte(at) < min || byte(at) > max) { i = at; return -1; }
    cp = (cp << 6) | (byte(at) & 0x3F);
  }
  i += size_t(len);
  return cp;
}

std::string utf8_lossy(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const size_t start = i;
    if (next_code_point(bytes, i) < 0) out += "\xEF\xBF\xBD";
    else out.append(bytes, start, i - start);
  }
  return out;
}

size_t first_invalid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    if (next_code_point(s, i) < 0) return start;
  }
  return std::string::npos;
}

void append_utf8(std::string& out, uint32_t c) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

bool is_letter(uint32_t c) { return in(kLetter, c); }
bool is_number(uint32_t c) { return in(kNumber, c); }
bool is_whitespace(uint32_t c) { return in(kWhitespace, c); }
bool is_numeric(uint32_t c) { return in(kNumeric, c); }

}  // namespace nextoken
