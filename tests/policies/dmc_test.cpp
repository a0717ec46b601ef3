// DMC: checkpoint-mode decisions from the control neuron, omega-weighted window means, pre-RoPE
// averaging rotated at the newest position; the proxy mode's cosine rule and rate tracking.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/policies/plan.h"
#include "core/policies/registry.h"
#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

// omega = sigmoid(mean q + 5) + 2^-7:  q mean -5 -> .5078125;  q mean -5 + ln 3 -> .7578125
constexpr double kW0 = 0.5078125, kW1 = 0.7578125;
const float kLn3 = static_cast<float>(std::log(3.0));

// A stand-in for RoPE that makes the rotation position visible: channel 0 += position.
void shift_rotate(float* k, int64_t pos) {
    k[0] += static_cast<float>(pos);
}

// 1 layer, 1 KV head, g = 2, d = 4, prompt of 6 tokens, window 2. Decisions (raw k[d-1] - 5 > 0):
// t0 forced append, t1 merge, t2 append, t3 merge, t4 merge, t5 append -> groups {0,1}, {2,3,4},
// {5}.
struct DmcCase {
    ViewData view;
    KVCache cache{1, 1, 4, 2};
};

void fill_case(DmcCase& c) {
    const std::vector<float> kraw = {0, 6, 4, 7, 5.5f, 0};
    c.view.n_layers = 1;
    c.view.n_heads = 2;
    c.view.n_kv_heads = 1;
    c.view.head_dim = 4;
    c.view.prompt_len = 6;
    c.view.layer_ids = {0};
    c.view.heads = {{HeadData{}}};
    HeadData& h = c.view.heads[0][0];
    h.pos = iota_positions(6);
    c.cache.set_store_prerope(true);
    c.cache.set_rotate(shift_rotate);
    for (int t = 0; t < 6; ++t) {
        // pre-RoPE key (t, 1, 2t, 0): channel d-1 already zeroed, as the engine stores it.
        const std::vector<float> k = {static_cast<float>(t), 1, 2.0f * t, 0};
        std::vector<float> post = k;
        shift_rotate(post.data(), t);
        c.cache.append(0, 0, post.data(), k.data(), t, k.data());
        h.keys_prerope.insert(h.keys_prerope.end(), k.begin(), k.end());
        h.control.push_back(kraw[static_cast<size_t>(t)]);
        const float qm = t == 1 ? -5.0f + kLn3 : -5.0f;
        h.control.push_back(qm - 1.0f);
        h.control.push_back(qm + 1.0f);
    }
}

TEST(DMC, CheckpointPrefillGroupsAndWeights) {
    DmcCase c;
    fill_case(c);
    auto p = make_policy("dmc", Budget{}, {"window=2"});
    ASSERT_TRUE(p->needs().control_neuron);
    ASSERT_TRUE(p->needs().prerope_keys);
    p->begin(dims_of(c.view), 6);
    const Plan plan = p->after_prefill(c.view.view());
    const HeadPlan* hp = plan.find(0, 0);
    ASSERT_NE(hp, nullptr);
    ASSERT_EQ(hp->merges.size(), 2u);
    // Group {0,1}: Z = .5078125 + .7578125; weights .4012345679 (t0), .5987654321 (t1 = dst).
    EXPECT_EQ(hp->merges[0].dst, 1);
    EXPECT_EQ(hp->merges[0].src, (std::vector<int64_t>{0}));
    EXPECT_NEAR(hp->merges[0].dst_weight, kW1 / (kW0 + kW1), 1e-6);
    EXPECT_NEAR(hp->merges[0].src_weights[0], kW0 / (kW0 + kW1), 1e-6);
    EXPECT_TRUE(hp->merges[0].prerope);
    // Group {2,3,4}, window 2: t2 falls out of the window (weight 0), t3 and t4 share equally.
    EXPECT_EQ(hp->merges[1].dst, 4);
    EXPECT_EQ(hp->merges[1].src, (std::vector<int64_t>{2, 3}));
    EXPECT_NEAR(hp->merges[1].dst_weight, 0.5, 1e-6);
    EXPECT_NEAR(hp->merges[1].src_weights[0], 0.0, 1e-6);
    EXPECT_NEAR(hp->merges[1].src_weights[1], 0.5, 1e-6);
    ASSERT_EQ(plan.notes.size(), 1u);
    EXPECT_EQ(plan.notes[0].key, "dmc_cr");
    EXPECT_NEAR(plan.notes[0].value, 2.0, 1e-12);  // 6 tokens in 3 slots

    apply(plan, c.cache);
    EXPECT_EQ(positions_of(c.cache, 0, 0), (std::vector<int64_t>{1, 4, 5}));
    // Slot at position 4: pre-RoPE mean .5 (3,1,6,0) + .5 (4,1,8,0) = (3.5,1,7,0), rotated at 4.
    const float* k = c.cache.k(0, 0) + 1 * 4;
    EXPECT_NEAR(k[0], 7.5, 1e-5);
    EXPECT_NEAR(k[1], 1.0, 1e-6);
    EXPECT_NEAR(k[2], 7.0, 1e-5);
    EXPECT_NEAR(k[3], 0.0, 1e-6);
    EXPECT_EQ(c.cache.merge_count(0, 0)[1], 2);
    EXPECT_EQ(c.cache.check_consistency(), "");
}

// Decode: t6 opens a slot (the prompt's last group is closed), t7 and t8 merge; with window 2
// the slot after t8 is the omega mean of t7 and t8 only.
TEST(DMC, CheckpointDecodeWindowedMean) {
    DmcCase c;
    fill_case(c);
    auto p = make_policy("dmc", Budget{}, {"window=2"});
    p->begin(dims_of(c.view), 6);
    apply(p->after_prefill(c.view.view()), c.cache);

    const std::vector<std::vector<float>> keys = {{1, 0, 0, 9}, {0, 2, 0, 9}, {0, 0, 4, 9}};
    const std::vector<std::vector<float>> vals = {{1, 1, 1, 1}, {3, 3, 3, 3}, {0, 0, 0, 0}};
    const std::vector<float> qmean = {-5.0f, -5.0f + kLn3, -5.0f};
    std::vector<AppendDecision> decs;
    for (int i = 0; i < 3; ++i) {
        const int64_t pos = 6 + i;
        std::vector<float> post = keys[static_cast<size_t>(i)];
        shift_rotate(post.data(), pos);
        const std::vector<float> control = {9.0f, qmean[static_cast<size_t>(i)],
                                            qmean[static_cast<size_t>(i)]};
        AppendContext ctx;
        ctx.layer = 0;
        ctx.kv_head = 0;
        ctx.pos = pos;
        ctx.step = i;
        ctx.k = post;
        ctx.v = vals[static_cast<size_t>(i)];
        ctx.k_prerope = keys[static_cast<size_t>(i)];
        ctx.control = control;
        ctx.cache = &c.cache;
        decs.push_back(p->on_append(ctx));
        apply_append(decs.back(), c.cache, 0, 0, post.data(), vals[static_cast<size_t>(i)].data(),
                     pos, keys[static_cast<size_t>(i)].data());
    }
    EXPECT_FALSE(decs[0].merge);
    ASSERT_TRUE(decs[1].merge);
    EXPECT_EQ(decs[1].spec.dst, 3);
    EXPECT_TRUE(decs[1].spec.take_position);
    EXPECT_TRUE(decs[1].spec.prerope);
    const double a = kW0 / (kW0 + kW1), b = kW1 / (kW0 + kW1);  // .4012345679, .5987654321
    EXPECT_NEAR(decs[1].spec.dst_weight, a, 1e-6);
    EXPECT_NEAR(decs[1].spec.new_weight, b, 1e-6);
    // (a k6 + b k7) with the control channel zeroed: (a, 2b, 0, 0); v = a + 3b.
    EXPECT_NEAR(decs[1].result_k[0], a, 1e-6);
    EXPECT_NEAR(decs[1].result_k[1], 2 * b, 1e-6);
    EXPECT_NEAR(decs[1].result_k[3], 0.0, 1e-6);
    EXPECT_NEAR(decs[1].result_v[2], a + 3 * b, 1e-6);
    // t8: window 2 drops t6 -> (b k7 + a k8) = (0, 2b, 4a, 0); v = 3b.
    ASSERT_TRUE(decs[2].merge);
    EXPECT_NEAR(decs[2].result_k[0], 0.0, 1e-6);
    EXPECT_NEAR(decs[2].result_k[1], 2 * b, 1e-6);
    EXPECT_NEAR(decs[2].result_k[2], 4 * a, 1e-6);
    EXPECT_NEAR(decs[2].result_v[0], 3 * b, 1e-6);

    EXPECT_EQ(positions_of(c.cache, 0, 0), (std::vector<int64_t>{1, 4, 5, 8}));
    const float* k = c.cache.k(0, 0) + 3 * 4;  // rotated at position 8
    EXPECT_NEAR(k[0], 8.0, 1e-5);
    EXPECT_NEAR(k[2], 4 * a, 1e-5);
    EXPECT_EQ(c.cache.merge_count(0, 0)[3], 2);
}

TEST(DMC, CheckpointWithoutControlNeuronFailsClearly) {
    DmcCase c;
    fill_case(c);
    c.view.heads[0][0].control.clear();
    auto p = make_policy("dmc", Budget{});
    p->begin(dims_of(c.view), 6);
    EXPECT_THROW(p->after_prefill(c.view.view()), std::invalid_argument);
}

// Proxy (NOT DMC) with a fixed threshold (theta_lr = 0): t1 close to t0 -> merge; t2 orthogonal
// to the group mean -> append; t3 = t2 -> merge; t4 nearly t2 -> merge; t5: group full (3) ->
// append.
TEST(DMC, ProxyCosineRuleAndCap) {
    ViewData v;
    v.n_layers = 1;
    v.n_heads = 1;
    v.n_kv_heads = 1;
    v.head_dim = 4;
    v.prompt_len = 6;
    v.layer_ids = {0};
    v.heads = {{HeadData{}}};
    HeadData& h = v.heads[0][0];
    h.pos = iota_positions(6);
    h.keys_prerope = {1, 0, 0, 0, 1, 0.1f, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0.1f, 0, 0, 1, 0, 0};
    auto p = make_policy("dmc", Budget{}, {"mode=proxy", "window=3", "theta_lr=0"});
    EXPECT_FALSE(p->needs().control_neuron);
    p->begin(dims_of(v), 6);
    const Plan plan = p->after_prefill(v.view());
    const HeadPlan* hp = plan.find(0, 0);
    ASSERT_EQ(hp->merges.size(), 2u);
    EXPECT_EQ(hp->merges[0].dst, 1);
    EXPECT_EQ(hp->merges[0].src, (std::vector<int64_t>{0}));
    EXPECT_NEAR(hp->merges[0].dst_weight, 0.5, 1e-6);
    EXPECT_NEAR(hp->merges[0].src_weights[0], 0.5, 1e-6);
    EXPECT_EQ(hp->merges[1].dst, 4);
    EXPECT_EQ(hp->merges[1].src, (std::vector<int64_t>{2, 3}));
    EXPECT_NEAR(hp->merges[1].dst_weight, 1.0 / 3.0, 1e-6);
    EXPECT_NEAR(hp->merges[1].src_weights[1], 1.0 / 3.0, 1e-6);
}

// The proxy's threshold tracks the merge rate 1 - 1/cr over a long decode.
TEST(DMC, ProxyMergeRateTracksTarget) {
    auto p = make_policy("dmc", Budget{}, {"mode=proxy", "cr=4"});
    ModelDims dims{1, 2, 1, 8};
    SyntheticRun run(dims, 40, 17, *p);
    run.prefill();
    const int64_t slots0 = run.cache().n_slots(0, 0);
    const int steps = 400;
    for (int s = 0; s < steps; ++s) run.decode_step();
    const double appended = static_cast<double>(run.cache().n_slots(0, 0) - slots0);
    const double merge_rate = 1.0 - appended / steps;
    EXPECT_NEAR(merge_rate, 0.75, 0.05);  // Robbins-Monro tracking, 400 steps of lr 0.02
    // Every token is accounted for: slots + merged-in tokens = tokens seen.
    int64_t tokens = 0;
    for (int32_t m : run.cache().merge_count(0, 0)) tokens += 1 + m;
    EXPECT_EQ(tokens, 40 + steps);
}

TEST(DMC, BadParametersAreInputErrors) {
    EXPECT_THROW(make_policy("dmc", Budget{}, {"mode=dmc"}), InputError);
    EXPECT_THROW(make_policy("dmc", Budget{}, {"cr=0.5"}), InputError);
}

}  // namespace
}  // namespace kvscope::test
