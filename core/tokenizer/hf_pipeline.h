#pragma once
// The pipeline stages of an HF tokenizer.json, as HF `tokenizers` runs them:
//   added-token split -> normalizer -> pre-tokenizer -> model (BPE) -> post-processor
// and for decoding: ids -> token strings -> decoder chain -> join.
// Each stage is parsed from its JSON object by a make_* factory; an unknown or malformed stage is
// an InputError naming the file and the JSON location. Offsets are not tracked (KVScope needs ids
// and text only), which keeps every stage a plain string transform.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kvscope {
class PcreRegex;
}

namespace kvscope::hf {

// Where a JSON value sits, for error messages: the file plus a dotted path ("pre_tokenizer.
// pretokenizers[1].pattern").
struct JsonWhere {
    std::filesystem::path file;
    std::string path;
    JsonWhere at(const std::string& key) const;
    JsonWhere at(size_t index) const;
    [[noreturn]] void fail(const std::string& problem) const;
};

// A piece of text on its way to the model. `at_start` is true while the piece begins at offset 0
// of the original input (Metaspace's prepend_scheme "first" depends on it).
struct Piece {
    std::string text;
    bool at_start = false;
};

class Normalizer {
  public:
    virtual ~Normalizer() = default;
    virtual void normalize(std::string& text) const = 0;
};

class PreTokenizer {
  public:
    virtual ~PreTokenizer() = default;
    // Replaces each piece by its sub-pieces (empty pieces are dropped by the caller).
    virtual void split(std::vector<Piece>& pieces) const = 0;
    // True for ByteLevel (alone or inside a Sequence): the vocabulary is in byte-level alphabet.
    virtual bool is_byte_level() const { return false; }
};

class Decoder {
  public:
    virtual ~Decoder() = default;
    virtual void decode(std::vector<std::string>& tokens) const = 0;
    virtual bool is_byte_level() const { return false; }
};

// What a post-processor adds around one sequence when add_special_tokens is true.
struct SpecialFrame {
    std::vector<int32_t> before;
    std::vector<int32_t> after;
};

class PostProcessor {
  public:
    virtual ~PostProcessor() = default;
    virtual void frame(SpecialFrame& f) const = 0;
};

// `j` may be null (no stage): the factories then return nullptr.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const JsonWhere& where);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const JsonWhere& where);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const JsonWhere& where);
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j, const JsonWhere& where);

// Shared JSON readers (absent/null -> default; wrong type -> InputError).
std::string json_type_of(const nlohmann::json& j);
const nlohmann::json& require(const nlohmann::json& obj, const std::string& key,
                              const JsonWhere& where);
std::string get_string(const nlohmann::json& obj, const std::string& key, const JsonWhere& where,
                       const std::string& fallback);
bool get_bool(const nlohmann::json& obj, const std::string& key, const JsonWhere& where,
              bool fallback);
int64_t get_int(const nlohmann::json& obj, const std::string& key, const JsonWhere& where,
                int64_t fallback);
// A single Unicode character given as a JSON string (Metaspace replacement, Strip content).
std::string get_char(const nlohmann::json& obj, const std::string& key, const JsonWhere& where,
                     const std::string& fallback);

// A pattern as HF serialises it: {"String": "..."} (literal) or {"Regex": "..."}.
std::unique_ptr<PcreRegex> make_pattern(const nlohmann::json& j, const JsonWhere& where);

// Metaspace's "prepend_scheme" (first | always | never); older files carry add_prefix_space.
enum class PrependScheme { kAlways, kFirst, kNever };
PrependScheme parse_prepend_scheme(const nlohmann::json& j, const JsonWhere& where);

// The byte-level alphabet of GPT-2: byte -> the code point standing for it, and back (-1: none).
char32_t byte_to_char(uint8_t b);
int char_to_byte(char32_t c);

// "<0xNN>" (as written by HF and sentencepiece) -> the byte, or -1.
int parse_byte_token(const std::string& token);

}  // namespace kvscope::hf
