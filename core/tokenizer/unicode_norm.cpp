// NFD = full canonical decomposition + canonical ordering of combining marks; NFC = NFD followed
// by canonical composition (UAX #15). Hangul syllables are decomposed and composed
// algorithmically. Text is processed between invalid bytes, which are copied through.
#include "core/tokenizer/unicode_norm.h"

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "core/tokenizer/unicode_data.h"
#include "core/tokenizer/utf8.h"

namespace kvscope::unicode {

namespace {

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

struct Tables {
    std::unordered_map<char32_t, std::pair<char32_t, char32_t>> decomp;
    std::unordered_map<uint64_t, char32_t> compose;
    Tables() {
        decomp.reserve(data::kCanonicalSize / 3);
        for (size_t i = 0; i + 2 < data::kCanonicalSize; i += 3) {
            const char32_t cp = data::kCanonical[i] & 0xFFFFFF;
            const bool composable = (data::kCanonical[i] >> 24) & 1;
            decomp[cp] = {data::kCanonical[i + 1], data::kCanonical[i + 2]};
            if (composable)
                compose[(uint64_t(data::kCanonical[i + 1]) << 32) | data::kCanonical[i + 2]] = cp;
        }
    }
};

const Tables& tables() {
    static const Tables t;
    return t;
}

int combining_class(char32_t c) {
    if (c < 0x300) return 0;
    // Binary search over (first, last, ccc) triples.
    size_t lo = 0, hi = data::kCombiningClassSize / 3;
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        const char32_t* r = &data::kCombiningClass[mid * 3];
        if (c < r[0])
            hi = mid;
        else if (c > r[1])
            lo = mid + 1;
        else
            return static_cast<int>(r[2]);
    }
    return 0;
}

void decompose(char32_t c, std::vector<char32_t>& out) {
    if (c >= kSBase && c < kSBase + kSCount) {
        const char32_t s = c - kSBase;
        out.push_back(kLBase + s / kNCount);
        out.push_back(kVBase + (s % kNCount) / kTCount);
        if (s % kTCount) out.push_back(kTBase + s % kTCount);
        return;
    }
    const auto& d = tables().decomp;
    const auto it = d.find(c);
    if (it == d.end()) {
        out.push_back(c);
        return;
    }
    decompose(it->second.first, out);
    if (it->second.second) decompose(it->second.second, out);
}

char32_t compose_pair(char32_t a, char32_t b) {
    if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
        return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
    if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
        b < kTBase + kTCount)
        return a + (b - kTBase);
    const auto& m = tables().compose;
    const auto it = m.find((uint64_t(a) << 32) | b);
    return it == m.end() ? 0 : it->second;
}

// Normalizes one run of valid code points in place.
void normalize_run(std::vector<char32_t>& cps, Form form) {
    std::vector<char32_t> d;
    d.reserve(cps.size());
    for (char32_t c : cps) decompose(c, d);
    // Canonical ordering: stable sort of each run of non-starters by combining class.
    for (size_t i = 0; i < d.size();) {
        if (combining_class(d[i]) == 0) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < d.size() && combining_class(d[j]) != 0) ++j;
        std::stable_sort(
            d.begin() + static_cast<std::ptrdiff_t>(i), d.begin() + static_cast<std::ptrdiff_t>(j),
            [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
        i = j;
    }
    if (form == Form::kNfd) {
        cps = std::move(d);
        return;
    }
    std::vector<char32_t> out;
    out.reserve(d.size());
    long starter = -1;  // index in `out` of the last starter
    int last_ccc = -1;  // class of the last character kept after it (-1: none yet)
    for (char32_t c : d) {
        const int ccc = combining_class(c);
        // c is not blocked from the starter when nothing sits between them, or everything
        // between has a lower non-zero class.
        if (starter >= 0 && (last_ccc == -1 || (last_ccc != 0 && last_ccc < ccc))) {
            const char32_t comp = compose_pair(out[static_cast<size_t>(starter)], c);
            if (comp) {
                out[static_cast<size_t>(starter)] = comp;
                continue;
            }
        }
        if (ccc == 0) {
            starter = static_cast<long>(out.size());
            last_ccc = -1;
        } else {
            last_ccc = ccc;
        }
        out.push_back(c);
    }
    cps = std::move(out);
}

}  // namespace

std::string normalize(std::string_view text, Form form) {
    if (std::all_of(text.begin(), text.end(), [](char c) { return (c & 0x80) == 0; }))
        return std::string(text);
    std::string out;
    out.reserve(text.size());
    std::vector<char32_t> run;
    auto flush = [&] {
        normalize_run(run, form);
        for (char32_t c : run) utf8::append(out, c);
        run.clear();
    };
    for (size_t i = 0; i < text.size();) {
        const utf8::Unit u = utf8::next(text, i);
        if (u.valid) {
            run.push_back(u.cp);
        } else {
            flush();
            out.push_back(text[i]);
        }
        i += u.len;
    }
    flush();
    return out;
}

std::string to_lower(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        const utf8::Unit u = utf8::next(text, i);
        if (!u.valid) {
            out.push_back(text[i]);
            i += 1;
            continue;
        }
        i += u.len;
        const char32_t c = u.cp;
        if (c < 0x80) {
            out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
            continue;
        }
        bool done = false;
        for (size_t k = 0; k + 1 < data::kLowerSpecialSize && !done;) {
            const size_t n = data::kLowerSpecial[k + 1];
            if (data::kLowerSpecial[k] == c) {
                for (size_t m = 0; m < n; ++m) utf8::append(out, data::kLowerSpecial[k + 2 + m]);
                done = true;
            }
            k += 2 + n;
        }
        if (done) continue;
        char32_t low = c;
        size_t lo = 0, hi = data::kLowerRangesSize / 4;
        while (lo < hi) {
            const size_t mid = (lo + hi) / 2;
            const int32_t* r = &data::kLowerRanges[mid * 4];
            if (static_cast<int32_t>(c) < r[0]) {
                hi = mid;
            } else if (static_cast<int32_t>(c) > r[1]) {
                lo = mid + 1;
            } else {
                if ((static_cast<int32_t>(c) - r[0]) % r[2] == 0)
                    low = static_cast<char32_t>(static_cast<int32_t>(c) + r[3]);
                break;
            }
        }
        utf8::append(out, low);
    }
    return out;
}

}  // namespace kvscope::unicode
