#include "core/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvscope {

int32_t Sampler::sample(const float* logits, int64_t vocab) {
    if (opt_.temperature <= 0.0f) {
        int32_t best = 0;
        for (int64_t i = 1; i < vocab; ++i)
            if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
        return best;
    }
    // Softmax at temperature T, then keep the smallest set of most probable tokens whose mass
    // reaches top_p, renormalise and draw.
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < vocab; ++i) mx = std::max(mx, logits[i]);
    buf_.clear();
    double sum = 0.0;
    for (int64_t i = 0; i < vocab; ++i) {
        const float p = std::exp((logits[i] - mx) / opt_.temperature);
        buf_.emplace_back(p, static_cast<int32_t>(i));
        sum += p;
    }
    std::sort(buf_.begin(), buf_.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    const double target = std::clamp(static_cast<double>(opt_.top_p), 1e-9, 1.0) * sum;
    double acc = 0.0;
    size_t keep = 0;
    while (keep < buf_.size()) {
        acc += buf_[keep].first;
        ++keep;
        if (acc >= target) break;
    }
    std::uniform_real_distribution<double> u(0.0, acc);
    double r = u(rng_);
    for (size_t i = 0; i < keep; ++i) {
        r -= buf_[i].first;
        if (r <= 0.0) return buf_[i].second;
    }
    return buf_[keep - 1].second;
}

std::vector<float> log_softmax(const float* logits, int64_t vocab) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < vocab; ++i) mx = std::max(mx, logits[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
    const float lse = mx + static_cast<float>(std::log(sum));
    std::vector<float> out(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) out[static_cast<size_t>(i)] = logits[i] - lse;
    return out;
}

float entropy_nats(const std::vector<float>& logprobs) {
    double h = 0.0;
    for (float lp : logprobs) h -= std::exp(static_cast<double>(lp)) * lp;
    return static_cast<float>(h);
}

std::vector<std::pair<int32_t, float>> top_k(const std::vector<float>& logprobs, int k) {
    // One pass with the k best so far in a heap whose top is the worst of them: a recorded
    // decode step of a 128k vocabulary compares most entries once and sorts nothing else.
    auto better = [](const std::pair<int32_t, float>& a, const std::pair<int32_t, float>& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
    };
    const size_t kk = std::min(logprobs.size(), static_cast<size_t>(std::max(0, k)));
    std::vector<std::pair<int32_t, float>> best;
    if (kk == 0) return best;
    best.reserve(kk);
    size_t i = 0;
    for (; i < logprobs.size() && best.size() < kk; ++i) {
        best.emplace_back(static_cast<int32_t>(i), logprobs[i]);
        std::push_heap(best.begin(), best.end(), better);
    }
    // Ids only grow from here, so an entry equal to the worst kept one is worse (higher id).
    float worst = best.front().second;
    for (; i < logprobs.size(); ++i) {
        if (!(logprobs[i] > worst)) continue;
        std::pop_heap(best.begin(), best.end(), better);
        best.back() = {static_cast<int32_t>(i), logprobs[i]};
        std::push_heap(best.begin(), best.end(), better);
        worst = best.front().second;
    }
    std::sort_heap(best.begin(), best.end(), better);  // best first
    return best;
}

}  // namespace kvscope
