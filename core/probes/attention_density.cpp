#include "core/probes/attention_density.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace kvscope {

double column_sum_variance(std::span<const float> colsum) {
    const size_t n = colsum.size();
    if (n < 2) return 0.0;
    // Two-pass in double: column sums of long prompts reach O(n) at sink positions and O(1/n)
    // elsewhere, so the one-pass formula would cancel badly in float.
    double mean = 0.0;
    for (float x : colsum) mean += x;
    mean /= static_cast<double>(n);
    double ss = 0.0;
    for (float x : colsum) ss += (x - mean) * (x - mean);
    return ss / static_cast<double>(n - 1);
}

LayerDensity layer_attention_density(std::span<const float> colsum, int64_t heads, int64_t n) {
    if (heads <= 0 || n < 0) {
        throw InputError("attention density: need at least one head and n >= 0 (got heads=" +
                         std::to_string(heads) + ", n=" + std::to_string(n) + ")");
    }
    if (static_cast<int64_t>(colsum.size()) != heads * n) {
        throw InputError("attention density: column sums hold " + std::to_string(colsum.size()) +
                         " values, expected heads*n = " + std::to_string(heads * n));
    }
    LayerDensity out;
    out.head_variance.resize(static_cast<size_t>(heads));
    for (int64_t h = 0; h < heads; ++h) {
        out.head_variance[static_cast<size_t>(h)] =
            column_sum_variance(colsum.subspan(static_cast<size_t>(h * n), static_cast<size_t>(n)));
    }
    const auto [lo, hi] = std::minmax_element(out.head_variance.begin(), out.head_variance.end());
    const double vmin = *lo;
    const double range = *hi - vmin + kDensityMinMaxEps;
    out.head_normalized.resize(out.head_variance.size());
    double sum = 0.0;
    for (size_t h = 0; h < out.head_variance.size(); ++h) {
        out.head_normalized[h] = (out.head_variance[h] - vmin) / range;
        sum += out.head_normalized[h];
    }
    out.density = sum / static_cast<double>(heads);
    return out;
}

LayerDensity layer_attention_density(const std::vector<std::vector<float>>& colsum) {
    if (colsum.empty()) throw InputError("attention density: no heads given");
    const size_t n = colsum.front().size();
    std::vector<float> flat;
    flat.reserve(colsum.size() * n);
    for (size_t h = 0; h < colsum.size(); ++h) {
        if (colsum[h].size() != n) {
            throw InputError("attention density: head " + std::to_string(h) + " has " +
                             std::to_string(colsum[h].size()) + " column sums, head 0 has " +
                             std::to_string(n));
        }
        flat.insert(flat.end(), colsum[h].begin(), colsum[h].end());
    }
    return layer_attention_density(flat, static_cast<int64_t>(colsum.size()),
                                   static_cast<int64_t>(n));
}

}  // namespace kvscope
