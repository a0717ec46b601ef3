// StreamDecoder over the tokenizer.json fixtures: the pieces it emits are complete UTF-8, hold
// back emoji/CJK whose bytes are spread over several tokens, and add up to decode(all ids).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/utf8.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kTokDir = fs::path(KVSCOPE_SOURCE_DIR) / "tests/golden/tokenizers";
const char* const kJsonKeys[] = {"bytelevel", "gpt2", "sp_bpe", "sp_metaspace"};

json hard_strings() {
    std::ifstream in(kTokDir / "encodings.json");
    return json::parse(in)["bytelevel"];
}

TEST(StreamDecoder, PiecesAreCompleteUtf8AndAddUpToDecode) {
    const json rows = hard_strings();
    for (const char* key : kJsonKeys) {
        const auto tok = load_tokenizer(kTokDir / key);
        for (const auto& r : rows) {
            const std::string text = r["text"].get<std::string>();
            SCOPED_TRACE(std::string(key) + ": \"" + text + "\"");
            const auto ids = tok->encode(text, false);
            StreamDecoder stream(*tok);
            std::string all;
            for (int32_t id : ids) {
                const std::string piece = stream.push(id);
                EXPECT_TRUE(utf8::is_valid(piece));
                all += piece;
            }
            all += stream.flush();
            EXPECT_EQ(all, tok->decode(ids, false));
        }
    }
}

// Pushes the ids of `text` and returns what each push emitted.
std::vector<std::string> pushes(const Tokenizer& tok, const std::string& text) {
    StreamDecoder stream(tok);
    std::vector<std::string> out;
    for (int32_t id : tok.encode(text, false)) out.push_back(stream.push(id));
    out.push_back(stream.flush());
    return out;
}

TEST(StreamDecoder, HoldsBackCharactersSplitOverByteTokens) {
    // U+1F600 (4 bytes) is 3 byte-level tokens in the bytelevel fixture and 4 <0xNN> tokens in
    // sp_bpe; 中 (3 bytes) is 2 and 3 tokens. Nothing is emitted until the character is whole.
    const std::string emoji = "\xF0\x9F\x98\x80", han = "\xE4\xB8\xAD";
    for (const char* key : {"bytelevel", "sp_bpe"}) {
        SCOPED_TRACE(key);
        const auto tok = load_tokenizer(kTokDir / key);
        for (const std::string& ch : {emoji, han}) {
            const auto out = pushes(*tok, ch + "!");
            ASSERT_GE(out.size(), 3u);  // at least two tokens for the character, one for "!"
            size_t whole = out.size();
            for (size_t i = 0; i < out.size(); ++i)
                if (!out[i].empty()) {
                    whole = i;
                    break;
                }
            ASSERT_LT(whole, out.size());
            EXPECT_GE(whole, 1u) << "the first byte token printed something";
            std::string rest;
            for (size_t i = whole; i < out.size(); ++i) rest += out[i];
            EXPECT_EQ(out[whole].substr(0, ch.size()), ch);
            EXPECT_EQ(rest, ch + "!");
        }
    }
}

TEST(StreamDecoder, FlushEmitsACutOffCharacterAsReplacement) {
    const auto tok = load_tokenizer(kTokDir / "sp_bpe");
    const auto ids = tok->encode("\xF0\x9F\x98\x80", false);
    StreamDecoder stream(*tok);
    std::string out;
    for (size_t i = 0; i + 1 < ids.size(); ++i) out += stream.push(ids[i]);
    EXPECT_EQ(out, "");
    const std::string rest = stream.flush();
    EXPECT_TRUE(utf8::is_valid(rest));
    EXPECT_NE(rest.find("\xEF\xBF\xBD"), std::string::npos) << rest;
}

TEST(StreamDecoder, PromptContextKeepsTheLeadingSpaceOfTheFirstWord) {
    for (const char* key : kJsonKeys) {
        SCOPED_TRACE(key);
        const auto tok = load_tokenizer(kTokDir / key);
        const auto prompt = tok->encode("Hello", true);
        const auto full = tok->encode("Hello world", true);
        ASSERT_EQ(std::vector<int32_t>(full.begin(), full.begin() + prompt.size()), prompt);
        StreamDecoder with_context(*tok, prompt);
        StreamDecoder without(*tok);
        std::string a, b;
        for (size_t i = prompt.size(); i < full.size(); ++i) {
            a += with_context.push(full[i]);
            b += without.push(full[i]);
        }
        a += with_context.flush();
        b += without.flush();
        EXPECT_EQ(a, " world");
        // Without the prompt, the stream is decode() of the generated ids alone; SentencePiece
        // decoders then drop the first word's space, byte-level ones keep it.
        EXPECT_EQ(
            b, tok->decode(std::vector<int32_t>(full.begin() + prompt.size(), full.end()), false));
    }
}

TEST(StreamDecoder, LongStreamIsLinear) {
    const auto tok = load_tokenizer(kTokDir / "sp_bpe");
    std::string text;
    for (const auto& r : hard_strings())
        if (r["text"].get<std::string>().find('<') == std::string::npos)
            text += r["text"].get<std::string>() + " ";
    while (text.size() < 50'000) text += text;
    const auto ids = tok->encode(text, false);
    const auto t0 = std::chrono::steady_clock::now();
    StreamDecoder stream(*tok);
    std::string out;
    for (int32_t id : ids) out += stream.push(id);
    out += stream.flush();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(out, tok->decode(ids, false));
    std::printf("[ perf ] StreamDecoder: %zu ids in %.3f s\n", ids.size(), secs);
}

}  // namespace
}  // namespace kvscope
