// The per-step statistics a trace records from the logits (core/engine/sampler.h): top_k (a one
// pass heap, since a 128k vocabulary is scanned at every recorded step) must equal a full sort
// by (log-prob descending, id ascending), ties included; log_softmax / entropy_nats on a case
// with a known answer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "core/engine/sampler.h"

namespace kvscope {
namespace {

std::vector<std::pair<int32_t, float>> sorted_top(const std::vector<float>& lp, int k) {
    std::vector<std::pair<int32_t, float>> all;
    for (size_t i = 0; i < lp.size(); ++i) all.emplace_back(static_cast<int32_t>(i), lp[i]);
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    all.resize(std::min(all.size(), static_cast<size_t>(std::max(0, k))));
    return all;
}

TEST(SamplerStats, TopKEqualsAFullSortWithTies) {
    std::mt19937 rng(3);
    for (int trial = 0; trial < 50; ++trial) {
        const size_t n = 1 + rng() % 3000;
        std::vector<float> lp(n);
        // Few distinct values, so ties are everywhere (ids then decide).
        for (float& x : lp) x = -static_cast<float>(rng() % (trial % 2 == 0 ? 7 : 100000));
        for (int k : {0, 1, 5, 10, static_cast<int>(n), static_cast<int>(n) + 3})
            ASSERT_EQ(top_k(lp, k), sorted_top(lp, k)) << "n " << n << " k " << k;
    }
    EXPECT_TRUE(top_k({}, 5).empty());
    EXPECT_TRUE(top_k({1.0f}, -1).empty());
}

TEST(SamplerStats, LogSoftmaxAndEntropyOfAUniformRow) {
    const std::vector<float> logits(1000, 2.5f);
    const std::vector<float> lp = log_softmax(logits.data(), 1000);
    for (float x : lp) EXPECT_NEAR(x, -std::log(1000.0f), 1e-5f);  // float log-probs
    EXPECT_NEAR(entropy_nats(lp), std::log(1000.0), 1e-4);         // ln V for a uniform row
}

}  // namespace
}  // namespace kvscope
