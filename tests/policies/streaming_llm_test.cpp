// StreamingLLM: attention sinks plus the recent window, hand-computed kept sets on 2 layers x
// 2 KV heads x 12 tokens.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

using V = std::vector<int64_t>;

TEST(StreamingLLM, SinksPlusRecentWindow) {
    OwnedStats st(2, 4, 2, 12, 0);
    auto p = make_with_tokens("streaming_llm", 6, {"sinks=2"});
    p->begin(st.dims(), st.N);
    Plan plan = p->after_prefill(st.view());
    for (int64_t l = 0; l < 2; ++l)
        for (int64_t h = 0; h < 2; ++h) EXPECT_EQ(kept_of(plan, l, h, 12), (V{0, 1, 8, 9, 10, 11}));
    EXPECT_EQ(plan.find(1, 1)->budget, 6);

    auto p0 = make_with_tokens("streaming_llm", 6, {"sinks=0"});
    p0->begin(st.dims(), st.N);
    EXPECT_EQ(kept_of(p0->after_prefill(st.view()), 0, 0, 12), (V{6, 7, 8, 9, 10, 11}));

    auto tiny =
        make_with_tokens("streaming_llm", 3);  // budget below the 4 default sinks: first 3 tokens
    tiny->begin(st.dims(), st.N);
    EXPECT_EQ(kept_of(tiny->after_prefill(st.view()), 0, 0, 12), (V{0, 1, 2}));

    auto big = make_with_tokens("streaming_llm", 12);
    big->begin(st.dims(), st.N);
    EXPECT_FALSE(big->after_prefill(st.view()).find(0, 0)->keep.has_value());
}

}  // namespace
}  // namespace kvscope::test
