#pragma once
// The formula trace: a synthetic, deterministic trace whose every dataset holds values that follow
// simple written formulas, with cache events from a toy policy, built in memory so a test can
// compare what it reads back. Used by the trace tests and the h5py test's writer
// (tests/scripts/make_sample_trace). Its sibling synthetic_trace.h writes the realistic haystack
// trace of the GUI tests and benchmarks.
//
// Formulas (l = layer, h = head, j = prompt position, s = step, P = prompt tokens):
//   token id of prompt position j       = (7 j + 3) mod 1000
//   key_norm[l,h,j]                     = 1 + 0.5 l + 0.25 h + 0.01 j
//   attn_received[l,h,j]                = 1 / (1 + j) + 0.1 h
//   window_scores[l,h,j]                = 0.5 / (P - j)        (NaN for the last layer)
//   density[l,h] = 0.1 (l + 1) + 0.01 h; density_layer[l] = mean over h
//   spearman[l,h] = -0.5 + 0.1 l - 0.05 h; norm_attn_area[l,h] = 0.2 l + 0.1 h
//   budget[s,l,h] = P / 2 + 2 l + h + s;  entropy[s] = 1 + 0.01 s;  time_ms[s] = 5 + 0.5 s
//   topk_logprobs[s,k] = -0.1 (k + 1) - 0.01 s
// Toy policy per (l, h): step 0 appends every prompt position, then for positions j in
// [2, P - 8) with c = (j + l + h) mod 4: c = 0 evict, c = 1 merge into slot j - 1 (weight 0.5),
// c = 2 quantize keys to 4 bits (slot = position throughout; a merge's dst_position is j - 1). Step
// s >= 1 appends position P + s - 1, evicts the held position (3 s + l + h) mod (P + s - 1) if it
// is held, and every 5th step demotes position (s + 2 l + h) mod P to 2 bits. needle_survival is
// the held fraction of each span.
#include <cstdint>
#include <vector>

#include "traces/trace_schema.h"
#include "traces/trace_writer.h"

namespace kvscope::trace {

struct SampleTraceSpec {
    int32_t n_layers = 3;
    int32_t n_heads = 2;
    int64_t n_prompt_tokens = 40;  // spans are added when >= 32
    int64_t n_steps = 25;
    int32_t top_k = 4;
    bool attention_rows = false;
    bool maps = false;
};

struct SampleTrace {
    RunMetadata meta;
    std::vector<TokenRecord> prompt;
    std::vector<PrefillLayerStats> prefill;  // one per layer
    std::vector<std::vector<float>> maps;    // [L][H*P*P] when spec.maps
    std::vector<StepData> steps;
    RunEnd end;
};

SampleTrace make_sample_trace(const SampleTraceSpec& spec = {});

// Writes begin, tokens, prefill (and maps), the first n_steps steps (all when < 0), and end()
// when finish is true.
void write_sample_trace(TraceWriter& writer, const SampleTrace& trace, int64_t n_steps = -1,
                        bool finish = true);

}  // namespace kvscope::trace
