#pragma once
// What every recorded run needs besides the engine, shared by `kvscope run`, `kvscope whatif`
// and the Studio's live runs: the prompt (text or a built scenario, with its marked needles), the
// trace metadata, and the decode loop that samples, commits steps and stops.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/recorder/run_recorder.h"
#include "core/engine/engine.h"
#include "core/model/model.h"
#include "core/policies/policy.h"
#include "core/tokenizer/tokenizer.h"
#include "traces/trace_reader.h"
#include "traces/trace_schema.h"

namespace kvscope::record {

struct RunInput {
    std::string prompt;                    // the prompt text
    std::vector<int32_t> ids;              // its tokens, BOS included
    std::vector<trace::MarkedSpan> spans;  // "needle" = the queried one, then "needle_2", ...
    std::string answer;                    // expected answer, "" when none
    nlohmann::json scenario;               // what built the prompt (null for plain text)
};

struct ScenarioRequest {
    std::string kind = "niah";  // "passkey" | "niah" | "needles"
    int64_t length = 1024;      // tokens, BOS included
    double depth = 0.5;         // 0 = start, 1 = end
    uint64_t seed = 1;
    int needles = 1;
    // folder; "" = resources/haystacks found from the model's path (needles: the split's folder
    // named in the template set)
    std::string haystack;
    // needles: the template set ("" = resources/needles/templates.json found from the model's
    // path), the split whose templates are drawn, and distractors (as `kvscope eval needles`).
    std::string templates;
    std::string split = "train";
    int distractors = 0;
};

// Builds a passkey / NIAH / template-needles prompt. A needles request with the seed, length and
// depth of a `kvscope eval needles --details` row (length = its context length minus eval's
// --max-new) builds that trial's prompt. Throws InputError.
RunInput build_scenario_input(const Tokenizer& tok, const std::string& model_path,
                              const ScenarioRequest& req);
// A recorded trace's prompt tokens, needles and expected answer (its /meta/run_json prompt).
RunInput input_from_trace(const trace::TraceReader& reader);
// The trace's model path as recorded; a relative one that does not exist from here is looked up
// from the trace's folder and its parents (traces recorded inside a checkout name
// "resources/models/...").
std::string resolve_model_path(const std::filesystem::path& trace, const trace::RunMetadata& meta);
// Plain text; `needle` (optional) is marked where it first occurs, with `answer` expected.
RunInput build_text_input(const Tokenizer& tok, const std::string& prompt,
                          const std::string& needle, const std::string& answer);

struct SamplingOptions {
    int max_new = 32;
    float temperature = 0.0f;
    float top_p = 1.0f;
    uint64_t seed = 0;
    bool ignore_eos = false;
};

// Trace metadata of a run (model, tokenizer, policy + parameters + budget, prompt, sampling).
// `policy` may be null (full cache).
trace::RunMetadata make_run_metadata(const Model& model, const std::string& model_path,
                                     const Tokenizer& tok, const Policy* policy,
                                     const std::string& policy_name, double ratio,
                                     const RunInput& input, const SamplingOptions& sampling,
                                     const std::string& backend, int top_k);

struct DecodeOutcome {
    std::string reason = "max_new_tokens";  // | "eos" | "interrupted" | "cancelled"
    double decode_ms = 0.0;
};

// Samples from `logits` (the prefill's or resume's), commits step 0, then decodes step by step
// until max_new tokens, EOS (unless ignore_eos) or `stop` turns true (checked before each step).
// `progress(steps_done, max_new)` is called after every committed step.
DecodeOutcome decode_and_record(Engine& engine, RunRecorder& rec, std::vector<float> logits,
                                float prefill_ms, const SamplingOptions& opt,
                                const std::atomic<bool>* stop,
                                const std::function<void(int64_t, int64_t)>& progress);

// True when `text` contains the expected answer (the trace's verdict); -1 when none expected.
int8_t answer_verdict(const std::string& text, const std::string& answer);

}  // namespace kvscope::record
