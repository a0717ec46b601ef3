// The KV-mirror sequence: the CUDA backend's device copies of a KVCache (kernels/cuda/
// cuda_kv_mirror.cu, cuda_backend.cpp) against the CPU backend on the same views, through random
// cache edits; and the new-rows path (AttentionArgs::new_k / new_v), where the rows a call just
// produced are copied within the device instead of from the host cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/cache/kv_cache.h"
#include "kernels/backend.h"
#include "tests/cache/cache_harness.h"
#include "tests/kernels/backend_ops_harness.h"

namespace kvscope {
namespace {

using namespace ops_test;  // NOLINT(google-build-using-namespace): the shared test harness

// The CUDA backend keeps device copies of a KVCache's heads and updates them from the cache's edit
// journal (kernels/cuda/cuda_kv_mirror.cu). A cache goes through random edits (append, keep,
// merge, merge_incoming, quantize, demote, clear, copy, a burst that outgrows the slab); after
// each, attention over its views (decode and prefill shapes, with statistics) on the device equals
// the CPU backend on the same views. Layer 1 is attended only every 40 steps, so its mirror replays
// long journals and, when the bounded log has moved on, re-copies whole heads. The views are
// tests/cache/cache_harness.h's journal_view().
Outputs attend_views(Backend& be, const std::vector<KVHeadView>& views, const std::vector<float>& q,
                     const std::vector<int64_t>& qpos, int64_t H, int64_t d) {
    Scope sc(be);
    const auto n = static_cast<int64_t>(qpos.size());
    const auto G = static_cast<int64_t>(views.size());
    const int64_t group = H / G;
    std::vector<std::vector<float>> col(static_cast<size_t>(H)), rows(static_cast<size_t>(H)),
        lse(static_cast<size_t>(H));
    AttentionStats st;
    st.n_rows_tail = 1;
    for (int64_t h = 0; h < H; ++h) {
        const auto len = static_cast<size_t>(views[static_cast<size_t>(h / group)].len);
        col[static_cast<size_t>(h)].assign(len, 0.5f);
        rows[static_cast<size_t>(h)].assign(len, NAN);
        lse[static_cast<size_t>(h)].assign(static_cast<size_t>(n), NAN);
        st.colsum.push_back(col[static_cast<size_t>(h)].data());
        st.rows.push_back(rows[static_cast<size_t>(h)].data());
        st.lse.push_back(lse[static_cast<size_t>(h)].data());
    }
    Tensor Q = sc.act(q, {n, H, d});
    Tensor O = sc.act({}, {n, H, d});
    AttentionArgs a{&Q, qpos.data(), views.data(), G, 1.0f / std::sqrt(static_cast<float>(d)),
                    &O, &st};
    be.attention(a);
    Outputs out{{"out", sc.get(O)}};
    std::vector<float> c2, r2, l2;
    for (int64_t h = 0; h < H; ++h) {
        const auto hs = static_cast<size_t>(h);
        c2.insert(c2.end(), col[hs].begin(), col[hs].end());
        r2.insert(r2.end(), rows[hs].begin(), rows[hs].end());
        l2.insert(l2.end(), lse[hs].begin(), lse[hs].end());
    }
    out.push_back({"colsum", c2});
    out.push_back({"rows", r2});
    out.push_back({"lse", l2});
    return out;
}

// Runs the sequence on `dev` against the CPU backend; returns the number of comparisons made.
int mirror_sequence(Backend& dev, uint32_t seed) {
    // head_dim 80: the fp32 attention kernels on every path (the bf16 tensor-core prefill takes
    // 64 and 128), so one tolerance holds for both shapes.
    constexpr int64_t L = 2, G = 2, H = 4, d = 80;
    auto cpu = make_cpu_backend(2);
    KVCache cache(L, G, d, 2);
    test::RandomKVEdits edits(cache, seed);
    edits.fill(40);
    std::mt19937 rng(seed);
    int compared = 0;
    for (int step = 0; step < 160; ++step) {
        std::string what = "burst of 400 appends";  // outgrows the slab: regrow
        if (step == 60) {
            edits.fill(400);
        } else if (step == 100) {
            // More edits of layer 1 head 0 than its journal keeps (a sliding window: append one,
            // evict the oldest): its mirror, last updated at step 79, must re-copy the head.
            what = "sliding window beyond the journal's reach";
            edits.slide(1, 0, static_cast<int64_t>(KVJournal::kMaxEdits) + 6);
        } else {
            what = edits.step();
        }
        bool empty = false;
        for (int64_t l = 0; l < L; ++l)
            for (int64_t g = 0; g < G; ++g) empty = empty || cache.n_slots(l, g) == 0;
        if (empty) edits.fill(2);  // attention over an empty head is not this test's subject
        for (int64_t l = 0; l < L; ++l) {
            if (l == 1 && step % 40 != 39) continue;
            std::vector<KVHeadView> views;
            int64_t last = 0;
            for (int64_t g = 0; g < G; ++g) {
                views.push_back(test::journal_view(cache, l, g));
                last = std::max(last, cache.positions(l, g).back());
            }
            // Decode (1 row) and prefill-path (12 rows) shapes; the earlier rows see fewer keys.
            const int64_t n = step % 3 == 0 ? 12 : 1;
            std::vector<int64_t> qpos(static_cast<size_t>(n));
            for (int64_t i = 0; i < n; ++i) qpos[static_cast<size_t>(i)] = last - (n - 1 - i);
            const std::vector<float> q =
                randn(static_cast<uint32_t>(rng()), static_cast<size_t>(n * H * d));
            SCOPED_TRACE("seed " + std::to_string(seed) + " step " + std::to_string(step) +
                         " layer " + std::to_string(l) + " after " + what);
            const Outputs ref = attend_views(*cpu, views, q, qpos, H, d);
            const Outputs got = attend_views(dev, views, q, qpos, H, d);
            expect_close(got, ref, tolerance_for("attention", DType::kF32));
            if (::testing::Test::HasFatalFailure()) return compared;
            ++compared;
        }
    }
    const char* off = std::getenv("KVSCOPE_CUDA_KV_MIRROR");  // on unless "0"
    if (dev.name() == "cuda" && !(off && std::string(off) == "0")) {
        EXPECT_GT(dev.memory().in_use, 0) << "no device mirror was made";
    }
    dev.forget_kv(cache.uid());
    return compared;
}

// The harness itself, on the CPU backend against itself (runs everywhere).
TEST(BackendOpsMirror, SequenceRunsOnTheCpuBackend) {
    auto cpu = make_cpu_backend(2);
    EXPECT_GT(mirror_sequence(*cpu, 5), 100);
}

TEST(BackendOpsCuda, KVMirrorsFollowRandomCacheEdits) {
    const DeviceProbe p = probe_cuda();
    if (!p.available) GTEST_SKIP() << "CUDA cases skipped: " << p.detail;
    auto dev = make_backend("cuda");
    for (uint32_t seed : {1u, 2u, 3u}) {
        EXPECT_GT(mirror_sequence(*dev, seed), 100);
        EXPECT_EQ(dev->memory().in_use, 0) << "forget_kv left device memory behind";
    }
}

// ---- New rows copied within the device (AttentionArgs::new_k / new_v)
// ----------------------------- A prompt of 40 rows, decode steps of 1, then a call whose new rows
// are only the last 3 of 5 appended (the first 2 come from the host cache), then decode steps after
// the edits a policy makes between steps (its mirror plan is then a general one): an eviction
// (rows move), a quantisation (rows rewritten in place), a merge, and an eviction before a burst
// that outgrows the slab. Each call equals the CPU backend on the same views. Then a control that
// the path is really taken: device rows that differ from the cache's change the device's output
// (the CPU backend, which reads the cache, does not see them).
Outputs attend_new_rows(Backend& be, const KVCache& cache, const std::vector<float>& q,
                        const std::vector<int64_t>& qpos, int64_t H, const std::vector<float>& nk,
                        const std::vector<float>& nv, int64_t n_new) {
    Scope sc(be);
    const int64_t G = cache.n_kv_heads(), d = cache.head_dim();
    const auto n = static_cast<int64_t>(qpos.size());
    std::vector<KVHeadView> views;
    for (int64_t g = 0; g < G; ++g) views.push_back(test::journal_view(cache, 0, g));
    Tensor Q = sc.act(q, {n, H, d});
    Tensor O = sc.act({}, {n, H, d});
    Tensor K = sc.act(nk, {n_new, G, d});
    Tensor V = sc.act(nv, {n_new, G, d});
    AttentionArgs a{&Q, qpos.data(), views.data(), G, 1.0f / std::sqrt(static_cast<float>(d)),
                    &O, nullptr};
    a.new_k = &K;
    a.new_v = &V;
    be.attention(a);
    return {{"out", sc.get(O)}};
}

int new_rows_sequence(Backend& dev, bool corrupt_device_rows) {
    constexpr int64_t G = 2, H = 4, d = 80;  // fp32 attention kernels (see mirror_sequence)
    auto cpu = make_cpu_backend(2);
    KVCache cache(1, G, d, 2);
    int64_t next_pos = 0;
    int compared = 0, differed = 0;
    // The edit made before a call's rows are appended, as a policy makes it after a step.
    enum Edit : int64_t { kNone, kEvict, kQuantize, kMerge };
    auto edit = [&](int64_t e) {
        for (int64_t g = 0; g < G && e != kNone; ++g) {
            const int64_t len = cache.n_slots(0, g);
            if (e == kEvict) {  // heads differ: every third / fifth slot goes
                std::vector<int64_t> keep;
                for (int64_t j = 0; j < len; ++j)
                    if (j % (g == 0 ? 3 : 5) != 1) keep.push_back(j);
                cache.keep(0, g, keep);
            } else if (e == kQuantize) {  // a middle run of slots, in place
                std::vector<int64_t> slots;
                for (int64_t j = len / 3; j < len / 3 + 4 + g; ++j) slots.push_back(j);
                cache.quantize(0, g, slots, QuantSpec{4, 16, QuantAxis::kPerToken, KVPart::kBoth});
            } else {  // slots 1 and 2 into slot 0
                MergeSpec m;
                m.dst = 0;
                m.src = {1, 2};
                m.dst_weight = 0.5f;
                m.src_weights = {0.25f, 0.25f};
                cache.merge(0, g, m);
            }
        }
    };
    // (edit first, rows appended, of which the last n_new are the call's device rows, queries)
    const std::vector<std::array<int64_t, 4>> calls = {
        {kNone, 40, 40, 40}, {kNone, 1, 1, 1},    {kNone, 1, 1, 1},    {kNone, 5, 3, 3},
        {kNone, 1, 1, 1},    {kNone, 12, 12, 12}, {kEvict, 1, 1, 1},   {kQuantize, 1, 1, 1},
        {kMerge, 1, 1, 1},   {kNone, 1, 1, 1},    {kEvict, 400, 2, 2}, {kEvict, 1, 1, 1}};
    uint32_t seed = 11;
    for (const auto& [e, n_app, n_new, n_q] : calls) {
        edit(e);
        const std::vector<float> k = randn(seed++, static_cast<size_t>(n_app * G * d));
        const std::vector<float> v = randn(seed++, static_cast<size_t>(n_app * G * d));
        std::vector<int64_t> pos(static_cast<size_t>(n_app));
        for (auto& p : pos) p = next_pos++;
        for (int64_t g = 0; g < G; ++g)
            cache.append_rows(0, g, k.data() + g * d, v.data() + g * d, G * d, pos.data(), n_app);
        // The call's rows: the last n_new appended, [n_new, G, d].
        std::vector<float> nk(k.end() - n_new * G * d, k.end());
        std::vector<float> nv(v.end() - n_new * G * d, v.end());
        if (corrupt_device_rows)
            for (auto& x : nk) x = -x;
        std::vector<int64_t> qpos(pos.end() - n_q, pos.end());
        const std::vector<float> q = randn(seed++, static_cast<size_t>(n_q * H * d));
        SCOPED_TRACE("after edit " + std::to_string(e) + " and appending " + std::to_string(n_app) +
                     " rows, " + std::to_string(n_new) + " of them on the device");
        const Outputs ref = attend_new_rows(*cpu, cache, q, qpos, H, nk, nv, n_new);
        const Outputs got = attend_new_rows(dev, cache, q, qpos, H, nk, nv, n_new);
        if (corrupt_device_rows) {
            double diff = 0;
            for (size_t i = 0; i < ref[0].second.size(); ++i)
                diff = std::max(
                    diff, static_cast<double>(std::fabs(got[0].second[i] - ref[0].second[i])));
            differed += diff > 1e-2 ? 1 : 0;  // negated keys: O(1) changes in the outputs
        } else {
            expect_close(got, ref, tolerance_for("attention", DType::kF32));
            if (::testing::Test::HasFatalFailure()) return compared;
        }
        ++compared;
    }
    dev.forget_kv(cache.uid());
    return corrupt_device_rows ? differed : compared;
}

// On the CPU backend the new rows are ignored: the harness runs everywhere, and corrupt device
// rows change nothing there.
TEST(BackendOpsMirror, NewRowsSequenceRunsOnTheCpuBackend) {
    auto cpu = make_cpu_backend(2);
    EXPECT_EQ(new_rows_sequence(*cpu, false), 12);
    EXPECT_EQ(new_rows_sequence(*cpu, true), 0);
}

// Sets an environment variable for a scope (the CUDA backend reads its switches when made).
struct ScopedEnv {
    std::string name;
    ScopedEnv(const char* n, const char* value) : name(n) { ::setenv(n, value, 1); }
    ~ScopedEnv() { ::unsetenv(name.c_str()); }
};

TEST(BackendOpsCuda, KVMirrorsTakeNewRowsFromTheDevice) {
    const DeviceProbe p = probe_cuda();
    if (!p.available) GTEST_SKIP() << "CUDA cases skipped: " << p.detail;
    const char* off = std::getenv("KVSCOPE_CUDA_KV_MIRROR");
    if (off && std::string(off) == "0") GTEST_SKIP() << "KV mirrors are off";
    const ScopedEnv on("KVSCOPE_CUDA_NEW_ROWS", "1");  // the default; set in case the caller's is 0
    auto dev = make_backend("cuda");
    EXPECT_EQ(new_rows_sequence(*dev, false), 12);
    // Every call has device rows in what it attends to, so every output moves.
    EXPECT_EQ(new_rows_sequence(*dev, true), 12);
    EXPECT_EQ(dev->memory().in_use, 0) << "forget_kv left device memory behind";
}

// ---- Deferred host copies (Backend::to_host_later, AttentionStats::deferred)
// --------------------- Decode-shaped calls over a growing cache, rows only and deferred: the rows
// are read after synchronize() and equal the CPU backend's; to_host_later() copies arrive, in
// order, by the next synchronisation (here a to_host()).
std::vector<float> deferred_rows(Backend& be, const KVCache& cache, const std::vector<float>& q,
                                 int64_t qpos, int64_t H) {
    Scope sc(be);
    const int64_t G = cache.n_kv_heads(), d = cache.head_dim(), group = H / G;
    std::vector<KVHeadView> views;
    for (int64_t g = 0; g < G; ++g) views.push_back(test::journal_view(cache, 0, g));
    std::vector<std::vector<float>> rows(static_cast<size_t>(H));
    AttentionStats st;
    st.n_rows_tail = 1;
    st.deferred = true;
    for (int64_t h = 0; h < H; ++h) {
        rows[static_cast<size_t>(h)].assign(static_cast<size_t>(views[h / group].len), NAN);
        st.rows.push_back(rows[static_cast<size_t>(h)].data());
    }
    Tensor Q = sc.act(q, {1, H, d});
    Tensor O = sc.act({}, {1, H, d});
    AttentionArgs a{&Q, &qpos, views.data(), G, 1.0f / std::sqrt(static_cast<float>(d)), &O, &st};
    be.attention(a);
    be.synchronize();  // the rows are the caller's from here on
    std::vector<float> all;
    for (const auto& r : rows) all.insert(all.end(), r.begin(), r.end());
    return all;
}

int deferred_sequence(Backend& dev) {
    constexpr int64_t G = 2, H = 4, d = 80;
    auto cpu = make_cpu_backend(2);
    KVCache cache(1, G, d, 2);
    int compared = 0;
    uint32_t seed = 40;
    for (int64_t step = 0; step < 24; ++step) {
        const int64_t n_app = step == 0 ? 30 : 1;
        const std::vector<float> k = randn(seed++, static_cast<size_t>(n_app * G * d));
        const std::vector<float> v = randn(seed++, static_cast<size_t>(n_app * G * d));
        std::vector<int64_t> pos(static_cast<size_t>(n_app));
        for (int64_t i = 0; i < n_app; ++i) pos[static_cast<size_t>(i)] = cache.n_slots(0, 0) + i;
        cache.append_layer(0, k.data(), v.data(), pos.data(), n_app);
        if (step % 7 == 6) cache.keep(0, 1, std::vector<int64_t>{0, 2, 3, 5});  // heads differ
        const std::vector<float> q = randn(seed++, static_cast<size_t>(H * d));
        SCOPED_TRACE("step " + std::to_string(step));
        const Outputs ref{{"rows", deferred_rows(*cpu, cache, q, pos.back(), H)}};
        const Outputs got{{"rows", deferred_rows(dev, cache, q, pos.back(), H)}};
        expect_close(got, ref, tolerance_for("attention", DType::kF32));
        if (::testing::Test::HasFatalFailure()) return compared;
        ++compared;
    }
    // to_host_later: two copies, delivered by the next to_host(), in order.
    Scope sc(dev);
    const std::vector<float> a = randn(7, 1000), b = randn(8, 3000);
    Tensor ta = sc.act(a, {1000}), tb = sc.act(b, {3000});
    std::vector<float> ga(1000, NAN), gb(3000, NAN), gc(1000, NAN);
    dev.to_host_later(ta, ga.data());
    dev.to_host_later(tb, gb.data());
    dev.to_host(ta, gc.data());
    EXPECT_EQ(ga, a);  // copies: exact
    EXPECT_EQ(gb, b);
    EXPECT_EQ(gc, a);
    // Large copies (12 MB each: the CUDA backend takes a device snapshot and copies it on a
    // stream of its own, HostCopies) keep the values of the moment they were queued, though the
    // source is overwritten right after, and deliver_copies() hands them over, in order, with a
    // small copy between them.
    constexpr int64_t kBig = 3 << 20;
    const std::vector<float> x = randn(9, kBig), y = randn(10, kBig);
    Tensor tx = sc.act(x, {kBig}), ty = sc.act(y, {kBig});
    std::vector<float> gx(kBig, NAN), gy(kBig, NAN), gs(1000, NAN);
    dev.to_host_later(tx, gx.data());
    dev.add_inplace(tx, ty);  // tx = x + y, queued after the copy
    dev.to_host_later(ta, gs.data());
    dev.to_host_later(tx, gy.data());
    dev.deliver_copies();
    EXPECT_EQ(gx, x);
    EXPECT_EQ(gs, a);
    std::vector<float> sum(kBig);
    for (int64_t i = 0; i < kBig; ++i) sum[i] = x[i] + y[i];
    EXPECT_EQ(gy, sum);  // fp32 adds on both backends: exact
    dev.forget_kv(cache.uid());
    return compared;
}

TEST(BackendOpsMirror, DeferredSequenceRunsOnTheCpuBackend) {
    auto cpu = make_cpu_backend(2);
    EXPECT_EQ(deferred_sequence(*cpu), 24);
}

TEST(BackendOpsCuda, DeferredCopiesArriveAtTheNextSync) {
    const DeviceProbe p = probe_cuda();
    if (!p.available) GTEST_SKIP() << "CUDA cases skipped: " << p.detail;
    const ScopedEnv on("KVSCOPE_CUDA_DEFER", "1");  // the default; set in case the caller's is 0
    auto dev = make_backend("cuda");
    ASSERT_NE(dev->describe().find("deferred host copies"), std::string::npos) << dev->describe();
    EXPECT_EQ(deferred_sequence(*dev), 24);
}

}  // namespace
}  // namespace kvscope
