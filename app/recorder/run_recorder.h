#pragma once
// RunRecorder: watches an Engine (cache events, plans, per-layer hooks) and writes what happened
// into a trace through trace::TraceWriter. The engine knows nothing about traces; the trace
// library knows nothing about the engine; this adapter is the only place where both meet.
//
// Trace steps (traces/trace_schema.h): step 0 = the prefill forward with the prompt's compression
// and generated token 0; step s >= 1 = decode of generated token s-1, sampling token s.
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "core/cache/cache_event.h"
#include "core/engine/engine.h"
#include "core/engine/ordered_tasks.h"
#include "core/tokenizer/tokenizer.h"
#include "traces/trace_writer.h"

namespace kvscope::record {

struct RecorderOptions {
    int top_k = 5;
    bool record_rows = false;  // every decode attention row
    bool record_maps = false;  // full prefill attention maps (prompts <= 2048 tokens)
    int64_t window = 32;       // observation window summed into /prefill/window_scores
};

class RunRecorder {
  public:
    RunRecorder(Engine& engine, const Tokenizer& tok, trace::TraceWriter& writer,
                RecorderOptions opt);
    ~RunRecorder();
    RunRecorder(const RunRecorder&) = delete;
    RunRecorder& operator=(const RunRecorder&) = delete;

    // What the engine must compute for the recorder (OR it into EngineOptions::stats).
    static StatsRequest stats_needed(const RecorderOptions& opt, int64_t prompt_len);

    // Writes the metadata and the prompt tokens. spans index prompt tokens.
    void begin(const trace::RunMetadata& meta, const std::vector<int32_t>& prompt_ids);
    // After engine.prefill(): prefill statistics of every layer. Maps (record_maps) were written
    // during the prefill, one layer at a time (Engine::on_prefill_map), so call begin() first.
    void write_prefill();
    // Commits step s: the token sampled from `logits`, with its top-k, entropy, bytes held,
    // budgets, needle survival and the cache events since the previous commit. What depends on
    // the engine is taken now; the log-softmax, top-k and entropy of the logits (three passes
    // over the vocabulary: ~1.5 ms of a 10 ms 8B decode step) and the hand-over to the writer
    // run on a background thread, at most 64 steps and (beyond two steps) 1 GiB of step data
    // behind (run_recorder.cpp). A failure there comes back from the first commit_step() that
    // sees it finished, or from end().
    void commit_step(int32_t token, const std::vector<float>& logits, float time_ms);
    void end(const trace::RunEnd& e);  // after the queued steps

    int64_t steps() const { return step_; }
    std::string generated_text() const { return generated_; }

  private:
    void on_cache_event(const CacheEvent& e);
    void on_plan(const Plan& plan);
    void on_layer(int64_t layer);
    void on_prefill_map(int64_t layer, const std::vector<std::vector<float>>& rows);

    Engine& engine_;
    const Tokenizer& tok_;
    trace::TraceWriter& writer_;
    RecorderOptions opt_;
    int observer_id_ = 0;
    int64_t step_ = 0;
    std::vector<trace::MarkedSpan> spans_;
    std::vector<trace::EventRecord> pending_;
    std::vector<int32_t> budgets_;           // [L*H], -1 = none
    std::vector<trace::AttentionRow> rows_;  // this step's rows (record_rows)
    std::string generated_;
    std::vector<int32_t> generated_ids_;
    // Steps handed to steps_ and not yet seen finished: (task index, bytes of step data).
    std::deque<std::pair<int64_t, size_t>> behind_;
    size_t behind_bytes_ = 0;
    // Steps being finished and handed to the writer (commit_step); last, so that it waits for
    // them before anything they use goes.
    OrderedTasks steps_;
};

}  // namespace kvscope::record
