// The tokenizer.json stages one at a time, on small hand-written files: split behaviours,
// pre-tokenizers, added-token options, BPE options, normalizers, decoders, post-processors.
// Expected results follow HF tokenizers' documented semantics (e.g. the "the-final--countdown"
// table of SplitDelimiterBehavior). A file without a decoder decodes by joining tokens with
// spaces, as HF does, which makes the pre-tokenizer's pieces visible.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/unicode_norm.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class TempDir {
  public:
    TempDir() {
        static int counter = 0;
        path_ = fs::temp_directory_path() /
                ("kvscope_tok_pipe_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
        fs::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }

  private:
    fs::path path_;
};

// A BPE tokenizer.json over `tokens` (ids in list order) with ignore_merges, so that any piece
// the pre-tokenizer produces maps to one id when it is in the list.
json bpe_file(const std::vector<std::string>& tokens, const json& merges = json::array()) {
    json vocab = json::object();
    for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
    return {{"version", "1.0"},
            {"added_tokens", json::array()},
            {"normalizer", nullptr},
            {"pre_tokenizer", nullptr},
            {"post_processor", nullptr},
            {"decoder", nullptr},
            {"model",
             {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", true}}}};
}

std::unique_ptr<Tokenizer> load(const TempDir& dir, const json& j) {
    const fs::path f = dir.path() / "tokenizer.json";
    std::ofstream(f) << j.dump();
    return load_tokenizer(f);
}

// The text pieces of `text` as the tokenizer cut them (no decoder: tokens joined by spaces).
std::string pieces(const Tokenizer& tok, const std::string& text) {
    return tok.decode(tok.encode(text, false), false);
}

const std::vector<std::string> kCountdown = {
    "t", "h", "e", "-",   "f",     "i",         "n",    "a",      "l",      "c",          "o",
    "u", "w", "d", "the", "final", "countdown", "the-", "final-", "-final", "-countdown", "--"};

TEST(TokenizerJsonPipeline, SplitBehaviorsFollowHf) {
    TempDir dir;
    const std::pair<const char*, const char*> cases[] = {
        {"Removed", "the final countdown"},
        {"Isolated", "the - final - - countdown"},
        {"MergedWithPrevious", "the- final- - countdown"},
        {"MergedWithNext", "the -final - -countdown"},
        {"Contiguous", "the - final -- countdown"},
        {"merged_with_next", "the -final - -countdown"},  // snake_case is accepted too
    };
    for (const auto& [behavior, want] : cases) {
        json j = bpe_file(kCountdown);
        j["pre_tokenizer"] = {{"type", "Split"},
                              {"pattern", {{"String", "-"}}},
                              {"behavior", behavior},
                              {"invert", false}};
        EXPECT_EQ(pieces(*load(dir, j), "the-final--countdown"), want) << behavior;
    }
    json j = bpe_file(kCountdown);
    j["pre_tokenizer"] = {{"type", "Split"},
                          {"pattern", {{"Regex", "-+"}}},
                          {"behavior", "Removed"},
                          {"invert", true}};
    EXPECT_EQ(pieces(*load(dir, j), "the-final--countdown"), "- --");
}

TEST(TokenizerJsonPipeline, DigitsAndWhitespacePreTokenizers) {
    TempDir dir;
    json j = bpe_file({"a", "b", "c", "1", "2", "3", "ab", "123", " "});
    j["pre_tokenizer"] = {{"type", "Digits"}, {"individual_digits", true}};
    EXPECT_EQ(pieces(*load(dir, j), "ab123c"), "ab 1 2 3 c");
    j["pre_tokenizer"]["individual_digits"] = false;
    EXPECT_EQ(pieces(*load(dir, j), "ab123c"), "ab 123 c");
    j["pre_tokenizer"] = {{"type", "WhitespaceSplit"}};
    EXPECT_EQ(pieces(*load(dir, j), " ab \t c  "), "ab c");
    j["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers", json::array({{{"type", "WhitespaceSplit"}},
                                       {{"type", "Digits"}, {"individual_digits", true}}})}};
    EXPECT_EQ(pieces(*load(dir, j), "ab12 c3"), "ab 1 2 c 3");
}

TEST(TokenizerJsonPipeline, MetaspacePrependSchemes) {
    TempDir dir;
    const std::vector<std::string> v = {"<x>",   "h",        "i",           "t",
                                        "e",     "r",        "\u2581",      "hi",
                                        "there", "\u2581hi", "\u2581there", "\u2581hi\u2581there"};
    auto with = [&](const char* scheme, bool split) {
        json j = bpe_file(v);
        j["added_tokens"] = json::array({{{"id", 0}, {"content", "<x>"}, {"special", true}}});
        j["pre_tokenizer"] = {{"type", "Metaspace"},
                              {"replacement", "\u2581"},
                              {"prepend_scheme", scheme},
                              {"split", split}};
        return load(dir, j);
    };
    EXPECT_EQ(pieces(*with("always", true), "hi there"), "\u2581hi \u2581there");
    EXPECT_EQ(pieces(*with("never", true), "hi there"), "hi \u2581there");
    EXPECT_EQ(pieces(*with("first", true), "hi there"), "\u2581hi \u2581there");
    // "first" prepends only to the text at the very start of the input.
    EXPECT_EQ(pieces(*with("first", true), "<x>hi there"), "<x> hi \u2581there");
    EXPECT_EQ(pieces(*with("always", true), "<x>hi there"), "<x> \u2581hi \u2581there");
    EXPECT_EQ(pieces(*with("always", false), "hi there"), "\u2581hi\u2581there");
    // Older files: add_prefix_space instead of prepend_scheme.
    json j = bpe_file(v);
    j["pre_tokenizer"] = {
        {"type", "Metaspace"}, {"replacement", "\u2581"}, {"add_prefix_space", false}};
    EXPECT_EQ(pieces(*load(dir, j), "hi there"), "hi \u2581there");
}

TEST(TokenizerJsonPipeline, ByteLevelPrefixSpaceAndDecoder) {
    TempDir dir;
    json j = bpe_file({"H", "i", "\u0120", "\u0120Hi", "Hi", "!"});
    j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
    j["decoder"] = {{"type", "ByteLevel"}};
    const auto tok = load(dir, j);
    EXPECT_EQ(tok->encode("Hi!", false), (std::vector<int32_t>{3, 5}));  // "ĠHi" "!"
    EXPECT_EQ(tok->decode({3, 5}, false), " Hi!");
    EXPECT_EQ(tok->kind(), "bpe-bytelevel");
}

TEST(TokenizerJsonPipeline, AddedTokenOptions) {
    TempDir dir;
    const std::vector<std::string> v = {"<m>", "a", "b", "x", "y", " ", "ab", "hello", "w"};
    auto file = [&](json added) {
        json j = bpe_file(v);
        j["added_tokens"] = std::move(added);
        return j;
    };
    // lstrip/rstrip swallow the spaces around the token.
    auto tok = load(
        dir,
        file(json::array({{{"id", 0}, {"content", "<m>"}, {"lstrip", true}, {"rstrip", true}}})));
    EXPECT_EQ(tok->encode("a <m> b", false), (std::vector<int32_t>{1, 0, 2}));
    tok = load(dir, file(json::array({{{"id", 0}, {"content", "<m>"}}})));
    EXPECT_EQ(tok->encode("a <m> b", false), (std::vector<int32_t>{1, 5, 0, 5, 2}));
    // single_word: only where the token is not part of a longer word.
    tok = load(dir, file(json::array({{{"id", 6}, {"content", "ab"}, {"single_word", true}}})));
    EXPECT_EQ(tok->encode("ab xaby ab", false), (std::vector<int32_t>{6, 5, 3, 1, 2, 4, 5, 6}));
    // normalized == true: matched after the normalizer ran (here: lowercase).
    json j = file(json::array({{{"id", 7}, {"content", "hello"}, {"normalized", true}}}));
    j["normalizer"] = {{"type", "Lowercase"}};
    EXPECT_EQ(load(dir, j)->encode("HELLO ab", false), (std::vector<int32_t>{7, 5, 1, 2}));
    // Leftmost-longest: "<m>ab" beats "<m>" when both are added tokens.
    j = file(json::array(
        {{{"id", 0}, {"content", "<m>"}, {"special", true}, {"normalized", false}},
         {{"id", 9}, {"content", "<m>ab"}, {"special", false}, {"normalized", false}}}));
    tok = load(dir, j);
    EXPECT_EQ(tok->encode("x<m>ab<m>", false), (std::vector<int32_t>{3, 9, 0}));
    EXPECT_EQ(tok->vocab_size(), 10);
    // skip_special drops special added tokens only.
    EXPECT_EQ(tok->decode({3, 9, 0}, true), "x <m>ab");
    EXPECT_EQ(tok->decode({3, 9, 0}, false), "x <m>ab <m>");
}

TEST(TokenizerJsonPipeline, MergeRanksFormatsAndIgnoreMerges) {
    TempDir dir;
    const std::vector<std::string> v = {"a", "b", "c", "ab", "bc", "abc"};
    json j = bpe_file(v, json::array({"b c", "a b", "a bc"}));
    j["model"]["ignore_merges"] = false;
    // rank 0 "b c" first, then "a bc": one token.
    EXPECT_EQ(load(dir, j)->encode("abc", false), (std::vector<int32_t>{5}));
    j["model"]["merges"] = json::array({json::array({"a", "b"}), json::array({"b", "c"})});
    EXPECT_EQ(load(dir, j)->encode("abc", false), (std::vector<int32_t>{3, 2}));  // ab c
    // Leftmost first among equal ranks: "aaa" with merge "a a" -> "aa" "a".
    json k = bpe_file({"a", "aa"}, json::array({"a a"}));
    k["model"]["ignore_merges"] = false;
    EXPECT_EQ(load(dir, k)->encode("aaa", false), (std::vector<int32_t>{1, 0}));
    // ignore_merges: a word in the vocabulary is taken whole even if the merges would not get
    // there.
    j["model"]["merges"] = json::array({"a b"});
    EXPECT_EQ(load(dir, j)->encode("abc", false), (std::vector<int32_t>{3, 2}));
    j["model"]["ignore_merges"] = true;
    EXPECT_EQ(load(dir, j)->encode("abc", false), (std::vector<int32_t>{5}));
}

TEST(TokenizerJsonPipeline, UnknownCharactersByteFallbackAndSubwordPrefix) {
    TempDir dir;
    json j = bpe_file({"<unk>", "a"});
    j["model"]["unk_token"] = "<unk>";
    j["model"]["ignore_merges"] = false;
    EXPECT_EQ(load(dir, j)->encode("axxa", false), (std::vector<int32_t>{1, 0, 0, 1}));
    j["model"]["fuse_unk"] = true;
    EXPECT_EQ(load(dir, j)->encode("axxa", false), (std::vector<int32_t>{1, 0, 1}));
    j["model"]["unk_token"] = nullptr;  // no unk: HF drops the character
    EXPECT_EQ(load(dir, j)->encode("axxa", false), (std::vector<int32_t>{1, 1}));

    std::vector<std::string> v = {"a"};
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        v.push_back(name);
    }
    json f = bpe_file(v);
    f["model"]["byte_fallback"] = true;
    f["decoder"] = {{"type", "Sequence"},
                    {"decoders", json::array({{{"type", "ByteFallback"}}, {{"type", "Fuse"}}})}};
    const auto tok = load(dir, f);
    const auto ids = tok->encode("a\xC3\xA9", false);  // "aé"
    EXPECT_EQ(ids, (std::vector<int32_t>{0, 1 + 0xC3, 1 + 0xA9}));
    EXPECT_EQ(tok->decode(ids, false), "a\xC3\xA9");
    // A byte run that is not UTF-8 decodes to one U+FFFD per byte.
    EXPECT_EQ(tok->decode({0, 1 + 0xC3, 0}, false),
              "a\xEF\xBF\xBD"
              "a");

    json p = bpe_file({"a", "##b", "ab"}, json::array({json::array({"a", "##b"})}));
    p["model"]["continuing_subword_prefix"] = "##";
    p["model"]["ignore_merges"] = false;
    EXPECT_EQ(load(dir, p)->encode("ab", false), (std::vector<int32_t>{2}));
}

TEST(TokenizerJsonPipeline, Normalizers) {
    TempDir dir;
    json j = bpe_file(
        {"\xC3\xA9", "e", "\xCC\x81", "x", " ", "\xC3\xA0", "b"});  // é, e, U+0301, x, space, à, b
    j["normalizer"] = {{"type", "NFC"}};
    EXPECT_EQ(load(dir, j)->encode("e\xCC\x81x", false), (std::vector<int32_t>{0, 3}));
    j["normalizer"] = {{"type", "NFD"}};
    EXPECT_EQ(load(dir, j)->encode("\xC3\xA9x", false), (std::vector<int32_t>{1, 2, 3}));
    j["normalizer"] = {
        {"type", "Sequence"},
        {"normalizers",
         json::array({{{"type", "Lowercase"}},
                      {{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}},
                      {{"type", "Strip"}}})}};
    EXPECT_EQ(load(dir, j)->encode("  \xC3\x80   B ", false), (std::vector<int32_t>{5, 4, 6}));
}

TEST(UnicodeNormalization, MatchesPythonUnicodedata) {
    // Expected strings from Python: unicodedata.normalize(form, s) and s.lower() per character.
    using unicode::Form;
    EXPECT_EQ(unicode::normalize("e\xCC\x81", Form::kNfc), "\xC3\xA9");
    EXPECT_EQ(unicode::normalize("\xC3\xA9", Form::kNfd), "e\xCC\x81");
    // Hangul: 한 = U+1112 U+1161 U+11AB.
    EXPECT_EQ(unicode::normalize("\xED\x95\x9C", Form::kNfd),
              "\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB");
    EXPECT_EQ(unicode::normalize("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB", Form::kNfc),
              "\xED\x95\x9C");
    // Canonical ordering: a + U+0302 (ccc 230) + U+0323 (ccc 220) -> ậ composes to U+1EAD.
    EXPECT_EQ(unicode::normalize("a\xCC\x82\xCC\xA3", Form::kNfc), "\xE1\xBA\xAD");
    EXPECT_EQ(unicode::normalize("a\xCC\x82\xCC\xA3", Form::kNfd), "a\xCC\xA3\xCC\x82");
    // Singleton (excluded from composition): U+212B ANGSTROM SIGN -> U+00C5.
    EXPECT_EQ(unicode::normalize("\xE2\x84\xAB", Form::kNfc), "\xC3\x85");
    // Invalid bytes pass through and split the text around them.
    EXPECT_EQ(unicode::normalize("e\xFF\xCC\x81", Form::kNfc), "e\xFF\xCC\x81");
    EXPECT_EQ(unicode::to_lower("\xC3\x80\xC3\x89 \xCE\xA3\xCE\x91\xCE\xA3 \xC4\xB0 ABC"),
              "\xC3\xA0\xC3\xA9 \xCF\x83\xCE\xB1\xCF\x83 i\xCC\x87 abc");
    EXPECT_EQ(unicode::to_lower("\xD0\x9F\xD1\x80\xD0\x98\xD0\x92\xD0\x95\xD0\xA2"),
              "\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82");  // ПрИВЕТ -> привет
}

TEST(TokenizerJsonPipeline, Decoders) {
    TempDir dir;
    json j = bpe_file({"\u2581a", "b", "\u2581", "</w>", "x</w>"});
    j["decoder"] = {
        {"type", "Sequence"},
        {"decoders",
         json::array({{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                      {{"type", "Fuse"}},
                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 1}}})}};
    EXPECT_EQ(load(dir, j)->decode({0, 1, 2, 2}, false), "ab ");
    j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "never"}};
    EXPECT_EQ(load(dir, j)->decode({0, 1, 0}, false), " ab a");
    j["decoder"]["prepend_scheme"] = "always";
    EXPECT_EQ(load(dir, j)->decode({0, 1, 0}, false), "ab a");
    j["decoder"] = {{"type", "BPEDecoder"}, {"suffix", "</w>"}};
    EXPECT_EQ(load(dir, j)->decode({4, 4}, false), "x x");
}

TEST(TokenizerJsonPipeline, PostProcessorsAndSpecialIds) {
    TempDir dir;
    json j = bpe_file({"<s>", "</s>", "a"});
    j["added_tokens"] = json::array({{{"id", 0}, {"content", "<s>"}, {"special", true}},
                                     {{"id", 1}, {"content", "</s>"}, {"special", true}}});
    j["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}})},
        {"special_tokens",
         {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}},
          {"</s>", {{"id", "</s>"}, {"ids", {1}}, {"tokens", {"</s>"}}}}}}};
    auto tok = load(dir, j);
    EXPECT_EQ(tok->encode("a", true), (std::vector<int32_t>{0, 2, 1}));
    EXPECT_EQ(tok->encode("a", false), (std::vector<int32_t>{2}));
    EXPECT_EQ(tok->bos_id(), 0);
    EXPECT_EQ(tok->eos_id(), 1);
    j["post_processor"] = {
        {"type", "Sequence"},
        {"processors",
         json::array(
             {{{"type", "ByteLevel"}},
              {{"type", "RobertaProcessing"}, {"cls", {"<s>", 0}}, {"sep", {"</s>", 1}}}})}};
    EXPECT_EQ(load(dir, j)->encode("a", true), (std::vector<int32_t>{0, 2, 1}));
    // tokenizer_config.json beside the file names the EOS the chat model stops on.
    j["added_tokens"].push_back({{"id", 3}, {"content", "<|eot|>"}, {"special", true}});
    std::ofstream(dir.path() / "tokenizer_config.json")
        << R"({"eos_token": {"content": "<|eot|>"}, "bos_token": "<s>"})";
    tok = load(dir, j);
    EXPECT_EQ(tok->eos_id(), 3);
    EXPECT_EQ(tok->bos_id(), 0);
}

}  // namespace
}  // namespace kvscope
