#pragma once
// Token state codes: the state and precision of one token of one (layer, head) cache in one byte,
// as stored in /summary/prompt_state [L,H,P] (traces/SCHEMA.md) and kept by views/head_states.h.
//
//   code = state | bits << 3     state: TokenCacheState (0..5, bits 0-2)
//                                bits:  precision while held (1..31, bits 3-7; 0 when not held,
//                                       larger precisions stored as 31: every colour and count
//                                       of the Studio treats >= 16 bits alike)
//
// The rules are those of the replay (HeadHistory::apply_step, TraceReader::token_states): an
// append holds the token (bits, 16 when the event says 0 or less); evict, quantize and demote
// change a held token only; a merge always leaves its source merged; negative positions are
// ignored. At step 0 every prompt position that the step's events do not append is held at 16
// bits before them (`kvscope run` does not record the prefill's appends).
#include <cstdint>
#include <span>
#include <vector>

#include "traces/trace_reader.h"

namespace kvscope::trace {

using TokenStateCode = uint8_t;

constexpr TokenStateCode token_state_code(TokenCacheState state, int bits) {
    const int b = bits <= 0 ? 0 : (bits > 31 ? 31 : bits);
    return static_cast<TokenStateCode>(static_cast<int>(state) | (b << 3));
}
constexpr TokenCacheState code_state(TokenStateCode c) {
    return static_cast<TokenCacheState>(c & 7);
}
constexpr int8_t code_bits(TokenStateCode c) {
    return static_cast<int8_t>(c >> 3);
}
inline constexpr TokenStateCode kPromptHeldCode = token_state_code(TokenCacheState::kHeld, 16);

// The code of a token after `ev` when it was `current` before; returns `current` for an event
// that changes nothing (evicting what is not held, an unknown op).
TokenStateCode next_state_code(TokenStateCode current, const EventRecord& ev);

// /summary/prompt_state: the code of every prompt position of every (layer, head) after step 0,
// [L*H*P] row-major (layer, head, position), from step 0's events (any (layer, head) order,
// recorded order within each). Positions outside 0 .. P-1 and events of other heads are skipped.
std::vector<TokenStateCode> prompt_state_codes(std::span<const EventRecord> step0, int32_t n_layers,
                                               int32_t n_heads, int64_t n_prompt);

}  // namespace kvscope::trace
