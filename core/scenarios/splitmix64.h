#pragma once
// SplitMix64 (Steele, Lea, Flood 2014): the scenario builders' random numbers. Tiny, fully
// specified and easy to reproduce in Python (tools/train_demo/scenarios.py does), which a
// std:: distribution is not.
#include <cstdint>
#include <initializer_list>

namespace kvscope {

class SplitMix64 {
  public:
    explicit SplitMix64(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        state_ += 0x9E3779B97F4A7C15ull;
        return finalize(state_);
    }
    // Uniform-enough integer in [0, n) (modulo bias < n / 2^64). n must be > 0.
    uint64_t below(uint64_t n) { return next() % n; }

    static uint64_t finalize(uint64_t z) {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }

  private:
    uint64_t state_;
};

// Folds integers into one seed, order-sensitive: s <- finalize(s ^ part + golden), starting from
// the bytes of "kvscope!".
inline uint64_t mix_seed(std::initializer_list<uint64_t> parts) {
    uint64_t s = 0x6B7673636F706521ull;
    for (uint64_t p : parts) s = SplitMix64(s ^ p).next();
    return s;
}

}  // namespace kvscope
