// KIVI: per-channel key blocks flushed at R, per-token values behind a sliding residual of R,
// exact bits and bytes. The rule is the comment block at the top of core/policies/kivi.cpp (the
// second batch has no PyTorch reference: docs/policy_reference.md, "Limits").
#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "core/policies/plan.h"
#include "core/policies/registry.h"
#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

ViewData positions_view(const KVCache& c, int64_t prompt_len, int64_t step) {
    ViewData v;
    v.n_layers = 1;
    v.n_heads = 1;
    v.n_kv_heads = 1;
    v.head_dim = c.head_dim();
    v.prompt_len = prompt_len;
    v.step = step;
    v.layer_ids = {0};
    HeadData h;
    h.pos = positions_of(c, 0, 0);
    v.heads = {{h}};
    return v;
}

// d = 4, G = 4, R = 4, 2 bits, fp16 storage, prompt of 10 tokens.
TEST(KIVI, PrefillFlushAndSlidingResidualHandComputed) {
    auto p = make_policy("kivi", Budget{}, {"group=4", "residual=4"});
    KVCache cache(1, 1, 4, 2);
    for (int t = 0; t < 10; ++t) {
        // Key channel 0 of tokens 0..3 = 0, 1, 2.4, 3 (one per-channel group): scale 1, codes
        // 0, 1, 2, 3 -> 2.4 becomes 2. Value of token 0 = (0, .9, 2, 3): scale 1 -> (0, 1, 2, 3).
        const float k0[] = {0, 1, 2.4f, 3};
        const std::vector<float> k = {t < 4 ? k0[t] : 1.0f, 0, 0, 0};
        const std::vector<float> v =
            t == 0 ? std::vector<float>{0, 0.9f, 2, 3} : std::vector<float>{1, 1, 1, 1};
        cache.append(0, 0, k.data(), v.data(), t);
    }
    p->begin(ModelDims{1, 1, 1, 4}, 10);
    apply(p->after_prefill(positions_view(cache, 10, -1).view()), cache);
    // Keys: first 10 - 10 mod 4 = 8 quantised; values: all but the last 4.
    EXPECT_EQ(bits_of(cache.k_bits(0, 0)), (std::vector<int>{2, 2, 2, 2, 2, 2, 2, 2, 16, 16}));
    EXPECT_EQ(bits_of(cache.v_bits(0, 0)), (std::vector<int>{2, 2, 2, 2, 2, 2, 16, 16, 16, 16}));
    EXPECT_NEAR(cache.k(0, 0)[2 * 4], 2.0, 1e-6);
    EXPECT_NEAR(cache.k(0, 0)[3 * 4], 3.0, 1e-6);
    EXPECT_NEAR(cache.v(0, 0)[1], 1.0, 1e-6);
    // Bits: keys 8 slots x 4 ch x 2 = 64 + groups 4 ch x 2 x 32 = 256; fp keys 2 x 4 x 16 = 128;
    // values 6 x 4 x 2 = 48 + 6 groups x 32 = 192; fp values 4 x 64 = 256 -> 944 bits = 118 B.
    EXPECT_EQ(cache.bytes_held(), 118);

    const std::vector<float> kv = {1, 1, 1, 1};
    // Step 0 (position 10): 3 fp keys (< R); values: 5 fp > R -> slot 6 quantised.
    cache.set_step(0);
    cache.append(0, 0, kv.data(), kv.data(), 10);
    apply(p->after_decode_layer(positions_view(cache, 10, 0).view()), cache);
    EXPECT_EQ(bits_of(cache.k_bits(0, 0)).back(), 16);
    EXPECT_EQ(cache.k_bits(0, 0)[8], 16);
    EXPECT_EQ(cache.v_bits(0, 0)[6], 2);
    EXPECT_EQ(cache.v_bits(0, 0)[7], 16);
    // keys 320 + 3 x 64 = 192 -> 512; values 7 x 8 + 7 x 32 = 280, fp 4 x 64 = 256 -> 1048 bits.
    EXPECT_EQ(cache.bytes_held(), 131);
    // Step 1 (position 11): the key residual reaches R = 4 -> slots 8..11 flushed as a block.
    cache.set_step(1);
    cache.append(0, 0, kv.data(), kv.data(), 11);
    apply(p->after_decode_layer(positions_view(cache, 10, 1).view()), cache);
    EXPECT_EQ(bits_of(cache.k_bits(0, 0)), std::vector<int>(12, 2));
    EXPECT_EQ(bits_of(cache.v_bits(0, 0)),
              (std::vector<int>{2, 2, 2, 2, 2, 2, 2, 2, 16, 16, 16, 16}));
    // keys 320 + (4 x 8 + 4 x 32 = 160) = 480; values 8 x 40 = 320 + 256 -> 1056 bits = 132 B.
    EXPECT_EQ(cache.bytes_held(), 132);
    EXPECT_EQ(cache.check_consistency(), "");
}

TEST(KIVI, ResidualMustBeAMultipleOfTheGroup) {
    EXPECT_THROW(make_policy("kivi", Budget{}, {"group=32", "residual=100"}), InputError);
    EXPECT_THROW(make_policy("kivi", Budget{}, {"k_bits=9"}), InputError);
    EXPECT_NO_THROW(make_policy("kivi", Budget{}));
}

// Invariants over a random run: fewer than R full-precision keys, exactly min(R, n) full-precision
// values, the full-precision parts are the newest tokens, nothing evicted.
TEST(KIVI, RandomRunInvariants) {
    auto p = make_policy("kivi", Budget{}, {"group=4", "residual=8", "k_bits=4"});
    ModelDims dims{2, 4, 2, 8};
    SyntheticRun run(dims, 21, 3, *p);
    run.prefill();
    for (int s = 0; s < 19; ++s) {
        run.decode_step();
        for (int64_t l = 0; l < 2; ++l) {
            for (int64_t h = 0; h < 2; ++h) {
                const KVCache& c = run.cache();
                const int64_t n = c.n_slots(l, h);
                ASSERT_EQ(n, run.next_position());
                int64_t fk = 0, fv = 0;
                for (int64_t i = 0; i < n; ++i) {
                    fk += c.k_bits(l, h)[static_cast<size_t>(i)] == 16;
                    fv += c.v_bits(l, h)[static_cast<size_t>(i)] == 16;
                }
                for (int64_t i = n - fk; i < n; ++i)
                    EXPECT_EQ(c.k_bits(l, h)[static_cast<size_t>(i)], 16);
                for (int64_t i = n - fv; i < n; ++i)
                    EXPECT_EQ(c.v_bits(l, h)[static_cast<size_t>(i)], 16);
                EXPECT_LT(fk, 8);
                EXPECT_EQ(fk, n % 8);
                EXPECT_EQ(fv, std::min<int64_t>(8, n));
                EXPECT_EQ(c.k_bits(l, h)[0], 4);
                EXPECT_EQ(c.v_bits(l, h)[0], 2);
            }
        }
        ASSERT_EQ(run.cache().check_consistency(), "");
    }
}

}  // namespace
}  // namespace kvscope::test
