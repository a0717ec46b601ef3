// `full`: keeps every token, plans nothing at decode.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/policies/registry.h"
#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

TEST(FullPolicy, KeepsEverything) {
    OwnedStats st(2, 4, 2, 12, 0);
    auto p = make_policy("full", Budget{});
    p->begin(st.dims(), st.N);
    const Plan plan = p->after_prefill(st.view());
    for (int64_t l = 0; l < 2; ++l)
        for (int64_t h = 0; h < 2; ++h) {
            ASSERT_NE(plan.find(l, h), nullptr);
            EXPECT_FALSE(plan.find(l, h)->keep.has_value());
        }
    EXPECT_TRUE(p->after_decode_layer(st.view()).empty());
}

}  // namespace
}  // namespace kvscope::test
