#pragma once
// Compare mode: how the caches of two traces of the same prompt ("A" and "B", e.g. full cache vs
// SnapKV) differ. Tokens are matched by position, which is the same token in both traces for the
// prompt (checked by compare_mismatch); generated positions may hold different tokens when the two
// runs answered differently, and are still compared by position (it is the cache slot's position
// that a policy keeps or drops).
//
// "Held" is is_held(): full precision, quantised or demoted; a merged token no longer holds a slot.
// Aggregated over the heads of a layer (head -1), counts are of (head, token) pairs, so with one
// head selected they are token counts.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "views/plot_util.h"

namespace kvscope::views {

struct HeldDiff {
    int64_t only_a = 0;   // held in A, not in B
    int64_t only_b = 0;   // held in B, not in A
    int64_t both = 0;     // held in both
    int32_t heads = 0;    // heads compared (loaded in both)
    int32_t missing = 0;  // heads whose history is not loaded yet in A or in B
    // |A ∩ B| / |A ∪ B| (Jaccard); NaN when neither holds anything or nothing is loaded.
    double jaccard() const {
        const int64_t any = both + only_a + only_b;
        return any > 0 ? static_cast<double>(both) / static_cast<double>(any) : std::nan("");
    }
    bool operator==(const HeldDiff&) const = default;
};

// Per token: over how many of the compared heads it is held only in A / only in B.
struct TokenDiff {
    int32_t only_a = 0;
    int32_t only_b = 0;
};

// Empty when B can be compared with A; otherwise what differs (model shape: layers x heads; the
// prompt: its length or the first token that differs), naming A and B but not their files.
std::string compare_mismatch(const TraceModel& a, const TraceModel& b);

// The histories of (layer, head) of one trace, or of every head of the layer for head -1.
HeadSet compare_heads(const TraceModel& model, int32_t layer, int32_t head, Load load);

// `a` and `b` are aligned head sets (same heads, same order); a nullptr entry in either skips
// that head (counted as missing).
TokenDiff token_diff(const HeadSet& a, const HeadSet& b, int64_t token, int64_t step);
HeldDiff held_diff(const HeadSet& a, const HeadSet& b, int64_t step, int64_t n_tokens);

// The diff at the shared selection of the two models (head -1 = all heads of the layer).
HeldDiff held_diff(const TraceModel& a, const TraceModel& b, int32_t layer, int32_t head,
                   int64_t step, Load load);

// held_diff at a selection, recomputed only when its inputs change (selection, step, which
// histories are loaded, how many steps they hold), so a view can show the counts every frame.
class HeldDiffCache {
  public:
    const HeldDiff& get(const HeadSet& a, const HeadSet& b, int32_t layer, int32_t head,
                        int64_t step, int64_t n_tokens);
    void reset() { valid_ = false; }

  private:
    struct Key {
        int32_t layer = 0;
        int32_t head = 0;
        int64_t step = 0;
        int64_t n_tokens = 0;
        std::vector<const HeadHistory*> a;
        std::vector<const HeadHistory*> b;
        int64_t steps = 0;  // Σ steps of the histories (a live trace grows them in place)
        bool operator==(const Key&) const = default;
    };
    Key key_;
    HeldDiff diff_;
    bool valid_ = false;
};

// The colour of a token in a diff overlay: only_a / only_b (paler when only some of the heads
// differ), or `base` dimmed towards the panel when the token is held alike in A and B.
ImU32 diff_colour(const Theme& theme, const TokenDiff& d, int32_t heads, ImU32 base);

// The "diff A/B" checkbox (bound to ViewState::compare_diff); true when the overlay is drawn
// (a B trace is open and the box is ticked). Continues the current line.
bool diff_toggle(ViewContext& ctx);

// A legend line: "[■] held only in A: 123   [■] only in B: 45" (+ what is counted).
void draw_diff_legend(const ViewContext& ctx, const HeldDiff& diff);

}  // namespace kvscope::views
