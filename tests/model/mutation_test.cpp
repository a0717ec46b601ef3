// Deterministic random byte mutations of a small safetensors file, of config.json and of a
// llama2.c checkpoint: every load either succeeds or throws InputError; nothing else escapes and
// nothing crashes (the sanitizer build checks memory).
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "core/error.h"
#include "core/model/model.h"
#include "tests/model/model_test_util.h"

namespace kvscope {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

// One random edit: flip a bit, overwrite a byte (with a byte that matters to JSON or a random
// one), insert, delete, truncate, or rewrite the header-length word. `focus` bytes at the start
// (the header) get most edits, where structure lives.
std::string mutate(std::string b, std::mt19937& rng, size_t focus) {
    auto pick = [&](size_t n) {
        return n == 0 ? size_t{0} : std::uniform_int_distribution<size_t>(0, n - 1)(rng);
    };
    const size_t edits = 1 + pick(3);
    for (size_t e = 0; e < edits && !b.empty(); ++e) {
        const size_t region = std::min(b.size(), rng() % 4 == 0 ? b.size() : focus);
        const size_t pos = pick(region);
        static const char kInteresting[] = "{}[]\":,-019eE.\\ \x00\xff";
        switch (rng() % 7) {
            case 0:
                b[pos] = static_cast<char>(b[pos] ^ (1 << (rng() % 8)));
                break;
            case 1:
                b[pos] = kInteresting[pick(sizeof kInteresting - 1)];
                break;
            case 2:
                b[pos] = static_cast<char>(rng());
                break;
            case 3:
                b.insert(pos, 1, kInteresting[pick(sizeof kInteresting - 1)]);
                break;
            case 4:
                b.erase(pos, 1 + pick(8));
                break;
            case 5:
                b.resize(pick(b.size()));
                break;
            case 6:
                if (b.size() >= 8) b[pick(8)] = static_cast<char>(rng());
                break;
        }
    }
    return b;
}

struct Outcome {
    int ok = 0, input_errors = 0;
};

Outcome load_many(const fs::path& target, const fs::path& load_path, const std::string& original,
                  size_t focus, uint32_t seed, int n) {
    Outcome o;
    std::mt19937 rng(seed);
    for (int i = 0; i < n; ++i) {
        test::write_bytes(target, mutate(original, rng, focus));
        try {
            const auto m = load_model(load_path);
            // A model that loads must be usable: read every tensor's first and last element.
            for (const auto& [name, t] : m->weights.all()) {
                if (t.numel() == 0) continue;
                float v;
                copy_as_f32(t, 0, 1, &v);
                copy_as_f32(t, t.numel() - 1, 1, &v);
            }
            ++o.ok;
        } catch (const InputError&) {
            ++o.input_errors;
        } catch (const std::exception& e) {
            ADD_FAILURE() << "mutation " << i << " (seed " << seed << "): " << e.what();
        }
    }
    std::printf("%s: %d mutations loaded, %d gave InputError\n", target.filename().c_str(), o.ok,
                o.input_errors);
    return o;
}

size_t header_span(const std::string& st) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(st[i]);
    return static_cast<size_t>(8 + n);
}

TEST(Mutation, SafetensorsBytes) {
    TempDir tmp;
    test::write_tiny_model(tmp.path());
    const std::string original = test::read_bytes(tmp / "model.safetensors");
    ASSERT_NO_THROW(load_model(tmp.path()));
    const Outcome o = load_many(tmp / "model.safetensors", tmp.path(), original,
                                header_span(original), 1234, 300);
    EXPECT_EQ(o.ok + o.input_errors, 300);
    // Most header edits break something; a few (whitespace, metadata, padding) do not.
    EXPECT_GT(o.input_errors, 150);
    EXPECT_GT(o.ok, 0);
}

TEST(Mutation, ConfigJsonBytes) {
    TempDir tmp;
    test::write_tiny_model(tmp.path());
    const std::string original = test::read_bytes(tmp / "config.json");
    const Outcome o =
        load_many(tmp / "config.json", tmp.path(), original, original.size(), 99, 300);
    EXPECT_EQ(o.ok + o.input_errors, 300);
    EXPECT_GT(o.input_errors, 150);
    EXPECT_GT(o.ok, 0);
}

TEST(Mutation, Llama2cBytes) {
    TempDir tmp;
    test::write_tiny_model(tmp / "hf");
    export_llama2c(*load_model(tmp / "hf"), tmp / "m.bin");
    const std::string original = test::read_bytes(tmp / "m.bin");
    const Outcome o = load_many(tmp / "m.bin", tmp / "m.bin", original, 28, 7, 100);
    EXPECT_EQ(o.ok + o.input_errors, 100);
    EXPECT_GT(o.input_errors, 50);
}

}  // namespace
}  // namespace kvscope
