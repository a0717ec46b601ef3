// tokenizer.json normalizers: Sequence, Prepend, Append, Replace, Lowercase, Strip, NFC, NFD
// (NFKC/NFKD are refused: their tables are not bundled). Each rewrites one added-token-free
// segment of the input, as HF does.
#include <stdexcept>

#include "core/tokenizer/hf_pipeline.h"
#include "core/tokenizer/pcre_regex.h"
#include "core/tokenizer/unicode_norm.h"
#include "core/tokenizer/utf8.h"

namespace kvscope::hf {

using nlohmann::json;

namespace {

class SequenceNormalizer : public Normalizer {
  public:
    explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
        : parts_(std::move(parts)) {}
    void normalize(std::string& text) const override {
        for (const auto& p : parts_) p->normalize(text);
    }

  private:
    std::vector<std::unique_ptr<Normalizer>> parts_;
};

class PrependNormalizer : public Normalizer {
  public:
    explicit PrependNormalizer(std::string s) : s_(std::move(s)) {}
    void normalize(std::string& text) const override {
        if (!text.empty()) text.insert(0, s_);
    }

  private:
    std::string s_;
};

class AppendNormalizer : public Normalizer {
  public:
    explicit AppendNormalizer(std::string s) : s_(std::move(s)) {}
    void normalize(std::string& text) const override {
        if (!text.empty()) text += s_;
    }

  private:
    std::string s_;
};

class ReplaceNormalizer : public Normalizer {
  public:
    ReplaceNormalizer(std::unique_ptr<PcreRegex> re, std::string content)
        : re_(std::move(re)), content_(std::move(content)) {}
    void normalize(std::string& text) const override {
        const auto matches = re_->find_all(text);
        if (matches.empty()) return;
        std::string out;
        out.reserve(text.size());
        size_t prev = 0;
        for (const auto& [b, e] : matches) {
            out.append(text, prev, b - prev);
            out += content_;
            prev = e;
        }
        out.append(text, prev, std::string::npos);
        text = std::move(out);
    }

  private:
    std::unique_ptr<PcreRegex> re_;
    std::string content_;
};

class LowercaseNormalizer : public Normalizer {
  public:
    void normalize(std::string& text) const override { text = unicode::to_lower(text); }
};

class UnicodeNormalizer : public Normalizer {
  public:
    explicit UnicodeNormalizer(unicode::Form f) : form_(f) {}
    void normalize(std::string& text) const override { text = unicode::normalize(text, form_); }

  private:
    unicode::Form form_;
};

class StripNormalizer : public Normalizer {
  public:
    StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
    void normalize(std::string& text) const override {
        size_t b = 0, e = text.size();
        while (left_ && b < e) {
            const utf8::Unit u = utf8::next(text, b);
            if (!u.valid || !utf8::is_whitespace(u.cp)) break;
            b += u.len;
        }
        while (right_ && e > b) {
            const size_t s = utf8::prev_start(text, e);
            const utf8::Unit u = utf8::next(text, s);
            if (!u.valid || !utf8::is_whitespace(u.cp) || s < b) break;
            e = s;
        }
        text = text.substr(b, e - b);
    }

  private:
    bool left_, right_;
};

}  // namespace

// {"String": "..."} or {"Regex": "..."}, as HF serialises a pattern.
std::unique_ptr<PcreRegex> make_pattern(const json& j, const JsonWhere& where) {
    if (!j.is_object() || j.size() != 1)
        where.fail("expected {\"String\": ...} or {\"Regex\": ...}, got " + json_type_of(j));
    const bool literal = j.contains("String");
    const json& v = literal ? j["String"] : j.contains("Regex") ? j["Regex"] : j;
    if (!literal && !j.contains("Regex"))
        where.fail("unknown pattern kind '" + j.begin().key() + "' (expected String or Regex)");
    if (!v.is_string()) where.fail("pattern must be a string, got " + json_type_of(v));
    try {
        return std::make_unique<PcreRegex>(v.get<std::string>(), literal);
    } catch (const std::invalid_argument& e) {
        where.fail(e.what());
    }
}

std::unique_ptr<Normalizer> make_normalizer(const json& j, const JsonWhere& where) {
    if (j.is_null()) return nullptr;
    const std::string type = get_string(j, "type", where, "");
    if (type == "Sequence") {
        const json& list = require(j, "normalizers", where);
        if (!list.is_array()) where.at("normalizers").fail("expected an array");
        std::vector<std::unique_ptr<Normalizer>> parts;
        for (size_t i = 0; i < list.size(); ++i) {
            auto n = make_normalizer(list[i], where.at("normalizers").at(i));
            if (n) parts.push_back(std::move(n));
        }
        return std::make_unique<SequenceNormalizer>(std::move(parts));
    }
    if (type == "Prepend")
        return std::make_unique<PrependNormalizer>(get_string(j, "prepend", where, ""));
    if (type == "Append")
        return std::make_unique<AppendNormalizer>(get_string(j, "append", where, ""));
    if (type == "Replace") {
        auto re = make_pattern(require(j, "pattern", where), where.at("pattern"));
        return std::make_unique<ReplaceNormalizer>(std::move(re),
                                                   get_string(j, "content", where, ""));
    }
    if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
    if (type == "Strip")
        return std::make_unique<StripNormalizer>(get_bool(j, "strip_left", where, true),
                                                 get_bool(j, "strip_right", where, true));
    if (type == "NFC") return std::make_unique<UnicodeNormalizer>(unicode::Form::kNfc);
    if (type == "NFD") return std::make_unique<UnicodeNormalizer>(unicode::Form::kNfd);
    if (type == "NFKC" || type == "NFKD")
        where.fail("unsupported normalizer type '" + type +
                   "': compatibility decompositions are not bundled (NFC and NFD are)");
    if (type.empty()) where.fail("normalizer without a 'type'");
    where.fail("unsupported normalizer type '" + type +
               "' (supported: Sequence, Prepend, Append, Replace, Lowercase, Strip, NFC, NFD)");
}

}  // namespace kvscope::hf
