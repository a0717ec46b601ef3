#include "core/probes/norm_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"

namespace kvscope {
namespace {

TEST(Spearman, AverageRanksForTies) {
    const std::vector<double> r = average_ranks(std::vector<float>{10, 20, 20, 5, 20});
    const std::vector<double> want = {2, 4, 4, 1, 4};  // 20s span ranks 3..5
    EXPECT_EQ(r, want);
}

// x = [1,2,2,3] -> ranks [1,2.5,2.5,4]; y = [1,3,2,4] -> ranks [1,3,2,4]; mean rank 2.5
// dx = [-1.5,0,0,1.5], dy = [-1.5,0.5,-0.5,1.5]: sxy = 4.5, sxx = 4.5, syy = 5
// rho = 4.5 / sqrt(22.5) = 0.9486832980505138
TEST(Spearman, HandComputedWithTies) {
    EXPECT_NEAR(spearman(std::vector<float>{1, 2, 2, 3}, std::vector<float>{1, 3, 2, 4}),
                0.9486832980505138, 1e-12);
}

TEST(Spearman, MonotoneTransformIsOneReversedIsMinusOne) {
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    for (int trial = 0; trial < 20; ++trial) {
        std::vector<float> x(17), y(17), r(17);
        for (auto& v : x) v = u(rng);
        std::transform(x.begin(), x.end(), y.begin(), [](float v) { return std::exp(v) + v; });
        std::transform(x.begin(), x.end(), r.begin(), [](float v) { return -3.0f * v; });
        EXPECT_NEAR(spearman(x, y), 1.0, 1e-12);
        EXPECT_NEAR(spearman(x, r), -1.0, 1e-12);
        EXPECT_NEAR(spearman(x, y), spearman(y, x), 1e-12);
    }
}

TEST(Spearman, UndefinedCasesAreNaN) {
    EXPECT_TRUE(std::isnan(spearman(std::vector<float>{1}, std::vector<float>{2})));
    EXPECT_TRUE(std::isnan(spearman(std::vector<float>{1, 1, 1}, std::vector<float>{1, 2, 3})));
    EXPECT_THROW(spearman(std::vector<float>{1, 2}, std::vector<float>{1}), InputError);
}

// Low norm <-> high attention: the policy's premise holds perfectly -> +1.
TEST(Spearman, KeyNormSignConvention) {
    const std::vector<float> norm = {4, 1, 3, 2};
    const std::vector<float> attn = {0.1f, 0.4f, 0.2f, 0.3f};
    EXPECT_NEAR(key_norm_attention_spearman(norm, attn), 1.0, 1e-12);
}

// attention [0.1,0.4,0.2,0.3]; oracle (ascending attention) = 0.1, 0.3, 0.6, 1.0
TEST(DropCurves, OrderingsCoincideGiveZeroArea) {
    const DropCurves c = norm_attention_drop_curves(std::vector<float>{4, 1, 3, 2},
                                                    std::vector<float>{0.1f, 0.4f, 0.2f, 0.3f});
    ASSERT_EQ(c.oracle.size(), 4u);
    EXPECT_NEAR(c.oracle[0], 0.1, 1e-7);
    EXPECT_NEAR(c.oracle[1], 0.3, 1e-7);
    EXPECT_NEAR(c.oracle[2], 0.6, 1e-7);
    EXPECT_NEAR(c.oracle[3], 1.0, 1e-7);
    EXPECT_NEAR(c.area, 0.0, 1e-7);
}

// norms [1,4,3,2]: drop order idx1 (0.4), idx2 (0.2), idx3 (0.3), idx0 (0.1)
// norm curve 0.4, 0.6, 0.9, 1.0; minus oracle: 0.3 + 0.3 + 0.3 + 0 = 0.9
TEST(DropCurves, HandComputedArea) {
    const DropCurves c = norm_attention_drop_curves(std::vector<float>{1, 4, 3, 2},
                                                    std::vector<float>{0.1f, 0.4f, 0.2f, 0.3f});
    EXPECT_NEAR(c.norm[0], 0.4, 1e-7);
    EXPECT_NEAR(c.norm[1], 0.6, 1e-7);
    EXPECT_NEAR(c.norm[2], 0.9, 1e-7);
    EXPECT_NEAR(c.norm[3], 1.0, 1e-7);
    EXPECT_NEAR(c.area, 0.9, 1e-6);
    EXPECT_NEAR(c.area_per_key, 0.225, 1e-6);
}

// Tied norms [2,2,1,1]: group {0,1} holds 0.5 -> 0.25, 0.5; group {2,3} holds 0.5 -> 0.75, 1.0
// minus oracle (0.1, 0.3, 0.6, 1.0): 0.15 + 0.2 + 0.15 + 0 = 0.5
TEST(DropCurves, TiedNormsUseTheExpectedOrder) {
    const DropCurves c = norm_attention_drop_curves(std::vector<float>{2, 2, 1, 1},
                                                    std::vector<float>{0.1f, 0.4f, 0.2f, 0.3f});
    EXPECT_NEAR(c.norm[0], 0.25, 1e-7);
    EXPECT_NEAR(c.norm[1], 0.5, 1e-7);
    EXPECT_NEAR(c.area, 0.5, 1e-6);
}

// Properties: area >= 0; area == 0 when norm is a decreasing function of attention; area equals
// the worst case when norm is an increasing function of attention; empty input gives 0.
TEST(DropCurves, RandomProperties) {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int trial = 0; trial < 30; ++trial) {
        const size_t n = 5 + static_cast<size_t>(trial);
        std::vector<float> attn(n), norm(n), dec(n), inc(n);
        for (auto& a : attn) a = u(rng);
        for (auto& v : norm) v = u(rng);
        std::transform(attn.begin(), attn.end(), dec.begin(), [](float a) { return 5.0f - a; });
        std::transform(attn.begin(), attn.end(), inc.begin(), [](float a) { return 2.0f * a; });
        const double area = norm_attention_drop_curves(norm, attn).area;
        const double best = norm_attention_drop_curves(dec, attn).area;
        const double worst = norm_attention_drop_curves(inc, attn).area;
        EXPECT_GE(area, -1e-6);
        EXPECT_NEAR(best, 0.0, 1e-6);
        EXPECT_LE(area, worst + 1e-6);
    }
    EXPECT_EQ(norm_attention_drop_curves({}, {}).area, 0.0);
    EXPECT_THROW(norm_attention_drop_curves(std::vector<float>{1}, std::vector<float>{}),
                 InputError);
}

}  // namespace
}  // namespace kvscope
