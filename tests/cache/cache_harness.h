#pragma once
// Test harness of the KV cache tests (tests/cache) and of the tests that drive a real KVCache
// (tests/policies, tests/kernels): a cache filled with recognisable synthetic tokens, and random
// valid edits of a cache.
//
// RandomKVEdits serves the tests that follow a cache through its edit journal
// (tests/cache/kv_journal_test.cpp: host shadows; tests/kernels/backend_ops_test.cpp: the CUDA
// backend's device mirrors). Every call is valid for the cache's current state: append, keep,
// merge, merge_incoming (with and without taking the position), quantize (per token / per
// channel, keys / values / both), demote, clear and copy_contents_from another cache.
#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/cache/kv_cache.h"
#include "kernels/backend.h"

namespace kvscope::test {

// A cache with `n` tokens (positions 0..n-1) in every (layer, head); key channel c of token t is
// a deterministic function so tests can recognise tokens after eviction.
inline KVCache make_filled_cache(int64_t L, int64_t Hkv, int64_t d, int64_t n, int elem_bytes) {
    KVCache c(L, Hkv, d, elem_bytes);
    std::vector<float> k(d), v(d);
    for (int64_t l = 0; l < L; ++l)
        for (int64_t h = 0; h < Hkv; ++h)
            for (int64_t t = 0; t < n; ++t) {
                for (int64_t i = 0; i < d; ++i) {
                    k[i] = static_cast<float>(t) + 0.01f * static_cast<float>(i);
                    v[i] = -static_cast<float>(t) - 0.01f * static_cast<float>(i);
                }
                c.append(l, h, k.data(), v.data(), t);
            }
    return c;
}

// The attention view of one cache head as the engine's head_view() makes it
// (core/engine/engine_cache_bridge.cpp), with the head's journal for followers; the tests link the
// cache only, not the engine.
inline KVHeadView journal_view(const KVCache& c, int64_t l, int64_t h) {
    KVHeadView v;
    v.k = c.k(l, h);
    v.v = c.v(l, h);
    v.pos = c.positions(l, h).data();
    v.len = c.n_slots(l, h);
    v.cache_uid = c.uid();
    v.layer = l;
    v.head = h;
    v.journal = &c.journal(l, h);
    v.version = v.journal->version();
    return v;
}

class RandomKVEdits {
  public:
    RandomKVEdits(KVCache& cache, uint32_t seed) : c_(cache), rng_(seed) {
        for (int64_t l = 0; l < c_.n_layers(); ++l)
            for (int64_t h = 0; h < c_.n_kv_heads(); ++h) next_pos_.push_back(0);
    }

    // Appends `n` tokens to every (layer, head) (as a prefill would).
    void fill(int64_t n) {
        for (int64_t l = 0; l < c_.n_layers(); ++l)
            for (int64_t h = 0; h < c_.n_kv_heads(); ++h)
                for (int64_t i = 0; i < n; ++i) append(l, h);
    }

    // `count` times on (l, h): append one token, evict the oldest (a sliding window; `count`
    // journal edits).
    void slide(int64_t l, int64_t h, int64_t count) {
        for (int64_t i = 0; i < count; ++i) {
            const int64_t n0 = c_.n_slots(l, h);
            append(l, h);
            std::vector<int64_t> keep;
            for (int64_t s = n0 > 1 ? 1 : 0; s <= n0; ++s) keep.push_back(s);
            c_.keep(l, h, keep);
        }
    }

    // One random edit of one random (layer, head), or of the whole cache (clear / copy, rare
    // unless `resets`). Returns what it did, for failure messages.
    std::string step(bool resets = true) {
        const int64_t l = pick(c_.n_layers()), h = pick(c_.n_kv_heads());
        const int64_t n = c_.n_slots(l, h);
        const int op = pick(resets ? 100 : 96);
        const std::string where = " l" + std::to_string(l) + " h" + std::to_string(h);
        if (op < 30 || n < 3) {
            const int64_t k = 1 + pick(4);
            for (int64_t i = 0; i < k; ++i) append(l, h);
            return "append " + std::to_string(k) + where;
        }
        if (op < 45) {
            std::vector<int64_t> keep;
            for (int64_t i = 0; i < n; ++i)
                if (pick(4) != 0) keep.push_back(i);
            std::shuffle(keep.begin(), keep.end(), rng_);  // any order is allowed
            c_.keep(l, h, keep);
            return "keep " + std::to_string(keep.size()) + "/" + std::to_string(n) + where;
        }
        if (op < 57) {
            MergeSpec m;
            m.dst = pick(n);
            const int64_t k = 1 + pick(std::min<int64_t>(3, n - 1));
            std::vector<int64_t> others;
            for (int64_t i = 0; i < n; ++i)
                if (i != m.dst) others.push_back(i);
            std::shuffle(others.begin(), others.end(), rng_);
            m.src.assign(others.begin(), others.begin() + k);
            m.dst_weight = 0.5f;
            m.src_weights.assign(static_cast<size_t>(k), 0.25f);
            c_.merge(l, h, m);
            return "merge " + std::to_string(k) + " into " + std::to_string(m.dst) + where;
        }
        if (op < 67) {
            IncomingMerge m;
            m.take_position = pick(2) == 0;
            m.dst = m.take_position ? n - 1 : pick(n);
            m.dst_weight = 0.75f;
            m.new_weight = 0.25f;
            const std::vector<float> k = row(), v = row();
            c_.merge_incoming(l, h, m, k.data(), v.data(), take_pos(l, h));
            return "merge_incoming into " + std::to_string(m.dst) + where;
        }
        if (op < 82) {
            QuantSpec q;
            q.bits = 2 + pick(7);
            q.group_size = 1 + pick(8);
            q.axis = pick(2) == 0 ? QuantAxis::kPerToken : QuantAxis::kPerChannel;
            q.part = static_cast<KVPart>(pick(3));
            std::vector<int64_t> slots;
            for (int64_t i = 0; i < n; ++i) {
                const bool kq = c_.k_bits(l, h)[static_cast<size_t>(i)] != 16;
                const bool vq = c_.v_bits(l, h)[static_cast<size_t>(i)] != 16;
                const bool free_part = (q.part == KVPart::kKeys && !kq) ||
                                       (q.part == KVPart::kValues && !vq) ||
                                       (q.part == KVPart::kBoth && !kq && !vq);
                if (free_part && pick(2) == 0) slots.push_back(i);
            }
            if (slots.empty()) return "quantize (nothing to quantise)" + where;
            if (q.axis == QuantAxis::kPerToken) std::shuffle(slots.begin(), slots.end(), rng_);
            c_.quantize(l, h, slots, q);
            return "quantize " + std::to_string(slots.size()) + where;
        }
        if (op < 96) {
            // One slot: listing two members of one per-channel block would demote the second
            // twice (the cache refuses that).
            const KVPart part = static_cast<KVPart>(pick(3));
            std::vector<int64_t> eligible;
            for (int64_t i = 0; i < n; ++i) {
                const int kb = c_.k_bits(l, h)[static_cast<size_t>(i)];
                const int vb = c_.v_bits(l, h)[static_cast<size_t>(i)];
                if ((part == KVPart::kValues || (kb != 16 && kb > 1)) &&
                    (part == KVPart::kKeys || (vb != 16 && vb > 1)))
                    eligible.push_back(i);
            }
            if (eligible.empty()) return "demote (nothing to demote)" + where;
            const int64_t s =
                eligible[static_cast<size_t>(pick(static_cast<int64_t>(eligible.size())))];
            const int kb = c_.k_bits(l, h)[static_cast<size_t>(s)];
            const int vb = c_.v_bits(l, h)[static_cast<size_t>(s)];
            const int lowest = part == KVPart::kKeys     ? kb
                               : part == KVPart::kValues ? vb
                                                         : std::min(kb, vb);
            const std::vector<int64_t> slots = {s};
            c_.demote(l, h, slots, lowest - 1, part);
            return "demote slot " + std::to_string(s) + " to " + std::to_string(lowest - 1) + where;
        }
        if (op < 98) {
            c_.clear();
            std::fill(next_pos_.begin(), next_pos_.end(), 0);
            return "clear";
        }
        // copy_contents_from: a different cache of the same shape, filled independently.
        KVCache other(c_.n_layers(), c_.n_kv_heads(), c_.head_dim(), c_.element_bytes());
        RandomKVEdits o(other, static_cast<uint32_t>(rng_()));
        o.fill(1 + pick(6));
        for (int i = 0; i < 4; ++i) o.step(false);
        c_.copy_contents_from(other);
        next_pos_ = o.next_pos_;
        return "copy_contents_from";
    }

  private:
    int64_t pick(int64_t n) {
        return static_cast<int64_t>(rng_() % static_cast<uint64_t>(std::max<int64_t>(n, 1)));
    }
    std::vector<float> row() {
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> r(static_cast<size_t>(c_.head_dim()));
        for (float& x : r) x = nd(rng_);
        return r;
    }
    int64_t take_pos(int64_t l, int64_t h) {
        int64_t& p = next_pos_[static_cast<size_t>(l * c_.n_kv_heads() + h)];
        p += 1 + pick(3);  // gaps: positions need only increase
        return p;
    }
    void append(int64_t l, int64_t h) {
        const std::vector<float> k = row(), v = row();
        c_.append(l, h, k.data(), v.data(), take_pos(l, h));
    }

    KVCache& c_;
    std::mt19937_64 rng_;
    std::vector<int64_t> next_pos_;  // [layer * kv_heads + head] last position handed out
};

}  // namespace kvscope::test
