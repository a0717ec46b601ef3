#pragma once
// Key L2 norm vs attention received, per (layer, head): how well "low key norm" predicts "high
// attention" (the premise of the L2-norm policy, core/policies/knorm.cpp; its kept sets are
// reference-checked, docs/policy_reference.md "Agreement table").
//
// Inputs are two arrays over the same n cached keys (index j = slot):
//   attention[j] : attention the key received (e.g. the first generated token's softmax row over
//                  the cached prompt, EXCLUDING the query's own key, as the reference measured it)
//   key_norm[j]  : ||k_j||_2 (pre- or post-RoPE: RoPE is a rotation, the norm is the same)
//
// 1. Spearman rank correlation rho(x, y): Pearson correlation of the rank vectors, ties get the
//    average of the ranks they span. key_norm_attention_spearman() returns rho(-key_norm,
//    attention), so +1 means "the lower the norm, the more attention" (the policy's premise).
//
// 2. Area between the drop curves (the L2-norm paper's measure; reference:
// compare_norm_and_attention
//    in alessiodevoto/l2compress). For m = 1..n:
//      oracle[m] = sum of the m smallest attention values      (drop by lowest attention first)
//      norm[m]   = attention mass of the m keys with the largest norms (drop by highest norm first)
//      area      = sum_{m=1..n} (norm[m] - oracle[m])           >= 0, units: attention mass x keys
//    oracle is the least mass any m drops can lose, so every term is >= 0; area = 0 iff dropping
//    by norm never loses more than the oracle. Both curves end at the total mass (term m = n is 0).
//    Ties in key_norm: the reference order among equal norms is arbitrary (unstable sort); we use
//    the expectation over all orders of a tie group, i.e. inside a group of g tied keys holding
//    mass M the curve rises linearly by M/g per key. This keeps the value independent of slot
//    order. Ties in attention do not change the oracle curve. No normalisation (the reference
//    plots the raw sum); area_per_key = area / n is given for comparing different lengths.
#include <span>
#include <vector>

namespace kvscope {

// Average ranks (1-based) of x; tied values share the mean of the ranks they span.
std::vector<double> average_ranks(std::span<const float> x);

// Spearman rank correlation. NaN when n < 2 or either input is constant (undefined). Throws
// InputError if the sizes differ.
double spearman(std::span<const float> x, std::span<const float> y);

// spearman(-key_norm, attention).
double key_norm_attention_spearman(std::span<const float> key_norm,
                                   std::span<const float> attention);

struct DropCurves {
    std::vector<double> oracle;  // [n] oracle[m-1]: mass lost by the m lowest-attention drops
    std::vector<double> norm;    // [n] norm[m-1]: mass lost by dropping the m highest norms
    double area = 0.0;           // sum over m of (norm - oracle)
    double area_per_key = 0.0;   // area / n (0 for n = 0)
};

// Throws InputError if the sizes differ.
DropCurves norm_attention_drop_curves(std::span<const float> key_norm,
                                      std::span<const float> attention);

}  // namespace kvscope
