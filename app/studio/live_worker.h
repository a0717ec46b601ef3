#pragma once
// LiveWorker: the engine side of the live run dock. One QThread runs the jobs that use the
// session's engine — model loading + prefill, re-runs, memory fits, sweeps — one at a time in the
// order posted (LiveSession forbids overlapping prefill/rerun/fit), so the GUI thread never
// blocks on the model. Results come back as callables queued onto a receiver QObject living in
// the GUI thread (dropped by Qt when the receiver is gone). LiveSession::preview() only reads the
// saved state and is called from the GUI thread directly, also while a job runs.
#include <QObject>
#include <QThread>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

// Qt defines `emit`, `slots` and `signals` as macros; core headers use these words as names
// (KVCache::emit, Plan's slots), so they are included with the macros suspended.
#pragma push_macro("emit")
#pragma push_macro("slots")
#pragma push_macro("signals")
#undef emit
#undef slots
#undef signals
#include "app/recorder/live_session.h"
#include "app/recorder/rescue.h"
#include "core/error.h"
#include "core/model/model.h"
#include "core/tokenizer/tokenizer.h"
#include "core/whatif/explain_policy.h"
#pragma pop_macro("signals")

#include "views/needle_explanation.h"
#pragma pop_macro("slots")
#pragma pop_macro("emit")

namespace kvscope::studio {

// What the session is prefilled for.
struct LiveSetup {
    std::string model_dir;
    std::string trace;      // non-empty: prompt + needles from this trace
    bool scenario = false;  // else: a built scenario
    record::ScenarioRequest request;
    int threads = 0;  // 0 = all cores
};

// Model, tokenizer and the session built on them (the session is destroyed first).
struct LiveContext {
    LiveSetup setup;
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> tokenizer;
    std::unique_ptr<record::LiveSession> session;
    ~LiveContext() { session.reset(); }
};

// Loads the model and tokenizer, builds the input (from the trace or the scenario) and prefills.
// Throws InputError / std::exception with a message for the user.
std::shared_ptr<LiveContext> load_live_context(const LiveSetup& setup);

// A relative model path recorded in a trace, looked up from the trace's folder and its parents
// (traces recorded inside a checkout name "resources/models/..."), as `kvscope whatif` does.
std::string resolve_trace_model_path(const std::string& trace, const std::string& model_path);

// ---- Needle forensics (issue 13), run on the worker ----
views::NeedleDecision to_view_decision(const whatif::TokenDecision& d);

// The needle the forensics follow: the span labelled "needle", else the first; {-1, -1} none.
std::pair<int64_t, int64_t> needle_of(const std::vector<trace::MarkedSpan>& spans);

// Re-runs `trace`'s policy and sampling on `session` (prefilled for that trace's prompt) under
// whatif::ExplainPolicy following the needle (decisions unchanged), for the Needle view.
// `view_path` = the TraceSummary::path the view checks. The re-run's trace is a scratch file,
// removed. Throws InputError (no needle, cancelled).
views::NeedleExplanation explain_trace_needle(
    record::LiveSession& session, const std::string& trace, const std::string& view_path,
    const std::atomic<bool>* stop, const std::function<void(int64_t, int64_t)>& progress);

class LiveWorker {
  public:
    LiveWorker();
    ~LiveWorker();  // shutdown()
    // Cancels (stop flag), drops the jobs not started and joins after the current one. Jobs may
    // still reach the worker through its owner meanwhile, so owners call this before they reset
    // their pointer to it.
    void shutdown();
    LiveWorker(const LiveWorker&) = delete;
    LiveWorker& operator=(const LiveWorker&) = delete;

    // Runs `job` on the worker thread after the jobs posted before it.
    void post(std::function<void()> job);
    // Runs `fn` on `receiver`'s thread (the GUI), unless the receiver is gone by then.
    static void deliver(QObject* receiver, std::function<void()> fn);

    std::atomic<bool>& stop_flag() { return stop_; }
    int pending() const { return pending_.load(); }
    bool busy() const { return pending_.load() > 0; }

  private:
    QThread thread_;
    QObject* runner_ = nullptr;  // lives in thread_
    std::atomic<bool> stop_{false};
    std::atomic<int> pending_{0};
};

}  // namespace kvscope::studio
