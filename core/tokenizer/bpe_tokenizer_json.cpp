// tokenizer.json with a BPE model: GPT-2 / Llama-3 / Qwen2 byte-level files and Llama-2 /
// Mistral SentencePiece-style files (byte fallback, Metaspace or Prepend+Replace). The pipeline
// is HF tokenizers': added-token split -> normalizer -> pre-tokenizer -> BPE -> post-processor.
// BOS/EOS come from tokenizer_config.json beside the file when it names them, else from the
// post-processor's template, else from well-known special-token names.
#include <fstream>
#include <stdexcept>

#include "core/error.h"
#include "core/model/json_fields.h"
#include "core/tokenizer/added_vocabulary.h"
#include "core/tokenizer/bpe_model.h"
#include "core/tokenizer/bpe_tokenizer_json.h"
#include "core/tokenizer/utf8.h"

namespace kvscope {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Ids index dense tables; real vocabularies stay far below this (the largest are ~260k).
constexpr int64_t kMaxTokenId = (1 << 24) - 1;

const json& field_or_null(const json& obj, const char* key) {
    static const json null_value;
    const auto it = obj.find(key);
    return it == obj.end() ? null_value : *it;
}

int32_t read_id(const json& v, const hf::JsonWhere& where) {
    if (!v.is_number_integer() && !v.is_number_unsigned())
        where.fail("expected a token id (integer), got " + hf::json_type_of(v));
    const int64_t id = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(kMaxTokenId)
                           ? kMaxTokenId + 1
                           : v.get<int64_t>();
    if (id < 0 || id > kMaxTokenId)
        where.fail("token id " + v.dump() + " is outside 0.." + std::to_string(kMaxTokenId));
    return static_cast<int32_t>(id);
}

class BpeJsonTokenizer : public Tokenizer {
  public:
    explicit BpeJsonTokenizer(const fs::path& file);

    std::vector<int32_t> encode(std::string_view text, bool add_special) const override;
    std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override;
    std::string token_bytes(int32_t id) const override;
    int32_t vocab_size() const override { return vocab_size_; }
    int32_t bos_id() const override { return bos_; }
    int32_t eos_id() const override { return eos_; }
    bool is_special(int32_t id) const override {
        const hf::AddedToken* t = added_.by_id(id);
        return t && t->special;
    }
    std::string kind() const override {
        return byte_level_ ? "bpe-bytelevel" : "bpe-sentencepiece";
    }

  private:
    int32_t id_of(const std::string& token) const {
        if (const hf::AddedToken* t = added_.by_content(token)) return t->id;
        return model_->token_to_id(token);
    }
    void pick_bos_eos(const fs::path& file);

    std::unique_ptr<hf::Normalizer> normalizer_;
    std::unique_ptr<hf::PreTokenizer> pre_;
    std::unique_ptr<hf::BpeModel> model_;
    std::unique_ptr<hf::PostProcessor> post_;
    std::unique_ptr<hf::Decoder> decoder_;
    hf::AddedVocabulary added_;
    hf::SpecialFrame frame_;  // what add_special puts around a sequence
    bool byte_level_ = false;
    int32_t vocab_size_ = 0;
    int32_t bos_ = -1, eos_ = -1;
};

std::unique_ptr<hf::BpeModel> read_bpe_model(const json& m, const hf::JsonWhere& w) {
    if (!m.is_object()) w.fail("expected an object, got " + hf::json_type_of(m));
    std::string type = hf::get_string(m, "type", w, "");
    if (type.empty() && m.contains("merges")) type = "BPE";  // old files omit the tag
    if (type != "BPE")
        w.at("type").fail("unsupported model type '" + type +
                          "': KVScope reads BPE tokenizers (WordPiece, Unigram and WordLevel are "
                          "not supported)");
    const json& vj = hf::require(m, "vocab", w);
    if (!vj.is_object()) w.at("vocab").fail("expected an object {token: id}");
    std::unordered_map<std::string, int32_t> vocab;
    vocab.reserve(vj.size());
    for (auto it = vj.begin(); it != vj.end(); ++it)
        vocab.emplace(it.key(), read_id(it.value(), w.at("vocab").at(it.key())));
    if (vocab.empty()) w.at("vocab").fail("the vocabulary is empty");

    std::vector<std::pair<std::string, std::string>> merges;
    const json& mj = field_or_null(m, "merges");
    if (!mj.is_null() && !mj.is_array()) w.at("merges").fail("expected an array");
    for (size_t i = 0; i < mj.size() && mj.is_array(); ++i) {
        const json& e = mj[i];
        const hf::JsonWhere ew = w.at("merges").at(i);
        if (e.is_string()) {
            // "a b": exactly one space separates the two tokens.
            const std::string s = e.get<std::string>();
            const size_t sp = s.find(' ');
            if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
                ew.fail("merge '" + s + "' is not two tokens separated by one space");
            merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
        } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
            merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
        } else {
            ew.fail("expected \"a b\" or [\"a\", \"b\"], got " + hf::json_type_of(e));
        }
    }
    hf::BpeOptions o;
    o.unk_token = hf::get_string(m, "unk_token", w, "");
    o.continuing_subword_prefix = hf::get_string(m, "continuing_subword_prefix", w, "");
    o.end_of_word_suffix = hf::get_string(m, "end_of_word_suffix", w, "");
    o.fuse_unk = hf::get_bool(m, "fuse_unk", w, false);
    o.byte_fallback = hf::get_bool(m, "byte_fallback", w, false);
    o.ignore_merges = hf::get_bool(m, "ignore_merges", w, false);
    // BPE dropout is a training-time regulariser; inference files carry null or 0. A non-zero
    // value is ignored: encoding stays deterministic.
    const json& dropout = field_or_null(m, "dropout");
    if (!dropout.is_null() && !dropout.is_number()) w.at("dropout").fail("expected a number");
    return std::make_unique<hf::BpeModel>(std::move(vocab), merges, std::move(o), w);
}

std::vector<hf::AddedToken> read_added_tokens(const json& a, const hf::JsonWhere& w) {
    std::vector<hf::AddedToken> out;
    if (a.is_null()) return out;
    if (!a.is_array()) w.fail("expected an array");
    for (size_t i = 0; i < a.size(); ++i) {
        const hf::JsonWhere tw = w.at(i);
        hf::AddedToken t;
        t.id = read_id(hf::require(a[i], "id", tw), tw.at("id"));
        t.content = hf::get_string(a[i], "content", tw, "");
        if (t.content.empty()) tw.fail("added token without content");
        t.single_word = hf::get_bool(a[i], "single_word", tw, false);
        t.lstrip = hf::get_bool(a[i], "lstrip", tw, false);
        t.rstrip = hf::get_bool(a[i], "rstrip", tw, false);
        t.special = hf::get_bool(a[i], "special", tw, false);
        t.normalized = hf::get_bool(a[i], "normalized", tw, !t.special);
        out.push_back(std::move(t));
    }
    return out;
}

BpeJsonTokenizer::BpeJsonTokenizer(const fs::path& file) {
    const json root = read_json_file(file);
    const hf::JsonWhere w{file, ""};
    model_ = read_bpe_model(hf::require(root, "model", w), w.at("model"));
    normalizer_ = hf::make_normalizer(field_or_null(root, "normalizer"), w.at("normalizer"));
    pre_ = hf::make_pre_tokenizer(field_or_null(root, "pre_tokenizer"), w.at("pre_tokenizer"));
    post_ = hf::make_post_processor(field_or_null(root, "post_processor"), w.at("post_processor"));
    decoder_ = hf::make_decoder(field_or_null(root, "decoder"), w.at("decoder"));
    added_ = hf::AddedVocabulary(
        read_added_tokens(field_or_null(root, "added_tokens"), w.at("added_tokens")),
        normalizer_.get());
    if (post_) post_->frame(frame_);
    byte_level_ = (pre_ && pre_->is_byte_level()) || (decoder_ && decoder_->is_byte_level());

    int32_t max_id = model_->max_id();
    for (const auto& t : added_.tokens()) max_id = std::max(max_id, t.id);
    for (int32_t id : frame_.before) max_id = std::max(max_id, id);
    for (int32_t id : frame_.after) max_id = std::max(max_id, id);
    if (max_id > kMaxTokenId) w.fail("token id " + std::to_string(max_id) + " is too large");
    vocab_size_ = max_id + 1;
    pick_bos_eos(file);
}

// Reads "bos_token"/"eos_token" of tokenizer_config.json: a string or {"content": ...}.
std::string config_token(const json& cfg, const char* key, const fs::path& file) {
    const json& v = field_or_null(cfg, key);
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object()) return hf::get_string(v, "content", hf::JsonWhere{file, key}, "");
    return "";
}

void BpeJsonTokenizer::pick_bos_eos(const fs::path& file) {
    if (!frame_.before.empty()) bos_ = frame_.before.front();
    if (!frame_.after.empty()) eos_ = frame_.after.back();
    auto first_known = [&](std::initializer_list<const char*> names) {
        for (const char* n : names) {
            const int32_t id = id_of(n);
            if (id >= 0) return id;
        }
        return -1;
    };
    if (bos_ < 0) bos_ = first_known({"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"});
    if (eos_ < 0)
        eos_ = first_known(
            {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "<|eot_id|>", "<|im_end|>"});
    const fs::path cfg_path = file.parent_path() / "tokenizer_config.json";
    std::error_code ec;
    if (!fs::is_regular_file(cfg_path, ec)) return;
    const json cfg = read_json_file(cfg_path);
    const std::string bos = config_token(cfg, "bos_token", cfg_path);
    const std::string eos = config_token(cfg, "eos_token", cfg_path);
    if (!bos.empty() && id_of(bos) >= 0) bos_ = id_of(bos);
    if (!eos.empty() && id_of(eos) >= 0) eos_ = id_of(eos);
}

std::vector<int32_t> BpeJsonTokenizer::encode(std::string_view text, bool add_special) const {
    std::vector<int32_t> ids;
    if (add_special) ids = frame_.before;
    std::vector<hf::Piece> pieces;
    for (auto& seg : added_.split(text, normalizer_.get())) {
        if (seg.id >= 0) {
            ids.push_back(seg.id);
            continue;
        }
        pieces.assign(1, hf::Piece{std::move(seg.text), seg.at_start});
        if (pre_) pre_->split(pieces);
        for (const auto& p : pieces) model_->tokenize(p.text, ids);
    }
    if (add_special) ids.insert(ids.end(), frame_.after.begin(), frame_.after.end());
    return ids;
}

std::string BpeJsonTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
        if (const hf::AddedToken* t = added_.by_id(id)) {
            if (!(skip_special && t->special)) tokens.push_back(t->content);
        } else if (const std::string* s = model_->id_to_token(id)) {
            tokens.push_back(*s);
        }  // ids outside the vocabulary are dropped, as HF does
    }
    if (!decoder_) {
        std::string out;
        for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
        return out;
    }
    decoder_->decode(tokens);
    std::string out;
    for (const auto& t : tokens) out += t;
    return out;
}

std::string BpeJsonTokenizer::token_bytes(int32_t id) const {
    if (const hf::AddedToken* t = added_.by_id(id)) return t->content;
    const std::string* s = model_->id_to_token(id);
    if (!s) return "";
    if (byte_level_) {
        std::string bytes;
        for (size_t i = 0; i < s->size();) {
            const utf8::Unit u = utf8::next(*s, i);
            const int b = u.valid ? hf::char_to_byte(u.cp) : -1;
            if (b < 0) return *s;  // not in the byte alphabet: the token is plain text
            bytes.push_back(static_cast<char>(b));
            i += u.len;
        }
        return bytes;
    }
    const int b = hf::parse_byte_token(*s);
    if (b >= 0) return std::string(1, static_cast<char>(b));
    std::string out;
    const std::string meta = "\u2581";
    for (size_t i = 0; i < s->size();) {
        if (s->compare(i, meta.size(), meta) == 0) {
            out.push_back(' ');
            i += meta.size();
        } else {
            out.push_back((*s)[i++]);
        }
    }
    return out;
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const fs::path& file) {
    try {
        return std::make_unique<BpeJsonTokenizer>(file);
    } catch (const nlohmann::json::exception& e) {
        // Every read is type-checked first; this is a last guard so no JSON exception escapes.
        throw InputError(file, std::string("malformed tokenizer.json: ") + e.what());
    } catch (const std::length_error& e) {
        throw InputError(file, std::string("malformed tokenizer.json: ") + e.what());
    }
}

}  // namespace kvscope
