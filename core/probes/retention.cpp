#include "core/probes/retention.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace kvscope {

MassRetained attention_mass_retained(std::span<const float> attention,
                                     std::span<const int64_t> kept) {
    const auto n = static_cast<int64_t>(attention.size());
    std::vector<char> seen(attention.size(), 0);
    MassRetained out;
    for (int64_t p : kept) {
        if (p < 0 || p >= n) {
            throw InputError("attention mass retained: kept position " + std::to_string(p) +
                             " is outside [0, " + std::to_string(n) + ")");
        }
        if (seen[static_cast<size_t>(p)]) continue;
        seen[static_cast<size_t>(p)] = 1;
        out.kept += attention[static_cast<size_t>(p)];
    }
    for (float a : attention) out.total += a;
    out.fraction = out.total > 0.0 ? out.kept / out.total : 1.0;
    return out;
}

double needle_survival(std::span<const int64_t> needle, std::span<const int64_t> kept) {
    if (needle.empty()) throw InputError("needle survival: the needle has no positions");
    std::vector<int64_t> want(needle.begin(), needle.end());
    std::sort(want.begin(), want.end());
    want.erase(std::unique(want.begin(), want.end()), want.end());
    if (want.front() < 0) {
        throw InputError("needle survival: negative needle position " +
                         std::to_string(want.front()));
    }
    std::vector<int64_t> have(kept.begin(), kept.end());
    std::sort(have.begin(), have.end());
    size_t found = 0;
    for (int64_t p : want) found += std::binary_search(have.begin(), have.end(), p) ? 1 : 0;
    return static_cast<double>(found) / static_cast<double>(want.size());
}

std::vector<std::vector<double>> needle_survival(
    std::span<const int64_t> needle, const std::vector<std::vector<std::vector<int64_t>>>& kept) {
    std::vector<std::vector<double>> out(kept.size());
    for (size_t l = 0; l < kept.size(); ++l) {
        out[l].reserve(kept[l].size());
        for (const auto& head : kept[l]) out[l].push_back(needle_survival(needle, head));
    }
    return out;
}

}  // namespace kvscope
