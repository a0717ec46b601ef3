// The selection primitives every policy ranks with (core/policies/selection.h): top-k / bottom-k
// with ties to the lower index, GQA round robin, 1-D pooling.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/policies/selection.h"
#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

using V = std::vector<int64_t>;

TEST(Selection, TopKTiesAndRoundRobin) {
    const Scores s = {1, 3, 3, 2, 3};
    EXPECT_EQ(top_k(s, 2), (V{1, 2}));
    EXPECT_EQ(bottom_k(s, 2), (V{0, 3}));
    const std::vector<int64_t> cand = {0, 3, 4};
    EXPECT_EQ(top_k(s, 2, cand), (V{3, 4}));
    EXPECT_EQ(top_k(s, 10), (V{0, 1, 2, 3, 4}));
    const std::vector<Scores> per_q = {{5, 4, 3, 2, 1}, {1, 2, 3, 4, 5}};
    EXPECT_EQ(select_top_k(per_q, GqaAgg::kPerQueryHead, 3), (V{0, 1, 4}));
    EXPECT_EQ(select_top_k(per_q, GqaAgg::kMax, 2), (V{0, 4}));
    EXPECT_EQ(pool1d({1, 5, 2, 0, 3}, 3, PoolKind::kMax), (Scores{5, 5, 5, 3, 3}));
    const Scores avg = pool1d({3, 6, 0}, 3, PoolKind::kAvg);
    EXPECT_DOUBLE_EQ(avg[0], 3.0);  // (0 + 3 + 6) / 3: padding counts as zero
    EXPECT_DOUBLE_EQ(avg[1], 3.0);
    EXPECT_DOUBLE_EQ(avg[2], 2.0);
}

}  // namespace
}  // namespace kvscope::test
