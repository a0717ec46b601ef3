#pragma once
// Next-token sampling: greedy (temperature 0), or temperature + nucleus (top-p) with a seed.
#include <cstdint>
#include <random>
#include <vector>

namespace kvscope {

struct SamplerOptions {
    float temperature = 0.0f;  // 0 = greedy (argmax, lowest id on ties)
    float top_p = 1.0f;        // (0, 1]
    uint64_t seed = 0;
};

class Sampler {
  public:
    explicit Sampler(SamplerOptions opt) : opt_(opt), rng_(opt.seed) {}
    int32_t sample(const float* logits, int64_t vocab);

  private:
    SamplerOptions opt_;
    std::mt19937_64 rng_;
    std::vector<std::pair<float, int32_t>> buf_;
};

// log-softmax helpers used by the CLI and the recorder.
std::vector<float> log_softmax(const float* logits, int64_t vocab);
float entropy_nats(const std::vector<float>& logprobs);
// The k best (id, logprob) pairs, best first, lowest id first on ties.
std::vector<std::pair<int32_t, float>> top_k(const std::vector<float>& logprobs, int k);

}  // namespace kvscope
