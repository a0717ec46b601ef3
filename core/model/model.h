#pragma once
// A loaded model: its spec and its weights. Formats: HF directory (config.json + model.safetensors
// or model.safetensors.index.json shards; bf16/fp16/fp32) and llama2.c checkpoints (.bin).
// PyTorch pickles (pytorch_model.bin, *.pt, *.pth) are refused: unpickling can execute code.
#include <filesystem>
#include <memory>
#include <string>

#include "core/model/model_spec.h"
#include "core/model/weights.h"

namespace kvscope {

enum class ModelFormat { kHfSafetensors, kLlama2c };

struct Model {
    ModelSpec spec;
    WeightStore weights;
    ModelFormat format = ModelFormat::kHfSafetensors;
    std::filesystem::path path;  // directory (HF) or .bin file (llama2.c)
};

// Loads a model from an HF directory or a llama2.c .bin. Validates every tensor's presence, dtype
// and shape against the spec; throws InputError naming the file and problem.
std::unique_ptr<Model> load_model(const std::filesystem::path& path);

// Writes a llama2.c (version-0 header) checkpoint from a loaded HF model: fp32, q/k rows permuted
// from HF half-rotation back to interleaved pairs. Throws InputError if the model cannot be
// represented (biases, q/k-norm, head_dim != hidden/heads, GQA is fine).
void export_llama2c(const Model& model, const std::filesystem::path& out_bin);

}  // namespace kvscope
