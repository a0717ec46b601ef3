#pragma once
// PerHeadState<T>: a policy's own state, one T per (layer, KV head) of the current sequence,
// stored flat at [layer * n_kv_heads + kv_head]. reset() (from the policy's begin()) sizes it for
// the model; at() before that throws std::logic_error("<policy>: begin() was not called").
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kvscope {

template <class T>
class PerHeadState {
  public:
    explicit PerHeadState(std::string policy) : policy_(std::move(policy)) {}

    // Every (layer, KV head) starts from `init`.
    void reset(int64_t n_layers, int64_t n_kv_heads, const T& init = T{}) {
        n_kv_heads_ = n_kv_heads;
        states_.assign(static_cast<size_t>(n_layers * n_kv_heads), init);
    }

    T& at(int64_t layer, int64_t kv_head) {
        const size_t i = static_cast<size_t>(layer * n_kv_heads_ + kv_head);
        if (i >= states_.size()) throw std::logic_error(policy_ + ": begin() was not called");
        return states_[i];
    }

  private:
    std::string policy_;
    int64_t n_kv_heads_ = 0;
    std::vector<T> states_;
};

}  // namespace kvscope
