#pragma once
// A compiled PCRE2 pattern (UTF + Unicode properties) for the pre-tokenizer and normalizer
// patterns of tokenizer.json. HF compiles them with Oniguruma; PCRE2 accepts the same syntax for
// everything these files use (\p{L}, \p{N}, (?i:...), (?!\S), possessive and lazy quantifiers).
// Subjects may hold invalid UTF-8: such bytes never match and are left between matches.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvscope {

class PcreRegex {
  public:
    // Throws std::invalid_argument with PCRE2's message (the caller adds the file name).
    // `literal` matches the pattern text as a plain string.
    PcreRegex(const std::string& pattern, bool literal);
    ~PcreRegex();
    PcreRegex(const PcreRegex&) = delete;
    PcreRegex& operator=(const PcreRegex&) = delete;

    // Every non-overlapping match, left to right, as [begin, end) byte offsets. Empty matches are
    // reported (as the Rust regex crate does) and the scan moves on by one unit after them.
    // Throws std::runtime_error if PCRE2 gives up (match limit) on this subject.
    std::vector<std::pair<size_t, size_t>> find_all(std::string_view subject) const;

    const std::string& pattern() const { return pattern_; }

  private:
    std::string pattern_;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace kvscope
