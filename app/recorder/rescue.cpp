#include "app/recorder/rescue.h"

#include <cstdio>
#include <numeric>

#include "core/error.h"

namespace kvscope::record {

namespace fs = std::filesystem;

std::string layer_list(const std::set<int64_t>& layers) {
    std::string out;
    for (int64_t l : layers) out += (out.empty() ? "" : ", ") + std::to_string(l);
    return out.empty() ? "none" : out;
}

RescueRun run_with_needle_kept(LiveSession& session, const PolicyChoice& policy,
                               const SamplingOptions& sampling, int64_t begin, int64_t end,
                               const std::set<int64_t>& layers, const fs::path& trace) {
    RerunRequest rr;
    rr.policy = policy;
    rr.sampling = sampling;
    rr.trace = trace;
    std::vector<int64_t> pos(static_cast<size_t>(end - begin));
    std::iota(pos.begin(), pos.end(), begin);
    rr.force_keep_positions = pos;
    rr.force_keep_layers = layers;
    const RerunResult r = session.rerun(rr);
    return {layers, r.answer_found, r.text, r.trace};
}

RescueResult rescue_needle(LiveSession& session, const PolicyChoice& policy,
                           const SamplingOptions& sampling, int64_t begin, int64_t end,
                           const fs::path& dir, int max_runs,
                           const std::function<void(const RescueRun&)>& on_run) {
    if (begin < 0 || end <= begin) throw InputError("rescue: the prompt has no needle span");
    if (session.input().answer.empty())
        throw InputError("rescue: the prompt has no expected answer to restore");
    fs::create_directories(dir);
    RescueResult res;
    int n = 0;
    auto run = [&](const std::set<int64_t>& layers) {
        char name[32];
        std::snprintf(name, sizeof name, "rescue-%02d.kvtrace.h5", n++);
        const fs::path trace = dir / name;
        std::error_code ec;
        fs::remove(trace, ec);
        RescueRun r = run_with_needle_kept(session, policy, sampling, begin, end, layers, trace);
        res.runs.push_back(r);
        if (on_run) on_run(r);
        return r.found == 1;
    };
    const int64_t L = session.model().spec.n_layers;
    if (run({})) {
        res.outcome = RescueResult::Outcome::kNotLost;
        res.summary = "the answer is right under " + policy.describe() + ": nothing to rescue";
        return res;
    }
    std::set<int64_t> all;
    for (int64_t l = 0; l < L; ++l) all.insert(l);
    if (!run(all)) {
        res.outcome = RescueResult::Outcome::kNotRescuable;
        res.summary =
            "keeping the needle in every layer does not restore the answer: the loss is "
            "elsewhere (other tokens the policy dropped, or the model itself)";
        return res;
    }
    std::set<int64_t> keep = all;
    for (int64_t l = 0; l < L; ++l) {
        if (static_cast<int>(res.runs.size()) >= max_runs) {
            res.outcome = RescueResult::Outcome::kBudgetExhausted;
            res.layers = keep;
            res.summary = "rescued by keeping the needle in layers " + layer_list(keep) +
                          " (search stopped after " + std::to_string(max_runs) +
                          " runs; a smaller set may exist)";
            return res;
        }
        std::set<int64_t> trial = keep;
        trial.erase(l);
        if (trial.empty()) continue;  // the policy as it is: known to lose the answer
        if (run(trial)) keep = trial;
    }
    res.outcome = RescueResult::Outcome::kRescued;
    res.layers = keep;
    res.summary = "rescued by keeping the needle in layers " + layer_list(keep) + " (" +
                  std::to_string(keep.size()) + " of " + std::to_string(L) +
                  "; no single one of them can be dropped)";
    return res;
}

}  // namespace kvscope::record
