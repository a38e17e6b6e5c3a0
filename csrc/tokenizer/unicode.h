// unicode.h: UTF-8 decoding and the code point classes the tokenizers' pre-tokenizers split on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace nextoken {

// Decodes the UTF-8 character at s[i] and advances i past it. An invalid sequence returns -1 and
// advances past its maximal valid prefix (at least one byte): the unit that Rust's from_utf8_lossy and
// Python's errors="replace" turn into one U+FFFD.
int32_t next_code_point(const std::string& s, size_t& i);

// `bytes` with each invalid sequence (as above) replaced by U+FFFD.
std::string utf8_lossy(const std::string& bytes);

// The offset of the first invalid sequence in `s`, or std::string::npos if it is all valid UTF-8.
size_t first_invalid_utf8(const std::string& s);

void append_utf8(std::string& out, uint32_t code_point);

// Classes as `tokenizers` has them (unicode_tables.h): \p{L}, \p{N} and \s of its regex engine, and what
// its Digits pre-tokenizer isolates (Rust's char::is_numeric).
bool is_letter(uint32_t c);
bool is_number(uint32_t c);
bool is_whitespace(uint32_t c);
bool is_numeric(uint32_t c);

}  // namespace nextoken
