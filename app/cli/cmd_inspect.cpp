// kvscope inspect FILE: prints a summary of a trace and validates it. Exit status: 0 valid,
// 1 inconsistent contents (problems listed) or not a readable trace (InputError naming the file,
// from main); 2 a usage error.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "app/cli/command.h"
#include "core/error.h"
#include "traces/trace_reader.h"

namespace kvscope::cli {
namespace {

using namespace kvscope::trace;

struct InspectArgs {
    std::string file;
    bool quick = false;
    bool layers = false;
    bool json = false;
};

const char* state_name(RunState s);

// --json: the summary and the validation as one document (metadata as stored, counts, spans).
int print_json(const TraceReader& r, bool quick) {
    const TraceInfo info = r.info();
    nlohmann::json spans = nlohmann::json::array();
    const auto found = r.answer_found();
    for (size_t i = 0; i < r.spans().size(); ++i) {
        const auto& s = r.spans()[i];
        spans.push_back({{"label", s.label},
                         {"begin", s.begin},
                         {"end", s.end},
                         {"expected_answer", s.expected_answer},
                         {"answer_found",
                          found[i] < 0 ? nlohmann::json(nullptr) : nlohmann::json(found[i] == 1)}});
    }
    nlohmann::json j = {{"trace", r.path().string()},
                        {"schema_version", info.schema_version},
                        {"state", state_name(info.state)},
                        {"notice", info.notice},
                        {"n_layers", info.n_layers},
                        {"n_heads", info.n_heads},
                        {"n_prompt_tokens", info.n_prompt_tokens},
                        {"n_tokens", info.n_tokens},
                        {"n_steps", info.n_steps},
                        {"n_events", info.n_events},
                        {"run", to_json(r.metadata())},
                        {"spans", spans}};
    if (auto end = r.run_end()) j["end"] = to_json(*end);
    int rc = 0;
    if (!quick) {
        const auto problems = r.validate();
        j["valid"] = problems.empty();
        j["problems"] = problems;
        rc = problems.empty() ? 0 : 1;
    }
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return rc;
}

const char* state_name(RunState s) {
    switch (s) {
        case RunState::kRunning:
            return "incomplete (running or killed)";
        case RunState::kComplete:
            return "complete";
        case RunState::kAborted:
            return "aborted";
    }
    return "?";
}

std::string fmt(float v) {
    if (std::isnan(v)) return "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", static_cast<double>(v));
    return buf;
}

void print_summary(const TraceReader& r, bool per_layer) {
    const TraceInfo info = r.info();
    const RunMetadata& m = r.metadata();
    std::printf("trace:     %s\n", r.path().string().c_str());
    std::printf("schema:    version %d, written by kvscope %s at %s\n", info.schema_version,
                m.software_version.c_str(), m.created_utc.c_str());
    if (info.schema_version < trace::kSchemaVersion)
        std::printf(
            "           read as version %d (traces/SCHEMA.md, Versions); `kvscope upgrade "
            "%s NEW` writes a version %d copy\n",
            trace::kSchemaVersion, r.path().string().c_str(), trace::kSchemaVersion);
    std::printf("state:     %s%s\n", state_name(info.state), info.swmr ? " (opened SWMR)" : "");
    if (!info.notice.empty()) std::printf("notice:    %s\n", info.notice.c_str());
    std::printf("model:     %s (%s, %s) %d layers, %d query / %d KV heads, head_dim %d\n",
                m.model_name.c_str(), m.architecture.c_str(), m.model_dtype.c_str(), m.n_layers,
                m.n_query_heads, m.n_kv_heads, m.head_dim);
    std::printf("tokenizer: %s\n", m.tokenizer.c_str());
    std::printf("policy:    %s %s (GQA aggregation: %s)\n", m.policy.c_str(),
                m.policy_params.dump().c_str(), m.gqa_aggregation.c_str());
    std::printf("budget:    tokens %lld, ratio %g, window %lld, sinks %lld\n",
                static_cast<long long>(m.budget_tokens), m.budget_ratio,
                static_cast<long long>(m.window), static_cast<long long>(m.sinks));
    std::printf("run:       seed %llu, device %s, backend %s\n",
                static_cast<unsigned long long>(m.seed), m.device.c_str(), m.backend.c_str());
    std::printf("axes:      %d layers x %d cache heads, %lld prompt tokens, top-k %d\n",
                info.n_layers, info.n_heads, static_cast<long long>(info.n_prompt_tokens),
                info.top_k);
    std::printf("recorded:  %lld tokens, %lld steps, %lld events, prefill of %d/%d layers%s%s\n",
                static_cast<long long>(info.n_tokens), static_cast<long long>(info.n_steps),
                static_cast<long long>(info.n_events), info.n_prefill_layers_done, info.n_layers,
                info.has_attention_rows ? ", attention rows" : "",
                info.has_maps ? ", prefill maps" : "");
    // Op counts, read in blocks.
    std::array<int64_t, kNumCacheOps> ops{};
    constexpr int64_t kBlock = 1 << 18;
    try {
        for (int64_t b = 0; b < info.n_events; b += kBlock)
            for (const auto& e : r.event_rows(b, std::min(info.n_events, b + kBlock)))
                ++ops[static_cast<size_t>(e.op)];
        std::printf("events:   ");
        for (int k = 0; k < kNumCacheOps; ++k)
            std::printf(" %s %lld", cache_op_name(static_cast<CacheOp>(k)),
                        static_cast<long long>(ops[static_cast<size_t>(k)]));
        std::printf("\n");
    } catch (const InputError& e) {
        // Damaged contents: say so here; the validation below lists every problem.
        std::printf("events:    unreadable (%s)\n", e.problem().c_str());
    }
    if (info.n_steps > 0) {
        int64_t n = std::min<int64_t>(info.n_steps, 16);
        auto toks = r.tokens(info.n_prompt_tokens, info.n_prompt_tokens + n);
        std::string text;
        for (const auto& t : toks) text += t.piece;
        std::printf("output:    \"%s\"%s\n", text.c_str(), info.n_steps > n ? " ..." : "");
        auto last = r.bytes_held(info.n_steps - 1, info.n_steps);
        int64_t total = 0;
        for (int64_t b : last) total += b;
        std::printf("cache:     %lld bytes held after the last step\n",
                    static_cast<long long>(total));
    }
    auto found = r.answer_found();
    for (size_t i = 0; i < r.spans().size(); ++i) {
        const auto& s = r.spans()[i];
        std::printf("span %zu:    \"%s\" tokens [%lld, %lld) expected \"%s\" answer found: %s\n", i,
                    s.label.c_str(), static_cast<long long>(s.begin), static_cast<long long>(s.end),
                    s.expected_answer.c_str(),
                    found[i] == 1   ? "yes"
                    : found[i] == 0 ? "no"
                                    : "unknown");
    }
    if (auto end = r.run_end()) {
        std::printf("timings:   load %.1f ms, prefill %.1f ms, decode %.1f ms (stop: %s)\n",
                    end->load_ms, end->prefill_ms, end->decode_ms, end->reason.c_str());
    }
    if (per_layer && info.n_prefill_layers_done > 0) {
        auto dl = r.density_layer();
        auto sp = r.spearman();
        auto area = r.norm_attn_area();
        std::printf("\nlayer  density  spearman(mean)  norm_attn_area(mean)\n");
        for (int32_t l = 0; l < info.n_layers; ++l) {
            double s = 0, a = 0;
            int ns = 0, na = 0;
            for (int32_t h = 0; h < info.n_heads; ++h) {
                const size_t lh = static_cast<size_t>(l) * static_cast<size_t>(info.n_heads) +
                                  static_cast<size_t>(h);
                float x = sp[lh];
                float y = area[lh];
                if (!std::isnan(x)) s += x, ++ns;
                if (!std::isnan(y)) a += y, ++na;
            }
            std::printf("%5d  %7s  %14s  %20s\n", l, fmt(dl[static_cast<size_t>(l)]).c_str(),
                        fmt(ns ? static_cast<float>(s / ns) : NAN).c_str(),
                        fmt(na ? static_cast<float>(a / na) : NAN).c_str());
        }
    }
}

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<InspectArgs>();
    sub.add_option("file", a->file, "Trace file (.kvtrace.h5)")->required();
    sub.add_flag("--quick", a->quick, "Skip the deep consistency check");
    sub.add_flag("--layers", a->layers, "Also print per-layer density and norm/attention stats");
    sub.add_flag("--json", a->json,
                 "Print the summary and validation as one JSON document on stdout");
    return [a]() {
        TraceReader reader(a->file);
        if (a->json) return print_json(reader, a->quick);
        print_summary(reader, a->layers);
        if (a->quick) return 0;
        auto problems = reader.validate();
        if (problems.empty()) {
            std::printf("valid:     yes\n");
            return 0;
        }
        std::printf("valid:     NO, %zu problem(s):\n", problems.size());
        for (const auto& p : problems) std::printf("  - %s\n", p.c_str());
        return 1;
    };
}

KVSCOPE_COMMAND("inspect", "Summarise and validate a trace file (.kvtrace.h5)", setup);

}  // namespace
}  // namespace kvscope::cli
