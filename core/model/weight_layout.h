#pragma once
// The tensors a ModelSpec implies (HF canonical names and shapes, see weights.h), and the check
// of a loaded WeightStore against them.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/model/model_spec.h"
#include "core/model/weights.h"

namespace kvscope {

struct ExpectedTensor {
    std::string name;
    std::vector<int64_t> shape;
};

// Every tensor the forward pass reads, in checkpoint order (embeddings, layers, norm, lm_head).
std::vector<ExpectedTensor> expected_tensors(const ModelSpec& spec);

// Checks that `store` holds exactly the expected tensors with the expected shapes, each F32, F16
// or BF16 (mixed dtypes are fine). Tolerated extras: names ending in "rotary_emb.inv_freq" (old
// HF checkpoints save the RoPE buffer) and lm_head.weight of a tied model (some exporters write
// it; the tie wins, as in HF). Reports every missing, unexpected and misshapen tensor in one
// InputError naming `file`.
void check_weights(const ModelSpec& spec, const WeightStore& store,
                   const std::filesystem::path& file);

// The dtype holding the most elements (what spec.weight_dtype reports).
DType dominant_dtype(const WeightStore& store);

}  // namespace kvscope
