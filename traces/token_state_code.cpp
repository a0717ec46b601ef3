// Token state codes (token_state_code.h): the replay rules on one byte per token.
#include "traces/token_state_code.h"

#include <algorithm>

namespace kvscope::trace {

namespace {

bool held(TokenStateCode c) {
    const TokenCacheState s = code_state(c);
    return s == TokenCacheState::kHeld || s == TokenCacheState::kQuantized ||
           s == TokenCacheState::kDemoted;
}

}  // namespace

TokenStateCode next_state_code(TokenStateCode current, const EventRecord& ev) {
    switch (ev.op) {
        case CacheOp::kAppend:
            return token_state_code(TokenCacheState::kHeld, ev.bits > 0 ? ev.bits : 16);
        case CacheOp::kEvict:
            return held(current) ? token_state_code(TokenCacheState::kEvicted, 0) : current;
        case CacheOp::kMerge:
            return token_state_code(TokenCacheState::kMerged, 0);
        case CacheOp::kQuantize:
        case CacheOp::kDemote:
            if (!held(current)) return current;
            return token_state_code(ev.op == CacheOp::kQuantize ? TokenCacheState::kQuantized
                                                                : TokenCacheState::kDemoted,
                                    ev.bits > 0 ? ev.bits : code_bits(current));
        default:
            return current;
    }
}

std::vector<TokenStateCode> prompt_state_codes(std::span<const EventRecord> step0, int32_t n_layers,
                                               int32_t n_heads, int64_t n_prompt) {
    const int64_t L = std::max(n_layers, 0), H = std::max(n_heads, 0);
    const int64_t P = std::max<int64_t>(n_prompt, 0);
    std::vector<TokenStateCode> codes(static_cast<size_t>(L * H * P), kPromptHeldCode);
    auto index = [&](const EventRecord& e) -> int64_t {
        if (e.layer < 0 || e.layer >= L || e.head < 0 || e.head >= H || e.position < 0 ||
            e.position >= P)
            return -1;
        return (static_cast<int64_t>(e.layer) * H + e.head) * P + e.position;
    };
    // A prompt position the step appends itself is absent before its append (as in the replay,
    // whose implicit prompt appends skip it).
    for (const EventRecord& e : step0) {
        const int64_t i = index(e);
        if (i >= 0 && e.op == CacheOp::kAppend)
            codes[static_cast<size_t>(i)] = token_state_code(TokenCacheState::kAbsent, 0);
    }
    for (const EventRecord& e : step0) {
        const int64_t i = index(e);
        if (i >= 0)
            codes[static_cast<size_t>(i)] = next_state_code(codes[static_cast<size_t>(i)], e);
    }
    return codes;
}

}  // namespace kvscope::trace
