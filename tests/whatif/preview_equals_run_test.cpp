// The what-if preview and the re-run from a saved prompt state against real runs on the bundled
// demo model: the preview must keep exactly what a real run at that budget keeps after the
// prompt (every policy the saved state can serve), and decoding resumed from the saved state must
// record the same run as a run with its own prefill. Exact equality: both paths run the same
// policy code on statistics computed by the same kernels.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "app/recorder/live_session.h"
#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/engine/prefill_state.h"
#include "core/error.h"
#include "core/policies/registry.h"
#include "core/whatif/memory_fit.h"
#include "core/whatif/preview.h"
#include "traces/trace_reader.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;

struct Demo {
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> tok;
    record::RunInput input;
};

const fs::path kDemo = fs::path(KVSCOPE_SOURCE_DIR) / "resources" / "models" / "kvscope-demo";

// One NIAH prompt of 256 tokens (short: the tests run under ASan too).
Demo& demo() {
    static Demo d = [] {
        Demo x;
        x.model = load_model(kDemo);
        x.tok = load_tokenizer(kDemo);
        record::ScenarioRequest req;
        req.kind = "niah";
        req.length = 256;
        req.depth = 0.4;
        req.seed = 7;
        x.input = record::build_scenario_input(*x.tok, kDemo.string(), req);
        return x;
    }();
    return d;
}

record::LiveSession& session() {
    static record::LiveSession s(*demo().model, *demo().tok, kDemo.string(), demo().input, 2);
    s.prefill();
    return s;
}

// Every registered policy, with the budgets it takes.
std::vector<record::PolicyChoice> choices() {
    std::vector<record::PolicyChoice> out;
    for (const std::string& name : PolicyRegistry::global().names()) {
        const PolicyEntry* e = PolicyRegistry::global().find(name);
        if (!e->info.needs_budget) {
            out.push_back({name, {}, {}});
            continue;
        }
        for (double r : {0.1, 0.5}) {
            record::PolicyChoice c{name, {}, {}};
            c.budget.ratio = r;
            out.push_back(c);
        }
        record::PolicyChoice t{name, {}, {}};
        t.budget.tokens = 24;
        out.push_back(t);
    }
    return out;
}

TEST(Preview, EqualsTheRealRunAfterThePromptForEveryPolicy) {
    const Demo& d = demo();
    record::LiveSession& s = session();
    auto backend = make_cpu_backend(2);
    int compared = 0;
    for (const record::PolicyChoice& c : choices()) {
        const std::string label = c.describe();
        const std::string why = s.blocker(c);
        if (!why.empty()) {
            // Only policies that change the prompt's forward or keep pre-RoPE keys (DMC) may
            // need a prefill of their own.
            EXPECT_EQ(c.name, "dmc") << label << ": " << why;
            EXPECT_THROW((void)s.preview(c), InputError) << label;
            continue;
        }
        const whatif::Preview pv = s.preview(c);
        // The real run: its own prefill with the policy, statistics as `kvscope run` asks them.
        auto policy = record::LiveSession::make(c);
        EngineOptions eo;
        eo.stats = record::RunRecorder::stats_needed({}, static_cast<int64_t>(d.input.ids.size()));
        Engine e(*d.model, *backend, eo);
        e.set_policy(policy.get());
        (void)e.prefill(d.input.ids);
        const KVCache& cache = e.cache();
        const int64_t L = d.model->spec.n_layers, G = d.model->spec.n_kv_heads;
        for (int64_t l = 0; l < L; ++l)
            for (int64_t g = 0; g < G; ++g) {
                const whatif::HeadOutcome& h = pv.head(l, g);
                const auto pos = cache.positions(l, g);
                ASSERT_EQ(std::vector<int64_t>(pos.begin(), pos.end()), h.positions)
                    << label << " layer " << l << " head " << g;
                const auto kb = cache.k_bits(l, g), vb = cache.v_bits(l, g);
                EXPECT_EQ(std::vector<int>(kb.begin(), kb.end()), h.k_bits) << label;
                EXPECT_EQ(std::vector<int>(vb.begin(), vb.end()), h.v_bits) << label;
                EXPECT_EQ(cache.bytes_held(l, g), h.bytes) << label;
            }
        EXPECT_EQ(cache.bytes_held(), pv.bytes_total) << label;
        // Needle survival as the recorder computes it.
        ASSERT_EQ(pv.survival.size(), d.input.spans.size());
        const auto& sp = d.input.spans[0];
        for (int64_t l = 0; l < L; ++l)
            for (int64_t g = 0; g < G; ++g) {
                int64_t held = 0;
                for (int64_t p = sp.begin; p < sp.end; ++p)
                    held += cache.find_position(l, g, p) >= 0;
                EXPECT_FLOAT_EQ(pv.survival[0][static_cast<size_t>(l * G + g)],
                                static_cast<float>(held) / static_cast<float>(sp.end - sp.begin))
                    << label;
            }
        ++compared;
    }
    // 12 policies: full and kivi take no budget, dmc needs its own prefill, the 9 others are
    // compared at 3 budgets each.
    EXPECT_EQ(PolicyRegistry::global().names().size(), 12u);
    EXPECT_EQ(compared, 9 * 3 + 2);
}

TEST(Preview, IsRepeatableAndLeavesTheSavedStateAlone) {
    record::LiveSession& s = session();
    const int64_t full = s.state().bytes_full();
    record::PolicyChoice c{"snapkv", {}, {}};
    c.budget.ratio = 0.2;
    const whatif::Preview a = s.preview(c);
    c.budget.ratio = 0.6;
    (void)s.preview(c);
    c.budget.ratio = 0.2;
    const whatif::Preview b = s.preview(c);
    EXPECT_EQ(s.state().bytes_full(), full);
    EXPECT_EQ(s.state().cache->total_slots(),
              s.state().prompt_len() * demo().model->spec.n_layers * demo().model->spec.n_kv_heads);
    ASSERT_EQ(a.heads.size(), b.heads.size());
    for (size_t i = 0; i < a.heads.size(); ++i)
        EXPECT_EQ(a.heads[i].positions, b.heads[i].positions);
    EXPECT_LT(a.bytes_total, full);
}

// Compares two recorded traces step by step: tokens, bytes held, budgets, events.
void expect_same_run(const fs::path& x, const fs::path& y, const std::string& label) {
    trace::TraceReader a(x), b(y);
    const int64_t S = a.info().n_steps;
    ASSERT_EQ(S, b.info().n_steps) << label;
    ASSERT_GT(S, 0) << label;
    for (int64_t s = 0; s < S; ++s) {
        EXPECT_EQ(a.step(s).token_id, b.step(s).token_id) << label << " step " << s;
        EXPECT_EQ(a.budgets(s), b.budgets(s)) << label << " step " << s;
    }
    EXPECT_EQ(a.bytes_held(0, S), b.bytes_held(0, S)) << label;
    const auto ea = a.events(0, S), eb = b.events(0, S);
    ASSERT_EQ(ea.size(), eb.size()) << label;
    for (size_t i = 0; i < ea.size(); ++i) {
        EXPECT_EQ(ea[i].position, eb[i].position) << label << " event " << i;
        EXPECT_EQ(ea[i].op, eb[i].op) << label << " event " << i;
        EXPECT_EQ(ea[i].layer, eb[i].layer) << label << " event " << i;
    }
}

TEST(Rerun, FromTheSavedStateRecordsTheSameRunAsAnOwnPrefill) {
    const Demo& d = demo();
    record::LiveSession& s = session();
    const fs::path dir =
        fs::temp_directory_path() / ("kvscope_rerun_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    // One policy per kind of decision: prefill top-k, decode-time eviction, merges, precision.
    for (const std::string name : {"snapkv", "h2o", "d2o", "mikv"}) {
        record::RerunRequest rr;
        rr.policy = {name, {}, {}};
        rr.policy.budget.ratio = 0.3;
        rr.sampling.max_new = 6;
        rr.sampling.ignore_eos = true;
        rr.trace = dir / (name + "-resumed.kvtrace.h5");
        const record::RerunResult resumed = s.rerun(rr);
        EXPECT_TRUE(resumed.resumed) << name;
        // The same run with a prefill of its own (with the policy, as `kvscope run` does).
        record::LiveSession fresh(*d.model, *d.tok, kDemo.string(), d.input, 2);
        record::RerunRequest own = rr;
        own.own_prefill = true;
        own.trace = dir / (name + "-own.kvtrace.h5");
        const record::RerunResult ref = fresh.rerun(own);
        EXPECT_FALSE(ref.resumed) << name;
        EXPECT_EQ(resumed.text, ref.text) << name;
        EXPECT_EQ(resumed.bytes_held_final, ref.bytes_held_final) << name;
        expect_same_run(resumed.trace, ref.trace, name);
    }
    fs::remove_all(dir);
}

TEST(MemoryFit, FindsTheLargestBudgetWithinTheTarget) {
    record::LiveSession& s = session();
    for (const std::string name : {"snapkv", "mikv", "h2o"}) {
        record::PolicyChoice c{name, {}, {}};
        const int64_t target = s.bytes_for_fraction(0.3);
        const whatif::MemoryFit fit = s.fit_memory(c, target);
        EXPECT_LE(fit.bytes, target) << name;
        ASSERT_GT(fit.budget_tokens, 0) << name;
        // One token more per head exceeds the target (the fit is the largest budget), measured
        // the same way: a real run's bytes after its first decoded token.
        if (fit.budget_tokens < s.state().prompt_len()) {
            record::PolicyChoice up = c;
            up.budget.tokens = fit.budget_tokens + 1;
            auto policy = record::LiveSession::make(up);
            auto backend = make_cpu_backend(2);
            Engine e(*demo().model, *backend, {});
            e.set_policy(policy.get());
            (void)e.resume(s.state());
            const auto& lg = s.state().last_logits;
            (void)e.decode(
                static_cast<int32_t>(std::max_element(lg.begin(), lg.end()) - lg.begin()));
            EXPECT_GT(e.cache().bytes_held(), target) << name;
        }
    }
    record::PolicyChoice kivi{"kivi", {}, {}};
    EXPECT_THROW((void)s.fit_memory(kivi, 1000), InputError);
    record::PolicyChoice snap{"snapkv", {}, {}};
    EXPECT_THROW((void)s.fit_memory(snap, 10), InputError);  // below 1 token per head
}

TEST(Resume, RefusesWhatTheSavedStateCannotServe) {
    record::LiveSession& s = session();
    record::PolicyChoice wide{"snapkv", {}, {"window=200"}};
    wide.budget.ratio = 0.5;
    EXPECT_NE(s.blocker(wide).find("200"), std::string::npos);
    EXPECT_THROW((void)s.preview(wide), InputError);
    record::PolicyChoice dmc{"dmc", {}, {}};
    EXPECT_FALSE(s.blocker(dmc).empty());
    // A re-run of such a policy falls back to a prefill of its own.
    record::RerunRequest rr;
    rr.policy = wide;
    rr.sampling.max_new = 2;
    rr.trace =
        fs::temp_directory_path() / ("kvscope_wide_" + std::to_string(::getpid()) + ".kvtrace.h5");
    const record::RerunResult r = s.rerun(rr);
    EXPECT_FALSE(r.resumed);
    EXPECT_EQ(r.steps, 2);
    fs::remove(r.trace);
}

}  // namespace
}  // namespace kvscope
