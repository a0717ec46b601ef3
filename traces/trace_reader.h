#pragma once
// STATUS: stable (additions only from here on)
// TraceReader: lazy, read-only access to a .kvtrace.h5 file (schema in traces/trace_schema.h).
// Nothing is loaded whole: every accessor reads the hyperslab it needs. Opening reads the
// metadata and the counts only. A trace that is still being written, or whose writer was killed,
// opens in SWMR-read mode; info().notice then says how far it goes, and refresh() picks up steps
// committed since (live follow).
//
// Schema version 1 files open as well, read as version 2: /events/destination is -1 on their
// evict, quantize and demote rows (version 1 stored the slot there; trace_schema.h).
//
// Errors: a file that is missing, not HDF5, truncated, of a newer schema version, or lacks a
// required dataset throws InputError naming the file and the problem, from the constructor.
// Index arguments out of range throw std::out_of_range. Methods are safe to call from several
// threads (one internal mutex), but keep one reader per thread for parallel reads.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "traces/head_counts.h"
#include "traces/trace_schema.h"

namespace kvscope::trace {

struct TraceInfo {
    int32_t schema_version = 0;
    RunState state = RunState::kRunning;
    bool swmr = false;  // opened in SWMR-read mode (run still going, or killed)
    int32_t n_layers = 0;
    int32_t n_heads = 0;
    int32_t top_k = 0;
    int32_t n_spans = 0;
    int64_t n_prompt_tokens = 0;
    int64_t n_tokens = 0;  // readable tokens (P + n_steps unless killed mid-prefill)
    int64_t n_steps = 0;   // committed steps
    int64_t n_events = 0;  // events of the committed steps
    int32_t n_prefill_layers_done = 0;
    bool has_attention_rows = false;
    bool has_maps = false;
    bool prefill_appends = false;  // step 0 appends the prompt (else it is held before step 0)
    std::string notice;            // empty for a complete trace; else e.g. "incomplete trace: ..."
};

// State of one token position in one (layer, head) cache after a step, reconstructed from events.
enum class TokenCacheState : uint8_t {
    kAbsent = 0,     // not appended (yet)
    kHeld = 1,       // held at the precision it was appended with
    kQuantized = 2,  // held at lower precision (bits)
    kDemoted = 3,    // demoted (kept at reduced precision / tier; see the policy)
    kMerged = 4,     // folded into another slot (destination, weight)
    kEvicted = 5,    // dropped
};
const char* token_cache_state_name(TokenCacheState s);

struct TokenState {
    TokenCacheState state = TokenCacheState::kAbsent;
    int8_t bits = 0;            // precision while held, 0 when not held
    int32_t destination = -1;   // slot of the last append / merge target
    float weight = 0.0f;        // merge weight when merged
    int32_t changed_step = -1;  // step of the last event that touched this position
    int32_t merged_into = -1;   // merged: token position of the destination (-1 unknown)
};

class TraceReader {
  public:
    explicit TraceReader(const std::filesystem::path& path);
    ~TraceReader();
    TraceReader(TraceReader&&) noexcept;
    TraceReader& operator=(TraceReader&&) noexcept;
    TraceReader(const TraceReader&) = delete;
    TraceReader& operator=(const TraceReader&) = delete;

    const std::filesystem::path& path() const;
    TraceInfo info() const;
    const RunMetadata& metadata() const;
    std::optional<RunEnd> run_end() const;  // set once the run ended through end()
    // Re-reads the counts of a trace opened in SWMR mode. Returns true when it grew or ended.
    bool refresh();

    // ---- Tokens (indices 0..n_tokens) ----
    std::vector<TokenRecord> tokens(int64_t begin, int64_t end) const;  // with pieces
    std::vector<int32_t> token_ids(int64_t begin, int64_t end) const;
    std::vector<TokenRole> token_roles(int64_t begin, int64_t end) const;
    const std::vector<MarkedSpan>& spans() const;
    std::vector<int8_t> answer_found() const;  // [N]

    // ---- Prefill statistics; vectors of P floats (NaN when not recorded) ----
    bool prefill_layer_done(int32_t layer) const;
    std::vector<float> key_norm(int32_t layer, int32_t head) const;
    std::vector<float> attn_received(int32_t layer, int32_t head) const;
    std::vector<float> window_scores(int32_t layer, int32_t head) const;
    std::vector<int64_t> window_rows() const;                           // [L]
    std::vector<float> density() const;                                 // [L*H]
    std::vector<float> density_layer() const;                           // [L]
    std::vector<float> spearman() const;                                // [L*H]
    std::vector<float> norm_attn_area() const;                          // [L*H]
    std::vector<float> prefill_map(int32_t layer, int32_t head) const;  // [P*P], needs has_maps

    // ---- Steps [begin, end) ----
    std::vector<StepRecord> steps(int64_t begin, int64_t end) const;
    StepRecord step(int64_t s) const;
    std::vector<float> entropy(int64_t begin, int64_t end) const;
    std::vector<int64_t> bytes_held(int64_t begin, int64_t end) const;  // [(end-begin)*L]
    std::vector<int32_t> budgets(int64_t step) const;                   // [L*H]
    std::vector<int32_t> budget_series(int32_t layer, int32_t head, int64_t begin,
                                       int64_t end) const;  // [end-begin]
    // [(end-begin)*L*H] for one span; needs n_spans > 0.
    std::vector<float> needle_survival(int32_t span, int64_t begin, int64_t end) const;

    // ---- Events ----
    std::vector<EventRecord> events(int64_t step_begin, int64_t step_end) const;
    std::vector<EventRecord> events(int32_t layer, int32_t head, int64_t step_begin,
                                    int64_t step_end) const;
    // Rows [row_begin, row_end) of /events (0 <= row_begin <= row_end <= n_events).
    std::vector<EventRecord> event_rows(int64_t row_begin, int64_t row_end) const;
    // State of positions 0..(P+step)-1 of the (layer, head) cache after `step`. The events of a
    // (layer, head) are read once and cached (a few (layer, head) pairs at a time).
    std::vector<TokenState> token_states(int32_t layer, int32_t head, int64_t step) const;

    // ---- Per-head counts after a step (/summary, optional: traces written before it lack it) ----
    bool has_head_counts() const;
    // Counts of every (layer, head) after `step` ([L*H] each); needs has_head_counts().
    HeadCountRow head_counts(int64_t step) const;
    // /summary/prompt_state (optional): the state code (token_state_code.h) of every prompt token
    // of (layer, head) after step 0, [P]. has_prompt_states() is false for traces written before
    // it and until step 0 is committed.
    bool has_prompt_states() const;
    std::vector<uint8_t> prompt_states(int32_t layer, int32_t head) const;
    // The same into `out` (P codes; no zero-filled copy: 84 MB at 80 layers x 8 heads x 128k).
    void prompt_states(int32_t layer, int32_t head, std::span<uint8_t> out) const;

    // ---- Heavy data (only when recorded) ----
    AttentionRow attention_row(int64_t step, int32_t layer, int32_t head) const;

    // Deep consistency check (reads every dataset in chunks). Returns the problems found; empty
    // means valid. Structural problems are already thrown by the constructor.
    std::vector<std::string> validate() const;

    // Reads every dataset of the file in bounded blocks, plus the accessors' own reads (tokens,
    // steps, events, validate()); throws InputError at the first unreadable part. What the
    // isolated probe of an untrusted file runs (trace_probe.h). full = false reads the metadata,
    // every chunk index and only the first and last block of each dataset (large files).
    void read_all(bool full) const;

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
};

// Applies events (in recorded order) to a token-state vector; positions beyond states.size() are
// ignored. Exposed so what-if code and tests can reuse the exact reconstruction rules: append ->
// held (bits, 16 when <= 0), merge -> merged; evict -> evicted, quantize -> quantized, demote ->
// demoted only for a token held at the time (held, quantized, demoted), else nothing changes.
void apply_events(const std::vector<EventRecord>& events, int64_t up_to_step,
                  std::vector<TokenState>& states);

// The prompt is in the cache before step 0's events: `kvscope run` does not record the prefill's
// appends (run_json extra.prefill_appends_recorded = false), other writers may. Returns step 0's
// events of one (layer, head) preceded by an append (16 bits, slot = position) of every prompt
// position 0..n_prompt-1 that `step0` does not append itself.
std::vector<EventRecord> with_prompt_appends(std::span<const EventRecord> step0, int32_t layer,
                                             int32_t head, int64_t n_prompt);

}  // namespace kvscope::trace
