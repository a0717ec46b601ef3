// tokenizer.json decoders (Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace,
// BPEDecoder) and post-processors (TemplateProcessing, ByteLevel, RobertaProcessing,
// BertProcessing, Sequence). A decoder maps the token strings of a sequence to new strings (HF's
// decode_chain); the tokenizer joins what the last one returns.
#include "core/tokenizer/hf_pipeline.h"
#include "core/tokenizer/pcre_regex.h"
#include "core/tokenizer/utf8.h"

namespace kvscope::hf {

using nlohmann::json;

namespace {

class SequenceDecoder : public Decoder {
  public:
    explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
        : parts_(std::move(parts)) {}
    void decode(std::vector<std::string>& tokens) const override {
        for (const auto& p : parts_) p->decode(tokens);
    }
    bool is_byte_level() const override {
        for (const auto& p : parts_)
            if (p->is_byte_level()) return true;
        return false;
    }

  private:
    std::vector<std::unique_ptr<Decoder>> parts_;
};

// Byte-level stand-ins back to bytes, all tokens fused; a token with any character outside the
// alphabet (an added token such as "<|endoftext|>" written plainly) contributes its own UTF-8.
class ByteLevelDecoder : public Decoder {
  public:
    void decode(std::vector<std::string>& tokens) const override {
        std::string bytes;
        for (const auto& t : tokens) {
            std::string mapped;
            bool ok = true;
            for (size_t i = 0; i < t.size() && ok;) {
                const utf8::Unit u = utf8::next(t, i);
                const int b = u.valid ? char_to_byte(u.cp) : -1;
                if (b < 0)
                    ok = false;
                else
                    mapped.push_back(static_cast<char>(b));
                i += u.len;
            }
            bytes += ok ? mapped : t;
        }
        tokens.assign(1, utf8::lossy(bytes));
    }
    bool is_byte_level() const override { return true; }
};

class ReplaceDecoder : public Decoder {
  public:
    ReplaceDecoder(std::unique_ptr<PcreRegex> re, std::string content)
        : re_(std::move(re)), content_(std::move(content)) {}
    void decode(std::vector<std::string>& tokens) const override {
        for (auto& t : tokens) {
            const auto matches = re_->find_all(t);
            if (matches.empty()) continue;
            std::string out;
            size_t prev = 0;
            for (const auto& [b, e] : matches) {
                out.append(t, prev, b - prev);
                out += content_;
                prev = e;
            }
            out.append(t, prev, std::string::npos);
            t = std::move(out);
        }
    }

  private:
    std::unique_ptr<PcreRegex> re_;
    std::string content_;
};

// Runs of <0xNN> tokens become the UTF-8 they spell, or one U+FFFD per byte if they do not.
class ByteFallbackDecoder : public Decoder {
  public:
    void decode(std::vector<std::string>& tokens) const override {
        std::vector<std::string> out;
        out.reserve(tokens.size());
        std::string run;
        size_t run_len = 0;
        auto flush = [&] {
            if (run_len == 0) return;
            if (utf8::is_valid(run)) {
                out.push_back(run);
            } else {
                for (size_t i = 0; i < run_len; ++i)
                    out.push_back(utf8::encode(utf8::kReplacement));
            }
            run.clear();
            run_len = 0;
        };
        for (auto& t : tokens) {
            const int b = parse_byte_token(t);
            if (b >= 0) {
                run.push_back(static_cast<char>(b));
                ++run_len;
            } else {
                flush();
                out.push_back(std::move(t));
            }
        }
        flush();
        tokens = std::move(out);
    }
};

class FuseDecoder : public Decoder {
  public:
    void decode(std::vector<std::string>& tokens) const override {
        std::string all;
        for (const auto& t : tokens) all += t;
        tokens.clear();
        tokens.push_back(std::move(all));
    }
};

// Removes up to `start` leading and `stop` trailing copies of one character from every token.
class StripDecoder : public Decoder {
  public:
    StripDecoder(std::string c, size_t start, size_t stop)
        : c_(std::move(c)), start_(start), stop_(stop) {}
    void decode(std::vector<std::string>& tokens) const override {
        for (auto& t : tokens) {
            size_t b = 0, e = t.size();
            for (size_t k = 0; k < start_ && t.compare(b, c_.size(), c_) == 0 && b < e; ++k)
                b += c_.size();
            for (size_t k = 0;
                 k < stop_ && e >= b + c_.size() && t.compare(e - c_.size(), c_.size(), c_) == 0;
                 ++k)
                e -= c_.size();
            t = t.substr(b, e - b);
        }
    }

  private:
    std::string c_;
    size_t start_, stop_;
};

// The replacement character back to spaces; in the first token it is dropped instead (it is the
// prefix the pre-tokenizer added), unless the scheme never prepends.
class MetaspaceDecoder : public Decoder {
  public:
    MetaspaceDecoder(std::string repl, PrependScheme scheme)
        : repl_(std::move(repl)), scheme_(scheme) {}
    void decode(std::vector<std::string>& tokens) const override {
        for (size_t i = 0; i < tokens.size(); ++i) {
            const bool drop = i == 0 && scheme_ != PrependScheme::kNever;
            std::string out;
            const std::string& t = tokens[i];
            for (size_t p = 0; p < t.size();) {
                if (t.compare(p, repl_.size(), repl_) == 0) {
                    if (!drop) out.push_back(' ');
                    p += repl_.size();
                } else {
                    out.push_back(t[p++]);
                }
            }
            tokens[i] = std::move(out);
        }
    }

  private:
    std::string repl_;
    PrependScheme scheme_;
};

// Classic BPE end-of-word suffix ("</w>") back to a space (nothing after the last token).
class BpeSuffixDecoder : public Decoder {
  public:
    explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
    void decode(std::vector<std::string>& tokens) const override {
        if (suffix_.empty()) return;
        for (size_t i = 0; i < tokens.size(); ++i) {
            std::string& t = tokens[i];
            const std::string rep = i + 1 == tokens.size() ? "" : " ";
            for (size_t p = t.find(suffix_); p != std::string::npos;
                 p = t.find(suffix_, p + rep.size()))
                t.replace(p, suffix_.size(), rep);
        }
    }

  private:
    std::string suffix_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j, const JsonWhere& where) {
    if (j.is_null()) return nullptr;
    const std::string type = get_string(j, "type", where, "");
    if (type == "Sequence") {
        const json& list = require(j, "decoders", where);
        if (!list.is_array()) where.at("decoders").fail("expected an array");
        std::vector<std::unique_ptr<Decoder>> parts;
        for (size_t i = 0; i < list.size(); ++i) {
            auto d = make_decoder(list[i], where.at("decoders").at(i));
            if (d) parts.push_back(std::move(d));
        }
        return std::make_unique<SequenceDecoder>(std::move(parts));
    }
    if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
    if (type == "Replace") {
        auto re = make_pattern(require(j, "pattern", where), where.at("pattern"));
        return std::make_unique<ReplaceDecoder>(std::move(re), get_string(j, "content", where, ""));
    }
    if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
    if (type == "Fuse") return std::make_unique<FuseDecoder>();
    if (type == "Strip") {
        const int64_t start = get_int(j, "start", where, 0), stop = get_int(j, "stop", where, 0);
        if (start < 0 || stop < 0 || start > 1 << 20 || stop > 1 << 20)
            where.fail("Strip start/stop must be small non-negative counts");
        return std::make_unique<StripDecoder>(get_char(j, "content", where, " "),
                                              static_cast<size_t>(start),
                                              static_cast<size_t>(stop));
    }
    if (type == "Metaspace")
        return std::make_unique<MetaspaceDecoder>(get_char(j, "replacement", where, "\u2581"),
                                                  parse_prepend_scheme(j, where));
    if (type == "BPEDecoder")
        return std::make_unique<BpeSuffixDecoder>(get_string(j, "suffix", where, "</w>"));
    if (type.empty()) where.fail("decoder without a 'type'");
    where.fail("unsupported decoder type '" + type +
               "' (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, "
               "Metaspace, BPEDecoder)");
}

namespace {

class FramePost : public PostProcessor {
  public:
    explicit FramePost(SpecialFrame f) : f_(std::move(f)) {}
    void frame(SpecialFrame& f) const override {
        f.before.insert(f.before.begin(), f_.before.begin(), f_.before.end());
        f.after.insert(f.after.end(), f_.after.begin(), f_.after.end());
    }

  private:
    SpecialFrame f_;
};

class SequencePost : public PostProcessor {
  public:
    explicit SequencePost(std::vector<std::unique_ptr<PostProcessor>> parts)
        : parts_(std::move(parts)) {}
    void frame(SpecialFrame& f) const override {
        for (const auto& p : parts_) p->frame(f);
    }

  private:
    std::vector<std::unique_ptr<PostProcessor>> parts_;
};

int32_t token_id_value(const json& v, const JsonWhere& where) {
    if (!v.is_number_integer() && !v.is_number_unsigned())
        where.fail("expected a token id, got " + json_type_of(v));
    const int64_t id = v.get<int64_t>();
    if (id < 0 || id > INT32_MAX) where.fail("token id " + std::to_string(id) + " out of range");
    return static_cast<int32_t>(id);
}

// "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}, ...]
SpecialFrame template_frame(const json& j, const JsonWhere& where) {
    const json& single = require(j, "single", where);
    if (!single.is_array()) where.at("single").fail("expected an array");
    const json& specials = j.contains("special_tokens") ? j["special_tokens"] : json::object();
    if (!specials.is_object()) where.at("special_tokens").fail("expected an object");
    SpecialFrame f;
    bool seen_sequence = false;
    for (size_t i = 0; i < single.size(); ++i) {
        const JsonWhere w = where.at("single").at(i);
        const json& piece = single[i];
        if (piece.is_object() && piece.contains("Sequence")) {
            if (seen_sequence) w.fail("the single template names the sequence twice");
            seen_sequence = true;
            continue;
        }
        if (!piece.is_object() || !piece.contains("SpecialToken"))
            w.fail("expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
        const std::string name = get_string(piece["SpecialToken"], "id", w.at("SpecialToken"), "");
        if (!specials.contains(name))
            w.fail("special token '" + name + "' is not listed in special_tokens");
        const JsonWhere sw = where.at("special_tokens").at(name);
        const json& ids = require(specials[name], "ids", sw);
        if (!ids.is_array()) sw.at("ids").fail("expected an array");
        auto& dst = seen_sequence ? f.after : f.before;
        for (size_t k = 0; k < ids.size(); ++k)
            dst.push_back(token_id_value(ids[k], sw.at("ids").at(k)));
    }
    if (!seen_sequence) where.at("single").fail("the single template has no $A sequence");
    return f;
}

// ["</s>", 2] as Roberta/Bert processors write their cls and sep tokens.
int32_t named_id(const json& j, const std::string& key, const JsonWhere& where) {
    const json& v = require(j, key, where);
    if (!v.is_array() || v.size() != 2) where.at(key).fail("expected [token, id]");
    return token_id_value(v[1], where.at(key).at(1));
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const json& j, const JsonWhere& where) {
    if (j.is_null()) return nullptr;
    const std::string type = get_string(j, "type", where, "");
    if (type == "Sequence") {
        const json& list = require(j, "processors", where);
        if (!list.is_array()) where.at("processors").fail("expected an array");
        std::vector<std::unique_ptr<PostProcessor>> parts;
        for (size_t i = 0; i < list.size(); ++i) {
            auto p = make_post_processor(list[i], where.at("processors").at(i));
            if (p) parts.push_back(std::move(p));
        }
        return std::make_unique<SequencePost>(std::move(parts));
    }
    if (type == "TemplateProcessing") return std::make_unique<FramePost>(template_frame(j, where));
    if (type == "ByteLevel") return std::make_unique<FramePost>(SpecialFrame{});
    if (type == "RobertaProcessing" || type == "BertProcessing")
        return std::make_unique<FramePost>(
            SpecialFrame{{named_id(j, "cls", where)}, {named_id(j, "sep", where)}});
    if (type.empty()) where.fail("post-processor without a 'type'");
    where.fail("unsupported post-processor type '" + type +
               "' (supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, "
               "Sequence)");
}

}  // namespace kvscope::hf
