#include "core/whatif/memory_fit.h"

#include <cmath>

#include "core/error.h"
#include "core/policies/registry.h"

namespace kvscope::whatif {

int64_t bytes_for_fraction(const PrefillState& state, double fraction) {
    if (!(fraction > 0.0 && fraction <= 1.0))
        throw InputError("--memory: the fraction must be in (0, 1], got " +
                         std::to_string(fraction));
    return static_cast<int64_t>(std::floor(fraction * static_cast<double>(state.bytes_full())));
}

void check_fittable(const std::string& name, const std::vector<std::string>& params) {
    const PolicyEntry* entry = PolicyRegistry::global().find(name);
    // create() names the known policies in its message.
    if (!entry) (void)PolicyRegistry::global().create(name, Budget{}, params);
    if (entry && !entry->info.needs_budget)
        throw InputError(name +
                         " takes no token budget (its memory is set by its parameters), "
                         "so it cannot be fitted to a memory target");
}

MemoryFit fit_budget(const std::string& name, int64_t max_tokens, int64_t target_bytes,
                     const BytesAtBudget& measure) {
    if (target_bytes <= 0) throw InputError("the memory target must be positive");
    MemoryFit fit;
    fit.target_bytes = target_bytes;
    auto run = [&](int64_t tokens) {
        ++fit.evaluations;
        return measure(tokens);
    };
    int64_t lo = 1, hi = std::max<int64_t>(1, max_tokens);
    int64_t lo_bytes = run(lo);
    if (lo_bytes > target_bytes)
        throw InputError(name + " holds " + std::to_string(lo_bytes) +
                         " bytes even at a budget of 1 token per head; the target is " +
                         std::to_string(target_bytes) + " bytes");
    const int64_t hi_bytes = hi > lo ? run(hi) : lo_bytes;
    if (hi_bytes <= target_bytes) {
        fit.budget_tokens = hi;
        fit.bytes = hi_bytes;
        return fit;
    }
    // Invariant: measure(lo) <= target < measure(hi).
    while (hi - lo > 1) {
        const int64_t mid = lo + (hi - lo) / 2;
        const int64_t b = run(mid);
        if (b <= target_bytes) {
            lo = mid;
            lo_bytes = b;
        } else {
            hi = mid;
        }
    }
    fit.budget_tokens = lo;
    fit.bytes = lo_bytes;
    return fit;
}

MemoryFit fit_budget_to_bytes(const PrefillState& state, const ModelSpec& spec,
                              const std::string& name, const std::vector<std::string>& params,
                              int64_t target_bytes, const std::vector<TokenSpan>& spans) {
    check_fittable(name, params);
    return fit_budget(name, state.prompt_len(), target_bytes, [&](int64_t tokens) {
        Budget b;
        b.tokens = tokens;
        auto policy = PolicyRegistry::global().create(name, b, params);
        return preview(state, spec, *policy, spans).bytes_total;
    });
}

}  // namespace kvscope::whatif
