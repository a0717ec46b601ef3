#pragma once
// The realistic synthetic trace ("haystack" content): what no model run here can make, for the
// GUI tests (a slowly written trace followed live), bench/bench_studio_frames (32 x 8 x 32k and
// larger) and demos, written through the trace writer API (traces/trace_writer.h); nothing here
// runs a model. Its sibling sample_trace.h is the formula trace of the format tests; both are the
// one generator library of traces/synthetic/ and the tool kvscope-synthetic-trace.
//
// Content: a needle-in-a-haystack prompt (English haystack, "The secret passkey is 48213."
// planted at ~40% depth, a question at the end) tokenised into word pieces; an answer generated
// over the steps. Prefill attention (column sums, per layer and head) follows the usual shapes:
// attention sinks on the first tokens, a recency ramp, heavy hitters on punctuation, sharper
// heads in deeper layers, and retrieval heads (odd heads in the upper half) that attend to the
// needle. Key norms are anti-correlated with attention (strongly in deep layers, weakly in layers
// 0-1), so Spearman rho varies by layer. Spearman, D2O density and the norm/attention area are
// computed from these arrays with core/probes.
//
// Policy "synthetic demo (D2O budgets + merges, MiKV precision)": D2O-style per-layer budgets
// from softmax(-density) with layers {0, 1, L-1} uncompressed; at the prefill each compressed
// (layer, head) keeps sinks + heavy hitters + a recent window, merges evicted tokens whose
// (synthetic) key similarity passes a threshold into their nearest kept token and evicts the
// rest; kept tokens outside the top third by score are quantised to 4 bits (the lowest to 2).
// The prompt's appends are not recorded (as with `kvscope run`: run_json
// extra.prefill_appends_recorded = false); step 0 holds the compression's events only.
// Each decode step appends the fed token, evicts or merges the lowest cumulative score when over
// budget, and every 4th step demotes one more token by a precision level.
// Merge destinations are slot indices as the schema defines them: the rank of the target among
// the held positions (slots in position order) after the merge's sources are removed.
#include <cstdint>
#include <filesystem>

#include "traces/trace_writer.h"

namespace kvscope::trace {

struct SyntheticSpec {
    int32_t n_layers = 8;
    int32_t n_heads = 4;
    int32_t head_dim = 64;
    int64_t n_prompt_tokens = 0;  // 0 = the haystack text once (~250 tokens); more repeats it
    int64_t n_steps = 24;
    int64_t window = 8;  // recent tokens always kept
    int64_t sinks = 4;
    double budget_ratio = 0.35;  // mean kept fraction of the compressed layers
    uint64_t seed = 7;
    int delay_ms = 0;  // pause after each committed step (live-follow tests, demos)
};

// Writes the whole trace through `writer` (begin ... end). Deterministic for a spec.
void write_synthetic_trace(TraceWriter& writer, const SyntheticSpec& spec);
// Convenience: opens a writer on `path` and writes the trace.
void write_synthetic_trace(const std::filesystem::path& path, const SyntheticSpec& spec);

}  // namespace kvscope::trace
