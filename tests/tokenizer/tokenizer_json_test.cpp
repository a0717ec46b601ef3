// tokenizer.json tokenizers against HF tokenizers' own output (tests/golden/tokenizers/
// encodings.json, made by tools/golden/make_fixtures.py with tokenizers 0.23.2): ids, ids with
// special tokens, and both decodes must match exactly, for the byte-level (Llama-3 split regex
// and GPT-2) and SentencePiece-style (Prepend/Replace normalizer and Metaspace) files.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/utf8.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kTokDir = fs::path(KVSCOPE_SOURCE_DIR) / "tests/golden/tokenizers";

json read_encodings() {
    std::ifstream in(kTokDir / "encodings.json");
    return json::parse(in);
}

class GoldenJson : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenJson, MatchesHfOnEveryHardString) {
    const std::string key = GetParam();
    const auto tok = load_tokenizer(kTokDir / key / "tokenizer.json");
    const json rows = read_encodings()[key];
    ASSERT_GE(rows.size(), 20u);
    for (const auto& r : rows) {
        const std::string text = r["text"].get<std::string>();
        SCOPED_TRACE("text: \"" + text + "\"");
        const auto ids = tok->encode(text, false);
        const auto ids_special = tok->encode(text, true);
        EXPECT_EQ(ids, r["ids"].get<std::vector<int32_t>>());
        EXPECT_EQ(ids_special, r["ids_special"].get<std::vector<int32_t>>());
        EXPECT_EQ(tok->decode(r["ids"].get<std::vector<int32_t>>(), false),
                  r["decoded"].get<std::string>());
        EXPECT_EQ(tok->decode(r["ids_special"].get<std::vector<int32_t>>(), true),
                  r["decoded_skip"].get<std::string>());
    }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, GoldenJson,
                         ::testing::Values("bytelevel", "gpt2", "sp_bpe", "sp_metaspace"));

TEST(TokenizerJson, KindSpecialIdsAndVocab) {
    const auto llama3 = load_tokenizer(kTokDir / "bytelevel");  // a directory works too
    EXPECT_EQ(llama3->kind(), "bpe-bytelevel");
    EXPECT_EQ(llama3->vocab_size(), 512);
    EXPECT_EQ(llama3->bos_id(), 0);  // <|begin_of_text|>, from the template
    EXPECT_EQ(llama3->eos_id(), 1);  // <|end_of_text|>, by name
    EXPECT_TRUE(llama3->is_special(0));
    EXPECT_FALSE(llama3->is_special(42));

    const auto gpt2 = load_tokenizer(kTokDir / "gpt2" / "tokenizer.json");
    EXPECT_EQ(gpt2->kind(), "bpe-bytelevel");
    EXPECT_EQ(gpt2->vocab_size(), 400);
    EXPECT_EQ(gpt2->bos_id(), -1);  // no template adds one
    EXPECT_EQ(gpt2->eos_id(), 0);   // <|endoftext|>

    for (const char* key : {"sp_bpe", "sp_metaspace"}) {
        const auto sp = load_tokenizer(kTokDir / key / "tokenizer.json");
        EXPECT_EQ(sp->kind(), "bpe-sentencepiece") << key;
        EXPECT_EQ(sp->vocab_size(), 700) << key;
        EXPECT_EQ(sp->bos_id(), 1) << key;
        EXPECT_EQ(sp->eos_id(), 2) << key;
    }
}

TEST(TokenizerJson, TokenBytesUndoTheVocabularyAlphabet) {
    const auto bl = load_tokenizer(kTokDir / "bytelevel");
    // "Hello world" = [42, 448, 81, 417, 326] (encodings.json); 417 is "Ġwor".
    std::string hello;
    for (int32_t id : {42, 448, 81, 417, 326}) hello += bl->token_bytes(id);
    EXPECT_EQ(hello, "Hello world");
    EXPECT_EQ(bl->token_bytes(417), " wor");
    EXPECT_EQ(bl->token_bytes(0), "<|begin_of_text|>");
    // The emoji's bytes are spread over single-byte tokens: F0 9F 98 80 for U+1F600.
    const auto emoji = bl->encode("\xF0\x9F\x98\x80", false);
    std::string bytes;
    for (int32_t id : emoji) bytes += bl->token_bytes(id);
    EXPECT_EQ(bytes, "\xF0\x9F\x98\x80");

    const auto sp = load_tokenizer(kTokDir / "sp_bpe");
    EXPECT_EQ(sp->token_bytes(356), " ");  // "▁"
    EXPECT_EQ(sp->token_bytes(13), "\n");  // "<0x0A>"
    EXPECT_EQ(sp->token_bytes(3 + 0xF0), "\xF0");
    EXPECT_EQ(sp->token_bytes(99999), "");  // outside the vocabulary
}

TEST(TokenizerJson, GoldenModelDirectoriesCarryTheirTokenizer) {
    const fs::path models = fs::path(KVSCOPE_SOURCE_DIR) / "tests/golden/models";
    EXPECT_EQ(load_tokenizer(models / "llama2")->kind(), "bpe-bytelevel");
    EXPECT_EQ(load_tokenizer(models / "llama_sp")->kind(), "bpe-sentencepiece");
    // The prompt of ref/llama_sp.json, tokenized by HF with add_special_tokens=True.
    std::ifstream in(fs::path(KVSCOPE_SOURCE_DIR) / "tests/golden/ref/llama_sp.json");
    const json ref = json::parse(in);
    const auto want = ref["prompts"][2]["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(
        load_tokenizer(models / "llama_sp")->encode("A gift of a flower will soon be made", true),
        want);
}

// Every invalid byte as its own U+FFFD (HF's ByteFallback decoder does this for a run of byte
// tokens that is not UTF-8; Rust's lossy reading, used by the ByteLevel decoder, merges a cut-off
// sequence into one U+FFFD instead).
std::string per_byte_replacement(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
        const utf8::Unit u = utf8::next(s, i);
        out += u.valid ? s.substr(i, u.len) : utf8::encode(utf8::kReplacement);
        i += u.len;
    }
    return out;
}

TEST(TokenizerJson, InvalidUtf8InputNeverCrashes) {
    const std::string bad = "ok \xFF\xFE tail \xE4\xB8 end \xC0\x80";
    for (const char* key : {"bytelevel", "gpt2", "sp_bpe", "sp_metaspace"}) {
        SCOPED_TRACE(key);
        const auto tok = load_tokenizer(kTokDir / key);
        const auto ids = tok->encode(bad, false);
        ASSERT_FALSE(ids.empty());
        // Byte-level and byte-fallback vocabularies keep every byte.
        const bool byte_level = tok->kind() == "bpe-bytelevel";
        EXPECT_EQ(tok->decode(ids, false),
                  byte_level ? utf8::lossy(bad) : per_byte_replacement(bad));
    }
}

TEST(TokenizerJson, HundredThousandCharactersEncodeInLinearTime) {
    const auto rows = read_encodings()["bytelevel"];
    std::string base;  // the hard strings without special-token look-alikes
    for (const auto& r : rows)
        if (r["text"].get<std::string>().find('<') == std::string::npos)
            base += r["text"].get<std::string>() + " ";
    auto make = [&](size_t n) {
        std::string s;
        while (s.size() < n) s += base;
        s.resize(n);
        while (!utf8::is_valid(s)) s.pop_back();  // do not end inside a character
        return s;
    };
    for (const char* key : {"bytelevel", "gpt2", "sp_bpe", "sp_metaspace"}) {
        const auto tok = load_tokenizer(kTokDir / key);
        double secs[2] = {0, 0};
        size_t counts[2] = {0, 0};
        const size_t sizes[2] = {10'000, 100'000};
        for (int k = 0; k < 2; ++k) {
            const std::string text = make(sizes[k]);
            const auto t0 = std::chrono::steady_clock::now();
            const auto ids = tok->encode(text, true);
            secs[k] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            counts[k] = ids.size();
            EXPECT_EQ(tok->decode(ids, true), text) << key;
        }
        // Timing is reported, not asserted (machines differ); 10x the text should cost ~10x.
        std::printf("[ perf ] %-12s 10k chars: %zu ids in %.3f s; 100k chars: %zu ids in %.3f s\n",
                    key, counts[0], secs[0], counts[1], secs[1]);
        RecordProperty(std::string(key) + "_100k_seconds", std::to_string(secs[1]));
    }
}

}  // namespace
}  // namespace kvscope
