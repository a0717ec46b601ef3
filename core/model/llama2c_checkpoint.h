#pragma once
// llama2.c checkpoints, legacy version-0 format (karpathy/llama2.c run.c), all little-endian:
//   int32 header[7] = {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len}
//     (vocab_size < 0 means a separate classifier follows; > 0 means it is tied to the embeddings)
//   float32, in this order, every matrix a PyTorch Linear weight [out, in] row-major:
//     token_embedding [vocab, dim]          rms_att [L, dim]
//     wq [L, dim, dim]   wk [L, kv_dim, dim]   wv [L, kv_dim, dim]   wo [L, dim, dim]
//     rms_ffn [L, dim]   w1 [L, hidden, dim] (gate)   w2 [L, dim, hidden] (down)
//     w3 [L, hidden, dim] (up)   rms_final [dim]
//     freq_cis_real [seq_len, hs/2]   freq_cis_imag [seq_len, hs/2]   (unused, skipped)
//     wcls [vocab, dim]                      (only when header vocab_size < 0)
//   with hs = dim / n_heads and kv_dim = n_kv_heads * hs. The file size must match exactly.
// q/k rows are in llama2.c's interleaved RoPE order (pairs 2i, 2i+1), so loaded models get
// RopeStyle::kInterleaved; HF checkpoints use half rotation, and export permutes between them.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "core/model/model.h"

namespace kvscope {

struct Llama2cHeader {
    int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0,
            seq_len = 0;
};
constexpr size_t kLlama2cHeaderBytes = 7 * 4;

// Reasons a header cannot be a llama2.c checkpoint ("" when it is plausible).
std::string llama2c_header_problem(const Llama2cHeader& h);

// Size in bytes of a checkpoint with this (plausible) header.
int64_t llama2c_file_size(const Llama2cHeader& h);

// Memory-maps and loads a llama2.c checkpoint; weights are zero-copy views under HF names.
// Throws InputError naming the file (bad header, size mismatch with expected vs actual bytes).
std::unique_ptr<Model> load_llama2c(const std::filesystem::path& file);

}  // namespace kvscope
