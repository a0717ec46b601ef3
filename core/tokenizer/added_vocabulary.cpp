#include "core/tokenizer/added_vocabulary.h"

#include <algorithm>

#include "core/tokenizer/pcre_regex.h"
#include "core/tokenizer/utf8.h"

namespace kvscope::hf {

namespace {

// HF tests \w (Unicode word character) on the neighbours of a single_word token.
bool is_word_unit(std::string_view unit) {
    static const PcreRegex word(R"(^\w$)", false);
    return !word.find_all(unit).empty();
}

bool ends_with_word(std::string_view s) {
    if (s.empty()) return false;
    const size_t b = utf8::prev_start(s, s.size());
    return is_word_unit(s.substr(b));
}

bool starts_with_word(std::string_view s) {
    if (s.empty()) return false;
    return is_word_unit(s.substr(0, utf8::next(s, 0).len));
}

}  // namespace

void AddedVocabulary::Trie::insert(const std::string& key, int32_t token) {
    int32_t node = 0;
    for (unsigned char c : key) {
        auto& next = nodes[static_cast<size_t>(node)].next;
        auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(c, INT32_MIN));
        if (it != next.end() && it->first == c) {
            node = it->second;
        } else {
            const auto child = static_cast<int32_t>(nodes.size());
            next.insert(it, {c, child});
            nodes.emplace_back();
            node = child;
        }
    }
    // The first token with a given content wins, as the first match of HF's trie does.
    if (nodes[static_cast<size_t>(node)].token < 0) nodes[static_cast<size_t>(node)].token = token;
    if (!key.empty()) first[static_cast<unsigned char>(key[0])] = true;
}

std::pair<int32_t, size_t> AddedVocabulary::Trie::longest(std::string_view s, size_t pos) const {
    std::pair<int32_t, size_t> best{-1, pos};
    int32_t node = 0;
    for (size_t i = pos; i < s.size(); ++i) {
        const auto& next = nodes[static_cast<size_t>(node)].next;
        const auto c = static_cast<unsigned char>(s[i]);
        auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(c, INT32_MIN));
        if (it == next.end() || it->first != c) break;
        node = it->second;
        if (nodes[static_cast<size_t>(node)].token >= 0)
            best = {nodes[static_cast<size_t>(node)].token, i + 1};
    }
    return best;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)) {
    int32_t max_id = -1;
    for (const auto& t : tokens_) max_id = std::max(max_id, t.id);
    by_id_.assign(static_cast<size_t>(int64_t{max_id} + 1), -1);
    for (size_t i = 0; i < tokens_.size(); ++i) {
        const AddedToken& t = tokens_[i];
        auto& slot = by_id_[static_cast<size_t>(t.id)];
        if (slot < 0) slot = static_cast<int32_t>(i);
        if (t.content.empty()) continue;
        if (t.normalized) {
            std::string key = t.content;
            if (normalizer) normalizer->normalize(key);
            normalized_.insert(key, static_cast<int32_t>(i));
        } else {
            raw_.insert(t.content, static_cast<int32_t>(i));
        }
    }
}

const AddedToken* AddedVocabulary::by_id(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= by_id_.size()) return nullptr;
    const int32_t k = by_id_[static_cast<size_t>(id)];
    return k < 0 ? nullptr : &tokens_[static_cast<size_t>(k)];
}

const AddedToken* AddedVocabulary::by_content(const std::string& content) const {
    for (const auto& t : tokens_)
        if (t.content == content) return &t;
    return nullptr;
}

void AddedVocabulary::split_with(const Trie& trie, const std::string& s, bool at_start,
                                 std::vector<Segment>& out) const {
    size_t start_offset = 0;
    size_t pos = 0;
    auto whitespace_before = [&](size_t end) {  // start of the whitespace run ending at `end`
        while (end > 0) {
            const size_t b = utf8::prev_start(s, end);
            const utf8::Unit u = utf8::next(s, b);
            if (!u.valid || !utf8::is_whitespace(u.cp)) break;
            end = b;
        }
        return end;
    };
    auto whitespace_after = [&](size_t b) {  // end of the whitespace run starting at `b`
        while (b < s.size()) {
            const utf8::Unit u = utf8::next(s, b);
            if (!u.valid || !utf8::is_whitespace(u.cp)) break;
            b += u.len;
        }
        return b;
    };
    while (pos < s.size()) {
        if (!trie.first[static_cast<unsigned char>(s[pos])]) {
            ++pos;
            continue;
        }
        const auto [k, end] = trie.longest(s, pos);
        if (k < 0) {
            ++pos;
            continue;
        }
        const AddedToken& t = tokens_[static_cast<size_t>(k)];
        size_t start = pos, stop = end;
        pos = end;
        if (t.single_word) {
            const std::string_view sv(s);
            const bool start_space = start == 0 || !ends_with_word(sv.substr(0, start));
            const bool stop_space = stop == s.size() || !starts_with_word(sv.substr(stop));
            if (!start_space || !stop_space) continue;
        }
        if (t.lstrip) start = std::max(whitespace_before(start), start_offset);
        if (t.rstrip) stop = whitespace_after(stop);
        if (start_offset < start)
            out.push_back(
                {s.substr(start_offset, start - start_offset), -1, at_start && start_offset == 0});
        out.push_back({s.substr(start, stop - start), t.id, false});
        start_offset = pos = stop;
    }
    if (start_offset < s.size())
        out.push_back({s.substr(start_offset), -1, at_start && start_offset == 0});
}

std::vector<Segment> AddedVocabulary::split(std::string_view text,
                                            const Normalizer* normalizer) const {
    std::vector<Segment> first;
    split_with(raw_, std::string(text), true, first);
    std::vector<Segment> out;
    out.reserve(first.size());
    for (auto& seg : first) {
        if (seg.id >= 0) {
            out.push_back(std::move(seg));
            continue;
        }
        if (normalizer) normalizer->normalize(seg.text);
        if (!seg.text.empty()) split_with(normalized_, seg.text, seg.at_start, out);
    }
    return out;
}

}  // namespace kvscope::hf
