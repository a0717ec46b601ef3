// K-norm: lowest key norms outside the skipped layers, by token count and by ratio.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/policies/registry.h"
#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

using V = std::vector<int64_t>;

TEST(Knorm, KeepsLowestNormsOutsideSkippedLayers) {
    OwnedStats st(3, 4, 2, 12, 0);
    for (int64_t l = 0; l < 3; ++l)
        for (int64_t h = 0; h < 2; ++h) st.key_norm[l][h] = {5, 1, 7, 0.5f, 9, 2, 2, 8, 3, 6, 4, 1};
    // Lowest 4: 0.5 (3), 1 (1), 1 (11), then 2 at 5 and 6 -> 5 (tie to the lower index).
    auto p = make_with_tokens("knorm", 4);
    p->begin(st.dims(), st.N);
    const Plan plan = p->after_prefill(st.view());
    EXPECT_FALSE(plan.find(0, 0)->keep.has_value());
    EXPECT_FALSE(plan.find(1, 1)->keep.has_value());
    EXPECT_EQ(kept_of(plan, 2, 1, 12), (V{1, 3, 5, 11}));
    auto none = make_with_tokens("knorm", 4, {"skip_layers="});
    none->begin(st.dims(), st.N);
    EXPECT_EQ(kept_of(none->after_prefill(st.view()), 0, 0, 12), (V{1, 3, 5, 11}));
    // --ratio 0.3 of 12 -> ceil(3.6) = 4 tokens.
    Budget r;
    r.ratio = 0.3;
    auto byratio = make_policy("knorm", r, {"skip_layers="});
    byratio->begin(st.dims(), st.N);
    EXPECT_EQ(kept_of(byratio->after_prefill(st.view()), 1, 0, 12), (V{1, 3, 5, 11}));
}

}  // namespace
}  // namespace kvscope::test
