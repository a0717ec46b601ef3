// apply_events: the rules that turn a (layer, head)'s events into per-token cache states.
#include <gtest/gtest.h>

#include "traces/trace_reader.h"

namespace kvscope::trace {
namespace {

EventRecord ev(int32_t step, CacheOp op, int32_t pos, int32_t dest = -1, float w = 0.0f,
               int8_t bits = 16) {
    return {step, 0, 0, op, pos, dest, w, 0.0f, 0.0f, bits};
}

TEST(TokenStates, FollowEventsUpToAStep) {
    const std::vector<EventRecord> events = {
        ev(0, CacheOp::kAppend, 0, 0),
        ev(0, CacheOp::kAppend, 1, 1),
        ev(0, CacheOp::kAppend, 2, 2),
        ev(0, CacheOp::kAppend, 3, 3),
        ev(0, CacheOp::kEvict, 1),
        ev(0, CacheOp::kMerge, 2, 0, 0.3f),
        ev(1, CacheOp::kAppend, 4, 1),
        ev(1, CacheOp::kQuantize, 3, 3, 0.0f, 4),
        ev(2, CacheOp::kDemote, 3, -1, 0.0f, 2),
        ev(2, CacheOp::kAppend, 9, 9),  // beyond the vector: ignored
    };
    std::vector<TokenState> s0(4);
    apply_events(events, 0, s0);
    EXPECT_EQ(s0[0].state, TokenCacheState::kHeld);
    EXPECT_EQ(s0[0].bits, 16);
    EXPECT_EQ(s0[1].state, TokenCacheState::kEvicted);
    EXPECT_EQ(s0[1].bits, 0);
    EXPECT_EQ(s0[2].state, TokenCacheState::kMerged);
    EXPECT_EQ(s0[2].destination, 0);
    EXPECT_FLOAT_EQ(s0[2].weight, 0.3f);
    EXPECT_EQ(s0[3].state, TokenCacheState::kHeld);

    std::vector<TokenState> s2(5);
    apply_events(events, 2, s2);
    EXPECT_EQ(s2[4].state, TokenCacheState::kHeld);
    EXPECT_EQ(s2[4].destination, 1);  // the freed slot was reused
    EXPECT_EQ(s2[4].changed_step, 1);
    EXPECT_EQ(s2[3].state, TokenCacheState::kDemoted);
    EXPECT_EQ(s2[3].bits, 2);
    EXPECT_EQ(s2[3].changed_step, 2);

    std::vector<TokenState> s1(5);
    apply_events(events, 1, s1);
    EXPECT_EQ(s1[3].state, TokenCacheState::kQuantized);
    EXPECT_EQ(s1[3].bits, 4);
    EXPECT_EQ(std::string(token_cache_state_name(s1[3].state)), "quantized");
    EXPECT_EQ(std::string(cache_op_name(CacheOp::kDemote)), "demote");
}

// Evict, quantize and demote act on held tokens only (SCHEMA.md, Events): a merged token that is
// demoted stays merged, an evicted one that is quantised stays evicted, an absent one that is
// evicted stays absent; an append holds again whatever came before.
TEST(TokenStates, OpsOnTokensNotHeldChangeNothing) {
    const std::vector<EventRecord> events = {
        ev(0, CacheOp::kAppend, 0, 0),
        ev(0, CacheOp::kAppend, 1, 1),
        ev(0, CacheOp::kMerge, 0, 1, 0.5f, 0),
        ev(0, CacheOp::kEvict, 1),
        ev(1, CacheOp::kDemote, 0, -1, 0.0f, 2),
        ev(1, CacheOp::kQuantize, 1, -1, 0.0f, 4),
        ev(1, CacheOp::kEvict, 2),
        ev(2, CacheOp::kAppend, 1, 1, 0.0f, 0),     // bits 0: held at 16
        ev(2, CacheOp::kQuantize, 1, -1, 0.0f, 0),  // bits 0: keeps 16
        ev(2, CacheOp::kDemote, 1, -1, 0.0f, 3),
    };
    std::vector<TokenState> s1(3);
    apply_events(events, 1, s1);
    EXPECT_EQ(s1[0].state, TokenCacheState::kMerged);
    EXPECT_EQ(s1[0].bits, 0);
    EXPECT_EQ(s1[0].changed_step, 0);
    EXPECT_EQ(s1[1].state, TokenCacheState::kEvicted);
    EXPECT_EQ(s1[1].changed_step, 0);
    EXPECT_EQ(s1[2].state, TokenCacheState::kAbsent);
    EXPECT_EQ(s1[2].changed_step, -1);
    std::vector<TokenState> s2(3);
    apply_events(events, 2, s2);
    EXPECT_EQ(s2[1].state, TokenCacheState::kDemoted);
    EXPECT_EQ(s2[1].bits, 3);
    EXPECT_EQ(s2[1].changed_step, 2);
    std::vector<TokenState> q(2);
    apply_events({ev(0, CacheOp::kAppend, 1, 1, 0.0f, 0), ev(0, CacheOp::kQuantize, 1, -1, 0, 0)},
                 0, q);
    EXPECT_EQ(q[1].state, TokenCacheState::kQuantized);
    EXPECT_EQ(q[1].bits, 16);
}

TEST(TokenStates, UntouchedPositionsAreAbsent) {
    std::vector<TokenState> s(3);
    apply_events({ev(0, CacheOp::kAppend, 1, 0)}, 0, s);
    EXPECT_EQ(s[0].state, TokenCacheState::kAbsent);
    EXPECT_EQ(s[0].changed_step, -1);
    EXPECT_EQ(s[1].state, TokenCacheState::kHeld);
    EXPECT_EQ(s[2].state, TokenCacheState::kAbsent);
}

TEST(TokenStates, PromptAppendsAreImpliedWhenNotRecorded) {
    // kvscope run records step 0's evictions but not the prefill's appends.
    const std::vector<EventRecord> step0 = {ev(0, CacheOp::kAppend, 2, 2),
                                            ev(0, CacheOp::kEvict, 1)};
    const std::vector<EventRecord> all = with_prompt_appends(step0, 0, 0, 4);
    ASSERT_EQ(all.size(), 5u);  // appends of 0, 1, 3 (2 is recorded), then the two events
    EXPECT_EQ(all[0].position, 0);
    EXPECT_EQ(all[1].position, 1);
    EXPECT_EQ(all[2].position, 3);
    EXPECT_EQ(all[2].destination, 3);
    EXPECT_EQ(all[3].position, 2);
    EXPECT_EQ(all[4].op, CacheOp::kEvict);
    std::vector<TokenState> s(5);
    apply_events(all, 0, s);
    EXPECT_EQ(s[0].state, TokenCacheState::kHeld);
    EXPECT_EQ(s[0].bits, 16);
    EXPECT_EQ(s[1].state, TokenCacheState::kEvicted);
    EXPECT_EQ(s[3].state, TokenCacheState::kHeld);
    EXPECT_EQ(s[4].state, TokenCacheState::kAbsent);  // not a prompt token, not appended
    EXPECT_TRUE(with_prompt_appends({}, 0, 0, 0).empty());
}

}  // namespace
}  // namespace kvscope::trace
