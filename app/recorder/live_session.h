#pragma once
// LiveSession: one prompt, prefilled once with the full cache and every statistic the policies
// decide from; then any number of what-if previews (instant, from the saved state) and re-runs
// (decoding restarts from the saved state under a new policy and budget, no second prefill, and
// records a new trace). Used by `kvscope whatif`, `kvscope run --memory` and the Studio's live
// run dock.
//
// Threads: prefill() and rerun() use the session's engine and must not overlap each other;
// preview() only reads the saved state and may run on another thread at the same time.
#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "app/recorder/run_recorder.h"
#include "app/recorder/run_setup.h"
#include "core/engine/engine.h"
#include "core/engine/prefill_state.h"
#include "core/model/model.h"
#include "core/tokenizer/tokenizer.h"
#include "core/whatif/memory_fit.h"
#include "core/whatif/preview.h"
#include "kernels/backend.h"

namespace kvscope::record {

// A policy as the user chose it: name, budget (tokens or ratio; none for full/kivi) and
// parameter assignments ("window=32").
struct PolicyChoice {
    std::string name = "full";
    Budget budget;
    std::vector<std::string> params;

    std::string describe() const;  // "snapkv ratio 0.25 window=32"
};

// The policy a trace was recorded with (name, parameters, the budget as it was given) and its
// sampling, so that a trace's run can be re-run.
PolicyChoice policy_from_trace(const trace::RunMetadata& meta);
SamplingOptions sampling_from_trace(const trace::RunMetadata& meta);

struct RerunRequest {
    PolicyChoice policy;
    SamplingOptions sampling;
    RecorderOptions recorder;
    std::filesystem::path trace;  // the trace to record (refused when it exists, unless...)
    bool overwrite = false;       // ...this: replaced by a rename when the run ends
    bool own_prefill = false;     // prefill again even when the saved state could serve (checks)
    // Counterfactual (whatif::ForceKeepPolicy): keep these positions in these layers whatever the
    // policy decides. Empty layers = the policy as it is.
    std::vector<int64_t> force_keep_positions;
    std::set<int64_t> force_keep_layers;
    // Optional: wraps the policy before the run (e.g. whatif::ExplainPolicy); gets the built
    // policy, returns the one to run.
    std::function<std::unique_ptr<Policy>(std::unique_ptr<Policy>)> wrap_policy;
};

struct RerunResult {
    std::filesystem::path trace;
    std::string text;          // generated text
    int8_t answer_found = -1;  // 1 found, 0 not, -1 no answer expected
    std::string reason;        // stop reason (DecodeOutcome)
    int64_t steps = 0;
    double resume_ms = 0.0;  // compression of the saved prompt state
    double decode_ms = 0.0;
    int64_t bytes_held_final = 0;
    bool resumed = true;  // false: the policy needed a prefill of its own
    // Fraction of the queried needle's tokens ("needle" span, else the first) held after the last
    // step: mean and minimum over (layer, KV head); -1 without a needle.
    double needle_final_mean = -1.0;
    double needle_final_min = -1.0;
};

class LiveSession {
  public:
    // The model and tokenizer must outlive the session. `model_path` is recorded in traces.
    // `device`: auto | cpu | cuda (make_backend in kernels/backend.h).
    LiveSession(const Model& model, const Tokenizer& tok, std::string model_path, RunInput input,
                int threads = 0, const std::string& device = "cpu");
    ~LiveSession();
    LiveSession(const LiveSession&) = delete;
    LiveSession& operator=(const LiveSession&) = delete;

    // The full-cache prefill with every statistic (once; later calls return at once).
    void prefill();
    // Uses a saved prompt state (prefill_state_file.h) instead of prefill(): it must be of this
    // session's prompt (same token ids), else InputError.
    void adopt_state(std::shared_ptr<const PrefillState> state);
    bool prefilled() const { return state_ != nullptr; }
    const PrefillState& state() const;
    std::shared_ptr<const PrefillState> shared_state() const { return state_; }
    double prefill_ms() const { return prefill_ms_; }
    const RunInput& input() const { return input_; }
    const Model& model() const { return model_; }
    const Tokenizer& tokenizer() const { return tok_; }
    const std::string& model_path() const { return model_path_; }

    // The needles as what-if spans.
    std::vector<whatif::TokenSpan> spans() const;
    // Validated policy (throws InputError on a bad name, budget or parameter).
    static std::unique_ptr<Policy> make(const PolicyChoice& choice);
    // "" when the choice can be previewed / resumed from the saved state, else why not.
    std::string blocker(const PolicyChoice& choice) const;
    whatif::Preview preview(const PolicyChoice& choice) const;
    // Equal memory: the largest token budget for `choice` whose bytes held after the first
    // decoded token (the prompt's compression, then step 1 with the greedy token) are at most
    // `target_bytes`. Runs the engine (like rerun(), not concurrently with it).
    whatif::MemoryFit fit_memory(const PolicyChoice& choice, int64_t target_bytes);
    // target bytes for a fraction (0, 1] of the full prompt cache's bytes.
    int64_t bytes_for_fraction(double fraction) const {
        return whatif::bytes_for_fraction(state(), fraction);
    }

    // Decodes under `req.policy` from the saved state (or, for a policy that needs its own
    // prefill, from a fresh prefill) and records a trace. `stop` cancels between steps (the
    // trace then ends as interrupted); `progress(done, total)` after every step.
    RerunResult rerun(const RerunRequest& req, const std::atomic<bool>* stop = nullptr,
                      const std::function<void(int64_t, int64_t)>& progress = {});

  private:
    const Model& model_;
    const Tokenizer& tok_;
    std::string model_path_;
    RunInput input_;
    int threads_ = 0;
    std::unique_ptr<Backend> backend_;
    std::unique_ptr<Engine> engine_;
    std::shared_ptr<const PrefillState> state_;
    double prefill_ms_ = 0.0;
    // preview() reuses one scratch cache (whatif::Previewer); the mutex serialises previews.
    mutable std::mutex preview_mu_;
    mutable std::unique_ptr<whatif::Previewer> previewer_;
};

}  // namespace kvscope::record
