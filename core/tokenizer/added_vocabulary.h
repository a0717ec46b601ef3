#pragma once
// The added tokens of a tokenizer.json ("added_tokens"): special tokens such as <|begin_of_text|>
// and user-added words. The input is split on them before anything else, as HF does: first on
// the tokens with normalized == false, matched in the raw text; then each remaining segment is
// normalized and split on the tokens with normalized == true, matched in normalized form.
// Matching is leftmost-longest and honours single_word, lstrip and rstrip.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/tokenizer/hf_pipeline.h"

namespace kvscope::hf {

struct AddedToken {
    int32_t id = -1;
    std::string content;
    bool single_word = false;
    bool lstrip = false;
    bool rstrip = false;
    bool normalized = true;
    bool special = false;
};

// A segment of the input: an added token (id >= 0) or text still to tokenize (id == -1).
struct Segment {
    std::string text;
    int32_t id = -1;
    bool at_start = false;
};

class AddedVocabulary {
  public:
    AddedVocabulary() = default;
    // `normalizer` (may be null) gives the normalized form of normalized == true tokens.
    AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

    // Splits `text` on added tokens, normalizing the text segments with `normalizer`.
    std::vector<Segment> split(std::string_view text, const Normalizer* normalizer) const;

    const AddedToken* by_id(int32_t id) const;  // nullptr if `id` is not an added token
    const AddedToken* by_content(const std::string& content) const;
    const std::vector<AddedToken>& tokens() const { return tokens_; }

  private:
    // Byte trie of token contents; terminal nodes name an index into tokens_.
    struct Trie {
        struct Node {
            std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
            int32_t token = -1;
        };
        std::vector<Node> nodes{Node{}};
        std::array<bool, 256> first{};  // bytes that can start a match
        void insert(const std::string& key, int32_t token);
        // Longest token starting at s[pos]: (token index, end) or (-1, pos).
        std::pair<int32_t, size_t> longest(std::string_view s, size_t pos) const;
    };

    void split_with(const Trie& trie, const std::string& text, bool at_start,
                    std::vector<Segment>& out) const;

    std::vector<AddedToken> tokens_;
    std::vector<int32_t> by_id_;  // id -> index into tokens_, -1 where none
    Trie raw_, normalized_;
};

}  // namespace kvscope::hf
