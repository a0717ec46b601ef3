#include "core/tokenizer/pcre_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdexcept>

#include "core/tokenizer/utf8.h"

namespace kvscope {

struct PcreRegex::Impl {
    pcre2_code* code = nullptr;
    bool literal = false;
    ~Impl() {
        if (code) pcre2_code_free(code);
    }
};

namespace {

std::string pcre_message(int code) {
    PCRE2_UCHAR buf[256];
    const int n = pcre2_get_error_message(code, buf, sizeof(buf));
    return n < 0 ? "PCRE2 error " + std::to_string(code)
                 : std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

struct MatchData {
    explicit MatchData(const pcre2_code* code)
        : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
        if (!md) throw std::bad_alloc();
    }
    ~MatchData() { pcre2_match_data_free(md); }
    MatchData(const MatchData&) = delete;
    MatchData& operator=(const MatchData&) = delete;
    pcre2_match_data* md;
};

}  // namespace

PcreRegex::PcreRegex(const std::string& pattern, bool literal)
    : pattern_(pattern), impl_(std::make_unique<Impl>()) {
    impl_->literal = literal;
    if (literal) return;
    int err = 0;
    PCRE2_SIZE err_off = 0;
    impl_->code =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
    if (!impl_->code)
        throw std::invalid_argument("invalid regex /" + pattern + "/ at offset " +
                                    std::to_string(err_off) + ": " + pcre_message(err));
    // JIT is an optimisation only: without it (unsupported platform) the interpreter runs.
    pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);
}

PcreRegex::~PcreRegex() = default;

std::vector<std::pair<size_t, size_t>> PcreRegex::find_all(std::string_view subject) const {
    std::vector<std::pair<size_t, size_t>> out;
    if (impl_->literal) {
        if (pattern_.empty()) return out;
        for (size_t pos = subject.find(pattern_); pos != std::string_view::npos;
             pos = subject.find(pattern_, pos + pattern_.size()))
            out.emplace_back(pos, pos + pattern_.size());
        return out;
    }
    MatchData data(impl_->code);
    const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
    size_t start = 0;
    uint32_t flags = 0;
    while (start <= subject.size()) {
        int rc = pcre2_match(impl_->code, s, subject.size(), start, flags, data.md, nullptr);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // the interpreter keeps its backtrack on the heap
            rc = pcre2_match(impl_->code, s, subject.size(), start, flags | PCRE2_NO_JIT, data.md,
                             nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) {
            if (flags == 0) break;
            // No non-empty match at `start` after an empty one: step over one unit.
            flags = 0;
            if (start >= subject.size()) break;
            start += utf8::next(subject, start).len;
            continue;
        }
        if (rc < 0) throw std::runtime_error("regex /" + pattern_ + "/: " + pcre_message(rc));
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
        const size_t b = ov[0], e = ov[1];
        if (e < b) throw std::runtime_error("regex /" + pattern_ + "/: \\K moved the match start");
        out.emplace_back(b, e);
        start = e;
        flags = b == e ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
    }
    return out;
}

}  // namespace kvscope
