#include "core/tokenizer/bpe_model.h"

#include <cstdio>
#include <queue>

#include "core/tokenizer/utf8.h"

namespace kvscope::hf {

namespace {

// Words at least this long are not cached (HF uses the same bound); the cache is dropped whole
// when it reaches kCacheEntries, which bounds its memory.
constexpr size_t kCacheMaxWord = 256;
constexpr size_t kCacheEntries = 50000;

uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

BpeModel::BpeModel(std::unordered_map<std::string, int32_t> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges,
                   BpeOptions options, const JsonWhere& where)
    : vocab_(std::move(vocab)), opt_(std::move(options)) {
    int32_t max_id = -1;
    for (const auto& [tok, id] : vocab_) max_id = std::max(max_id, id);
    vocab_r_.resize(static_cast<size_t>(int64_t{max_id} + 1));
    has_id_.assign(static_cast<size_t>(int64_t{max_id} + 1), false);
    for (const auto& [tok, id] : vocab_) {
        vocab_r_[static_cast<size_t>(id)] = tok;
        has_id_[static_cast<size_t>(id)] = true;
    }
    if (!opt_.unk_token.empty()) unk_id_ = token_to_id(opt_.unk_token);
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        byte_ids_[static_cast<size_t>(b)] = token_to_id(name);
    }
    const size_t prefix_len = opt_.continuing_subword_prefix.size();
    merges_.reserve(merges.size());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        const auto& [a, b] = merges[rank];
        const int32_t ia = token_to_id(a), ib = token_to_id(b);
        const JsonWhere w = where.at("merges").at(rank);
        if (ia < 0) w.fail("merge names '" + a + "', which is not in model.vocab");
        if (ib < 0) w.fail("merge names '" + b + "', which is not in model.vocab");
        // With a continuing-subword prefix, "a" + "##b" merges into "ab" (the prefix goes).
        std::string merged = a;
        if (prefix_len && b.compare(0, prefix_len, opt_.continuing_subword_prefix) == 0)
            merged += b.substr(prefix_len);
        else
            merged += b;
        const int32_t im = token_to_id(merged);
        if (im < 0) w.fail("merge result '" + merged + "' is not in model.vocab");
        // A repeated pair keeps its first (lowest) rank.
        merges_.emplace(pair_key(ia, ib), std::make_pair(static_cast<int32_t>(rank), im));
    }
}

int32_t BpeModel::token_to_id(const std::string& token) const {
    const auto it = vocab_.find(token);
    return it == vocab_.end() ? -1 : it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= vocab_r_.size() || !has_id_[static_cast<size_t>(id)])
        return nullptr;
    return &vocab_r_[static_cast<size_t>(id)];
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    if (opt_.ignore_merges) {
        const auto it = vocab_.find(std::string(word));
        if (it != vocab_.end()) {
            out.push_back(it->second);
            return;
        }
    }
    if (word.size() >= kCacheMaxWord) {
        merge_word(word, out);
        return;
    }
    const std::string key(word);
    {
        std::lock_guard<std::mutex> lock(cache_mu_);
        const auto it = cache_.find(key);
        if (it != cache_.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<int32_t> ids;
    merge_word(word, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kCacheEntries) cache_.clear();
    cache_.emplace(key, std::move(ids));
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
    // Symbols form a doubly linked list over the word; a merged-away symbol gets len 0.
    struct Symbol {
        int32_t id;
        int32_t prev, next;
        size_t len;
    };
    std::vector<Symbol> syms;
    syms.reserve(word.size());
    auto add = [&](int32_t id, size_t len) {
        const auto n = static_cast<int32_t>(syms.size());
        if (n > 0) syms.back().next = n;
        syms.push_back({id, n - 1, -1, len});
    };
    int32_t pending_unk = -1;  // HF adds a (possibly fused) unk only when the next known unit comes
    size_t pending_len = 0;
    for (size_t i = 0; i < word.size();) {
        const size_t len = utf8::next(word, i).len;
        std::string unit(word.substr(i, len));
        if (i > 0 && !opt_.continuing_subword_prefix.empty())
            unit.insert(0, opt_.continuing_subword_prefix);
        if (i + len == word.size()) unit += opt_.end_of_word_suffix;
        const int32_t id = token_to_id(unit);
        if (id >= 0) {
            if (pending_unk >= 0) add(pending_unk, pending_len);
            pending_unk = -1;
            add(id, len);
        } else {
            bool fell_back = false;
            if (opt_.byte_fallback) {
                fell_back = true;
                for (unsigned char c : unit)
                    if (byte_ids_[c] < 0) fell_back = false;
                if (fell_back)
                    for (unsigned char c : unit) add(byte_ids_[c], 1);
            }
            if (!fell_back && unk_id_ >= 0) {
                if (pending_unk >= 0 && opt_.fuse_unk) {
                    pending_len += len;
                } else {
                    if (pending_unk >= 0) add(pending_unk, pending_len);
                    pending_unk = unk_id_;
                    pending_len = len;
                }
            }
        }
        i += len;
    }
    if (pending_unk >= 0) add(pending_unk, pending_len);

    struct Merge {
        int32_t rank;
        int32_t pos;
        int32_t new_id;
        bool operator>(const Merge& o) const {
            return rank != o.rank ? rank > o.rank : pos > o.pos;
        }
    };
    std::priority_queue<Merge, std::vector<Merge>, std::greater<Merge>> queue;
    auto consider = [&](int32_t left) {
        const int32_t right = syms[static_cast<size_t>(left)].next;
        if (right < 0) return;
        const auto it = merges_.find(
            pair_key(syms[static_cast<size_t>(left)].id, syms[static_cast<size_t>(right)].id));
        if (it != merges_.end()) queue.push({it->second.first, left, it->second.second});
    };
    for (size_t k = 0; k + 1 < syms.size(); ++k) consider(static_cast<int32_t>(k));
    while (!queue.empty()) {
        const Merge top = queue.top();
        queue.pop();
        Symbol& left = syms[static_cast<size_t>(top.pos)];
        if (left.len == 0 || left.next < 0) continue;
        const Symbol right = syms[static_cast<size_t>(left.next)];
        const auto it = merges_.find(pair_key(left.id, right.id));
        if (it == merges_.end() || it->second.second != top.new_id) continue;  // stale entry
        syms[static_cast<size_t>(left.next)].len = 0;
        left.id = top.new_id;
        left.len += right.len;
        left.next = right.next;
        if (right.next >= 0) syms[static_cast<size_t>(right.next)].prev = top.pos;
        if (left.prev >= 0) consider(left.prev);
        consider(top.pos);
    }
    for (const Symbol& s : syms)
        if (s.len > 0) out.push_back(s.id);
}

}  // namespace kvscope::hf
