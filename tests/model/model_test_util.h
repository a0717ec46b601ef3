#pragma once
// Helpers for the model-loading tests: temp directories, fixture paths, raw safetensors
// reading/rewriting (independent of the loader under test), a tiny synthetic HF model, and
// InputError expectations.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/model/model_spec.h"

namespace kvscope::test {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path golden_model(const std::string& variant);

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
  public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const fs::path& path() const { return path_; }
    fs::path operator/(const std::string& name) const { return path_ / name; }

  private:
    fs::path path_;
};

std::string read_bytes(const fs::path& p);
void write_bytes(const fs::path& p, const std::string& bytes);
json read_json(const fs::path& p);
void write_json(const fs::path& p, const json& j);
// Copies the regular files of `src` into `dst` (created if needed).
void copy_dir_files(const fs::path& src, const fs::path& dst);

// A safetensors file split into its parts, read with nothing but the format's definition.
struct RawSafetensors {
    json header;       // the parsed header object
    std::string data;  // the bytes after the header
};
RawSafetensors read_safetensors_raw(const fs::path& p);
// Writes header (padded with spaces to a multiple of 8 bytes) + data.
void write_safetensors_raw(const fs::path& p, const RawSafetensors& st);
// Reads, lets `edit` change the header, writes to `dst` (data region unchanged).
void rewrite_safetensors_header(const fs::path& src, const fs::path& dst,
                                const std::function<void(json&)>& edit);

// A tiny Llama model (vocab 16, hidden 8, 1 layer, 2 heads, 1 KV head, head_dim 4, MLP 12) with
// tensors in mixed F32 / BF16 / F16, deterministic values. Writes config.json and
// model.safetensors into `dir`.
void write_tiny_model(const fs::path& dir);

// Runs `f`; returns the InputError's what(), or a "<...>" marker when nothing or another
// exception was thrown (the marker then fails the substring checks of EXPECT_INPUT_ERROR).
std::string input_error_message(const std::function<void()>& f);

// Every field of two specs equal (exact: both come from the same numbers in text).
void expect_same_spec(const ModelSpec& a, const ModelSpec& b);

}  // namespace kvscope::test

// Expects `stmt` to throw kvscope::InputError whose message contains both substrings.
#define EXPECT_INPUT_ERROR(stmt, file_part, msg_part)                                    \
    do {                                                                                 \
        const std::string kv_msg_ = ::kvscope::test::input_error_message([&] { stmt; }); \
        EXPECT_NE(kv_msg_.find(file_part), std::string::npos)                            \
            << "message lacks \"" << (file_part) << "\": " << kv_msg_;                   \
        EXPECT_NE(kv_msg_.find(msg_part), std::string::npos)                             \
            << "message lacks \"" << (msg_part) << "\": " << kv_msg_;                    \
    } while (0)
