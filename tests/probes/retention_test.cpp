#include "core/probes/retention.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"

namespace kvscope {
namespace {

TEST(MassRetained, HandComputedWithDuplicate) {
    const std::vector<float> attn = {0.1f, 0.2f, 0.3f, 0.4f};
    const MassRetained m = attention_mass_retained(attn, std::vector<int64_t>{3, 1, 3});
    EXPECT_NEAR(m.kept, 0.6, 1e-7);  // 0.2 + 0.4, the repeated 3 counted once
    EXPECT_NEAR(m.total, 1.0, 1e-7);
    EXPECT_NEAR(m.fraction, 0.6, 1e-7);
}

TEST(MassRetained, ZeroMassIsFullyRetained) {
    EXPECT_EQ(attention_mass_retained(std::vector<float>{0, 0}, std::vector<int64_t>{}).fraction,
              1.0);
}

TEST(MassRetained, OutOfRangePositionThrows) {
    EXPECT_THROW(attention_mass_retained(std::vector<float>{1, 2}, std::vector<int64_t>{2}),
                 InputError);
    EXPECT_THROW(attention_mass_retained(std::vector<float>{1, 2}, std::vector<int64_t>{-1}),
                 InputError);
}

TEST(NeedleSurvival, HandComputed) {
    const std::vector<int64_t> needle = {5, 6, 7, 6};  // distinct {5,6,7}
    EXPECT_NEAR(needle_survival(needle, std::vector<int64_t>{9, 7, 0, 5}), 2.0 / 3.0, 1e-12);
    EXPECT_EQ(needle_survival(needle, std::vector<int64_t>{}), 0.0);
    EXPECT_EQ(needle_survival(needle, std::vector<int64_t>{7, 6, 5}), 1.0);
}

TEST(NeedleSurvival, PerLayerHead) {
    const std::vector<int64_t> needle = {2, 3};
    const std::vector<std::vector<std::vector<int64_t>>> kept = {{{0, 1, 2, 3}, {0, 3}},
                                                                 {{0, 1}, {}}};
    const auto s = needle_survival(needle, kept);
    ASSERT_EQ(s.size(), 2u);
    ASSERT_EQ(s[0].size(), 2u);
    EXPECT_EQ(s[0][0], 1.0);
    EXPECT_EQ(s[0][1], 0.5);
    EXPECT_EQ(s[1][0], 0.0);
    EXPECT_EQ(s[1][1], 0.0);
}

TEST(NeedleSurvival, BadNeedleThrows) {
    EXPECT_THROW(needle_survival(std::vector<int64_t>{}, std::vector<int64_t>{1}), InputError);
    EXPECT_THROW(needle_survival(std::vector<int64_t>{-2}, std::vector<int64_t>{1}), InputError);
}

}  // namespace
}  // namespace kvscope
