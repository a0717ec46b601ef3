// tokenizer.model through libsentencepiece against sentencepiece's own Python output
// (encodings.json "spm": ids, [bos] + ids, decode), and its load errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/error.h"
#include "core/tokenizer/tokenizer.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kSpm = fs::path(KVSCOPE_SOURCE_DIR) / "tests/golden/tokenizers/spm";

json spm_rows() {
    std::ifstream in(kSpm.parent_path() / "encodings.json");
    return json::parse(in)["spm"];
}

std::string file_bytes(const fs::path& f) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

TEST(SentencePiece, MatchesSentencepieceOnEveryHardString) {
    const auto tok = load_tokenizer(kSpm / "tokenizer.model");
    const json rows = spm_rows();
    ASSERT_GE(rows.size(), 20u);
    for (const auto& r : rows) {
        const std::string text = r["text"].get<std::string>();
        SCOPED_TRACE("text: \"" + text + "\"");
        EXPECT_EQ(tok->encode(text, false), r["ids"].get<std::vector<int32_t>>());
        EXPECT_EQ(tok->encode(text, true), r["ids_special"].get<std::vector<int32_t>>());
        EXPECT_EQ(tok->decode(r["ids"].get<std::vector<int32_t>>(), false),
                  r["decoded"].get<std::string>());
        EXPECT_EQ(tok->decode(r["ids_special"].get<std::vector<int32_t>>(), true),
                  r["decoded_skip"].get<std::string>());
    }
}

TEST(SentencePiece, SpecialIdsAndTokenBytes) {
    // A directory without tokenizer.json falls back to tokenizer.model.
    const auto tok = load_tokenizer(kSpm);
    EXPECT_EQ(tok->kind(), "sentencepiece");
    EXPECT_EQ(tok->vocab_size(), 700);
    EXPECT_EQ(tok->bos_id(), 1);  // trained with unk 0, bos 1, eos 2 (make_fixtures.py)
    EXPECT_EQ(tok->eos_id(), 2);
    EXPECT_TRUE(tok->is_special(0));
    EXPECT_TRUE(tok->is_special(1));
    EXPECT_FALSE(tok->is_special(623));
    EXPECT_EQ(tok->token_bytes(1), "<s>");
    EXPECT_EQ(tok->token_bytes(3 + 0x0A), "\n");  // <0x0A>
    // "Hello world" = [359, 453, 626, 417, 328] (encodings.json): the pieces spell it with the
    // dummy-prefix space.
    std::string s;
    for (int32_t id : {359, 453, 626, 417, 328}) s += tok->token_bytes(id);
    EXPECT_EQ(s, " Hello world");
    // BOS renders as nothing either way; ids outside the vocabulary are dropped.
    EXPECT_EQ(tok->decode({1, 359, 453, 626, 417, 328, 2, 9999, -4}, false), "Hello world");
}

TEST(SentencePiece, CorruptModelsAreInputErrors) {
    const fs::path dir = fs::temp_directory_path() / ("kvscope_spm_" + std::to_string(getpid()));
    fs::create_directories(dir);
    const std::string good = file_bytes(kSpm / "tokenizer.model");
    const std::pair<const char*, std::string> cases[] = {
        {"empty", ""},
        {"garbage", std::string("this is not a protobuf \xFF\xFE\x00\x01", 26)},
        {"truncated", good.substr(0, good.size() / 3)},
        {"json", "{\"model\": {}}"},
    };
    for (const auto& [name, bytes] : cases) {
        const fs::path f = dir / (std::string(name) + ".model");
        std::ofstream(f, std::ios::binary) << bytes;
        try {
            load_tokenizer(f);
            ADD_FAILURE() << name << " loaded";
        } catch (const InputError& e) {
            EXPECT_EQ(e.file(), f) << name;
            EXPECT_NE(std::string(e.what()).find("sentencepiece model"), std::string::npos)
                << e.what();
        }
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace kvscope
