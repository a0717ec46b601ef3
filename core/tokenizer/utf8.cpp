#include "core/tokenizer/utf8.h"

namespace kvscope::utf8 {

namespace {

// Scans the sequence starting at s[i] against Unicode Table 3-7 (well-formed UTF-8). Returns the
// decoded unit; `matched` receives how many bytes matched the pattern before it failed (the
// "maximal subpart" that lossy decoding replaces with one U+FFFD), at least 1.
Unit scan(std::string_view s, size_t i, size_t& matched) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    matched = 1;
    if (b0 < 0x80) return {b0, 1, true};
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    char32_t cp = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
        cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        cp = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;  // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        cp = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    } else {
        return {b0, 1, false};
    }
    for (size_t k = 1; k <= need; ++k) {
        if (i + k >= s.size()) return {b0, 1, false};
        const auto b = static_cast<unsigned char>(s[i + k]);
        const unsigned char l = k == 1 ? lo : 0x80;
        const unsigned char h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) return {b0, 1, false};
        cp = (cp << 6) | (b & 0x3F);
        matched = k + 1;
    }
    return {cp, need + 1, true};
}

}  // namespace

Unit next(std::string_view s, size_t i) {
    size_t matched = 0;
    return scan(s, i, matched);
}

size_t prev_start(std::string_view s, size_t end) {
    // A unit is at most 4 bytes: try the candidate starts from the farthest.
    const size_t lowest = end >= 4 ? end - 4 : 0;
    for (size_t start = lowest; start + 1 < end; ++start) {
        const Unit u = next(s, start);
        if (u.valid && start + u.len == end) return start;
    }
    return end - 1;
}

void append(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

std::string encode(char32_t cp) {
    std::string s;
    append(s, cp);
    return s;
}

bool is_valid(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const Unit u = next(s, i);
        if (!u.valid) return false;
        i += u.len;
    }
    return true;
}

std::string lossy(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    for (size_t i = 0; i < bytes.size();) {
        size_t matched = 0;
        const Unit u = scan(bytes, i, matched);
        if (u.valid) {
            out.append(bytes.substr(i, u.len));
            i += u.len;
        } else {
            append(out, kReplacement);
            i += matched;
        }
    }
    return out;
}

bool is_whitespace(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

size_t incomplete_tail(std::string_view s) {
    const size_t lowest = s.size() >= 3 ? s.size() - 3 : 0;
    for (size_t start = lowest; start < s.size(); ++start) {
        size_t matched = 0;
        const Unit u = scan(s, start, matched);
        // An invalid unit whose matched prefix runs to the end is a sequence cut short.
        if (!u.valid && start + matched == s.size() && static_cast<unsigned char>(s[start]) >= 0xC2)
            return s.size() - start;
    }
    return 0;
}

}  // namespace kvscope::utf8
