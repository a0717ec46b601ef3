#include "core/probes/attention_density.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/error.h"

namespace kvscope {
namespace {

// Three heads over n = 4 keys (hand-computed):
//   head 0 [1,2,3,4]: mean 2.5, squares 2.25+0.25+0.25+2.25 = 5, var = 5/3
//   head 1 constant:  var = 0
//   head 2 [0,0,0,4]: mean 1, squares 1+1+1+9 = 12, var = 4
//   min-max: (var - 0) / (4 + 1e-6)  ->  0.4166665625, 0, 0.99999975
//   F = mean = 0.4722221041666961
TEST(AttentionDensity, HandComputedThreeHeads) {
    const std::vector<std::vector<float>> colsum = {
        {1, 2, 3, 4}, {2.5f, 2.5f, 2.5f, 2.5f}, {0, 0, 0, 4}};
    const LayerDensity d = layer_attention_density(colsum);
    ASSERT_EQ(d.head_variance.size(), 3u);
    EXPECT_NEAR(d.head_variance[0], 5.0 / 3.0, 1e-12);
    EXPECT_NEAR(d.head_variance[1], 0.0, 1e-12);
    EXPECT_NEAR(d.head_variance[2], 4.0, 1e-12);
    EXPECT_NEAR(d.head_normalized[0], 0.41666656250002604, 1e-12);
    EXPECT_NEAR(d.head_normalized[1], 0.0, 1e-12);
    EXPECT_NEAR(d.head_normalized[2], 0.9999997500000625, 1e-12);
    EXPECT_NEAR(d.density, 0.47222210416669613, 1e-12);
}

TEST(AttentionDensity, FlatAndNestedInputsAgree) {
    const std::vector<float> flat = {1, 2, 3, 4, 2.5f, 2.5f, 2.5f, 2.5f, 0, 0, 0, 4};
    const LayerDensity a = layer_attention_density(flat, 3, 4);
    const LayerDensity b =
        layer_attention_density({{1, 2, 3, 4}, {2.5f, 2.5f, 2.5f, 2.5f}, {0, 0, 0, 4}});
    EXPECT_DOUBLE_EQ(a.density, b.density);  // same arithmetic, exact
}

// All heads equally spread: every normalised value is 0 (the 1e-6 keeps the division finite).
TEST(AttentionDensity, EqualHeadsGiveZero) {
    const LayerDensity d = layer_attention_density({{1, 3}, {1, 3}, {3, 1}});
    EXPECT_NEAR(d.head_variance[0], 2.0, 1e-12);  // (1+1)/(2-1)
    EXPECT_EQ(d.density, 0.0);
}

TEST(AttentionDensity, SingleKeyHasZeroVariance) {
    EXPECT_EQ(column_sum_variance(std::vector<float>{7.0f}), 0.0);
    EXPECT_EQ(column_sum_variance(std::vector<float>{}), 0.0);
}

// Property: F lies in [0, 1) and is invariant to permuting the key positions of a head.
TEST(AttentionDensity, RandomInputsStayInRangeAndIgnoreKeyOrder) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(0.0f, 3.0f);
    for (int trial = 0; trial < 50; ++trial) {
        std::vector<std::vector<float>> cs(4, std::vector<float>(9));
        for (auto& h : cs)
            for (auto& x : h) x = u(rng);
        const LayerDensity d = layer_attention_density(cs);
        EXPECT_GE(d.density, 0.0);
        EXPECT_LT(d.density, 1.0);
        auto shuffled = cs;
        for (auto& h : shuffled) std::shuffle(h.begin(), h.end(), rng);
        EXPECT_NEAR(layer_attention_density(shuffled).density, d.density, 1e-9);
    }
}

TEST(AttentionDensity, BadShapesThrow) {
    EXPECT_THROW(layer_attention_density(std::vector<float>(5), 2, 3), InputError);
    EXPECT_THROW(layer_attention_density(std::vector<float>{}, 0, 0), InputError);
    EXPECT_THROW(layer_attention_density({{1, 2}, {1}}), InputError);
    EXPECT_THROW(layer_attention_density(std::vector<std::vector<float>>{}), InputError);
}

}  // namespace
}  // namespace kvscope
