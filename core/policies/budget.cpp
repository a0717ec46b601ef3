#include "core/policies/budget.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "core/error.h"

namespace kvscope {

int64_t Budget::resolve(int64_t prompt_len) const {
    if (tokens > 0) return tokens;
    if (ratio > 0.0) {
        // The small epsilon keeps e.g. 0.3 * 10 = 3.0000000000000004 at 3.
        const double t = std::ceil(ratio * static_cast<double>(prompt_len) - 1e-9);
        return std::max<int64_t>(1, static_cast<int64_t>(t));
    }
    throw std::logic_error("Budget::resolve: no budget given");
}

std::string Budget::describe() const {
    std::ostringstream os;
    if (tokens > 0)
        os << "budget " << tokens << " tokens";
    else if (ratio > 0.0)
        os << "ratio " << ratio;
    else
        os << "no budget";
    return os.str();
}

void validate_budget(const std::string& policy, const Budget& b, bool needs_budget) {
    const bool has_tokens = b.tokens != -1, has_ratio = b.ratio != -1.0;
    if (has_tokens && has_ratio)
        throw InputError("policy '" + policy + "': give either --budget or --ratio, not both");
    if (has_tokens && b.tokens < 1)
        throw InputError("policy '" + policy + "': --budget must be >= 1 token, got " +
                         std::to_string(b.tokens));
    if (has_ratio && !(b.ratio > 0.0 && b.ratio <= 1.0))
        throw InputError("policy '" + policy + "': --ratio must be in (0, 1], got " +
                         std::to_string(b.ratio));
    if (needs_budget && !has_tokens && !has_ratio)
        throw InputError(
            "policy '" + policy +
            "' needs a budget: --budget N (tokens per layer and KV head) or --ratio R");
}

}  // namespace kvscope
