// PreviewTraceModel against the what-if preview it wraps: a real LiveSession on the bundled demo
// model, prefilled once on the sample trace's prompt; for policies that evict (snapkv,
// pyramidkv), decide while decoding (d2o: its prefill decision) and quantise (mikv), the model's
// histories at step 0 hold exactly the Preview's positions (and bits) for every (layer, KV head),
// and the per-step tables (budgets, bytes held, needle survival) are the Preview's, unchanged.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "app/recorder/live_session.h"
#include "core/model/model.h"
#include "core/tokenizer/tokenizer.h"
#include "traces/trace_reader.h"
#include "views/preview_trace_model.h"
#include "views/reader_trace_model.h"

using namespace kvscope;

namespace {

const std::string kSample = KVSCOPE_SOURCE_DIR "/resources/sample/sample.kvtrace.h5";
const std::string kModel = KVSCOPE_SOURCE_DIR "/resources/models/kvscope-demo";

struct Fixture {
    std::unique_ptr<Model> model = load_model(kModel);
    std::unique_ptr<Tokenizer> tok = load_tokenizer(kModel);
    std::unique_ptr<record::LiveSession> session;
    std::shared_ptr<views::ReaderTraceModel> base =
        std::make_shared<views::ReaderTraceModel>(kSample);

    Fixture() {
        const trace::TraceReader& r = base->reader();
        record::RunInput in;
        in.prompt = r.metadata().prompt;
        in.ids = r.token_ids(0, r.metadata().n_prompt_tokens);
        in.spans = r.spans();
        session = std::make_unique<record::LiveSession>(*model, *tok, kModel, in, 2);
        session->prefill();
    }
};

Fixture& fixture() {
    static Fixture f;  // one prefill for every test of this file
    return f;
}

void expect_matches(const std::string& policy, double ratio) {
    Fixture& f = fixture();
    record::PolicyChoice c;
    c.name = policy;
    c.budget.ratio = ratio;
    ASSERT_EQ(f.session->blocker(c), "");
    auto pv = std::make_shared<whatif::Preview>(f.session->preview(c));
    views::PreviewTraceModel m(f.base, pv, {policy, "", -1, ratio});
    const views::TraceSummary& s = m.summary();
    ASSERT_EQ(s.n_steps, 1);
    ASSERT_EQ(s.n_tokens, f.base->summary().n_prompt_tokens);
    ASSERT_EQ(s.policy, policy);
    EXPECT_EQ(m.answer_found(0), -1);
    int64_t held_total = 0;
    for (int32_t l = 0; l < s.n_layers; ++l) {
        EXPECT_EQ(m.bytes_held(0, l), pv->bytes_layer[static_cast<size_t>(l)]);
        for (int32_t h = 0; h < s.n_heads; ++h) {
            const whatif::HeadOutcome& want = pv->head(l, h);
            const auto hist = m.history(l, h, views::Load::kNow);
            ASSERT_TRUE(hist);
            std::vector<int64_t> held;
            std::vector<int> bits;
            for (int64_t t = 0; t < s.n_prompt_tokens; ++t) {
                const views::CacheChange st = hist->state_at(t, 0);
                if (views::is_held(st.state)) {
                    held.push_back(t);
                    bits.push_back(st.bits);
                }
            }
            EXPECT_EQ(held, want.positions) << policy << " layer " << l << " head " << h;
            EXPECT_EQ(hist->held(0), static_cast<int64_t>(want.positions.size()));
            // Key bits: the history keeps one precision per token, the key's (events carry the
            // slot's key bits; values may differ under KIVI-style splits).
            EXPECT_EQ(bits, want.k_bits) << policy << " layer " << l << " head " << h;
            EXPECT_EQ(m.budget(0, l, h), want.budget);
            held_total += hist->held(0);
            for (size_t sp = 0; sp < pv->survival.size(); ++sp) {
                // Same float, passed through: exact.
                EXPECT_EQ(m.needle_survival(static_cast<int32_t>(sp), 0, l, h),
                          pv->survival[sp][static_cast<size_t>(l * s.n_heads + h)]);
            }
        }
    }
    EXPECT_EQ(held_total, pv->tokens_held);
    EXPECT_TRUE(std::isnan(m.needle_survival(0, 1, 0, 0)));  // only step 0 exists
    EXPECT_EQ(m.token_text(3), f.base->token_text(3));
    EXPECT_EQ(m.token_id(s.n_tokens), -1);
}

}  // namespace

TEST(PreviewTraceModel, EvictingPolicyHistoriesEqualThePreview) {
    expect_matches("snapkv", 0.25);
}
TEST(PreviewTraceModel, SmallBudgetHistoriesEqualThePreview) {
    expect_matches("snapkv", 0.05);
}
// D2O decides (evicts and merges) while decoding; its preview is the prefill decision.
TEST(PreviewTraceModel, DecodeTimePolicyHistoriesEqualThePreview) {
    expect_matches("d2o", 0.3);
}
TEST(PreviewTraceModel, PyramidBudgetsEqualThePreview) {
    expect_matches("pyramidkv", 0.2);
}
TEST(PreviewTraceModel, QuantisingPolicyHistoriesEqualThePreview) {
    expect_matches("mikv", 0.2);
}

// A small prompt (8 layers x 2 heads x 512 tokens) is built on request even for kLater, so the
// views show the whole preview in one frame.
TEST(PreviewTraceModel, SmallPromptsBuildLaterLoadsAtOnce) {
    Fixture& f = fixture();
    record::PolicyChoice c;
    c.name = "snapkv";
    c.budget.ratio = 0.5;
    auto pv = std::make_shared<whatif::Preview>(f.session->preview(c));
    views::PreviewTraceModel m(f.base, pv, {"snapkv", "", -1, 0.5});
    const auto h = m.history(1, 1, views::Load::kLater);
    ASSERT_TRUE(h);
    EXPECT_FALSE(m.has_pending());
    EXPECT_EQ(h->held(0), static_cast<int64_t>(pv->head(1, 1).positions.size()));
}

TEST(PreviewTraceModel, RefusesAnotherModelShape) {
    Fixture& f = fixture();
    auto pv = std::make_shared<whatif::Preview>();
    pv->n_layers = 3;
    pv->n_kv_heads = 1;
    EXPECT_THROW(views::PreviewTraceModel(f.base, pv, {}), std::invalid_argument);
}
