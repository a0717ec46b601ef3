#pragma once
// STATUS: stable (additions only from here on)
// Normalised budgets: every policy's budget is "tokens per (layer, KV head), sinks and window
// included" (`--budget N`) or a ratio of the prompt length (`--ratio R`, tokens = ceil(R * N)).
// Policies that move budget between layers/heads (PyramidKV, D2O, DynamicKV) use this value as
// the AVERAGE per (layer, KV head).
#include <cstdint>
#include <string>

namespace kvscope {

struct Budget {
    int64_t tokens = -1;  // > 0 when given
    double ratio = -1.0;  // in (0, 1] when given

    bool given() const { return tokens > 0 || ratio > 0.0; }
    // Tokens per (layer, KV head) for a prompt of prompt_len tokens (>= 1). Throws
    // std::logic_error when !given().
    int64_t resolve(int64_t prompt_len) const;
    std::string describe() const;  // "budget 64 tokens" / "ratio 0.25"
};

// Checks what the user asked for: exactly one of tokens / ratio for a policy that needs a budget
// (needs_budget), none or one otherwise; tokens >= 1; ratio in (0, 1]. Throws InputError naming
// the policy.
void validate_budget(const std::string& policy, const Budget& b, bool needs_budget);

}  // namespace kvscope
