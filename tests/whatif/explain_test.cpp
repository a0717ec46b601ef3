// Explanations in the policy's own terms: every needle token a policy dropped scored at most its
// cut-off and every one it kept at least that (or was protected), the decisions agree with the
// state a real run reaches, and decode-time and precision decisions are reported as such.
#include <gtest/gtest.h>

#include <filesystem>
#include <numeric>

#include "app/recorder/live_session.h"
#include "core/model/model.h"
#include "core/policies/registry.h"
#include "core/whatif/explain_policy.h"
#include "core/whatif/preview.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
const fs::path kDemo = fs::path(KVSCOPE_SOURCE_DIR) / "resources" / "models" / "kvscope-demo";

struct Demo {
    std::unique_ptr<Model> model = load_model(kDemo);
    std::unique_ptr<Tokenizer> tok = load_tokenizer(kDemo);
    record::RunInput input;
    std::unique_ptr<record::LiveSession> session;
    std::vector<int64_t> needle;
    Demo() {
        record::ScenarioRequest req;
        req.length = 400;
        req.seed = 9;
        input = record::build_scenario_input(*tok, kDemo.string(), req);
        session = std::make_unique<record::LiveSession>(*model, *tok, kDemo.string(), input, 2);
        session->prefill();
        const auto& s = input.spans.at(0);
        needle.resize(static_cast<size_t>(s.end - s.begin));
        std::iota(needle.begin(), needle.end(), s.begin);
    }
};
Demo& demo() {
    static Demo d;
    return d;
}

TEST(Explain, PromptDecisionsFollowThePolicysOwnScoreAndMatchTheRun) {
    Demo& d = demo();
    for (const std::string name :
         {"snapkv", "pyramidkv", "knorm", "tova", "h2o", "streaming_llm", "dynamickv"}) {
        Budget b;
        b.ratio = 0.15;
        auto out = std::make_shared<std::vector<whatif::TokenDecision>>();
        whatif::ExplainPolicy ex(
            PolicyRegistry::global().create(name, b, std::vector<std::string>{}), d.needle, out);
        const whatif::Preview pv = whatif::preview(d.session->state(), d.model->spec, ex);
        const int64_t L = d.model->spec.n_layers, G = d.model->spec.n_kv_heads;
        // One prompt decision per needle token and head.
        ASSERT_EQ(out->size(), d.needle.size() * static_cast<size_t>(L * G)) << name;
        int64_t dropped = 0;
        for (const auto& t : *out) {
            EXPECT_EQ(t.step, -1) << name;
            const auto& held = pv.head(t.layer, t.kv_head).positions;
            const bool kept = std::binary_search(held.begin(), held.end(), t.position);
            EXPECT_EQ(t.action == "kept", kept) << name << " layer " << t.layer;
            if (t.budget < 0) {  // a layer the policy leaves alone (knorm's skipped layers)
                EXPECT_TRUE(kept) << name;
                continue;
            }
            ASSERT_FALSE(std::isnan(t.score)) << name << ": no score recorded";
            EXPECT_FALSE(t.score_name.empty()) << name;
            EXPECT_GE(t.rank, 1);
            EXPECT_LE(t.rank, t.candidates);
            if (!kept) {
                ++dropped;
                EXPECT_LE(t.score, t.cutoff)
                    << name << " layer " << t.layer << " pos " << t.position;
                ASSERT_FALSE(t.took_its_place.empty()) << name;
                for (const auto& [p, v] : t.took_its_place) {
                    EXPECT_GE(v, t.score) << name;
                    EXPECT_TRUE(std::binary_search(held.begin(), held.end(), p)) << name;
                }
            } else if (!std::isinf(t.score) && !std::isnan(t.cutoff)) {
                // Kept by score: at least the cut-off (the cut-off is the lowest kept score) —
                // except for layer-wide or round-robin rules, which rank the same way here (mean).
                EXPECT_GE(t.score, t.cutoff) << name;
            }
        }
        EXPECT_GT(dropped, 0) << name << " dropped no needle token at 15%: the test shows nothing";
    }
}

TEST(Explain, DecodeAndPrecisionDecisionsAreReportedAsSuch) {
    Demo& d = demo();
    const auto run = [&](const std::string& name, double ratio) {
        auto out = std::make_shared<std::vector<whatif::TokenDecision>>();
        record::RerunRequest rr;
        rr.policy = {name, {}, {}};
        rr.policy.budget.ratio = ratio;
        rr.sampling.max_new = 8;
        rr.sampling.ignore_eos = true;
        rr.trace = fs::temp_directory_path() / ("kvscope_explain_" + name + ".kvtrace.h5");
        rr.overwrite = true;
        rr.wrap_policy = [&](std::unique_ptr<Policy> p) {
            return std::unique_ptr<Policy>(
                std::make_unique<whatif::ExplainPolicy>(std::move(p), d.needle, out));
        };
        (void)d.session->rerun(rr);
        fs::remove(rr.trace);
        return *out;
    };
    // D2O decides from the first decode step on, and merges what it drops.
    const auto d2o = run("d2o", 0.1);
    int64_t merged = 0;
    for (const auto& t : d2o) {
        if (t.action == "kept") continue;
        EXPECT_GE(t.step, 0) << "d2o drops nothing at the prompt";
        if (t.action == "merged") {
            ++merged;
            EXPECT_GE(t.into_position, 0);
            EXPECT_FALSE(std::isnan(t.weight));
        }
    }
    EXPECT_GT(merged, 0);
    // MiKV keeps the needle at low precision instead of evicting it.
    const auto mikv = run("mikv", 0.1);
    int64_t low = 0;
    for (const auto& t : mikv) {
        EXPECT_NE(t.action, "evicted");
        if (t.action == "quantized" || t.action == "demoted") {
            ++low;
            EXPECT_LT(t.bits, 16);
        }
    }
    EXPECT_GT(low, 0);
}

}  // namespace
}  // namespace kvscope
