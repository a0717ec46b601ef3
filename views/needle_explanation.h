#pragma once
// NeedleExplanation: why the needle left, in the policy's own terms, handed to the Needle view as
// plain data (views run no model and read no files). The Studio computes it on its worker thread
// from a re-run of the open trace's policy under whatif::ExplainPolicy (app/studio/
// needle_forensics.h); the fields of NeedleDecision are those of whatif::TokenDecision (core/
// whatif/explain_policy.h), copied so that the views need nothing from core/policies.
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace kvscope::views {

struct NeedleDecision {
    int64_t step = -1;  // -1 = the prompt's compression (trace step 0), s = decode step (trace s+1)
    int64_t layer = 0, kv_head = 0, position = 0;
    std::string action;          // "kept" | "evicted" | "merged" | "quantized" | "demoted"
    int64_t into_position = -1;  // merged: the token it was merged into
    float weight = std::nanf("");
    int bits = 16;                // quantized / demoted: the new precision
    double score = std::nan("");  // the policy's own score; +inf protected, NaN none
    int64_t rank = -1;            // 1 = best of `candidates`
    int64_t candidates = 0;
    double cutoff = std::nan("");  // lowest finite score among the tokens the policy kept
    int64_t budget = -1;
    std::string score_name;
    std::vector<std::pair<int64_t, double>> took_its_place;  // (position, score), lowest first
};

struct NeedleExplanation {
    std::string trace;       // TraceSummary::path of the trace explained (the view checks it)
    std::string policy;      // "d2o ratio 0.25 ..."
    std::string score_name;  // "" when the policy ranks by no score
    int64_t span_begin = 0, span_end = 0;   // the needle explained (token positions)
    std::vector<NeedleDecision> decisions;  // every decision on a needle token, in run order
    std::string rerun_text;                 // what the re-run generated
    bool same_as_trace = false;  // its output equals the recorded one (then so do its decisions)
    int8_t answer_found = -1;

    // The decisions for one (layer, KV head), in run order.
    std::vector<NeedleDecision> for_head(int64_t layer, int64_t kv_head) const {
        std::vector<NeedleDecision> out;
        for (const auto& d : decisions)
            if (d.layer == layer && d.kv_head == kv_head) out.push_back(d);
        return out;
    }
};

// The Studio's forensic jobs as the Needle view shows them (progress, errors) and the buttons it
// draws (the Studio sets the callbacks; the view only calls them).
struct NeedleForensics {
    bool busy = false;
    std::string what;  // "explaining…", "rescue run 3 of ≤ 10…"
    int64_t done = 0, total = 0;
    std::string error;
    std::string rescue_summary;  // "rescued by keeping the needle in layers 4 (1 of 8; ...)"
    std::function<void()> explain, rescue, cancel;
};

}  // namespace kvscope::views
