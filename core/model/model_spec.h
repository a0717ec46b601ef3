#pragma once
// ModelSpec: everything the forward pass needs to know about a Llama-family architecture, as data.
// Llama 2/3.x, TinyLlama, SmolLM, Mistral, Qwen2 (q/k/v bias), Qwen3 (q/k RMSNorm) differ only
// here; there is one forward pass (core/engine) that reads these fields.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace kvscope {

enum class Architecture { kLlama, kMistral, kQwen2, kQwen3 };

// How RoPE pairs dimensions. HF checkpoints rotate (i, i + d/2) ("half"); llama2.c and Meta's
// original checkpoints rotate adjacent pairs (2i, 2i+1) ("interleaved").
enum class RopeStyle { kHalf, kInterleaved };

enum class RopeScaling { kNone, kLinear, kLlama3 };

struct RopeSpec {
    double theta = 10000.0;
    RopeStyle style = RopeStyle::kHalf;
    RopeScaling scaling = RopeScaling::kNone;
    double factor = 1.0;                   // linear and llama3
    double low_freq_factor = 1.0;          // llama3
    double high_freq_factor = 4.0;         // llama3
    int64_t original_max_position = 8192;  // llama3
};

struct ModelSpec {
    Architecture arch = Architecture::kLlama;
    std::string arch_name;  // as written in config.json "architectures"[0]
    int64_t vocab_size = 0;
    int64_t hidden = 0;        // d_model
    int64_t intermediate = 0;  // MLP width
    int64_t n_layers = 0;
    int64_t n_heads = 0;     // query heads
    int64_t n_kv_heads = 0;  // key/value heads (GQA when < n_heads)
    int64_t head_dim = 0;    // may differ from hidden / n_heads
    int64_t max_position = 0;
    double norm_eps = 1e-5;
    RopeSpec rope;
    bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2)
    bool o_bias = false;          // o_proj bias (rare)
    bool mlp_bias = false;
    bool qk_norm = false;          // per-head RMSNorm on q and k before RoPE (Qwen3)
    bool tied_embeddings = false;  // lm_head shares embed_tokens
    std::string hidden_act = "silu";
    DType weight_dtype = DType::kBf16;  // torch_dtype / dtype of the stored weights
    int64_t bos_id = -1;                // from generation_config.json, else config.json; -1 = none
    std::vector<int64_t> eos_ids;       // may be several (Llama 3)
    int64_t pad_id = -1;
    int64_t sliding_window =
        0;  // 0 = none. Recorded, not used: KVScope attends to the whole cache.

    int64_t group_size() const { return n_kv_heads > 0 ? n_heads / n_kv_heads : 1; }
    int64_t q_dim() const { return n_heads * head_dim; }
    int64_t kv_dim() const { return n_kv_heads * head_dim; }
};

const char* architecture_name(Architecture a);

// Parses an HF config.json (and generation_config.json beside it, when present). Throws InputError
// naming the file and the missing / invalid field, or an unknown architecture.
ModelSpec parse_hf_config(const std::filesystem::path& config_json);

// Checks internal consistency (heads divide, dims positive, ...). Throws InputError naming `file`.
void validate_spec(const ModelSpec& spec, const std::filesystem::path& file);

}  // namespace kvscope
