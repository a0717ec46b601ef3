#pragma once
// Unicode normalization forms (canonical: NFC, NFD) and lowercasing for tokenizer.json normalizers,
// from tables generated out of Python's unicodedata by tools/tokenizer/gen_unicode_data.py (see
// unicode_data.cpp for the Unicode version). Invalid UTF-8 bytes pass through unchanged.
#include <string>
#include <string_view>

namespace kvscope::unicode {

enum class Form { kNfc, kNfd };

std::string normalize(std::string_view text, Form form);

// Per-character full lowercase mapping (Rust's char::to_lowercase, as HF's Lowercase normalizer
// applies it: no context-dependent final sigma).
std::string to_lower(std::string_view text);

}  // namespace kvscope::unicode
