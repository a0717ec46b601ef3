#pragma once
// PyramidKV's per-layer selection counts (window excluded), KVCache-Factory integer arithmetic;
// see pyramidkv.cpp. C: average budget incl. window, w: window, N: prompt length, L: layers.
#include <cstdint>
#include <vector>

namespace kvscope {

std::vector<int64_t> pyramid_layer_budgets(int64_t C, int64_t w, int64_t N, int64_t L,
                                           int64_t beta);

}  // namespace kvscope
