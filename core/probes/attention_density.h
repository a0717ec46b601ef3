#pragma once
// Attention density: D2O's per-layer variance statistic F_l (the "prefill" step of the rule at the
// top of core/policies/d2o.cpp).
//
// Input: the column sums of one layer's prompt attention, one row per query head:
//   colsum[h][j] = sum over prompt queries i of A^h[i, j]   (h < H, j < n).
// Definition (exactly as the D2O reference code):
//   var_h  = unbiased variance over the n key positions of colsum[h]   (divisor n - 1)
//   norm_h = (var_h - min_h var) / (max_h var - min_h var + 1e-6)      (min-max across the heads)
//   F      = mean_h norm_h                                             in [0, 1)
// Low F = the layer's heads all spread attention evenly ("dense"); D2O gives such layers more
// budget. A single key position (n = 1) has no spread: its variance is defined as 0 here (the
// reference would produce NaN).
#include <cstdint>
#include <span>
#include <vector>

namespace kvscope {

struct LayerDensity {
    std::vector<double> head_variance;    // [H] var_h
    std::vector<double> head_normalized;  // [H] norm_h
    double density = 0.0;                 // F (mean of head_normalized)
};

// The epsilon of the min-max normalisation (D2O reference value).
inline constexpr double kDensityMinMaxEps = 1e-6;

// Unbiased variance (divisor n - 1) of one head's column sums; 0 for n < 2.
double column_sum_variance(std::span<const float> colsum);

// colsum: [heads][n] row-major. Throws InputError if the sizes do not match or heads == 0.
LayerDensity layer_attention_density(std::span<const float> colsum, int64_t heads, int64_t n);
// colsum: [H][n] (one vector per query head, as the engine's LayerPrefillStats holds them).
LayerDensity layer_attention_density(const std::vector<std::vector<float>>& colsum);

}  // namespace kvscope
