#pragma once
// The BPE model of tokenizer.json: one pre-tokenized word -> ids. Characters are looked up in the
// vocabulary (unknown ones go to <0xNN> byte tokens with byte_fallback, else to unk_token, fused
// when fuse_unk, else dropped, as HF does), then merges are applied lowest rank first, leftmost
// first on ties, with a priority queue: O(n log n) in the word length, so a 100k-character word
// (SentencePiece-style files have no pre-tokenizer) is fine. Short words are cached.
#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/tokenizer/hf_pipeline.h"

namespace kvscope::hf {

struct BpeOptions {
    std::string unk_token;                  // empty: none
    std::string continuing_subword_prefix;  // e.g. "##"; empty: none
    std::string end_of_word_suffix;         // e.g. "</w>"; empty: none
    bool fuse_unk = false;
    bool byte_fallback = false;
    bool ignore_merges = false;  // a word that is itself in the vocabulary maps straight to it
};

class BpeModel {
  public:
    // `vocab`: token -> id. `merges`: pairs in rank order. Throws InputError (at `where`) if a
    // merge names a token missing from the vocabulary or merges into one that is missing.
    BpeModel(std::unordered_map<std::string, int32_t> vocab,
             const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
             const JsonWhere& where);

    void tokenize(std::string_view word, std::vector<int32_t>& out) const;

    int32_t token_to_id(const std::string& token) const;  // -1 if absent
    const std::string* id_to_token(int32_t id) const;     // nullptr if absent
    int32_t max_id() const { return static_cast<int32_t>(vocab_r_.size()) - 1; }

  private:
    void merge_word(std::string_view word, std::vector<int32_t>& out) const;

    std::unordered_map<std::string, int32_t> vocab_;
    std::vector<std::string> vocab_r_;
    std::vector<bool> has_id_;
    // (left id << 32 | right id) -> (rank, merged id)
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
    BpeOptions opt_;
    int32_t unk_id_ = -1;
    std::array<int32_t, 256> byte_ids_{};  // <0xNN> token ids, -1 where absent

    mutable std::mutex cache_mu_;
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace kvscope::hf
