#pragma once
// Guided story: a narration of one trace, decision by decision, generated from what the trace
// recorded (issue 16, item 2). Each beat is a sentence or two with the trace's own numbers (prompt
// length, tokens kept per head, per-layer budgets, where the needle's digits are kept or dropped,
// merges, quantisation, the answer) and what to highlight while it is read: a step, a (layer,
// head) cell and a token range. The Studio's Story dock steps through the beats and moves the
// shared ViewState, so every view shows the cells and tokens a beat talks about.
//
// The "why" of a beat is told in the policy's own score, read from the trace's prefill statistics
// (each policy file in core/policies/ states its rule and score; PolicyInfo::score_name names it):
//   observation-window votes  /prefill/window_scores   SnapKV, PyramidKV, DynamicKV
//   accumulated attention     /prefill/attn_received   H2O, D2O, MiKV (prompt column sums)
//   key L2 norm (low = kept)  /prefill/key_norm        knorm
//   position                  token index              StreamingLLM
// Policies ranking by something the trace does not hold (TOVA's last-query row, DMC's learned
// decisions, KIVI's fixed groups) get the counts without a score.
//
// Pure logic over a TraceModel: no ImGui, no Qt, no file I/O (tests/gui/story_model_test.cpp
// checks every number against the trace reader).
#include <cstdint>
#include <string>
#include <vector>

#include "views/trace_model.h"

namespace kvscope::views {

// What the story needs to know of the policy beyond the trace. Filled by the caller from the
// policy registry (core/policies/registry.h; views do not link the policies).
struct StoryPolicy {
    std::string name;        // CLI name, as in TraceSummary::policy ("snapkv")
    std::string full_name;   // "SnapKV"
    std::string score_name;  // "observation-window votes"; "" when it ranks by none
    bool per_step = false;   // decides again at every decode step (regime D)
};

enum class BeatKind { kOverview, kCompression, kBudgets, kNeedle, kWhy, kDecode, kOutcome };

struct StoryBeat {
    BeatKind kind = BeatKind::kOverview;
    int64_t step = 0;          // the step the views show while the beat is read
    std::string text;          // the narration (UTF-8)
    int32_t layer = -1;        // the cell to select; -1 = keep the current selection
    int32_t head = -1;         // -1 = every head of the layer
    int64_t token_begin = -1;  // tokens the beat is about, [begin, end); -1 = none
    int64_t token_end = -1;
    int64_t token = -1;  // the one token to select (the first of the range, or the one explained)
    std::string view;    // id of the view to bring forward ("token_strip"); "" = leave it
};

// The story of `model` (every step it has recorded). Loads the histories it needs at once.
std::vector<StoryBeat> make_story(const TraceModel& model, const StoryPolicy& policy);

// "0–2, 5, 7" for sorted layer indices (used in the beats; exposed for the tests).
std::string format_ranges(const std::vector<int32_t>& sorted);

// The needle's digits: the tokens of span 0 whose text holds a digit when the expected answer has
// digits, else the whole span. Empty when the trace marks no span.
std::vector<int64_t> needle_tokens(const TraceModel& model);

}  // namespace kvscope::views
