#pragma once
// Counterfactual needle rescue: "which layers' loss of the needle caused the wrong answer?".
// Re-runs a policy from the saved prompt state (no second prefill) with the needle's tokens
// force-kept in a set of layers (whatif::ForceKeepPolicy) and searches for a small set that
// restores the answer: first the policy as it is, then every layer, then greedy elimination
// (drop one layer at a time, keep the drop when the answer stays right). The result is
// irreducible — no single layer of it can be dropped — in at most 2 + L runs.
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "app/recorder/live_session.h"

namespace kvscope::record {

struct RescueRun {
    std::set<int64_t> layers;  // where the needle was force-kept
    int8_t found = -1;
    std::string text;
    std::filesystem::path trace;
};

struct RescueResult {
    enum class Outcome { kNotLost, kRescued, kNotRescuable, kBudgetExhausted };
    Outcome outcome = Outcome::kNotLost;
    std::set<int64_t> layers;  // rescued: the irreducible set found
    std::vector<RescueRun> runs;
    std::string summary;  // one line for people ("rescued by keeping the needle in layers 2, 5")
};

// `span` = the needle (token positions [begin, end)). Traces go to `dir`/rescue-NN.kvtrace.h5.
RescueResult rescue_needle(LiveSession& session, const PolicyChoice& policy,
                           const SamplingOptions& sampling, int64_t span_begin, int64_t span_end,
                           const std::filesystem::path& dir, int max_runs,
                           const std::function<void(const RescueRun&)>& on_run = {});

// Runs once with the needle force-kept in `layers`.
RescueRun run_with_needle_kept(LiveSession& session, const PolicyChoice& policy,
                               const SamplingOptions& sampling, int64_t span_begin,
                               int64_t span_end, const std::set<int64_t>& layers,
                               const std::filesystem::path& trace);

std::string layer_list(const std::set<int64_t>& layers);  // "2, 5"

}  // namespace kvscope::record
