#include "core/scenarios/text_alternation.h"

#include <algorithm>

#include "core/error.h"

namespace kvscope {

namespace {

size_t count_of(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

}  // namespace

std::vector<AlternationPiece> parse_alternations(const std::string& text,
                                                 const std::string& where) {
    std::vector<AlternationPiece> out;
    std::string literal;
    for (size_t i = 0; i < text.size();) {
        if (text.compare(i, 2, "))") == 0)
            throw InputError(where + ": '))' at byte " + std::to_string(i) + " closes no '(('");
        if (text.compare(i, 2, "((") != 0) {
            literal += text[i++];
            continue;
        }
        const size_t open = i;
        const size_t close = text.find("))", open + 2);
        if (close == std::string::npos)
            throw InputError(where + ": '((' at byte " + std::to_string(open) +
                             " is never closed by '))'");
        const std::string body = text.substr(open + 2, close - open - 2);
        if (body.find("((") != std::string::npos)
            throw InputError(where + ": '((' inside the group at byte " + std::to_string(open) +
                             " (groups do not nest)");
        AlternationPiece g;
        g.group = true;
        for (size_t from = 0;;) {
            const size_t bar = body.find('|', from);
            g.alternatives.push_back(
                body.substr(from, bar == std::string::npos ? std::string::npos : bar - from));
            if (g.alternatives.back().empty())
                throw InputError(where + ": empty alternative in the group at byte " +
                                 std::to_string(open));
            if (bar == std::string::npos) break;
            from = bar + 1;
        }
        if (!literal.empty()) out.push_back({{std::move(literal)}, false});
        literal.clear();
        out.push_back(std::move(g));
        i = close + 2;
    }
    if (!literal.empty()) out.push_back({{std::move(literal)}, false});
    return out;
}

std::string resolve_alternations(const std::string& text, SplitMix64& rng) {
    std::string out;
    for (const AlternationPiece& p : parse_alternations(text, "template text"))
        out += p.group ? p.alternatives[rng.below(p.alternatives.size())] : p.alternatives[0];
    return out;
}

CountRange count_over_resolutions(const std::vector<AlternationPiece>& pieces,
                                  const std::string& what) {
    CountRange r;
    for (const AlternationPiece& p : pieces) {
        size_t lo = SIZE_MAX, hi = 0;
        for (const std::string& a : p.alternatives) {
            lo = std::min(lo, count_of(a, what));
            hi = std::max(hi, count_of(a, what));
        }
        r.min += lo;
        r.max += hi;
    }
    return r;
}

}  // namespace kvscope
