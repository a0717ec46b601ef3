// Synthetic trace generator (formulas in sample_trace.h).
#include "traces/synthetic/sample_trace.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "traces/trace_reader.h"

namespace kvscope::trace {

namespace {
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::string prompt_piece(int64_t j) {
    // Positions 5 and 6 split the two bytes of "é": pieces need not be valid UTF-8 alone.
    if (j == 5) return "\xC3";
    if (j == 6) return "\xA9 ";
    std::string s = "w" + std::to_string(j);
    if (j % 7 == 3) s += "\xC3\xA9";  // é
    if (j % 11 == 4) s += "\"q,\n";   // CSV-hostile characters
    return s + " ";
}

std::string generated_piece(int64_t s) {
    if (s == 5) return " blue";
    if (s == 6) return "42";
    return " g" + std::to_string(s);
}

bool held(const TokenState& t) {
    return t.state == TokenCacheState::kHeld || t.state == TokenCacheState::kQuantized ||
           t.state == TokenCacheState::kDemoted;
}
}  // namespace

SampleTrace make_sample_trace(const SampleTraceSpec& spec) {
    SampleTrace t;
    const int32_t L = spec.n_layers, H = spec.n_heads, K = spec.top_k;
    const int64_t P = spec.n_prompt_tokens;
    RunMetadata& m = t.meta;
    m.n_layers = L;
    m.n_heads = H;
    m.n_prompt_tokens = P;
    m.top_k = K;
    if (P >= 32) {
        m.spans = {{10, 14, "needle", "blue42"},
                   {20, 22, "distractor", "absent-xyz"},
                   {30, 31, "marker", ""}};
    }
    m.model_name = "sample-model";
    m.model_path = "models/sample";
    m.architecture = "llama";
    m.model_dtype = "fp32";
    m.n_query_heads = 2 * H;
    m.n_kv_heads = H;
    m.head_dim = 16;
    m.model_spec = {{"hidden_size", 64}, {"num_hidden_layers", L}, {"rope_theta", 10000.0}};
    m.tokenizer = "tokenizer.json (byte-level BPE)";
    m.policy = "toy";
    m.policy_params = {{"merge_weight", 0.5}, {"quant_bits", 4}};
    m.gqa_aggregation = "mean";
    m.budget_tokens = P / 2;
    m.window = 8;
    m.sinks = 2;
    m.prompt = "synthetic prompt";
    m.seed = 1234;
    m.sampling = {{"temperature", 0.0}, {"max_new_tokens", spec.n_steps}};
    m.device = "CPU (synthetic)";
    m.backend = "cpu";
    m.extra = {{"generator", "traces/synthetic/sample_trace.cpp"},
               {"prefill_appends_recorded", true}};

    for (int64_t j = 0; j < P; ++j)
        t.prompt.push_back(
            {static_cast<int32_t>((7 * j + 3) % 1000), prompt_piece(j), TokenRole::kPrompt, 0});

    for (int32_t l = 0; l < L; ++l) {
        PrefillLayerStats s;
        s.layer = l;
        float dsum = 0;
        for (int32_t h = 0; h < H; ++h) {
            for (int64_t j = 0; j < P; ++j) {
                s.key_norm.push_back(1.0f + 0.5f * l + 0.25f * h + 0.01f * static_cast<float>(j));
                s.attn_received.push_back(1.0f / (1.0f + static_cast<float>(j)) + 0.1f * h);
                if (l != L - 1) s.window_scores.push_back(0.5f / static_cast<float>(P - j));
            }
            s.density.push_back(0.1f * (l + 1) + 0.01f * h);
            dsum += s.density.back();
            s.spearman.push_back(-0.5f + 0.1f * l - 0.05f * h);
            s.norm_attn_area.push_back(0.2f * l + 0.1f * h);
        }
        s.window_rows = l != L - 1 ? 8 : 0;
        s.density_layer = dsum / static_cast<float>(H);
        t.prefill.push_back(std::move(s));
        if (spec.maps) {
            std::vector<float> map(static_cast<size_t>(H * P * P), 0.0f);
            for (int32_t h = 0; h < H; ++h)
                for (int64_t q = 0; q < P; ++q)
                    for (int64_t k = 0; k <= q; ++k)
                        map[static_cast<size_t>((h * P + q) * P + k)] =
                            1.0f / static_cast<float>(q + 1);
            t.maps.push_back(std::move(map));
        }
    }

    // Toy policy, simulated with the reader's reconstruction rules.
    std::vector<std::vector<TokenState>> states(static_cast<size_t>(L * H));
    for (int64_t s = 0; s < spec.n_steps; ++s) {
        StepData d;
        const int64_t n_ctx = P + s;
        for (int32_t h = H - 1; h >= 0; --h) {  // unsorted on purpose: the writer sorts
            for (int32_t l = L - 1; l >= 0; --l) {
                auto& st = states[static_cast<size_t>(l) * H + h];
                st.resize(static_cast<size_t>(n_ctx));
                std::vector<EventRecord> ev;
                auto add = [&](CacheOp op, int64_t pos, int32_t dest, float w, float sim, float thr,
                               int8_t bits) {
                    EventRecord e{static_cast<int32_t>(s),
                                  l,
                                  h,
                                  op,
                                  static_cast<int32_t>(pos),
                                  dest,
                                  w,
                                  sim,
                                  thr,
                                  bits};
                    // Slots equal positions in this toy (no compaction); merges name the
                    // destination token, quantisation touches keys only.
                    e.slot = op == CacheOp::kAppend ? dest : static_cast<int32_t>(pos);
                    e.dst_position = op == CacheOp::kMerge ? dest : -1;
                    e.part = op == CacheOp::kQuantize ? 0 : 2;
                    ev.push_back(e);
                };
                if (s == 0) {
                    for (int64_t j = 0; j < P; ++j)
                        add(CacheOp::kAppend, j, static_cast<int32_t>(j), kNaN, kNaN, kNaN, 16);
                    for (int64_t j = 2; j < P - 8; ++j) {
                        int64_t c = (j + l + h) % 4;
                        float thr = 0.01f * static_cast<float>(l + 1);
                        if (c == 0) add(CacheOp::kEvict, j, -1, kNaN, kNaN, thr, 0);
                        if (c == 1)
                            add(CacheOp::kMerge, j, static_cast<int32_t>(j - 1), 0.5f, 0.9f, thr,
                                0);
                        if (c == 2) add(CacheOp::kQuantize, j, -1, kNaN, kNaN, thr, 4);
                    }
                } else {
                    add(CacheOp::kAppend, n_ctx - 1, static_cast<int32_t>(n_ctx - 1), kNaN, kNaN,
                        kNaN, 16);
                    int64_t victim = (3 * s + l + h) % (n_ctx - 1);
                    if (held(st[static_cast<size_t>(victim)]))
                        add(CacheOp::kEvict, victim, -1, kNaN, kNaN, 0.02f, 0);
                    if (s % 5 == 0) {
                        int64_t p = (s + 2 * l + h) % P;
                        add(CacheOp::kDemote, p, -1, kNaN, kNaN, kNaN, 2);
                    }
                }
                apply_events(ev, s, st);
                d.events.insert(d.events.end(), ev.begin(), ev.end());
            }
        }
        StepRecord& r = d.record;
        r.step = s;
        r.token_id = static_cast<int32_t>(500 + s);
        r.piece = generated_piece(s);
        for (int32_t k = 0; k < K && k < 3 + static_cast<int32_t>(s % 2); ++k) {
            r.topk_ids.push_back(k == 0 ? r.token_id : static_cast<int32_t>(900 + k));
            r.topk_logprobs.push_back(-0.1f * static_cast<float>(k + 1) -
                                      0.01f * static_cast<float>(s));
        }
        r.entropy = 1.0f + 0.01f * static_cast<float>(s);
        r.time_ms = 5.0f + 0.5f * static_cast<float>(s);
        for (int32_t l = 0; l < L; ++l) {
            int64_t n = 0;
            for (int32_t h = 0; h < H; ++h)
                for (const auto& ts : states[static_cast<size_t>(l) * H + h]) n += held(ts);
            r.bytes_held.push_back(n * 2 * 16 * 4);  // K and V, head_dim 16, fp32
        }
        for (int32_t l = 0; l < L; ++l)
            for (int32_t h = 0; h < H; ++h)
                d.budgets.push_back(static_cast<int32_t>(P / 2 + 2 * l + h + s));
        for (const auto& span : m.spans) {
            for (int32_t l = 0; l < L; ++l) {
                for (int32_t h = 0; h < H; ++h) {
                    const auto& st = states[static_cast<size_t>(l) * H + h];
                    int64_t kept = 0;
                    for (int64_t p = span.begin; p < span.end; ++p)
                        kept += held(st[static_cast<size_t>(p)]);
                    d.needle_survival.push_back(static_cast<float>(kept) /
                                                static_cast<float>(span.end - span.begin));
                }
            }
        }
        if (spec.attention_rows) {
            for (int32_t l = 0; l < L; ++l) {
                for (int32_t h = 0; h < H; ++h) {
                    AttentionRow row;
                    row.layer = l;
                    row.head = h;
                    const auto& st = states[static_cast<size_t>(l) * H + h];
                    for (size_t p = 0; p < st.size(); ++p)
                        if (held(st[p])) row.positions.push_back(static_cast<int32_t>(p));
                    for (size_t i = 0; i < row.positions.size(); ++i)
                        row.values.push_back(1.0f / static_cast<float>(row.positions.size()));
                    d.attention.push_back(std::move(row));
                }
            }
        }
        t.steps.push_back(std::move(d));
    }
    t.end.complete = true;
    t.end.reason = "max_new_tokens";
    t.end.load_ms = 12.5;
    t.end.prefill_ms = 30.25;
    t.end.decode_ms = 7.0 * static_cast<double>(spec.n_steps);
    return t;
}

void write_sample_trace(TraceWriter& w, const SampleTrace& t, int64_t n_steps, bool finish) {
    w.begin(t.meta);
    w.write_tokens(t.prompt);
    for (const auto& p : t.prefill) w.write_prefill(p);
    for (size_t l = 0; l < t.maps.size(); ++l)
        w.write_prefill_map(static_cast<int32_t>(l), t.maps[l]);
    const int64_t n = n_steps < 0
                          ? static_cast<int64_t>(t.steps.size())
                          : std::min<int64_t>(n_steps, static_cast<int64_t>(t.steps.size()));
    for (int64_t s = 0; s < n; ++s) w.write_step(t.steps[static_cast<size_t>(s)]);
    if (finish) w.end(t.end);
}

}  // namespace kvscope::trace
