// Round trip of every dataset: write the synthetic sample trace, read each part back through
// TraceReader and compare with what was written (exact: float32 values are stored as float32).
#include <gtest/gtest.h>

#include <array>
#include <string>

#include "tests/traces/trace_test_support.h"
#include "traces/synthetic/sample_trace.h"
#include "traces/trace_reader.h"
#include "traces/trace_writer.h"

namespace kvscope::trace {
namespace {

using testing::expect_same_events;
using testing::expect_same_floats;
using testing::ScratchDir;
using testing::stored_order;

class RoundTrip : public ::testing::Test {
  protected:
    void SetUp() override {
        SampleTraceSpec spec;
        spec.attention_rows = true;
        spec.maps = true;
        sample_ = make_sample_trace(spec);
        path_ = dir_ / "sample.kvtrace.h5";
        TraceWriter w(path_, {.record_attention_rows = true, .record_maps = true});
        write_sample_trace(w, sample_);
    }
    ScratchDir dir_;
    SampleTrace sample_;
    std::filesystem::path path_;
};

TEST_F(RoundTrip, InfoAndMetadata) {
    TraceReader r(path_);
    const TraceInfo info = r.info();
    EXPECT_EQ(info.schema_version, kSchemaVersion);
    EXPECT_EQ(info.state, RunState::kComplete);
    EXPECT_FALSE(info.swmr);
    EXPECT_TRUE(info.notice.empty()) << info.notice;
    EXPECT_EQ(info.n_layers, 3);
    EXPECT_EQ(info.n_heads, 2);
    EXPECT_EQ(info.n_prompt_tokens, 40);
    EXPECT_EQ(info.n_steps, 25);
    EXPECT_EQ(info.n_tokens, 65);
    EXPECT_EQ(info.top_k, 4);
    EXPECT_EQ(info.n_spans, 3);
    EXPECT_EQ(info.n_prefill_layers_done, 3);
    EXPECT_TRUE(info.has_attention_rows);
    EXPECT_TRUE(info.has_maps);
    size_t total_events = 0;
    for (const auto& s : sample_.steps) total_events += s.events.size();
    EXPECT_EQ(info.n_events, static_cast<int64_t>(total_events));

    const RunMetadata& m = r.metadata();
    const RunMetadata& w = sample_.meta;
    EXPECT_EQ(m.model_name, w.model_name);
    EXPECT_EQ(m.model_path, w.model_path);
    EXPECT_EQ(m.architecture, w.architecture);
    EXPECT_EQ(m.model_dtype, w.model_dtype);
    EXPECT_EQ(m.n_query_heads, w.n_query_heads);
    EXPECT_EQ(m.n_kv_heads, w.n_kv_heads);
    EXPECT_EQ(m.head_dim, w.head_dim);
    EXPECT_EQ(m.model_spec, w.model_spec);
    EXPECT_EQ(m.tokenizer, w.tokenizer);
    EXPECT_EQ(m.policy, w.policy);
    EXPECT_EQ(m.policy_params, w.policy_params);
    EXPECT_EQ(m.gqa_aggregation, w.gqa_aggregation);
    EXPECT_EQ(m.budget_tokens, w.budget_tokens);
    EXPECT_EQ(m.budget_ratio, w.budget_ratio);
    EXPECT_EQ(m.window, w.window);
    EXPECT_EQ(m.sinks, w.sinks);
    EXPECT_EQ(m.prompt, w.prompt);
    EXPECT_EQ(m.seed, w.seed);
    EXPECT_EQ(m.sampling, w.sampling);
    EXPECT_EQ(m.device, w.device);
    EXPECT_EQ(m.backend, w.backend);
    EXPECT_EQ(m.extra, w.extra);
    EXPECT_FALSE(m.software_version.empty());
    EXPECT_EQ(m.created_utc.size(), 20u) << m.created_utc;  // 2025-01-31T12:00:00Z

    auto end = r.run_end();
    ASSERT_TRUE(end.has_value());
    EXPECT_TRUE(end->complete);
    EXPECT_EQ(end->reason, "max_new_tokens");
    EXPECT_DOUBLE_EQ(end->load_ms, 12.5);
    EXPECT_DOUBLE_EQ(end->prefill_ms, 30.25);
    EXPECT_DOUBLE_EQ(end->decode_ms, 175.0);
    EXPECT_TRUE(r.validate().empty());
}

TEST_F(RoundTrip, TokensAndSpans) {
    TraceReader r(path_);
    auto toks = r.tokens(0, 65);
    ASSERT_EQ(toks.size(), 65u);
    int64_t offset = 0;
    for (size_t i = 0; i < toks.size(); ++i) {
        const bool prompt = i < 40;
        const int32_t id = prompt ? sample_.prompt[i].id : sample_.steps[i - 40].record.token_id;
        const std::string& piece =
            prompt ? sample_.prompt[i].piece : sample_.steps[i - 40].record.piece;
        EXPECT_EQ(toks[i].id, id) << i;
        EXPECT_EQ(toks[i].piece, piece) << i;
        EXPECT_EQ(toks[i].role, prompt ? TokenRole::kPrompt : TokenRole::kGenerated) << i;
        EXPECT_EQ(toks[i].text_offset, offset) << i;
        offset += static_cast<int64_t>(piece.size());
    }
    // A slice in the middle reads the same as the whole.
    auto mid = r.tokens(38, 43);
    ASSERT_EQ(mid.size(), 5u);
    EXPECT_EQ(mid[0].piece, toks[38].piece);
    EXPECT_EQ(mid[4].piece, toks[42].piece);
    EXPECT_EQ(r.token_ids(5, 7), (std::vector<int32_t>{38, 45}));
    auto roles = r.token_roles(39, 41);
    EXPECT_EQ(roles[0], TokenRole::kPrompt);
    EXPECT_EQ(roles[1], TokenRole::kGenerated);
    EXPECT_TRUE(r.tokens(65, 65).empty());
    EXPECT_THROW(r.tokens(60, 66), std::out_of_range);

    ASSERT_EQ(r.spans().size(), 3u);
    EXPECT_EQ(r.spans()[0].begin, 10);
    EXPECT_EQ(r.spans()[0].end, 14);
    EXPECT_EQ(r.spans()[0].label, "needle");
    EXPECT_EQ(r.spans()[0].expected_answer, "blue42");
    EXPECT_EQ(r.spans()[2].expected_answer, "");
    // " blue" + "42" were generated: found; "absent-xyz" not; no expectation: unknown.
    EXPECT_EQ(r.answer_found(), (std::vector<int8_t>{1, 0, -1}));
}

TEST_F(RoundTrip, PrefillStatistics) {
    TraceReader r(path_);
    const size_t P = 40;
    std::vector<float> density, spearman, area, dl;
    for (int32_t l = 0; l < 3; ++l) {
        const auto& p = sample_.prefill[static_cast<size_t>(l)];
        EXPECT_TRUE(r.prefill_layer_done(l));
        for (int32_t h = 0; h < 2; ++h) {
            auto slice = [&](const std::vector<float>& v) {
                if (v.empty()) return std::vector<float>(P, std::nanf(""));
                return std::vector<float>(v.begin() + static_cast<std::ptrdiff_t>(h * P),
                                          v.begin() + static_cast<std::ptrdiff_t>((h + 1) * P));
            };
            std::string at = " l" + std::to_string(l) + " h" + std::to_string(h);
            expect_same_floats(r.key_norm(l, h), slice(p.key_norm), "key_norm" + at);
            expect_same_floats(r.attn_received(l, h), slice(p.attn_received), "attn" + at);
            // The last layer recorded no window scores: NaN.
            expect_same_floats(r.window_scores(l, h), slice(p.window_scores), "window" + at);
            expect_same_floats(r.prefill_map(l, h),
                               std::vector<float>(sample_.maps[static_cast<size_t>(l)].begin() +
                                                      static_cast<std::ptrdiff_t>(h * P * P),
                                                  sample_.maps[static_cast<size_t>(l)].begin() +
                                                      static_cast<std::ptrdiff_t>((h + 1) * P * P)),
                               "map" + at);
        }
        density.insert(density.end(), p.density.begin(), p.density.end());
        spearman.insert(spearman.end(), p.spearman.begin(), p.spearman.end());
        area.insert(area.end(), p.norm_attn_area.begin(), p.norm_attn_area.end());
        dl.push_back(p.density_layer);
    }
    expect_same_floats(r.density(), density, "density");
    expect_same_floats(r.spearman(), spearman, "spearman");
    expect_same_floats(r.norm_attn_area(), area, "norm_attn_area");
    expect_same_floats(r.density_layer(), dl, "density_layer");
    // Spot check against the written formula: key_norm[2,1,7] = 1 + 1.0 + 0.25 + 0.07.
    EXPECT_NEAR(r.key_norm(2, 1)[7], 2.32f, 1e-6f);
    EXPECT_THROW(r.key_norm(3, 0), std::out_of_range);
}

TEST_F(RoundTrip, StepsBudgetsSurvival) {
    TraceReader r(path_);
    auto steps = r.steps(0, 25);
    ASSERT_EQ(steps.size(), 25u);
    int64_t event_row = 0;
    for (size_t s = 0; s < 25; ++s) {
        const StepRecord& want = sample_.steps[s].record;
        const StepRecord& got = steps[s];
        EXPECT_EQ(got.step, static_cast<int64_t>(s));
        EXPECT_EQ(got.token_id, want.token_id);
        EXPECT_EQ(got.topk_ids, want.topk_ids) << s;  // 3 or 4 entries; padding is dropped
        expect_same_floats(got.topk_logprobs, want.topk_logprobs, "topk_logprobs");
        EXPECT_EQ(got.entropy, want.entropy);
        EXPECT_EQ(got.time_ms, want.time_ms);
        EXPECT_EQ(got.bytes_held, want.bytes_held);
        EXPECT_EQ(got.event_begin, event_row);
        EXPECT_EQ(got.event_count, static_cast<int64_t>(sample_.steps[s].events.size()));
        event_row += got.event_count;
        EXPECT_EQ(r.budgets(static_cast<int64_t>(s)), sample_.steps[s].budgets);
    }
    EXPECT_EQ(r.step(6).piece, "42");
    auto ent = r.entropy(3, 6);
    ASSERT_EQ(ent.size(), 3u);
    EXPECT_FLOAT_EQ(ent[0], 1.03f);
    auto bytes = r.bytes_held(24, 25);
    EXPECT_EQ(bytes, sample_.steps[24].record.bytes_held);
    // budget[s,l,h] = P/2 + 2l + h + s
    auto series = r.budget_series(2, 1, 10, 13);
    EXPECT_EQ(series, (std::vector<int32_t>{20 + 4 + 1 + 10, 36, 37}));
    for (int32_t span = 0; span < 3; ++span) {
        auto v = r.needle_survival(span, 0, 25);
        ASSERT_EQ(v.size(), 25u * 6u);
        for (size_t s = 0; s < 25; ++s) {
            const auto& want = sample_.steps[s].needle_survival;
            std::vector<float> w(want.begin() + static_cast<std::ptrdiff_t>(span) * 6,
                                 want.begin() + (static_cast<std::ptrdiff_t>(span) + 1) * 6);
            std::vector<float> g(v.begin() + static_cast<std::ptrdiff_t>(s * 6),
                                 v.begin() + static_cast<std::ptrdiff_t>((s + 1) * 6));
            expect_same_floats(g, w, "needle_survival");
        }
    }
    EXPECT_THROW(r.steps(20, 26), std::out_of_range);
    EXPECT_THROW(r.needle_survival(3, 0, 1), std::out_of_range);
}

TEST_F(RoundTrip, EventsByStepAndByLayerHead) {
    TraceReader r(path_);
    std::vector<EventRecord> all;
    for (const auto& s : sample_.steps) {
        auto sorted = stored_order(s.events);
        all.insert(all.end(), sorted.begin(), sorted.end());
    }
    expect_same_events(r.events(0, 25), all, "events(0,25)");
    expect_same_events(r.event_rows(0, static_cast<int64_t>(all.size())), all, "event_rows");
    expect_same_events(r.events(7, 8), stored_order(sample_.steps[7].events), "events(7,8)");
    for (int32_t l = 0; l < 3; ++l) {
        for (int32_t h = 0; h < 2; ++h) {
            std::vector<EventRecord> want;
            for (const auto& e : all)
                if (e.layer == l && e.head == h && e.step >= 3 && e.step < 20) want.push_back(e);
            expect_same_events(r.events(l, h, 3, 20), want, "events(l,h,3,20)");
        }
    }
    // Every op kind occurs in the sample.
    std::array<int, kNumCacheOps> ops{};
    for (const auto& e : all) ++ops[static_cast<size_t>(e.op)];
    for (int k = 0; k < kNumCacheOps; ++k) EXPECT_GT(ops[static_cast<size_t>(k)], 0) << k;
}

TEST_F(RoundTrip, TokenStatesMatchTheSimulation) {
    TraceReader r(path_);
    for (int32_t l = 0; l < 3; ++l) {
        for (int32_t h = 0; h < 2; ++h) {
            std::vector<EventRecord> lh;
            for (const auto& s : sample_.steps)
                for (const auto& e : s.events)
                    if (e.layer == l && e.head == h) lh.push_back(e);
            for (int64_t step : {0, 1, 5, 24}) {
                std::vector<TokenState> want(static_cast<size_t>(40 + step));
                apply_events(lh, step, want);
                auto got = r.token_states(l, h, step);
                ASSERT_EQ(got.size(), want.size());
                for (size_t p = 0; p < got.size(); ++p) {
                    ASSERT_EQ(got[p].state, want[p].state) << l << h << step << " pos " << p;
                    ASSERT_EQ(got[p].bits, want[p].bits);
                    ASSERT_EQ(got[p].destination, want[p].destination);
                    ASSERT_EQ(got[p].changed_step, want[p].changed_step);
                    ASSERT_EQ(got[p].merged_into, want[p].merged_into);
                }
            }
        }
    }
    // Layer 0 head 0, step 0: position 4 ((4 + 0 + 0) mod 4 = 0) evicted, 5 merged into slot 4,
    // 6 quantised to 4 bits, 7 held, 39 (in the window) held.
    auto st = r.token_states(0, 0, 0);
    ASSERT_EQ(st.size(), 40u);
    EXPECT_EQ(st[4].state, TokenCacheState::kEvicted);
    EXPECT_EQ(st[5].state, TokenCacheState::kMerged);
    EXPECT_EQ(st[5].destination, 4);
    EXPECT_EQ(st[5].merged_into, 4);
    EXPECT_FLOAT_EQ(st[5].weight, 0.5f);
    EXPECT_EQ(st[6].state, TokenCacheState::kQuantized);
    EXPECT_EQ(st[6].bits, 4);
    EXPECT_EQ(st[7].state, TokenCacheState::kHeld);
    EXPECT_EQ(st[39].state, TokenCacheState::kHeld);
    EXPECT_EQ(st[39].bits, 16);
    // Step 5 demotes position (5 + 0 + 0) mod 40 = 5 in (0, 0): it was merged at step 0, so it
    // has no entry to demote and stays merged (SCHEMA.md, Events); a token appended at step 5 is
    // position 44.
    auto st5 = r.token_states(0, 0, 5);
    ASSERT_EQ(st5.size(), 45u);
    EXPECT_EQ(st5[44].state, TokenCacheState::kHeld);
    EXPECT_EQ(st5[44].changed_step, 5);
    EXPECT_EQ(st5[5].state, TokenCacheState::kMerged);
    EXPECT_EQ(st5[5].bits, 0);
    EXPECT_EQ(st5[5].changed_step, 0);
    // Step 10 demotes (10 + 0 + 0) mod 40 = 10 in (0, 0), quantised at step 0: it is held, so
    // the demotion applies.
    auto st10 = r.token_states(0, 0, 10);
    EXPECT_EQ(st10[10].state, TokenCacheState::kDemoted);
    EXPECT_EQ(st10[10].bits, 2);
}

// /summary/held (written by the writer's HeadCounter) is the number of positions that replaying
// the events leaves held, quantized or demoted, on every step, layer and head: one rule for a
// token merged and then demoted (the sample demotes merged and evicted tokens on purpose).
TEST_F(RoundTrip, SummaryHeldEqualsReplayedStates) {
    TraceReader r(path_);
    ASSERT_TRUE(r.has_head_counts());
    const TraceInfo info = r.info();
    int64_t ignored_demotes = 0;
    for (int64_t s = 0; s < info.n_steps; ++s) {
        const HeadCountRow row = r.head_counts(s);
        for (int32_t l = 0; l < info.n_layers; ++l) {
            for (int32_t h = 0; h < info.n_heads; ++h) {
                const auto st = r.token_states(l, h, s);
                int32_t held = 0, evicted = 0;
                int64_t bits = 0;
                for (const TokenState& t : st) {
                    const bool holds = t.state == TokenCacheState::kHeld ||
                                       t.state == TokenCacheState::kQuantized ||
                                       t.state == TokenCacheState::kDemoted;
                    held += holds ? 1 : 0;
                    evicted += t.state == TokenCacheState::kEvicted ? 1 : 0;
                    bits += holds ? t.bits : 0;
                }
                const size_t lh = static_cast<size_t>(l) * static_cast<size_t>(info.n_heads) +
                                  static_cast<size_t>(h);
                ASSERT_EQ(row.held[lh], held) << "step " << s << " l" << l << " h" << h;
                ASSERT_EQ(row.held_bits[lh], bits) << "step " << s << " l" << l << " h" << h;
                ASSERT_EQ(row.evicted[lh], evicted) << "step " << s << " l" << l << " h" << h;
            }
        }
        for (const auto& e : r.events(s, s + 1)) {
            if (e.op != CacheOp::kDemote) continue;
            const auto st = r.token_states(e.layer, e.head, s);
            if (st[static_cast<size_t>(e.position)].state != TokenCacheState::kDemoted)
                ++ignored_demotes;
        }
    }
    // The case the rule is for occurs (demotes of merged or evicted tokens that change nothing).
    EXPECT_GT(ignored_demotes, 0);
}

TEST_F(RoundTrip, AttentionRows) {
    TraceReader r(path_);
    for (int64_t s : {0, 12, 24}) {
        for (int32_t l = 0; l < 3; ++l) {
            for (int32_t h = 0; h < 2; ++h) {
                const AttentionRow* want = nullptr;
                for (const auto& row : sample_.steps[static_cast<size_t>(s)].attention)
                    if (row.layer == l && row.head == h) want = &row;
                ASSERT_NE(want, nullptr);
                auto got = r.attention_row(s, l, h);
                EXPECT_EQ(got.positions, want->positions);
                expect_same_floats(got.values, want->values, "attention row");
            }
        }
    }
}

}  // namespace
}  // namespace kvscope::trace
