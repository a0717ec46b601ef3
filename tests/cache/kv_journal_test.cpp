// The KV cache's edit journal (kernels/kv_journal.h): a follower (KVShadow, the host twin of the
// CUDA backend's device mirror) that synced at any past version and replays the journal holds
// exactly the cache's K, V and positions; it copies only the rows the edits touched; the log is
// bounded and a follower it no longer reaches re-copies the whole head.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/cache/kv_cache.h"
#include "kernels/backend.h"
#include "kernels/kv_journal.h"
#include "tests/cache/cache_harness.h"

namespace kvscope {
namespace {

// Exact equality of a shadow with the cache's head (the cache's arrays are what attention reads).
void expect_same(const KVShadow& s, const KVCache& c, int64_t l, int64_t h,
                 const std::string& what) {
    const int64_t n = c.n_slots(l, h), d = c.head_dim();
    ASSERT_EQ(s.len(), n) << what;
    const std::vector<float> k(c.k(l, h), c.k(l, h) + n * d), v(c.v(l, h), c.v(l, h) + n * d);
    const auto p = c.positions(l, h);
    ASSERT_EQ(s.k(), k) << what;
    ASSERT_EQ(s.v(), v) << what;
    ASSERT_EQ(s.pos(), std::vector<int64_t>(p.begin(), p.end())) << what;
    ASSERT_EQ(s.version(), c.journal(l, h).version()) << what;
}

TEST(KVJournal, ReplayFromEveryVersionEqualsTheCache) {
    for (uint32_t seed : {1u, 2u, 3u, 4u}) {
        KVCache c(2, 2, 8, 2);
        test::RandomKVEdits edits(c, seed);
        edits.fill(6);
        // One follower per (step, layer, head), synced right after that step, all replayed at the
        // end; plus one long-lived follower per head synced after every step.
        std::vector<std::vector<std::unique_ptr<KVShadow>>> at_step;
        std::vector<KVShadow> live(4, KVShadow(8));
        std::vector<std::string> log;
        for (int step = 0; step < 200; ++step) {
            log.push_back(edits.step());
            std::vector<std::unique_ptr<KVShadow>> now;
            for (int64_t l = 0; l < 2; ++l)
                for (int64_t h = 0; h < 2; ++h) {
                    now.push_back(std::make_unique<KVShadow>(8));
                    now.back()->sync(test::journal_view(c, l, h));
                    KVShadow& f = live[static_cast<size_t>(l * 2 + h)];
                    f.sync(test::journal_view(c, l, h));
                    SCOPED_TRACE("seed " + std::to_string(seed) + " step " + std::to_string(step));
                    expect_same(f, c, l, h, log.back());
                    ASSERT_EQ(c.check_consistency(), "");
                }
            at_step.push_back(std::move(now));
        }
        // Every kind of edit happened.
        for (const char* kind : {"append", "keep", "merge ", "merge_incoming", "quantize ",
                                 "demote slot", "clear", "copy_contents_from"}) {
            bool seen = false;
            for (const std::string& e : log) seen = seen || e.rfind(kind, 0) == 0;
            EXPECT_TRUE(seen) << "seed " << seed << ": no " << kind;
        }
        // A few more edits, then every past follower catches up.
        for (int i = 0; i < 10; ++i) log.push_back(edits.step(false));
        for (size_t s = 0; s < at_step.size(); ++s)
            for (int64_t l = 0; l < 2; ++l)
                for (int64_t h = 0; h < 2; ++h) {
                    KVShadow& f = *at_step[s][static_cast<size_t>(l * 2 + h)];
                    f.sync(test::journal_view(c, l, h));
                    expect_same(f, c, l, h,
                                "seed " + std::to_string(seed) + ", follower from step " +
                                    std::to_string(s) + " (" + log[s] + ")");
                }
    }
}

TEST(KVJournal, OnlyTouchedRowsAreCopied) {
    KVCache c(1, 1, 4, 2);
    test::RandomKVEdits edits(c, 7);
    edits.fill(10);
    KVShadow f(4);
    EXPECT_EQ(f.sync(test::journal_view(c, 0, 0)), 10);  // first sync: everything
    EXPECT_EQ(f.sync(test::journal_view(c, 0, 0)), 0);   // nothing changed
    const float k[4] = {1, 2, 3, 4}, v[4] = {5, 6, 7, 8};
    c.append(0, 0, k, v, 100);
    EXPECT_EQ(c.journal(0, 0).version(), 0u);           // fill's appends and this one: no edit...
    EXPECT_EQ(f.sync(test::journal_view(c, 0, 0)), 1);  // ...one new row
    const std::vector<int64_t> keep = {0, 2, 3, 5, 6, 7, 8, 9, 10};
    c.keep(0, 0, keep);
    EXPECT_EQ(f.sync(test::journal_view(c, 0, 0)), 0);  // a gather moves rows, copies none
    MergeSpec m;
    m.dst = 4;
    m.src = {1};
    m.src_weights = {0.5f};
    c.merge(0, 0, m);
    EXPECT_EQ(f.sync(test::journal_view(c, 0, 0)), 1);  // the destination
    QuantSpec q;
    q.bits = 4;
    q.group_size = 2;
    const std::vector<int64_t> qs = {0, 1, 2};
    c.quantize(0, 0, qs, q);
    EXPECT_EQ(f.sync(test::journal_view(c, 0, 0)), 3);
    expect_same(f, c, 0, 0, "after quantize");
    c.clear();
    c.append(0, 0, k, v, 0);
    EXPECT_EQ(f.sync(test::journal_view(c, 0, 0)), 1);  // reset: the whole (new) head
    expect_same(f, c, 0, 0, "after clear");
}

TEST(KVJournal, LogIsBoundedAndOldFollowersRecopy) {
    KVCache c(1, 1, 4, 2);
    test::RandomKVEdits edits(c, 11);
    edits.fill(8);
    KVShadow old(4);
    old.sync(test::journal_view(c, 0, 0));
    const float k[4] = {1, 2, 3, 4}, v[4] = {5, 6, 7, 8};
    int64_t pos = 1000;
    for (size_t i = 0; i < KVJournal::kMaxEdits + 10; ++i) {  // append + evict the oldest
        c.append(0, 0, k, v, pos++);
        const int64_t n = c.n_slots(0, 0);
        std::vector<int64_t> keep;
        for (int64_t s = 1; s < n; ++s) keep.push_back(s);
        c.keep(0, 0, keep);
    }
    const KVJournal& j = c.journal(0, 0);
    EXPECT_LE(j.edits().size(), KVJournal::kMaxEdits);
    EXPECT_GT(j.base(), 0u);
    EXPECT_EQ(j.base() + j.edits().size(), j.version());
    EXPECT_EQ(old.sync(test::journal_view(c, 0, 0)), c.n_slots(0, 0));  // too old: whole head
    expect_same(old, c, 0, 0, "after the log moved on");
}

TEST(KVJournal, EachCacheHasItsOwnUid) {
    KVCache a(1, 1, 4, 2), b(1, 1, 4, 2);
    EXPECT_NE(a.uid(), b.uid());
    // A copy is another cache: followers must not mistake one for the other (the copy is the test).
    const KVCache copy(a);  // NOLINT(performance-unnecessary-copy-initialization)
    EXPECT_NE(copy.uid(), a.uid());
}

}  // namespace
}  // namespace kvscope
