#pragma once
// What a compressed cache still holds, measured against full-cache attention / a planted needle.
//
// Positions are original token positions (0-based prompt/sequence index), as cache slots record
// them. A token merged into another slot is no longer held as its own slot: it counts as lost
// here (pass its position in `kept` yourself if a merge should count as retention).
#include <cstdint>
#include <span>
#include <vector>

namespace kvscope {

struct MassRetained {
    double kept = 0.0;      // sum of attention[p] over the distinct kept positions p
    double total = 0.0;     // sum of attention over all positions
    double fraction = 1.0;  // kept / total; 1 when total == 0 (nothing could be lost)
};

// attention: [n] attention received by position p (a full-cache row or column sums).
// kept: positions held by the cache (any order; duplicates count once). Throws InputError for a
// position outside [0, n).
MassRetained attention_mass_retained(std::span<const float> attention,
                                     std::span<const int64_t> kept);

// Fraction of the distinct needle positions present in `kept`, in [0, 1]. Throws InputError if
// needle is empty or holds a negative position.
double needle_survival(std::span<const int64_t> needle, std::span<const int64_t> kept);

// kept: [L][H][slots] positions per (layer, head). Returns [L][H] needle_survival values.
std::vector<std::vector<double>> needle_survival(
    std::span<const int64_t> needle, const std::vector<std::vector<std::vector<int64_t>>>& kept);

}  // namespace kvscope
