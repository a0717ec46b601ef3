#include "core/probes/norm_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "core/error.h"

namespace kvscope {

namespace {

void check_same_size(const char* what, size_t a, size_t b) {
    if (a != b) {
        throw InputError(std::string(what) + ": arrays differ in length (" + std::to_string(a) +
                         " vs " + std::to_string(b) + ")");
    }
}

std::vector<size_t> order_by(std::span<const float> x, bool descending) {
    std::vector<size_t> idx(x.size());
    std::iota(idx.begin(), idx.end(), size_t{0});
    std::stable_sort(idx.begin(), idx.end(),
                     [&](size_t a, size_t b) { return descending ? x[a] > x[b] : x[a] < x[b]; });
    return idx;
}

}  // namespace

std::vector<double> average_ranks(std::span<const float> x) {
    const std::vector<size_t> idx = order_by(x, false);
    std::vector<double> rank(x.size());
    size_t i = 0;
    while (i < idx.size()) {
        size_t j = i + 1;
        while (j < idx.size() && x[idx[j]] == x[idx[i]]) ++j;
        // Positions i..j-1 (0-based) are tied: 1-based ranks i+1..j, mean (i+1+j)/2.
        const double r = 0.5 * static_cast<double>(i + 1 + j);
        for (size_t k = i; k < j; ++k) rank[idx[k]] = r;
        i = j;
    }
    return rank;
}

double spearman(std::span<const float> x, std::span<const float> y) {
    check_same_size("spearman", x.size(), y.size());
    const size_t n = x.size();
    if (n < 2) return std::numeric_limits<double>::quiet_NaN();
    const std::vector<double> rx = average_ranks(x);
    const std::vector<double> ry = average_ranks(y);
    const double mean = 0.5 * static_cast<double>(n + 1);  // mean rank, ties included
    double sxy = 0.0, sxx = 0.0, syy = 0.0;
    for (size_t i = 0; i < n; ++i) {
        sxy += (rx[i] - mean) * (ry[i] - mean);
        sxx += (rx[i] - mean) * (rx[i] - mean);
        syy += (ry[i] - mean) * (ry[i] - mean);
    }
    if (sxx == 0.0 || syy == 0.0) return std::numeric_limits<double>::quiet_NaN();
    return sxy / std::sqrt(sxx * syy);
}

double key_norm_attention_spearman(std::span<const float> key_norm,
                                   std::span<const float> attention) {
    check_same_size("key norm / attention spearman", key_norm.size(), attention.size());
    std::vector<float> neg(key_norm.size());
    std::transform(key_norm.begin(), key_norm.end(), neg.begin(), [](float v) { return -v; });
    return spearman(neg, attention);
}

DropCurves norm_attention_drop_curves(std::span<const float> key_norm,
                                      std::span<const float> attention) {
    check_same_size("norm/attention drop curves", key_norm.size(), attention.size());
    const size_t n = attention.size();
    DropCurves out;
    out.oracle.resize(n);
    out.norm.resize(n);

    std::vector<float> sorted(attention.begin(), attention.end());
    std::sort(sorted.begin(), sorted.end());
    double acc = 0.0;
    for (size_t m = 0; m < n; ++m) out.oracle[m] = acc += sorted[m];

    const std::vector<size_t> by_norm = order_by(key_norm, true);
    acc = 0.0;
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1;
        while (j < n && key_norm[by_norm[j]] == key_norm[by_norm[i]]) ++j;
        double group_mass = 0.0;
        for (size_t k = i; k < j; ++k) group_mass += attention[by_norm[k]];
        const double step = group_mass / static_cast<double>(j - i);
        for (size_t k = i; k < j; ++k) out.norm[k] = acc += step;
        i = j;
    }

    for (size_t m = 0; m < n; ++m) out.area += out.norm[m] - out.oracle[m];
    out.area_per_key = n > 0 ? out.area / static_cast<double>(n) : 0.0;
    return out;
}

}  // namespace kvscope
