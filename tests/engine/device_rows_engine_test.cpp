// A backend that keeps a call's new K/V rows on its device (Backend::new_rows_stay_on_device):
// the engine appends the slots at once and their host rows later (KVCache::append_layer_slots /
// fill_pending_rows): a decode step's at the step's end, the prompt's on a host thread behind
// the device (with their key norms). Driven here through the CPU backend behind a wrapper that
// behaves as such a device does: to_host_later() delivers at the next synchronisation, and
// attention() takes the last rows of every head from new_k / new_v instead of the host cache
// (as the CUDA KV mirror does). The run must equal the CPU backend's own, bit for bit (logits,
// statistics, cache), and the host rows must really have been pending during each layer.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <vector>

#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/engine/sampler.h"
#include "core/model/model.h"
#include "core/policies/registry.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;

class DeviceRowsBackend final : public Backend {
  public:
    explicit DeviceRowsBackend(std::unique_ptr<Backend> inner) : in_(std::move(inner)) {}
    const KVCache* cache = nullptr;       // the engine's, to see which rows are still pending
    int64_t heads_without_host_rows = 0;  // heads whose new host rows had not arrived yet
    int64_t prefill_heads_without = 0;    // of them, in calls of more than one row (the prompt)

    std::string name() const override { return "device-rows(" + in_->name() + ")"; }
    DeviceKind device() const override { return in_->device(); }
    double measure_copy_gbs(size_t bytes, int reps) override {
        return in_->measure_copy_gbs(bytes, reps);
    }
    Tensor alloc(DType dtype, std::initializer_list<int64_t> shape) override {
        return in_->alloc(dtype, shape);
    }
    void release(Tensor& t) override { in_->release(t); }
    Tensor upload_weight(const void* host, DType dtype,
                         std::initializer_list<int64_t> shape) override {
        return in_->upload_weight(host, dtype, shape);
    }
    void release_weight(Tensor& t) override { in_->release_weight(t); }
    void to_host(const Tensor& src, float* dst) override {
        in_->to_host(src, dst);
        deliver();
    }
    // Copied now (a device stream would copy in order), handed over at the next sync.
    void to_host_later(const Tensor& src, float* dst) override {
        std::vector<float> now(static_cast<size_t>(src.numel()));
        in_->to_host(src, now.data());
        later_.push_back({dst, std::move(now), false});
    }
    bool new_rows_stay_on_device() const override { return true; }
    void from_host(Tensor& dst, const float* src) override { in_->from_host(dst, src); }
    void synchronize() override {
        in_->synchronize();
        ++syncs;
        deliver();
    }
    // The copies queued so far (this wrapper computes them at once; a device would still be
    // running what was queued after them).
    void deliver_copies() override {
        ++deliveries;
        deliver();
    }
    int64_t syncs = 0, deliveries = 0;
    void embedding(const Tensor& t, const int32_t* ids, int64_t n, Tensor& out) override {
        in_->embedding(t, ids, n, out);
    }
    void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
        in_->rmsnorm(x, w, eps, out);
    }
    void matmul(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& out) override {
        in_->matmul(x, w, b, out);
    }
    void rope(Tensor& x, const int64_t* p, const float* f, RopePairs pairs) override {
        in_->rope(x, p, f, pairs);
    }
    void silu_mul(const Tensor& g, const Tensor& u, Tensor& out) override {
        in_->silu_mul(g, u, out);
    }
    void add_inplace(Tensor& x, const Tensor& y) override { in_->add_inplace(x, y); }
    // Every head's last new_k->dim(0) rows from new_k / new_v ([n_new, G, d]), the rest from
    // the host cache, as the device mirror does; the host's copies of the new rows are never
    // read (while pending they are unspecified).
    void attention(const AttentionArgs& args) override {
        if (!args.new_k) return in_->attention(args);
        const int64_t n_new = args.new_k->dim(0), G = args.n_kv_heads, d = args.new_k->dim(2);
        std::vector<std::vector<float>> k(static_cast<size_t>(G)), v(k.size());
        std::vector<KVHeadView> views(args.kv, args.kv + G);
        for (int64_t g = 0; g < G; ++g) {
            KVHeadView& hv = views[static_cast<size_t>(g)];
            auto& kg = k[static_cast<size_t>(g)];
            auto& vg = v[static_cast<size_t>(g)];
            const int64_t first = hv.len - n_new;
            kg.assign(hv.k, hv.k + first * d);
            vg.assign(hv.v, hv.v + first * d);
            kg.resize(static_cast<size_t>(hv.len * d));
            vg.resize(static_cast<size_t>(hv.len * d));
            if (cache && cache->pending_rows(hv.layer) == n_new) {
                ++heads_without_host_rows;
                prefill_heads_without += n_new > 1 ? 1 : 0;
            }
            for (int64_t i = 0; i < n_new; ++i) {
                std::copy_n(args.new_k->as<float>() + (i * G + g) * d, d,
                            kg.begin() + (first + i) * d);
                std::copy_n(args.new_v->as<float>() + (i * G + g) * d, d,
                            vg.begin() + (first + i) * d);
            }
            hv.k = kg.data();
            hv.v = vg.data();
            hv.journal = nullptr;  // rows of this call only
        }
        AttentionArgs a = args;
        a.kv = views.data();
        // Deferred statistics (AttentionStats::deferred) into buffers of our own, handed over at
        // the next sync or deliver_copies(), as a device's copies arrive: column sums added to
        // the caller's, the rest copied. The caller's buffers hold garbage until then.
        AttentionStats own;
        if (args.stats && args.stats->deferred) {
            const AttentionStats& st = *args.stats;
            own = st;
            const int64_t H = args.q->dim(1), group = H / G;
            auto redirect = [&](std::vector<float*>& to, const std::vector<float*>& from,
                                int64_t rows_per_head, bool add, bool per_query) {
                for (size_t h = 0; h < from.size(); ++h) {
                    if (!from[h]) continue;
                    const int64_t len =
                        per_query ? args.q->dim(0)
                                  : views[h / static_cast<size_t>(group)].len * rows_per_head;
                    later_.push_back({from[h], std::vector<float>(static_cast<size_t>(len)), add});
                    to[h] = later_.back().values.data();
                    if (!add) std::fill_n(from[h], len, -7.0f);  // not arrived yet
                }
            };
            redirect(own.colsum, st.colsum, 1, true, false);
            redirect(own.rows, st.rows, st.n_rows_tail, false, false);
            redirect(own.lse, st.lse, 1, false, true);
            a.stats = &own;
        }
        in_->attention(a);
    }

  private:
    struct Later {
        float* dst;
        std::vector<float> values;
        bool add = false;  // column sums accumulate
    };
    void deliver() {
        for (Later& l : later_)
            for (size_t i = 0; i < l.values.size(); ++i)
                l.dst[i] = l.add ? l.dst[i] + l.values[i] : l.values[i];
        later_.clear();
    }
    std::unique_ptr<Backend> in_;
    std::deque<Later> later_;  // pointers into its elements stay valid as it grows
};

// Without a policy, with the full policy (kept when recording, for the trace's metadata), and with
// each policy that edits the cache after a decode step (after_decode_layers) or after the prompt:
// their decode tokens go in as plain appends too. Budget 24 tokens of a 37-token prompt, so the
// evicting policies edit the cache at every step.
void expect_device_rows_equal_cpu(const std::string& policy_name, Budget budget = {},
                                  const std::vector<std::string>& params = {}) {
    SCOPED_TRACE(policy_name.empty() ? "no policy" : policy_name);
    auto model =
        load_model(fs::path(KVSCOPE_SOURCE_DIR) / "tests" / "golden" / "models" / "llama_sp");
    const ModelSpec& sp = model->spec;
    std::vector<int32_t> ids;
    ids.reserve(37);
    for (int i = 0; i < 37; ++i)
        ids.push_back(3 + (i * 41 + 7) % static_cast<int>(sp.vocab_size - 3));
    EngineOptions opts;
    opts.stats.step_rows = true;  // recording: each step's rows, read after the step
    opts.stats.key_norms = true;  // and the prompt's statistics (core/engine/engine.h)
    opts.stats.colsum = true;
    opts.stats.window = 8;
    auto cpu = make_cpu_backend(2);
    DeviceRowsBackend dev(make_cpu_backend(2));
    Engine a(*model, *cpu, opts), b(*model, dev, opts);
    dev.cache = &b.cache();
    std::unique_ptr<Policy> pa, pb;
    if (!policy_name.empty()) {
        pa = make_policy(policy_name, budget, params);
        pb = make_policy(policy_name, budget, params);
        a.set_policy(pa.get());
        b.set_policy(pb.get());
    }
    std::vector<int64_t> layers_seen;
    b.on_layer_done = [&](int64_t l) {
        if (l < 0) return;
        layers_seen.push_back(l);
        // Observers run after the step: the layer's rows are in the host cache by then.
        const int64_t last = b.cache().n_slots(l, 0) - 1;
        EXPECT_EQ(b.cache().pending_rows(l), 0);
        EXPECT_TRUE(std::any_of(b.cache().k(l, 0) + last * sp.head_dim,
                                b.cache().k(l, 0) + (last + 1) * sp.head_dim,
                                [](float x) { return x != 0.0f; }));
    };
    Sampler greedy({});
    auto la = a.prefill(ids), lb = b.prefill(ids);
    ASSERT_EQ(la, lb);
    // The prompt's layers never synchronised: each delivered its copies once its MLP was queued
    // (Engine::start_prompt_fill); the logits' to_host() is the prompt's only wait.
    EXPECT_EQ(dev.syncs, 0);
    EXPECT_EQ(dev.deliveries, sp.n_layers);
    const int steps = 6;
    for (int s = 0; s < steps; ++s) {
        const int32_t next = greedy.sample(la.data(), sp.vocab_size);
        la = a.decode(next);
        lb = b.decode(next);
        ASSERT_EQ(la, lb) << "step " << s;  // same arithmetic on the same rows: bit-identical
        ASSERT_EQ(a.step_rows(), b.step_rows()) << "step " << s;
    }
    // Every layer, of the prompt and of each decode step, ran with its new rows not yet in the
    // host cache, and took them from new_k / new_v instead.
    EXPECT_EQ(dev.heads_without_host_rows, (1 + steps) * sp.n_layers * sp.n_kv_heads);
    EXPECT_EQ(dev.prefill_heads_without, sp.n_layers * sp.n_kv_heads);
    // The prompt's statistics, key norms included (taken behind the device, from the same rows).
    ASSERT_EQ(a.prefill_stats().size(), b.prefill_stats().size());
    for (size_t l = 0; l < a.prefill_stats().size(); ++l) {
        EXPECT_EQ(a.prefill_stats()[l].key_norm, b.prefill_stats()[l].key_norm) << l;
        EXPECT_EQ(a.prefill_stats()[l].colsum, b.prefill_stats()[l].colsum) << l;
        EXPECT_EQ(a.prefill_stats()[l].window, b.prefill_stats()[l].window) << l;
    }
    EXPECT_EQ(static_cast<int64_t>(layers_seen.size()), steps * sp.n_layers);
    for (int64_t l = 0; l < sp.n_layers; ++l)
        for (int64_t g = 0; g < sp.n_kv_heads; ++g) {
            const int64_t n = a.cache().n_slots(l, g);
            ASSERT_EQ(b.cache().n_slots(l, g), n);
            for (int64_t j = 0; j < n * sp.head_dim; ++j) {
                ASSERT_EQ(a.cache().k(l, g)[j], b.cache().k(l, g)[j]) << l << " " << g;
                ASSERT_EQ(a.cache().v(l, g)[j], b.cache().v(l, g)[j]) << l << " " << g;
            }
            for (int64_t j = 0; j < n; ++j)
                EXPECT_EQ(a.cache().positions(l, g)[j], b.cache().positions(l, g)[j]);
        }
    EXPECT_EQ(b.cache().check_consistency(), "");
    EXPECT_EQ(a.cache().bytes_held(), b.cache().bytes_held());
    // The compressing policies really edited the cache: fewer bytes than every token in full.
    const int64_t every_token =
        (37 + steps) * sp.n_layers * sp.n_kv_heads * 2 * sp.head_dim * a.cache().element_bytes();
    if (!policy_name.empty() && policy_name != "full")
        EXPECT_LT(a.cache().bytes_held(), every_token);
    else
        EXPECT_EQ(a.cache().bytes_held(), every_token);
    for (int64_t l = 0; l < sp.n_layers; ++l)  // bits of quantising policies (KIVI, MiKV)
        for (int64_t g = 0; g < sp.n_kv_heads; ++g) {
            const auto ka = a.cache().k_bits(l, g), kb = b.cache().k_bits(l, g);
            EXPECT_TRUE(std::equal(ka.begin(), ka.end(), kb.begin(), kb.end()));
        }
}

TEST(DeviceRowsEngine, DecodeWithRowsAtTheStepsEndEqualsTheCpuBackend) {
    expect_device_rows_equal_cpu("");
    expect_device_rows_equal_cpu("full");
}

TEST(DeviceRowsEngine, PoliciesThatEditTheCacheKeepTheirDecisions) {
    const Budget b24{.tokens = 24};
    for (const char* name :
         {"h2o", "tova", "streaming_llm", "snapkv", "pyramidkv", "dynamickv", "mikv"})
        expect_device_rows_equal_cpu(name, b24);
    // The test model has 2 layers: none protected / skipped, so that every layer is compressed.
    expect_device_rows_equal_cpu("d2o", b24, {"protected_layers="});
    expect_device_rows_equal_cpu("knorm", b24, {"skip_layers="});
    expect_device_rows_equal_cpu("kivi", {}, {"residual=8", "group=8"});  // quantises in decode
}

// DMC decides about each decode token (append or merge), so its tokens never take this path.
TEST(DeviceRowsEngine, AppendDecisionsAreOnlyDmcs) {
    for (const std::string& name : PolicyRegistry::global().names()) {
        const auto p =
            make_policy(name, name == "full" || name == "kivi" ? Budget{} : Budget{.tokens = 24});
        EXPECT_EQ(p->needs().append_decisions, name == "dmc") << name;
    }
}

}  // namespace
}  // namespace kvscope
