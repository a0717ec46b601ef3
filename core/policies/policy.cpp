#include "core/policies/policy.h"

namespace kvscope {

void Policy::begin(const ModelDims& dims, int64_t prompt_len) {
    dims_ = dims;
    prompt_len_ = prompt_len;
    budget_tokens_ = cfg_.budget.given() ? cfg_.budget.resolve(prompt_len) : -1;
}

AppendDecision Policy::on_append(const AppendContext&) {
    return {};
}

Plan Policy::after_decode_layer(const ScoreView&) {
    return {};
}

}  // namespace kvscope
