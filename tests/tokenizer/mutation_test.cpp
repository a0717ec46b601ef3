// ~200 deterministic random mutations of the fixture tokenizers through load_tokenizer: every
// outcome must be a loaded tokenizer (which then encodes/decodes without trouble) or an
// InputError; any other exception fails the test, and a crash or sanitizer report fails the run.
// tokenizer.json: structural mutations (a random field deleted, retyped, set to a hostile value)
// and byte mutations; tokenizer.bin: byte flips, truncation and corrupted length fields.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
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

const fs::path kTokDir = fs::path(KVSCOPE_SOURCE_DIR) / "tests/golden/tokenizers";

// SplitMix64: the same sequence on every platform (std distributions are not portable).
class Rng {
  public:
    explicit Rng(uint64_t seed) : s_(seed) {}
    uint64_t next() {
        uint64_t z = (s_ += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    size_t below(size_t n) { return n ? static_cast<size_t>(next() % n) : 0; }

  private:
    uint64_t s_;
};

std::string file_bytes(const fs::path& f) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

json hostile_value(Rng& r) {
    switch (r.below(10)) {
        case 0:
            return nullptr;
        case 1:
            return -1;
        case 2:
            return int64_t{1} << 40;
        case 3:
            return "(?:[";  // not a valid regex
        case 4:
            return json::array();
        case 5:
            return json::object();
        case 6:
            return true;
        case 7:
            return 2.5;
        case 8:
            return "\xF0\x9F";  // cut-off UTF-8
        default:
            return "Sequence";
    }
}

// Mutates one random node: descends a random path and deletes or replaces what it finds.
void mutate(json& j, Rng& r, int depth = 0) {
    const bool container = (j.is_object() || j.is_array()) && !j.empty();
    if (!container) {
        if (j.is_string() && r.below(2)) {
            std::string s = j.get<std::string>();
            if (!s.empty()) s[r.below(s.size())] = static_cast<char>(r.below(256));
            j = s;
        } else {
            j = hostile_value(r);
        }
        return;
    }
    const size_t k = r.below(j.size());
    const bool stop = depth > 5 || r.below(4) == 0;
    if (j.is_object()) {
        auto it = j.begin();
        std::advance(it, static_cast<std::ptrdiff_t>(k));
        if (!stop) return mutate(*it, r, depth + 1);
        if (r.below(2))
            j.erase(it);
        else
            *it = hostile_value(r);
    } else {
        if (!stop) return mutate(j[k], r, depth + 1);
        if (r.below(2))
            j.erase(k);
        else
            j[k] = hostile_value(r);
    }
}

struct Outcome {
    int loaded = 0;
    int rejected = 0;
};

// Loads `bytes` as `name` and, when that works, exercises the tokenizer.
void try_load(const fs::path& dir, const std::string& name, const std::string& bytes, Outcome& out,
              const std::string& what) {
    const fs::path f = dir / name;
    std::ofstream(f, std::ios::binary | std::ios::trunc) << bytes;
    try {
        const auto tok = load_tokenizer(f);
        for (const char* s :
             {"Hello world", " \t\n", "\xF0\x9F\x98\x80 \xE4\xB8\xAD <s> <|endoftext|>",
              "\xFF\xC0 bad", ""}) {
            const auto ids = tok->encode(s, true);
            tok->decode(ids, false);
            tok->decode(ids, true);
            StreamDecoder stream(*tok);
            for (int32_t id : ids) stream.push(id);
            stream.flush();
        }
        std::vector<int32_t> ids;
        for (int32_t id = -2; id < tok->vocab_size() + 2; id += 7) ids.push_back(id);
        tok->decode(ids, false);
        for (int32_t id : ids) tok->token_bytes(id);
        ++out.loaded;
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find(f.string()), std::string::npos) << e.what();
        ++out.rejected;
    } catch (const std::exception& e) {
        ADD_FAILURE() << what << ": not an InputError: " << e.what();
    }
}

class MutationTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("kvscope_tok_mut_" + std::to_string(getpid()));
        fs::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    fs::path dir_;
};

TEST_F(MutationTest, TokenizerJsonMutationsLoadOrFailCleanly) {
    Rng rng(20261122);
    Outcome out;
    for (const char* key : {"bytelevel", "gpt2", "sp_bpe", "sp_metaspace"}) {
        const std::string text = file_bytes(kTokDir / key / "tokenizer.json");
        const json base = json::parse(text);
        for (int i = 0; i < 30; ++i) {
            std::string bytes;
            if (i % 5 == 4) {  // byte-level damage, often invalid JSON
                bytes = text;
                for (size_t k = 0, n = 1 + rng.below(6); k < n; ++k)
                    bytes[rng.below(bytes.size())] = static_cast<char>(rng.below(256));
                if (rng.below(3) == 0) bytes.resize(rng.below(bytes.size()));
            } else {
                json j = base;
                for (size_t k = 0, n = 1 + rng.below(3); k < n; ++k) mutate(j, rng);
                bytes = j.dump(-1, ' ', false, json::error_handler_t::replace);
            }
            try_load(dir_, "tokenizer.json", bytes, out,
                     std::string(key) + " #" + std::to_string(i));
        }
    }
    // Both outcomes occur, so the mutations neither all break nor all miss the file.
    EXPECT_GT(out.loaded, 10);
    EXPECT_GT(out.rejected, 10);
    std::printf("[ info ] tokenizer.json mutations: %d loaded, %d InputError\n", out.loaded,
                out.rejected);
}

TEST_F(MutationTest, TokenizerBinMutationsLoadOrFailCleanly) {
    Rng rng(7);
    Outcome out;
    const std::string good = file_bytes(kTokDir / "spm" / "tokenizer.bin");
    for (int i = 0; i < 80; ++i) {
        std::string bytes = good;
        switch (i % 4) {
            case 0:  // flip bytes anywhere
                for (size_t k = 0, n = 1 + rng.below(8); k < n; ++k)
                    bytes[rng.below(bytes.size())] = static_cast<char>(rng.below(256));
                break;
            case 1:  // cut the file short
                bytes.resize(rng.below(bytes.size()));
                break;
            case 2: {  // overwrite a 4-byte field with a hostile integer
                const int32_t vals[] = {-1, 0, 1 << 30, INT32_MIN, 7, 100000};
                const int32_t v = vals[rng.below(6)];
                const size_t at = rng.below(bytes.size() / 4) * 4;
                std::memcpy(bytes.data() + at, &v, std::min<size_t>(4, bytes.size() - at));
                break;
            }
            default:  // damage the header
                bytes[rng.below(4)] = static_cast<char>(rng.below(256));
                break;
        }
        try_load(dir_, "tokenizer.bin", bytes, out, "tokenizer.bin #" + std::to_string(i));
    }
    EXPECT_GT(out.loaded, 5);
    EXPECT_GT(out.rejected, 5);
    std::printf("[ info ] tokenizer.bin mutations: %d loaded, %d InputError\n", out.loaded,
                out.rejected);
}

}  // namespace
}  // namespace kvscope
