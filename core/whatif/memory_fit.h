#pragma once
// Equal-memory budgets: policies at the same ratio hold very different bytes (MiKV keeps the
// rest of the prompt at low precision, D2O merges instead of dropping, KIVI ignores the ratio), so
// a fair comparison sets each policy's own budget so that its bytes held match a target.
//
// The search is a bisection over the token budget per (layer, KV head) with a measure of bytes
// held at a budget; it assumes bytes held grow with the budget (true of every built-in policy;
// the result's bytes are measured, never assumed). fit_budget_to_bytes() measures with the
// what-if preview (bytes after the prompt's compression, step 0); record::LiveSession measures
// after the first decoded token instead, because some decode-time policies (D2O) compress only
// from the first decode step on.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/engine/prefill_state.h"
#include "core/model/model_spec.h"
#include "core/whatif/preview.h"

namespace kvscope::whatif {

struct MemoryFit {
    int64_t budget_tokens = -1;  // the largest budget whose bytes held are <= the target
    int64_t bytes = 0;           // bytes held at that budget (by the measure used)
    int64_t target_bytes = 0;
    int evaluations = 0;  // measures run by the search
};

// Bytes held by a policy at a token budget per (layer, KV head).
using BytesAtBudget = std::function<int64_t(int64_t tokens)>;

// The largest budget in [1, max_tokens] whose measure is <= target_bytes. Throws InputError
// (naming `policy`) when even 1 token per head holds more than the target.
MemoryFit fit_budget(const std::string& policy, int64_t max_tokens, int64_t target_bytes,
                     const BytesAtBudget& measure);

// Checks that `policy` exists and takes a token budget; throws InputError otherwise.
void check_fittable(const std::string& policy, const std::vector<std::string>& param_assignments);

// Throws InputError when the policy takes no budget (full, kivi), cannot be previewed from the
// state, or holds more than the target even at 1 token per head (the message says how much).
MemoryFit fit_budget_to_bytes(const PrefillState& state, const ModelSpec& spec,
                              const std::string& policy,
                              const std::vector<std::string>& param_assignments,
                              int64_t target_bytes, const std::vector<TokenSpan>& spans = {});

// target_bytes for a fraction (0, 1] of the full cache's bytes.
int64_t bytes_for_fraction(const PrefillState& state, double fraction);

}  // namespace kvscope::whatif
