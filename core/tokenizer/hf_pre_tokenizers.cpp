// tokenizer.json pre-tokenizers: Sequence, ByteLevel, Split, Digits, Metaspace, Whitespace,
// WhitespaceSplit, CharDelimiterSplit. Splitting follows HF's NormalizedString::split: the
// pattern's matches and the gaps between them cover the piece, `invert` swaps which is which, and
// the behaviour decides what happens to the matches (removed, isolated, merged, contiguous).
#include <algorithm>
#include <cctype>
#include <functional>

#include "core/tokenizer/hf_pipeline.h"
#include "core/tokenizer/pcre_regex.h"
#include "core/tokenizer/utf8.h"

namespace kvscope::hf {

using nlohmann::json;

namespace {

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct Range {
    size_t b, e;
    bool match;
};

// Matches + gaps covering [0, size), as HF's Pattern::find_matches returns them.
std::vector<Range> cover(size_t size, const std::vector<std::pair<size_t, size_t>>& matches) {
    std::vector<Range> out;
    if (size == 0) return {{0, 0, false}};
    size_t prev = 0;
    for (const auto& [b, e] : matches) {
        if (prev != b) out.push_back({prev, b, false});
        out.push_back({b, e, true});
        prev = e;
    }
    if (prev != size) out.push_back({prev, size, false});
    return out;
}

// Applies the delimiter behaviour; returns the ranges to keep.
std::vector<std::pair<size_t, size_t>> apply_behavior(std::vector<Range> r, Behavior behavior) {
    std::vector<std::pair<size_t, size_t>> out;
    switch (behavior) {
        case Behavior::kIsolated:
            for (const auto& x : r) out.emplace_back(x.b, x.e);
            break;
        case Behavior::kRemoved:
            for (const auto& x : r)
                if (!x.match) out.emplace_back(x.b, x.e);
            break;
        case Behavior::kContiguous: {
            bool prev = false;
            for (const auto& x : r) {
                if (x.match == prev && !out.empty())
                    out.back().second = x.e;
                else
                    out.emplace_back(x.b, x.e);
                prev = x.match;
            }
            break;
        }
        case Behavior::kMergedWithPrevious: {
            bool prev = false;
            for (const auto& x : r) {
                if (x.match && !prev && !out.empty())
                    out.back().second = x.e;
                else
                    out.emplace_back(x.b, x.e);
                prev = x.match;
            }
            break;
        }
        case Behavior::kMergedWithNext: {
            bool prev = false;
            for (auto it = r.rbegin(); it != r.rend(); ++it) {
                if (it->match && !prev && !out.empty())
                    out.back().first = it->b;
                else
                    out.emplace_back(it->b, it->e);
                prev = it->match;
            }
            std::reverse(out.begin(), out.end());
            break;
        }
    }
    return out;
}

using Matcher = std::function<std::vector<std::pair<size_t, size_t>>(std::string_view)>;

// Splits every piece with `matcher`, then drops empty pieces.
void split_pieces(std::vector<Piece>& pieces, const Matcher& matcher, Behavior behavior,
                  bool invert) {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (auto& p : pieces) {
        auto ranges = cover(p.text.size(), matcher(p.text));
        if (invert)
            for (auto& r : ranges) r.match = !r.match;
        for (const auto& [b, e] : apply_behavior(std::move(ranges), behavior))
            if (e > b) out.push_back({p.text.substr(b, e - b), p.at_start && b == 0});
    }
    pieces = std::move(out);
}

// One match per character satisfying `pred` (invalid bytes never match).
Matcher char_matcher(std::function<bool(char32_t)> pred) {
    return [pred = std::move(pred)](std::string_view s) {
        std::vector<std::pair<size_t, size_t>> m;
        for (size_t i = 0; i < s.size();) {
            const utf8::Unit u = utf8::next(s, i);
            if (u.valid && pred(u.cp)) m.emplace_back(i, i + u.len);
            i += u.len;
        }
        return m;
    };
}

Matcher regex_matcher(std::shared_ptr<const PcreRegex> re) {
    return [re = std::move(re)](std::string_view s) { return re->find_all(s); };
}

class SequencePre : public PreTokenizer {
  public:
    explicit SequencePre(std::vector<std::unique_ptr<PreTokenizer>> parts)
        : parts_(std::move(parts)) {}
    void split(std::vector<Piece>& pieces) const override {
        for (const auto& p : parts_) p->split(pieces);
    }
    bool is_byte_level() const override {
        for (const auto& p : parts_)
            if (p->is_byte_level()) return true;
        return false;
    }

  private:
    std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPre : public PreTokenizer {
  public:
    ByteLevelPre(bool add_prefix_space, bool use_regex)
        : add_prefix_space_(add_prefix_space),
          re_(use_regex ? std::make_shared<PcreRegex>(kGpt2Pattern, false) : nullptr) {}
    void split(std::vector<Piece>& pieces) const override {
        if (add_prefix_space_)
            for (auto& p : pieces)
                if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, " ");
        if (re_) split_pieces(pieces, regex_matcher(re_), Behavior::kIsolated, false);
        for (auto& p : pieces) {
            std::string mapped;
            mapped.reserve(p.text.size() * 2);
            for (unsigned char c : p.text) utf8::append(mapped, byte_to_char(c));
            p.text = std::move(mapped);
        }
    }
    bool is_byte_level() const override { return true; }

  private:
    bool add_prefix_space_;
    std::shared_ptr<const PcreRegex> re_;
};

class SplitPre : public PreTokenizer {
  public:
    SplitPre(Matcher m, Behavior b, bool invert) : m_(std::move(m)), b_(b), invert_(invert) {}
    void split(std::vector<Piece>& pieces) const override { split_pieces(pieces, m_, b_, invert_); }

  private:
    Matcher m_;
    Behavior b_;
    bool invert_;
};

class MetaspacePre : public PreTokenizer {
  public:
    MetaspacePre(std::string repl, PrependScheme scheme, bool split)
        : repl_(std::move(repl)), scheme_(scheme), split_(split) {}
    void split(std::vector<Piece>& pieces) const override {
        for (auto& p : pieces) {
            std::string t;
            t.reserve(p.text.size() + repl_.size());
            for (char c : p.text) {
                if (c == ' ')
                    t += repl_;
                else
                    t.push_back(c);
            }
            const bool starts = t.compare(0, repl_.size(), repl_) == 0;
            if (!t.empty() && !starts &&
                (scheme_ == PrependScheme::kAlways ||
                 (scheme_ == PrependScheme::kFirst && p.at_start)))
                t.insert(0, repl_);
            p.text = std::move(t);
        }
        if (split_) {
            const std::string r = repl_;
            Matcher m = [r](std::string_view s) {
                std::vector<std::pair<size_t, size_t>> out;
                for (size_t pos = s.find(r); pos != std::string_view::npos;
                     pos = s.find(r, pos + r.size()))
                    out.emplace_back(pos, pos + r.size());
                return out;
            };
            split_pieces(pieces, m, Behavior::kMergedWithNext, false);
        }
    }

  private:
    std::string repl_;
    PrependScheme scheme_;
    bool split_;
};

Behavior parse_behavior(const std::string& s, const JsonWhere& where) {
    std::string k;
    for (char c : s)
        if (c != '_') k.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    if (k == "removed") return Behavior::kRemoved;
    if (k == "isolated") return Behavior::kIsolated;
    if (k == "mergedwithprevious") return Behavior::kMergedWithPrevious;
    if (k == "mergedwithnext") return Behavior::kMergedWithNext;
    if (k == "contiguous") return Behavior::kContiguous;
    where.fail("unknown split behavior '" + s +
               "' (expected Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)");
}

std::shared_ptr<const PcreRegex> compile(const char* pattern) {
    return std::make_shared<PcreRegex>(pattern, false);
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const JsonWhere& where) {
    if (j.is_null()) return nullptr;
    const std::string type = get_string(j, "type", where, "");
    if (type == "Sequence") {
        const json& list = require(j, "pretokenizers", where);
        if (!list.is_array()) where.at("pretokenizers").fail("expected an array");
        std::vector<std::unique_ptr<PreTokenizer>> parts;
        for (size_t i = 0; i < list.size(); ++i) {
            auto p = make_pre_tokenizer(list[i], where.at("pretokenizers").at(i));
            if (p) parts.push_back(std::move(p));
        }
        return std::make_unique<SequencePre>(std::move(parts));
    }
    if (type == "ByteLevel")
        return std::make_unique<ByteLevelPre>(get_bool(j, "add_prefix_space", where, true),
                                              get_bool(j, "use_regex", where, true));
    if (type == "Split") {
        std::shared_ptr<const PcreRegex> re =
            make_pattern(require(j, "pattern", where), where.at("pattern"));
        const Behavior b =
            parse_behavior(get_string(j, "behavior", where, "Isolated"), where.at("behavior"));
        return std::make_unique<SplitPre>(regex_matcher(std::move(re)), b,
                                          get_bool(j, "invert", where, false));
    }
    if (type == "Digits") {
        const bool each = get_bool(j, "individual_digits", where, false);
        return std::make_unique<SplitPre>(regex_matcher(compile(R"(\p{N})")),
                                          each ? Behavior::kIsolated : Behavior::kContiguous,
                                          false);
    }
    if (type == "Metaspace") {
        const std::string repl = get_char(j, "replacement", where, "\u2581");
        return std::make_unique<MetaspacePre>(repl, parse_prepend_scheme(j, where),
                                              get_bool(j, "split", where, true));
    }
    if (type == "Whitespace")  // keeps the matches of \w+|[^\w\s]+
        return std::make_unique<SplitPre>(regex_matcher(compile(R"(\w+|[^\w\s]+)")),
                                          Behavior::kRemoved, true);
    if (type == "WhitespaceSplit")
        return std::make_unique<SplitPre>(char_matcher(utf8::is_whitespace), Behavior::kRemoved,
                                          false);
    if (type == "CharDelimiterSplit") {
        const std::string d = get_char(j, "delimiter", where, "");
        const char32_t cp = utf8::next(d, 0).cp;
        return std::make_unique<SplitPre>(char_matcher([cp](char32_t c) { return c == cp; }),
                                          Behavior::kRemoved, false);
    }
    if (type.empty()) where.fail("pre-tokenizer without a 'type'");
    where.fail("unsupported pre-tokenizer type '" + type +
               "' (supported: Sequence, ByteLevel, Split, Digits, Metaspace, Whitespace, "
               "WhitespaceSplit, CharDelimiterSplit)");
}

// Metaspace's "prepend_scheme" (first | always | never); older files carry add_prefix_space.
PrependScheme parse_prepend_scheme(const json& j, const JsonWhere& where) {
    const std::string s = get_string(j, "prepend_scheme", where, "");
    if (s.empty())
        return get_bool(j, "add_prefix_space", where, true) ? PrependScheme::kAlways
                                                            : PrependScheme::kNever;
    if (s == "first") return PrependScheme::kFirst;
    if (s == "always") return PrependScheme::kAlways;
    if (s == "never") return PrependScheme::kNever;
    where.at("prepend_scheme")
        .fail("unknown prepend_scheme '" + s + "' (expected first, always or never)");
}

}  // namespace kvscope::hf
