// JSON forms of the trace metadata records (keys = field names, see trace_schema.h).
#include "traces/trace_schema.h"

namespace kvscope::trace {

const char* cache_op_name(CacheOp op) {
    switch (op) {
        case CacheOp::kAppend:
            return "append";
        case CacheOp::kEvict:
            return "evict";
        case CacheOp::kMerge:
            return "merge";
        case CacheOp::kQuantize:
            return "quantize";
        case CacheOp::kDemote:
            return "demote";
    }
    return "unknown";
}

bool prefill_appends_recorded(const RunMetadata& m) {
    auto it = m.extra.find("prefill_appends_recorded");
    return it != m.extra.end() && it->is_boolean() && it->get<bool>();
}

nlohmann::json to_json(const RunMetadata& m) {
    nlohmann::json spans = nlohmann::json::array();
    for (const auto& s : m.spans) {
        spans.push_back({{"begin", s.begin},
                         {"end", s.end},
                         {"label", s.label},
                         {"expected_answer", s.expected_answer}});
    }
    return {
        {"n_layers", m.n_layers},
        {"n_heads", m.n_heads},
        {"n_prompt_tokens", m.n_prompt_tokens},
        {"top_k", m.top_k},
        {"spans", spans},
        {"model_name", m.model_name},
        {"model_path", m.model_path},
        {"architecture", m.architecture},
        {"model_dtype", m.model_dtype},
        {"n_query_heads", m.n_query_heads},
        {"n_kv_heads", m.n_kv_heads},
        {"head_dim", m.head_dim},
        {"model_spec", m.model_spec},
        {"tokenizer", m.tokenizer},
        {"policy", m.policy},
        {"policy_params", m.policy_params},
        {"gqa_aggregation", m.gqa_aggregation},
        {"budget_tokens", m.budget_tokens},
        {"budget_ratio", m.budget_ratio},
        {"window", m.window},
        {"sinks", m.sinks},
        {"prompt", m.prompt},
        {"seed", m.seed},
        {"sampling", m.sampling},
        {"software_version", m.software_version},
        {"device", m.device},
        {"backend", m.backend},
        {"created_utc", m.created_utc},
        {"extra", m.extra},
    };
}

namespace {
// Missing keys keep their defaults so older files with fewer keys still read.
template <typename T>
void get_if(const nlohmann::json& j, const char* key, T& out) {
    auto it = j.find(key);
    if (it != j.end() && !it->is_null()) out = it->get<T>();
}
}  // namespace

RunMetadata run_metadata_from_json(const nlohmann::json& j) {
    RunMetadata m;
    get_if(j, "n_layers", m.n_layers);
    get_if(j, "n_heads", m.n_heads);
    get_if(j, "n_prompt_tokens", m.n_prompt_tokens);
    get_if(j, "top_k", m.top_k);
    if (auto it = j.find("spans"); it != j.end() && it->is_array()) {
        for (const auto& s : *it) {
            MarkedSpan span;
            get_if(s, "begin", span.begin);
            get_if(s, "end", span.end);
            get_if(s, "label", span.label);
            get_if(s, "expected_answer", span.expected_answer);
            m.spans.push_back(span);
        }
    }
    get_if(j, "model_name", m.model_name);
    get_if(j, "model_path", m.model_path);
    get_if(j, "architecture", m.architecture);
    get_if(j, "model_dtype", m.model_dtype);
    get_if(j, "n_query_heads", m.n_query_heads);
    get_if(j, "n_kv_heads", m.n_kv_heads);
    get_if(j, "head_dim", m.head_dim);
    get_if(j, "model_spec", m.model_spec);
    get_if(j, "tokenizer", m.tokenizer);
    get_if(j, "policy", m.policy);
    get_if(j, "policy_params", m.policy_params);
    get_if(j, "gqa_aggregation", m.gqa_aggregation);
    get_if(j, "budget_tokens", m.budget_tokens);
    get_if(j, "budget_ratio", m.budget_ratio);
    get_if(j, "window", m.window);
    get_if(j, "sinks", m.sinks);
    get_if(j, "prompt", m.prompt);
    get_if(j, "seed", m.seed);
    get_if(j, "sampling", m.sampling);
    get_if(j, "software_version", m.software_version);
    get_if(j, "device", m.device);
    get_if(j, "backend", m.backend);
    get_if(j, "created_utc", m.created_utc);
    get_if(j, "extra", m.extra);
    return m;
}

nlohmann::json to_json(const RunEnd& e) {
    return {{"complete", e.complete},     {"reason", e.reason},       {"load_ms", e.load_ms},
            {"prefill_ms", e.prefill_ms}, {"decode_ms", e.decode_ms}, {"extra", e.extra}};
}

RunEnd run_end_from_json(const nlohmann::json& j) {
    RunEnd e;
    get_if(j, "complete", e.complete);
    get_if(j, "reason", e.reason);
    get_if(j, "load_ms", e.load_ms);
    get_if(j, "prefill_ms", e.prefill_ms);
    get_if(j, "decode_ms", e.decode_ms);
    get_if(j, "extra", e.extra);
    return e;
}

}  // namespace kvscope::trace
