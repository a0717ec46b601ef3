#pragma once
// safetensors files: an 8-byte little-endian header length N, N bytes of JSON
//   {"<tensor>": {"dtype": "BF16", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"<str>": "<str>"}}
// then the data region; offsets are bytes relative to its start (byte 8 + N). Tensors may overlap.
// Only F32, F16 and BF16 tensors are accepted (KVScope loads weights, nothing else).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/model/weights.h"

namespace kvscope {

// Largest header we accept; real headers are at most a few MB.
constexpr uint64_t kMaxSafetensorsHeader = 100ull << 20;

// "F32" -> f32, "F16" -> f16, "BF16" -> bf16; anything else -> nullopt.
std::optional<DType> safetensors_dtype(std::string_view name);

// Parses a whole safetensors image `bytes` [size]. The returned tensors' data point into `bytes`
// (`file` is recorded in each and named in errors). Throws InputError on any malformation.
std::vector<WeightTensor> parse_safetensors(const uint8_t* bytes, size_t size,
                                            const std::filesystem::path& file);

// Memory-maps `file`, parses it and adds its tensors to `store` (zero copy; a tensor whose data
// is not aligned to its element size is copied into owned storage so kernels may read it typed).
// Returns the names added. A name already in `store` (from another shard) is an error.
std::vector<std::string> load_safetensors_into(const std::filesystem::path& file,
                                               WeightStore& store);

}  // namespace kvscope
