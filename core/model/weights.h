#pragma once
// Weights: read-only tensors, memory-mapped from safetensors (or llama2.c .bin) files.
// Names follow the HF convention whatever the file format, e.g.
//   model.embed_tokens.weight                       [vocab, hidden]
//   model.layers.{i}.input_layernorm.weight         [hidden]
//   model.layers.{i}.self_attn.{q,k,v}_proj.weight  [{q_dim,kv_dim,kv_dim}, hidden]
//   model.layers.{i}.self_attn.{q,k,v}_proj.bias    [{q_dim,kv_dim,kv_dim}]          (Qwen2)
//   model.layers.{i}.self_attn.{q,k}_norm.weight    [head_dim]                      (Qwen3)
//   model.layers.{i}.self_attn.o_proj.weight        [hidden, q_dim]
//   model.layers.{i}.post_attention_layernorm.weight [hidden]
//   model.layers.{i}.mlp.{gate,up}_proj.weight      [intermediate, hidden]
//   model.layers.{i}.mlp.down_proj.weight           [hidden, intermediate]
//   model.norm.weight                               [hidden]
//   lm_head.weight                                  [vocab, hidden]   (absent when tied)
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace kvscope {

// A read-only memory mapping of a whole file. Unmapped on destruction.
class MappedFile {
  public:
    explicit MappedFile(const std::filesystem::path& path);  // throws InputError
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::filesystem::path& path() const { return path_; }

  private:
    std::filesystem::path path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

struct WeightTensor {
    std::string name;
    DType dtype = DType::kF32;
    std::vector<int64_t> shape;
    const void* data = nullptr;  // points into a MappedFile or into owned storage
    std::filesystem::path file;  // where it came from (for error messages)
    int64_t numel() const {
        int64_t n = 1;
        for (auto s : shape) n *= s;
        return n;
    }
};

// Holds the mappings (and any owned buffers) that the tensors point into.
class WeightStore {
  public:
    const WeightTensor* find(const std::string& name) const;
    const WeightTensor& at(const std::string& name) const;  // throws InputError if absent
    const std::map<std::string, WeightTensor>& all() const { return tensors_; }

    void add(WeightTensor t) { tensors_[t.name] = std::move(t); }
    void keep_alive(std::shared_ptr<MappedFile> f) { files_.push_back(std::move(f)); }
    // Owned storage (e.g. converted or permuted weights); returns a stable pointer.
    void* own(std::vector<uint8_t> bytes);
    // The distinct files the tensors were read from (one per safetensors shard).
    size_t file_count() const { return files_.size(); }

  private:
    std::map<std::string, WeightTensor> tensors_;
    std::vector<std::shared_ptr<MappedFile>> files_;
    std::vector<std::unique_ptr<std::vector<uint8_t>>> owned_;
};

// Decodes elements [first, first + count) of a F32/F16/BF16 tensor (flat, row-major) into `out`.
// Reads through memcpy, so any alignment of t.data is fine. Throws InputError on another dtype or
// a range outside the tensor.
void copy_as_f32(const WeightTensor& t, int64_t first, int64_t count, float* out);

}  // namespace kvscope
