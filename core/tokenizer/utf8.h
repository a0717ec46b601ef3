#pragma once
// UTF-8 helpers for the tokenizers. Input text may hold invalid UTF-8: every helper here treats an
// invalid byte as a one-byte unit of its own (never skips it, never reads past the end).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvscope::utf8 {

inline constexpr char32_t kReplacement = 0xFFFD;

// One unit of a UTF-8 string: a well-formed code point, or one invalid byte (valid == false,
// cp == the byte value, len == 1).
struct Unit {
    char32_t cp = 0;
    size_t len = 0;
    bool valid = false;
};

// Decodes the unit starting at s[i] (i < s.size()). Rejects overlong forms, surrogates and code
// points above U+10FFFF, as Rust's and Python's decoders do.
Unit next(std::string_view s, size_t i);

// Byte offset where the unit ending at s[end] begins (end > 0): the start of the last unit of
// s.substr(0, end).
size_t prev_start(std::string_view s, size_t end);

void append(std::string& out, char32_t cp);
std::string encode(char32_t cp);

bool is_valid(std::string_view s);

// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes one U+FFFD.
std::string lossy(std::string_view bytes);

// Rust's char::is_whitespace (the Unicode White_Space property).
bool is_whitespace(char32_t cp);

// Number of bytes at the end of `s` that form an incomplete (but so far valid) UTF-8 sequence.
size_t incomplete_tail(std::string_view s);

}  // namespace kvscope::utf8
