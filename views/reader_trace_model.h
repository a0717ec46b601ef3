#pragma once
// ReaderTraceModel: TraceModel over traces/trace_reader.h. Opening reads the metadata and the
// small [L], [L,H] and [S,L] tables; tokens are read in pages as they are shown; histories,
// prefill vectors, budget rows and needle series are read on first use and cached (histories in
// an LRU bounded by bytes). A trace still being written is followed with refresh(), which extends
// the cached histories with the new steps' events instead of re-reading them.
#include <cstdint>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>
#include <vector>

#include "traces/trace_reader.h"
#include "views/trace_model.h"

namespace kvscope::views {

class ReaderTraceModel final : public TraceModel {
  public:
    // Throws InputError (naming the file and the problem) when the trace cannot be opened.
    explicit ReaderTraceModel(const std::filesystem::path& path,
                              size_t history_cache_bytes = size_t{1} << 30);

    const TraceSummary& summary() const override { return summary_; }

    std::string_view token_text(int64_t token) const override;
    trace::TokenRole token_role(int64_t token) const override;
    int32_t token_id(int64_t token) const override;
    StepInfo step_info(int64_t step) const override;

    std::shared_ptr<const HeadHistory> history(int32_t layer, int32_t head,
                                               Load load) const override;
    bool load_pending(double budget_ms) override;
    bool has_pending() const override {
        return !queued_.empty() || !count_queued_.empty() || !states_queued_.empty();
    }
    // From the trace's /summary rows when it has them (one [L,H] row read per step shown, no
    // events); else from a replay of the head's events whose counts are kept apart from the
    // history LRU, so an overview of every (layer, head) completes in L*H loads whatever the
    // history cache holds.
    std::optional<HeadCounts> head_counts(int32_t layer, int32_t head, int64_t step,
                                          Load load) const override;

    // From /summary/prompt_state and the events of steps >= 1 (views/head_states.h) when the
    // trace has them; use_prompt_states(false) keeps to the replay (tests, benchmarks).
    bool has_head_states() const override;
    std::shared_ptr<const HeadStates> head_states(int32_t layer, int32_t head,
                                                  Load load) const override;
    void use_prompt_states(bool on) { use_prompt_states_ = on; }
    size_t cached_state_bytes() const { return state_bytes_; }

    int32_t budget(int64_t step, int32_t layer, int32_t head) const override;
    bool has_budgets() const override;
    int64_t bytes_held(int64_t step, int32_t layer) const override;

    std::shared_ptr<const std::vector<float>> key_norm(int32_t layer, int32_t head) const override;
    std::shared_ptr<const std::vector<float>> attn_received(int32_t layer,
                                                            int32_t head) const override;
    std::vector<float> window_scores(int32_t layer, int32_t head) const override;
    float spearman(int32_t layer, int32_t head) const override;
    float density(int32_t layer, int32_t head) const override;
    float density_layer(int32_t layer) const override;

    const std::vector<trace::MarkedSpan>& spans() const override { return reader_.spans(); }
    int8_t answer_found(int32_t span) const override;
    float needle_survival(int32_t span, int64_t step, int32_t layer, int32_t head) const override;

    bool refresh() override;
    std::string take_error() override;

    const trace::TraceReader& reader() const { return reader_; }
    size_t cached_history_bytes() const { return history_bytes_; }
    // Heads whose later loads were held back: the views' working set outgrew the history cache
    // (every cached history was asked for in the last frame). They answer nullptr, unqueued,
    // until a cached history goes unused for a frame; memory stays within the cache budget and a
    // view that asks for more than fits completes with those heads missing instead of loading
    // and evicting forever.
    size_t deferred_histories() const { return deferred_.size(); }

  private:
    static constexpr int64_t kTokenPage = 2048;
    struct TokenPage {
        std::vector<trace::TokenRecord> tokens;
    };
    struct CachedHistory {
        std::shared_ptr<HeadHistory> history;
        std::list<int64_t>::iterator lru;
        size_t bytes = 0;
        int64_t used_frame = 0;  // frame_ when last asked for
    };

    // Runs a reader call; on an exception records its message and returns `fallback`.
    template <typename F, typename T>
    T guarded(F&& read, T fallback) const;
    void fill_summary();
    void load_tables();
    const trace::TokenRecord* token_record(int64_t token) const;
    int64_t lh_key(int32_t layer, int32_t head) const {
        return static_cast<int64_t>(layer) * summary_.n_heads + head;
    }
    bool valid_lh(int32_t layer, int32_t head) const {
        return layer >= 0 && layer < summary_.n_layers && head >= 0 && head < summary_.n_heads;
    }
    std::shared_ptr<HeadHistory> build_history(int32_t layer, int32_t head) const;
    void extend_history(HeadHistory& h) const;
    void insert_history(int64_t key, std::shared_ptr<HeadHistory> h) const;
    bool room_for_history() const;
    // Per-step counts of one head, [S] (the fallback for traces without /summary).
    using CountSeries = std::vector<HeadCounts>;
    static CountSeries count_series(const HeadHistory& h);
    const trace::HeadCountRow* count_row(int64_t step) const;
    std::shared_ptr<HeadStates> build_states(int32_t layer, int32_t head) const;
    void extend_states(HeadStates& h) const;
    void insert_states(int64_t key, std::shared_ptr<HeadStates> h) const;
    // Reads the events of steps [1, S) of every head at once when they are few (decode steps);
    // false when there are too many to hold (then each head reads its own).
    bool read_decode_events() const;
    std::shared_ptr<const std::vector<float>> prefill_vector(bool norms, int32_t layer,
                                                             int32_t head) const;

    trace::TraceReader reader_;
    TraceSummary summary_;
    size_t history_cache_bytes_;

    std::vector<float> spearman_;       // [L*H]
    std::vector<float> density_;        // [L*H]
    std::vector<float> density_layer_;  // [L]
    std::vector<int64_t> bytes_held_;   // [S*L]
    std::vector<int8_t> answer_found_;  // [N]

    mutable std::map<int64_t, TokenPage> token_pages_;
    mutable std::map<int64_t, StepInfo> step_infos_;
    mutable std::vector<std::vector<int32_t>> budget_rows_;  // [S][L*H], empty = not read
    mutable int has_budgets_ = -1;
    mutable std::map<std::pair<int64_t, bool>, std::shared_ptr<const std::vector<float>>>
        prefill_vectors_;
    mutable std::map<int32_t, std::vector<float>> needle_series_;  // span -> [S*L*H]

    mutable std::unordered_map<int64_t, CachedHistory> histories_;
    mutable std::list<int64_t> lru_;  // most recent first
    mutable size_t history_bytes_ = 0;
    mutable std::set<int64_t> queued_;
    mutable std::set<int64_t> deferred_;
    int64_t frame_ = 1;                      // load_pending calls: one per frame in the Studio
    mutable size_t last_history_bytes_ = 0;  // size estimate of the next history
    // Head counts: /summary rows by step (a bounded cache), or replayed series by (layer, head).
    mutable std::map<int64_t, trace::HeadCountRow> count_rows_;
    mutable std::unordered_map<int64_t, CountSeries> count_series_;
    mutable std::set<int64_t> count_queued_;
    mutable bool summary_broken_ = false;  // a /summary row could not be read
    // Token states from /summary/prompt_state (head_states()), by (layer, head); bounded by
    // kStateCacheBytes beyond what the views hold.
    static constexpr size_t kStateCacheBytes = size_t{512} << 20;
    static constexpr size_t kMaxDecodeEvents = size_t{1} << 21;  // ~100 MB of EventRecord
    bool use_prompt_states_ = true;
    mutable std::unordered_map<int64_t, std::shared_ptr<HeadStates>> states_;
    mutable size_t state_bytes_ = 0;
    mutable std::set<int64_t> states_queued_;
    mutable bool states_broken_ = false;  // a /summary/prompt_state row could not be read
    // Events of steps [1, decode_steps_) of every head grouped by (layer, head): rows
    // [decode_begin_[k], decode_begin_[k + 1]) of decode_events_ are head k's, in step order.
    mutable std::vector<trace::EventRecord> decode_events_;
    mutable std::vector<size_t> decode_begin_;
    mutable int64_t decode_steps_ = 0;  // 0: not read (or too many)
    mutable std::string error_;
};

}  // namespace kvscope::views
