// Policies driven by the real engine on a fixture model: budgets are honoured in the cache the
// engine attends to, a generous budget changes nothing, and every registered policy runs.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/engine/sampler.h"
#include "core/model/model.h"
#include "core/policies/registry.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<Model> fixture() {
    return load_model(fs::path(KVSCOPE_SOURCE_DIR) / "tests" / "golden" / "models" / "llama_sp");
}

std::vector<int32_t> prompt_ids(int n, int vocab) {
    std::vector<int32_t> ids;
    ids.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) ids.push_back(3 + (i * 37 + 11) % (vocab - 3));
    return ids;
}

std::vector<std::vector<float>> run_steps(Engine& e, const std::vector<int32_t>& ids, int steps) {
    std::vector<std::vector<float>> out;
    Sampler greedy({});
    auto logits = e.prefill(ids);
    out.push_back(logits);
    for (int s = 0; s < steps; ++s) {
        logits = e.decode(greedy.sample(logits.data(), e.spec().vocab_size));
        out.push_back(logits);
    }
    return out;
}

TEST(PolicyEngine, GenerousBudgetEqualsFullCache) {
    auto model = fixture();
    auto be = make_cpu_backend(2);
    const auto ids = prompt_ids(40, static_cast<int>(model->spec.vocab_size));
    Engine full(*model, *be);
    const auto ref = run_steps(full, ids, 5);
    for (const std::string name : {"streaming_llm", "h2o", "tova", "snapkv", "pyramidkv", "knorm",
                                   "d2o", "dynamickv", "mikv"}) {
        Budget b;
        b.tokens = 1000;  // more than prompt + generated
        auto policy = make_policy(name, b);
        Engine e(*model, *be);
        e.set_policy(policy.get());
        const auto got = run_steps(e, ids, 5);
        for (size_t s = 0; s < ref.size(); ++s)
            for (size_t i = 0; i < ref[s].size(); ++i)
                ASSERT_NEAR(got[s][i], ref[s][i], 1e-5f)
                    << name << " step " << s;  // identical math
        EXPECT_EQ(e.cache().total_slots(), full.cache().total_slots()) << name;
    }
}

// The host thread pools' path (EngineOptions::host_parallel_min_bytes = 0: every layer's rows, key
// norms and zeroed statistics buffers through them) equals the inline path exactly: logits, cache
// rows, prefill statistics (key norms, column sums, window rows) and the policy's choices.
TEST(PolicyEngine, HostParallelCopiesEqualInlineCopies) {
    auto model = fixture();
    auto be = make_cpu_backend(2);
    const auto ids = prompt_ids(48, static_cast<int>(model->spec.vocab_size));
    for (const std::string name : {"knorm", "snapkv", "h2o"}) {
        Budget b;
        b.tokens = 24;
        auto p1 = make_policy(name, b), p2 = make_policy(name, b);
        EngineOptions inline_opts, pool_opts;
        inline_opts.host_parallel_min_bytes = int64_t{1} << 60;
        pool_opts.host_parallel_min_bytes = 0;
        pool_opts.threads = 3;
        inline_opts.stats.key_norms = pool_opts.stats.key_norms = true;
        Engine a(*model, *be, inline_opts), c(*model, *be, pool_opts);
        a.set_policy(p1.get());
        c.set_policy(p2.get());
        const auto ra = run_steps(a, ids, 4), rc = run_steps(c, ids, 4);
        ASSERT_EQ(ra, rc) << name;  // same arithmetic: bit-identical
        const ModelSpec& sp = model->spec;
        for (int64_t l = 0; l < sp.n_layers; ++l) {
            const LayerPrefillStats& sa = a.prefill_stats()[static_cast<size_t>(l)];
            const LayerPrefillStats& sc = c.prefill_stats()[static_cast<size_t>(l)];
            EXPECT_EQ(sa.key_norm, sc.key_norm);
            EXPECT_EQ(sa.colsum, sc.colsum) << name;
            EXPECT_EQ(sa.window, sc.window) << name;
            EXPECT_EQ(sa.window_rows, sc.window_rows) << name;
            if (name == "snapkv") {
                EXPECT_GT(sa.window_rows, 0);  // the buffers were made
            }
            if (name == "h2o") {
                EXPECT_FALSE(sa.colsum.empty());
            }
            for (int64_t g = 0; g < sp.n_kv_heads; ++g) {
                const int64_t n = a.cache().n_slots(l, g);
                ASSERT_EQ(c.cache().n_slots(l, g), n);
                for (int64_t j = 0; j < n * sp.head_dim; ++j) {
                    ASSERT_EQ(a.cache().k(l, g)[j], c.cache().k(l, g)[j]);
                    ASSERT_EQ(a.cache().v(l, g)[j], c.cache().v(l, g)[j]);
                }
            }
        }
    }
}

TEST(PolicyEngine, TightBudgetsBoundTheCache) {
    auto model = fixture();
    auto be = make_cpu_backend(2);
    const auto ids = prompt_ids(60, static_cast<int>(model->spec.vocab_size));
    const int64_t B = 16;
    const int steps = 6;
    for (const std::string name : {"streaming_llm", "h2o", "tova", "snapkv", "knorm"}) {
        Budget b;
        b.tokens = B;
        auto policy = make_policy(name, b);
        Engine e(*model, *be);
        e.set_policy(policy.get());
        run_steps(e, ids, steps);
        const bool oneshot = policy->info().regime == Regime::kPrefillOneshot;
        for (int64_t l = 0; l < model->spec.n_layers; ++l)
            for (int64_t h = 0; h < model->spec.n_kv_heads; ++h) {
                // One-shot policies compress the prompt to B, then grow by one slot per step.
                // knorm skips layers 0 and 1 by default (full cache there).
                if (name == "knorm" && l < 2) continue;
                const int64_t limit = oneshot ? B + steps : B;
                EXPECT_LE(e.cache().n_slots(l, h), limit)
                    << name << " layer " << l << " head " << h;
                EXPECT_GE(e.cache().n_slots(l, h), std::min<int64_t>(B, 1)) << name;
            }
        EXPECT_EQ(e.cache().check_consistency(), "") << name;
    }
}

TEST(PolicyEngine, EveryRegisteredPolicyRuns) {
    auto model = fixture();
    auto be = make_cpu_backend(2);
    const auto ids = prompt_ids(48, static_cast<int>(model->spec.vocab_size));
    for (const auto& name : PolicyRegistry::global().names()) {
        Budget b;
        const auto* entry = PolicyRegistry::global().find(name);
        if (entry->info.needs_budget) b.tokens = 20;
        std::vector<std::string> params;
        if (name == "dmc") params.push_back("mode=proxy");  // the fixture is not DMC-retrofitted
        auto policy = make_policy(name, b, params);
        Engine e(*model, *be);
        e.set_policy(policy.get());
        const auto out = run_steps(e, ids, 4);
        for (const auto& row : out)
            for (float x : row) ASSERT_TRUE(std::isfinite(x)) << name;
        EXPECT_EQ(e.cache().check_consistency(), "") << name;
    }
}

}  // namespace
}  // namespace kvscope

namespace kvscope {
namespace {

// DMC checkpoint mode through the engine: the decision neuron (channel d-1 of pre-RoPE k) is read
// raw. With init_val far below every value, alpha = 1 everywhere: each head's prompt collapses
// into one slot, and every decode token joins the slot the first decode token opened. With
// init_val far above, alpha = 0: no merge, every token keeps its slot (but the channel is still
// zeroed, so logits differ from the unmodified model).
TEST(PolicyEngine, DmcCheckpointReadsTheDecisionNeuron) {
    auto model = fixture();
    auto be = make_cpu_backend(2);
    const auto ids = prompt_ids(30, static_cast<int>(model->spec.vocab_size));
    const int steps = 5;
    {
        auto policy = make_policy("dmc", Budget{}, {"mode=checkpoint", "init_val=-1000"});
        Engine e(*model, *be);
        e.set_policy(policy.get());
        run_steps(e, ids, steps);
        for (int64_t l = 0; l < model->spec.n_layers; ++l)
            for (int64_t h = 0; h < model->spec.n_kv_heads; ++h)
                EXPECT_EQ(e.cache().n_slots(l, h), 2) << "layer " << l << " head " << h;
        EXPECT_EQ(e.cache().check_consistency(), "");
    }
    {
        auto policy = make_policy("dmc", Budget{}, {"mode=checkpoint", "init_val=1000"});
        Engine e(*model, *be);
        e.set_policy(policy.get());
        const auto got = run_steps(e, ids, steps);
        EXPECT_EQ(e.cache().total_slots(),
                  (30 + steps) * model->spec.n_layers * model->spec.n_kv_heads);
        Engine full(*model, *be);
        const auto ref = run_steps(full, ids, 0);
        double diff = 0;
        for (size_t i = 0; i < ref[0].size(); ++i)
            diff = std::max(diff, double(std::abs(ref[0][i] - got[0][i])));
        EXPECT_GT(diff, 1e-6);  // channel d-1 zeroed: the model is not the unmodified one
    }
}

}  // namespace
}  // namespace kvscope
