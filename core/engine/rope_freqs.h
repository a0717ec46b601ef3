#pragma once
// RoPE inverse frequencies for a ModelSpec: default, linear and Llama-3 scaling, computed as HF
// transformers does (fp32 inv_freq = 1 / theta^(2i/d)), so angles match its reference bit-closely.
#include <vector>

#include "core/model/model_spec.h"

namespace kvscope {

// head_dim / 2 entries.
std::vector<float> rope_inv_freq(const ModelSpec& spec);

}  // namespace kvscope
