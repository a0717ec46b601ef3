// Broken tokenizer.json files and bad paths: each must give an InputError whose message names the
// file and says what is wrong (where in the JSON), never a crash or a foreign exception.
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

const fs::path kGolden = fs::path(KVSCOPE_SOURCE_DIR) / "tests/golden/tokenizers";

class ErrDir {
  public:
    ErrDir() {
        static int counter = 0;
        path_ = fs::temp_directory_path() /
                ("kvscope_tok_err_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
        fs::create_directories(path_);
    }
    ~ErrDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    fs::path write(const std::string& name, const std::string& text) const {
        fs::path f = path_ / name;  // not const: returned by move
        std::ofstream(f, std::ios::binary) << text;
        return f;
    }
    const fs::path& path() const { return path_; }

  private:
    fs::path path_;
};

json fixture(const char* key) {
    std::ifstream in(kGolden / key / "tokenizer.json");
    return json::parse(in);
}

// Loads `text` as a tokenizer.json and returns the InputError message ("" if it loaded).
std::string load_text_error(const std::string& text) {
    ErrDir dir;
    const fs::path f = dir.write("tokenizer.json", text);
    try {
        load_tokenizer(f);
    } catch (const InputError& e) {
        EXPECT_EQ(e.file(), f);
        EXPECT_NE(std::string(e.what()).find(f.string()), std::string::npos) << e.what();
        return e.what();
    }
    return "";
}

std::string load_error(const json& j) {
    return load_text_error(j.dump());
}

#define EXPECT_HAS(haystack, needle) \
    EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

TEST(TokenizerJsonErrors, NotJsonOrNoModel) {
    EXPECT_HAS(load_text_error("{\"model\": {\"vocab\": "), "not valid JSON");
    EXPECT_HAS(load_text_error("[1, 2]"), "expected a JSON object");
    EXPECT_HAS(load_error(json{{"version", "1.0"}}), "missing field 'model'");
}

TEST(TokenizerJsonErrors, BadModel) {
    json j = fixture("gpt2");
    j["model"].erase("vocab");
    EXPECT_HAS(load_error(j), "model: missing field 'vocab'");
    j = fixture("gpt2");
    j["model"]["vocab"] = json::array({1, 2});
    EXPECT_HAS(load_error(j), "model.vocab: expected an object");
    j = fixture("gpt2");
    j["model"]["vocab"]["!"] = -5;
    EXPECT_HAS(load_error(j), "model.vocab.!: token id -5 is outside");
    j = fixture("gpt2");
    j["model"]["vocab"]["!"] = 4000000000LL;
    EXPECT_HAS(load_error(j), "is outside 0..16777215");
    j = fixture("gpt2");
    j["model"]["vocab"]["!"] = "one";
    EXPECT_HAS(load_error(j), "expected a token id");
    for (const char* type : {"WordPiece", "Unigram", "WordLevel"}) {
        j = fixture("gpt2");
        j["model"]["type"] = type;
        EXPECT_HAS(load_error(j), std::string("unsupported model type '") + type + "'");
    }
}

TEST(TokenizerJsonErrors, BadMerges) {
    json j = fixture("gpt2");
    j["model"]["merges"][0] = json::array({"\xC4\xA0", "zz-not-a-token"});
    EXPECT_HAS(load_error(j), "model.merges[0]: merge names 'zz-not-a-token'");
    j = fixture("gpt2");
    j["model"]["merges"][3] = json::array({"!", "!"});  // "!!" is not in the vocabulary
    EXPECT_HAS(load_error(j), "model.merges[3]: merge result '!!' is not in model.vocab");
    j = fixture("gpt2");
    j["model"]["merges"][1] = "nospace";
    EXPECT_HAS(load_error(j), "is not two tokens separated by one space");
    j = fixture("gpt2");
    j["model"]["merges"][2] = 7;
    EXPECT_HAS(load_error(j), "model.merges[2]: expected \"a b\"");
}

TEST(TokenizerJsonErrors, BadPipelineStages) {
    json j = fixture("bytelevel");
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
    EXPECT_HAS(load_error(j), "pre_tokenizer.pretokenizers[0].pattern: invalid regex");
    j = fixture("bytelevel");
    j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
    EXPECT_HAS(load_error(j), "unknown split behavior 'Sideways'");
    j = fixture("bytelevel");
    j["pre_tokenizer"] = {{"type", "Bogus"}};
    EXPECT_HAS(load_error(j), "pre_tokenizer: unsupported pre-tokenizer type 'Bogus'");
    j = fixture("sp_bpe");
    j["normalizer"]["normalizers"][1] = {{"type", "NFKC"}};
    EXPECT_HAS(load_error(j), "normalizer.normalizers[1]: unsupported normalizer type 'NFKC'");
    j = fixture("sp_bpe");
    j["normalizer"]["normalizers"][0]["prepend"] = 3;
    EXPECT_HAS(load_error(j), "prepend: expected a string");
    j = fixture("sp_bpe");
    j["decoder"]["decoders"][3]["content"] = "two";
    EXPECT_HAS(load_error(j), "decoder.decoders[3].content: expected a single character");
    j = fixture("sp_metaspace");
    j["decoder"]["decoders"][1]["prepend_scheme"] = "sometimes";
    EXPECT_HAS(load_error(j), "unknown prepend_scheme 'sometimes'");
    j = fixture("sp_bpe");
    j["decoder"] = {{"type", "CTC"}};
    EXPECT_HAS(load_error(j), "unsupported decoder type 'CTC'");
    j = fixture("sp_bpe");
    j["post_processor"]["single"][0]["SpecialToken"]["id"] = "<bos>";
    EXPECT_HAS(load_error(j), "special token '<bos>' is not listed in special_tokens");
    j = fixture("sp_bpe");
    j["post_processor"] = {{"type", "Bogus"}};
    EXPECT_HAS(load_error(j), "unsupported post-processor type 'Bogus'");
}

TEST(TokenizerJsonErrors, BadAddedTokens) {
    json j = fixture("gpt2");
    j["added_tokens"] = {{"content", "x"}};
    EXPECT_HAS(load_error(j), "added_tokens: expected an array");
    j = fixture("gpt2");
    j["added_tokens"][0].erase("id");
    EXPECT_HAS(load_error(j), "added_tokens[0]: missing field 'id'");
    j = fixture("gpt2");
    j["added_tokens"][0]["special"] = "yes";
    EXPECT_HAS(load_error(j), "added_tokens[0].special: expected true or false");
}

TEST(TokenizerJsonErrors, BadTokenizerConfigBeside) {
    ErrDir dir;
    std::ifstream in(kGolden / "gpt2" / "tokenizer.json");
    std::ostringstream ss;
    ss << in.rdbuf();
    const fs::path f = dir.write("tokenizer.json", ss.str());
    const fs::path cfg = dir.write("tokenizer_config.json", "{not json");
    try {
        load_tokenizer(f);
        ADD_FAILURE() << "loaded despite a corrupt tokenizer_config.json";
    } catch (const InputError& e) {
        EXPECT_EQ(e.file(), cfg);
        EXPECT_HAS(e.what(), "not valid JSON");
    }
}

TEST(TokenizerJsonErrors, LoaderPaths) {
    ErrDir dir;
    try {
        load_tokenizer(dir.path() / "missing");
        ADD_FAILURE();
    } catch (const InputError& e) {
        EXPECT_HAS(e.what(), "no such file or directory");
    }
    try {
        load_tokenizer(dir.path());
        ADD_FAILURE();
    } catch (const InputError& e) {
        EXPECT_HAS(e.what(), "no tokenizer.json, tokenizer.model or tokenizer.bin");
    }
    try {
        load_tokenizer(dir.write("vocab.txt", "hello\nworld\n"));
        ADD_FAILURE();
    } catch (const InputError& e) {
        EXPECT_HAS(e.what(), "unknown tokenizer file type");
    }
    // JSON is recognised by content whatever the file is called.
    std::ifstream in(kGolden / "gpt2" / "tokenizer.json");
    std::ostringstream ss;
    ss << in.rdbuf();
    EXPECT_EQ(load_tokenizer(dir.write("gpt2.tok", ss.str()))->vocab_size(), 400);
}

}  // namespace
}  // namespace kvscope
