#include "core/cache/kv_cache.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/cache/quantizer.h"

namespace kvscope {

const char* cache_op_name(CacheOp op) {
    switch (op) {
        case CacheOp::kAppend:
            return "append";
        case CacheOp::kEvict:
            return "evict";
        case CacheOp::kMerge:
            return "merge";
        case CacheOp::kQuantize:
            return "quantize";
        case CacheOp::kDemote:
            return "demote";
    }
    return "?";
}

namespace {

constexpr int64_t kScaleZeroBits = 2 * 16;  // one fp16 scale + one fp16 zero point per group

[[noreturn]] void fail(const std::string& what) {
    throw std::invalid_argument("KVCache: " + what);
}

size_t sz(int64_t i) {
    return static_cast<size_t>(i);
}

int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

std::atomic<uint64_t> g_next_cache_uid{1};

}  // namespace

KVCache::Uid::Uid() : value(g_next_cache_uid.fetch_add(1, std::memory_order_relaxed)) {}

KVCache::KVCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int element_bytes)
    : n_layers_(n_layers),
      n_kv_heads_(n_kv_heads),
      head_dim_(head_dim),
      element_bytes_(element_bytes) {
    if (n_layers <= 0 || n_kv_heads <= 0 || head_dim <= 0)
        fail("dimensions must be positive (layers " + std::to_string(n_layers) + ", kv heads " +
             std::to_string(n_kv_heads) + ", head_dim " + std::to_string(head_dim) + ")");
    if (element_bytes != 1 && element_bytes != 2 && element_bytes != 4)
        fail("element_bytes must be 1, 2 or 4, got " + std::to_string(element_bytes));
    heads_.resize(sz(n_layers * n_kv_heads));
    journals_.resize(heads_.size());
    pending_.assign(sz(n_layers), 0);
}

void KVCache::clear() {
    // Emptied, not freed: the next prompt reuses the memory (an 8B model's cache at 8k tokens is
    // 2 GB of host memory, and first touches of fresh pages cost the GPU prefill ~0.4 s).
    for (Head& h : heads_) {
        for (RowVector* a : {&h.k, &h.v, &h.kpre}) a->clear();
        h.merge_weight.clear();
        h.pos.clear();
        h.k_bits.clear();
        h.v_bits.clear();
        h.k_block.clear();
        h.v_block.clear();
        h.merge_count.clear();
        h.blocks.clear();
        h.bits_held = 0;
    }
    for (KVJournal& j : journals_) j.record_reset();
    std::fill(pending_.begin(), pending_.end(), 0);
    step_ = -1;
}

void KVCache::copy_contents_from(const KVCache& other) {
    if (other.n_layers_ != n_layers_ || other.n_kv_heads_ != n_kv_heads_ ||
        other.head_dim_ != head_dim_ || other.element_bytes_ != element_bytes_)
        fail("copy_contents_from: the caches differ in shape or element size");
    // Element-wise assignment: vectors reuse the capacity they have (a what-if previewer copies
    // the same prompt into the same cache many times).
    for (size_t i = 0; i < heads_.size(); ++i) heads_[i] = other.heads_[i];
    for (KVJournal& j : journals_) j.record_reset();
    pending_ = other.pending_;
    store_prerope_ = other.store_prerope_;
}

void KVCache::set_store_prerope(bool on) {
    if (on != store_prerope_ && total_slots() > 0)
        fail("set_store_prerope() must be called on an empty cache");
    store_prerope_ = on;
}

int KVCache::add_observer(CacheObserver obs) {
    observers_.emplace_back(next_observer_id_, std::move(obs));
    return next_observer_id_++;
}

void KVCache::remove_observer(int id) {
    std::erase_if(observers_, [id](const auto& p) { return p.first == id; });
}

KVCache::Head& KVCache::head_at(int64_t layer, int64_t head) {
    Head& hd = const_cast<Head&>(std::as_const(*this).head_at(layer, head));
    check_not_pending(layer);
    return hd;
}

const KVCache::Head& KVCache::head_at(int64_t layer, int64_t head) const {
    if (layer < 0 || layer >= n_layers_ || head < 0 || head >= n_kv_heads_)
        throw std::out_of_range("KVCache: (layer " + std::to_string(layer) + ", head " +
                                std::to_string(head) + ") out of range");
    return heads_[sz(layer * n_kv_heads_ + head)];
}

KVJournal& KVCache::journal_at(int64_t layer, int64_t head) {
    (void)head_at(layer, head);  // range check
    return journals_[sz(layer * n_kv_heads_ + head)];
}

const KVJournal& KVCache::journal(int64_t layer, int64_t head) const {
    (void)head_at(layer, head);
    return journals_[sz(layer * n_kv_heads_ + head)];
}

void KVCache::emit(const CacheEvent& e) const {
    for (const auto& [id, obs] : observers_) obs(e);
}

CacheEvent KVCache::make_event(int64_t layer, int64_t head, CacheOp op) const {
    CacheEvent e;
    e.step = step_;
    e.layer = static_cast<int32_t>(layer);
    e.head = static_cast<int32_t>(head);
    e.op = op;
    return e;
}

int64_t KVCache::slot_bits(const Head& hd, int64_t i) const {
    auto part = [&](int bits) {
        return bits == 16 ? head_dim_ * element_bytes_ * 8 : head_dim_ * bits;
    };
    return part(hd.k_bits[sz(i)]) + part(hd.v_bits[sz(i)]);
}

void KVCache::release_block(Head& hd, int32_t block) {
    if (block < 0) return;
    QuantBlock& b = hd.blocks[sz(block)];
    if (--b.live == 0) hd.bits_held -= b.n_groups * kScaleZeroBits;
}

// Turns one part of slot i back to full precision (its values changed: merge destination).
void KVCache::drop_part_block(Head& hd, int64_t i, bool keys) {
    int32_t& blk = keys ? hd.k_block[sz(i)] : hd.v_block[sz(i)];
    int& bits = keys ? hd.k_bits[sz(i)] : hd.v_bits[sz(i)];
    if (blk < 0) return;
    hd.bits_held -= slot_bits(hd, i);
    bits = 16;
    hd.bits_held += slot_bits(hd, i);
    release_block(hd, blk);
    blk = -1;
}

void KVCache::remove_slots(Head& hd, KVJournal& jr, const std::vector<char>& remove) {
    const int64_t d = head_dim_;
    const int64_t n = static_cast<int64_t>(hd.pos.size());
    std::vector<int64_t> removed;
    for (int64_t i = 0; i < n; ++i)
        if (remove[sz(i)]) removed.push_back(i);
    const int64_t n_after = n - static_cast<int64_t>(removed.size());
    jr.record_gather(n, std::move(removed), n_after);
    int64_t w = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (remove[sz(i)]) {
            hd.bits_held -= slot_bits(hd, i);
            release_block(hd, hd.k_block[sz(i)]);
            release_block(hd, hd.v_block[sz(i)]);
            continue;
        }
        if (w != i) {
            std::copy_n(hd.k.begin() + i * d, d, hd.k.begin() + w * d);
            std::copy_n(hd.v.begin() + i * d, d, hd.v.begin() + w * d);
            if (!hd.kpre.empty()) std::copy_n(hd.kpre.begin() + i * d, d, hd.kpre.begin() + w * d);
            hd.pos[sz(w)] = hd.pos[sz(i)];
            hd.k_bits[sz(w)] = hd.k_bits[sz(i)];
            hd.v_bits[sz(w)] = hd.v_bits[sz(i)];
            hd.k_block[sz(w)] = hd.k_block[sz(i)];
            hd.v_block[sz(w)] = hd.v_block[sz(i)];
            hd.merge_count[sz(w)] = hd.merge_count[sz(i)];
            hd.merge_weight[sz(w)] = hd.merge_weight[sz(i)];
        }
        ++w;
    }
    hd.k.resize(sz(w * d));
    hd.v.resize(sz(w * d));
    if (!hd.kpre.empty()) hd.kpre.resize(sz(w * d));
    hd.pos.resize(sz(w));
    hd.k_bits.resize(sz(w));
    hd.v_bits.resize(sz(w));
    hd.k_block.resize(sz(w));
    hd.v_block.resize(sz(w));
    hd.merge_count.resize(sz(w));
    hd.merge_weight.resize(sz(w));
}

int64_t KVCache::append(int64_t layer, int64_t head, const float* k, const float* v, int64_t pos,
                        const float* k_prerope) {
    Head& hd = head_at(layer, head);
    if (!k || !v) fail("append: null key or value");
    if (store_prerope_ && !k_prerope) fail("append: the cache stores pre-RoPE keys but none given");
    if (!hd.pos.empty() && pos <= hd.pos.back())
        fail("append: position " + std::to_string(pos) + " does not follow the last position " +
             std::to_string(hd.pos.back()) + " of layer " + std::to_string(layer) + " head " +
             std::to_string(head));
    append_rows(layer, head, k, v, head_dim_, &pos, 1, k_prerope);  // one row: same body
    return static_cast<int64_t>(hd.pos.size()) - 1;
}

void KVCache::append_rows(int64_t layer, int64_t head, const float* k, const float* v,
                          int64_t stride, const int64_t* pos, int64_t n, const float* k_prerope) {
    if (n <= 0) return;
    const RowsIn in{k, v, k_prerope, stride, pos, n};
    check_rows(layer, head, in);
    Head& hd = head_at(layer, head);
    for (int part = 0; part < kRowParts; ++part) copy_rows(hd, in, part);
    finish_rows(layer, head, in);
}

void KVCache::append_layer(int64_t layer, const float* k, const float* v, const int64_t* pos,
                           int64_t n, const float* k_prerope, const ParallelFor& parallel) {
    if (n <= 0) return;
    const int64_t G = n_kv_heads_, d = head_dim_;
    auto in = [&](int64_t g) {
        return RowsIn{k ? k + g * d : nullptr,
                      v ? v + g * d : nullptr,
                      k_prerope ? k_prerope + g * d : nullptr,
                      G * d,
                      pos,
                      n};
    };
    for (int64_t g = 0; g < G; ++g) check_rows(layer, g, in(g));  // all checks before any change
    // The row copies (and first touches of fresh pages) are independent per head and part;
    // positions, bits, accounting and events follow in head order, as append_rows() per head.
    const int64_t tasks = G * kRowParts;
    auto task = [&](int64_t t) {
        copy_rows(head_at(layer, t / kRowParts), in(t / kRowParts),
                  static_cast<int>(t % kRowParts));
    };
    if (parallel)
        parallel(tasks, task);
    else
        for (int64_t t = 0; t < tasks; ++t) task(t);
    for (int64_t g = 0; g < G; ++g) finish_rows(layer, g, in(g));
}

void KVCache::check_rows(int64_t layer, int64_t head, const RowsIn& in) const {
    const Head& hd = head_at(layer, head);
    check_not_pending(layer);
    if (!in.k || !in.v || !in.pos) fail("append_rows: null keys, values or positions");
    if (store_prerope_ && !in.kpre)
        fail("append_rows: the cache stores pre-RoPE keys but none given");
    if (in.stride < head_dim_)
        fail("append_rows: stride " + std::to_string(in.stride) + " below head_dim");
    for (int64_t i = 0; i < in.n; ++i) {
        const int64_t last = i > 0 ? in.pos[i - 1] : (hd.pos.empty() ? INT64_MIN : hd.pos.back());
        if ((i > 0 || !hd.pos.empty()) && in.pos[i] <= last)
            fail("append: position " + std::to_string(in.pos[i]) + " does not follow the last " +
                 "position " + std::to_string(last) + " of layer " + std::to_string(layer) +
                 " head " + std::to_string(head));
    }
}

// Part 0: K, 1: V, 2: pre-RoPE K (when stored). The rows go after the head's current slots.
void KVCache::copy_rows(Head& hd, const RowsIn& in, int part) const {
    if (part == 2 && !store_prerope_) return;
    RowVector& a = part == 0 ? hd.k : part == 1 ? hd.v : hd.kpre;
    const float* src = part == 0 ? in.k : part == 1 ? in.v : in.kpre;
    const size_t ud = static_cast<size_t>(head_dim_);
    const size_t total = (hd.pos.size() + static_cast<size_t>(in.n)) * ud;
    if (a.capacity() < total) a.reserve(std::max(total, 2 * a.size()));
    for (int64_t i = 0; i < in.n; ++i)  // no zero fill first: each byte is written once
        a.insert(a.end(), src + i * in.stride, src + i * in.stride + head_dim_);
}

void KVCache::finish_rows(int64_t layer, int64_t head, const RowsIn& in) {
    Head& hd = head_at(layer, head);
    const size_t old = hd.pos.size(), total = old + static_cast<size_t>(in.n);
    hd.pos.insert(hd.pos.end(), in.pos, in.pos + in.n);
    hd.k_bits.resize(total, 16);
    hd.v_bits.resize(total, 16);
    hd.k_block.resize(total, -1);
    hd.v_block.resize(total, -1);
    hd.merge_count.resize(total, 0);
    hd.merge_weight.resize(total, 0.0f);
    for (size_t s = old; s < total; ++s) hd.bits_held += slot_bits(hd, static_cast<int64_t>(s));
    if (!observers_.empty()) {
        for (size_t s = old; s < total; ++s) {
            CacheEvent e = make_event(layer, head, CacheOp::kAppend);
            e.position = hd.pos[s];
            e.slot = static_cast<int64_t>(s);
            emit(e);
        }
    }
}

void KVCache::reserve(int64_t slots) {
    if (slots <= 0) return;
    const auto n = static_cast<size_t>(slots), nd = n * static_cast<size_t>(head_dim_);
    for (Head& hd : heads_) {
        hd.k.reserve(nd);
        hd.v.reserve(nd);
        if (store_prerope_) hd.kpre.reserve(nd);
        hd.pos.reserve(n);
        hd.k_bits.reserve(n);
        hd.v_bits.reserve(n);
        hd.k_block.reserve(n);
        hd.v_block.reserve(n);
        hd.merge_count.reserve(n);
        hd.merge_weight.reserve(n);
    }
}

void KVCache::keep(int64_t layer, int64_t head, std::span<const int64_t> slots) {
    Head& hd = head_at(layer, head);
    const int64_t n = static_cast<int64_t>(hd.pos.size());
    std::vector<char> remove(sz(n), 1);
    for (int64_t s : slots) {
        if (s < 0 || s >= n)
            fail("keep: slot " + std::to_string(s) + " out of range [0, " + std::to_string(n) +
                 ")");
        if (!remove[sz(s)]) fail("keep: slot " + std::to_string(s) + " listed twice");
        remove[sz(s)] = 0;
    }
    std::vector<CacheEvent> events;
    if (!observers_.empty()) {
        for (int64_t i = 0; i < n; ++i) {
            if (!remove[sz(i)]) continue;
            CacheEvent e = make_event(layer, head, CacheOp::kEvict);
            e.position = hd.pos[sz(i)];
            e.slot = i;
            e.bits = hd.k_bits[sz(i)];
            events.push_back(e);
        }
    }
    remove_slots(hd, journal_at(layer, head), remove);
    for (const CacheEvent& e : events) emit(e);
}

void KVCache::merge(int64_t layer, int64_t head, const MergeSpec& spec) {
    Head& hd = head_at(layer, head);
    const int64_t n = static_cast<int64_t>(hd.pos.size());
    const int64_t d = head_dim_;
    if (spec.dst < 0 || spec.dst >= n) fail("merge: destination slot out of range");
    if (spec.src.size() != spec.src_weights.size())
        fail("merge: " + std::to_string(spec.src.size()) + " sources but " +
             std::to_string(spec.src_weights.size()) + " weights");
    if (!spec.similarity.empty() && spec.similarity.size() != spec.src.size())
        fail("merge: similarity must be empty or one per source");
    if (spec.prerope && (!store_prerope_ || !rotate_))
        fail("merge: pre-RoPE merge needs store_prerope() and a rotate function");
    std::vector<char> remove(sz(n), 0);
    for (int64_t s : spec.src) {
        if (s < 0 || s >= n) fail("merge: source slot " + std::to_string(s) + " out of range");
        if (s == spec.dst) fail("merge: a slot cannot be merged into itself");
        if (remove[sz(s)]) fail("merge: source slot " + std::to_string(s) + " listed twice");
        remove[sz(s)] = 1;
    }
    const size_t dst = sz(spec.dst);
    auto combine = [&](RowVector& a) {
        std::vector<float> acc(sz(d));
        for (int64_t c = 0; c < d; ++c) acc[sz(c)] = spec.dst_weight * a[dst * sz(d) + sz(c)];
        for (size_t i = 0; i < spec.src.size(); ++i)
            for (int64_t c = 0; c < d; ++c)
                acc[sz(c)] += spec.src_weights[i] * a[sz(spec.src[i] * d + c)];
        std::copy(acc.begin(), acc.end(), a.begin() + static_cast<ptrdiff_t>(dst * sz(d)));
    };
    if (spec.prerope) {
        combine(hd.kpre);
        std::copy_n(hd.kpre.begin() + static_cast<ptrdiff_t>(dst * sz(d)), d,
                    hd.k.begin() + static_cast<ptrdiff_t>(dst * sz(d)));
        rotate_(hd.k.data() + dst * sz(d), hd.pos[dst]);
    } else {
        combine(hd.k);
        if (!hd.kpre.empty()) combine(hd.kpre);
    }
    combine(hd.v);
    KVJournal& jr = journal_at(layer, head);
    jr.record_rewrite(n, {spec.dst});  // before the sources go: dst is a pre-removal index
    drop_part_block(hd, spec.dst, true);
    drop_part_block(hd, spec.dst, false);
    for (size_t i = 0; i < spec.src.size(); ++i) {
        hd.merge_count[dst] += 1 + hd.merge_count[sz(spec.src[i])];
        hd.merge_weight[dst] += spec.src_weights[i];
    }
    int64_t below = 0;
    for (int64_t s : spec.src) below += s < spec.dst ? 1 : 0;
    std::vector<CacheEvent> events;
    if (!observers_.empty()) {
        for (size_t i = 0; i < spec.src.size(); ++i) {
            CacheEvent e = make_event(layer, head, CacheOp::kMerge);
            e.position = hd.pos[sz(spec.src[i])];
            e.slot = spec.src[i];
            e.dst_position = hd.pos[dst];
            e.dst_slot = spec.dst - below;
            e.weight = spec.src_weights[i];
            if (!spec.similarity.empty()) e.similarity = spec.similarity[i];
            e.threshold = spec.threshold;
            e.bits = 16;
            events.push_back(e);
        }
    }
    remove_slots(hd, jr, remove);
    for (const CacheEvent& e : events) emit(e);
}

int64_t KVCache::merge_incoming(int64_t layer, int64_t head, const IncomingMerge& m, const float* k,
                                const float* v, int64_t pos, const float* k_prerope) {
    Head& hd = head_at(layer, head);
    const int64_t n = static_cast<int64_t>(hd.pos.size());
    const int64_t d = head_dim_;
    if (m.dst < 0 || m.dst >= n) fail("merge_incoming: destination slot out of range");
    if (!k || !v) fail("merge_incoming: null key or value");
    if (pos <= hd.pos.back())
        fail("merge_incoming: position " + std::to_string(pos) + " is not new");
    if (m.take_position && m.dst != n - 1)
        fail("merge_incoming: take_position needs the last slot (positions must stay ordered)");
    if ((m.prerope || store_prerope_) && !k_prerope && !m.result_k)
        fail("merge_incoming: pre-RoPE key needed");
    if (m.prerope && (!store_prerope_ || !rotate_))
        fail("merge_incoming: pre-RoPE merge needs store_prerope() and a rotate function");
    const size_t off = sz(m.dst * d);
    auto blend = [&](RowVector& a, const float* x, const float* result) {
        for (int64_t c = 0; c < d; ++c)
            a[off + sz(c)] =
                result ? result[c] : m.dst_weight * a[off + sz(c)] + m.new_weight * x[c];
    };
    if (m.take_position) hd.pos[sz(m.dst)] = pos;
    if (m.prerope) {
        blend(hd.kpre, k_prerope, m.result_k);
        std::copy_n(hd.kpre.begin() + static_cast<ptrdiff_t>(off), d,
                    hd.k.begin() + static_cast<ptrdiff_t>(off));
        rotate_(hd.k.data() + off, hd.pos[sz(m.dst)]);
    } else {
        blend(hd.k, k, m.result_k);
        if (store_prerope_) blend(hd.kpre, k_prerope, nullptr);
    }
    blend(hd.v, v, m.result_v);
    journal_at(layer, head).record_rewrite(n, {m.dst});  // K, V and maybe the position
    drop_part_block(hd, m.dst, true);
    drop_part_block(hd, m.dst, false);
    hd.merge_count[sz(m.dst)] += 1;
    hd.merge_weight[sz(m.dst)] += m.new_weight;
    if (!observers_.empty()) {
        CacheEvent e = make_event(layer, head, CacheOp::kMerge);
        e.position = pos;
        e.slot = -1;
        e.dst_position = hd.pos[sz(m.dst)];
        e.dst_slot = m.dst;
        e.weight = m.new_weight;
        e.similarity = m.similarity;
        e.threshold = m.threshold;
        e.bits = 16;
        emit(e);
    }
    return m.dst;
}

// Quantises one part (keys or values) of `slots` (all full precision in that part), or
// re-quantises them into block reuse_block (demote) when reuse_block >= 0.
void KVCache::quantize_part(Head& hd, KVJournal& jr, std::span<const int64_t> slots,
                            const QuantSpec& spec, bool keys, int32_t reuse_block) {
    const int64_t d = head_dim_;
    // The arrays will hold the dequantised values: the rows change in place.
    jr.record_rewrite(static_cast<int64_t>(hd.pos.size()),
                      std::vector<int64_t>(slots.begin(), slots.end()));
    const int64_t G = spec.group_size;
    RowVector& a = keys ? hd.k : hd.v;
    std::vector<int>& bits = keys ? hd.k_bits : hd.v_bits;
    std::vector<int32_t>& blk = keys ? hd.k_block : hd.v_block;
    for (int64_t s : slots) hd.bits_held -= slot_bits(hd, s);
    if (spec.axis == QuantAxis::kPerToken) {
        const bool scaled = keys && !spec.channel_scale.empty();
        std::shared_ptr<const std::vector<float>> scale_ptr;
        if (scaled && reuse_block < 0)
            scale_ptr = std::make_shared<const std::vector<float>>(spec.channel_scale);
        for (int64_t s : slots) {
            float* row = a.data() + s * d;
            if (scaled)
                for (int64_t c = 0; c < d; ++c) row[c] *= spec.channel_scale[sz(c)];
            for (int64_t c0 = 0; c0 < d; c0 += G)
                fake_quantize_group(row + c0, std::min(G, d - c0), 1, spec.bits);
            if (scaled)
                for (int64_t c = 0; c < d; ++c) row[c] /= spec.channel_scale[sz(c)];
            if (reuse_block < 0) {
                QuantBlock b{spec.bits, static_cast<int>(G), spec.axis, ceil_div(d, G), 1,
                             scale_ptr};
                hd.blocks.push_back(b);
                hd.bits_held += b.n_groups * kScaleZeroBits;
                blk[sz(s)] = static_cast<int32_t>(hd.blocks.size() - 1);
            } else {
                hd.blocks[sz(blk[sz(s)])].bits = spec.bits;
            }
            bits[sz(s)] = spec.bits;
        }
    } else {
        const int64_t B = static_cast<int64_t>(slots.size());
        for (int64_t c = 0; c < d; ++c) {
            for (int64_t t0 = 0; t0 < B; t0 += G) {
                const int64_t m = std::min(G, B - t0);
                // Gather one channel of the group's slots (they need not be adjacent rows).
                std::vector<float> col(sz(m));
                for (int64_t t = 0; t < m; ++t) col[sz(t)] = a[sz(slots[sz(t0 + t)] * d + c)];
                fake_quantize_group(col.data(), m, 1, spec.bits);
                for (int64_t t = 0; t < m; ++t) a[sz(slots[sz(t0 + t)] * d + c)] = col[sz(t)];
            }
        }
        int32_t id = reuse_block;
        if (id < 0) {
            hd.blocks.push_back(QuantBlock{spec.bits, static_cast<int>(G), spec.axis, 0, B});
            id = static_cast<int32_t>(hd.blocks.size() - 1);
        } else {
            hd.bits_held -= hd.blocks[sz(id)].n_groups * kScaleZeroBits;
        }
        QuantBlock& b = hd.blocks[sz(id)];
        b.bits = spec.bits;
        b.n_groups = d * ceil_div(B, G);
        hd.bits_held += b.n_groups * kScaleZeroBits;
        for (int64_t s : slots) {
            blk[sz(s)] = id;
            bits[sz(s)] = spec.bits;
        }
    }
    for (int64_t s : slots) hd.bits_held += slot_bits(hd, s);
}

void KVCache::quantize(int64_t layer, int64_t head, std::span<const int64_t> slots,
                       const QuantSpec& spec) {
    Head& hd = head_at(layer, head);
    const int64_t n = static_cast<int64_t>(hd.pos.size());
    if (spec.bits < 1 || spec.bits > 8) fail("quantize: bits must be in 1..8");
    if (spec.group_size < 1) fail("quantize: group_size must be >= 1");
    if (!spec.channel_scale.empty()) {
        if (spec.axis != QuantAxis::kPerToken ||
            static_cast<int64_t>(spec.channel_scale.size()) != head_dim_)
            fail("quantize: channel_scale needs per_token axis and head_dim entries");
        for (float c : spec.channel_scale)
            if (!(c > 0.0f) || !std::isfinite(c))
                fail("quantize: channel_scale entries must be finite and > 0");
    }
    if (slots.empty()) return;
    std::vector<char> seen(sz(n), 0);
    int64_t prev = -1;
    for (int64_t s : slots) {
        if (s < 0 || s >= n) fail("quantize: slot " + std::to_string(s) + " out of range");
        if (seen[sz(s)]) fail("quantize: slot " + std::to_string(s) + " listed twice");
        if (spec.axis == QuantAxis::kPerChannel && s <= prev)
            fail("quantize: per-channel blocks need ascending slots");
        seen[sz(s)] = 1;
        prev = s;
        const bool k_q = hd.k_block[sz(s)] >= 0, v_q = hd.v_block[sz(s)] >= 0;
        if ((spec.part != KVPart::kValues && k_q) || (spec.part != KVPart::kKeys && v_q))
            fail("quantize: slot " + std::to_string(s) + " is already quantised (use demote)");
    }
    KVJournal& jr = journal_at(layer, head);
    if (spec.part != KVPart::kValues) quantize_part(hd, jr, slots, spec, true, -1);
    if (spec.part != KVPart::kKeys) quantize_part(hd, jr, slots, spec, false, -1);
    if (!observers_.empty()) {
        for (int64_t s : slots) {
            CacheEvent e = make_event(layer, head, CacheOp::kQuantize);
            e.position = hd.pos[sz(s)];
            e.slot = s;
            e.bits = spec.bits;
            e.part = spec.part;
            emit(e);
        }
    }
}

void KVCache::demote(int64_t layer, int64_t head, std::span<const int64_t> slots, int bits,
                     KVPart part) {
    Head& hd = head_at(layer, head);
    const int64_t n = static_cast<int64_t>(hd.pos.size());
    if (bits < 1 || bits > 8) fail("demote: bits must be in 1..8");
    std::vector<CacheEvent> events;
    auto one_part = [&](bool keys) {
        std::vector<int32_t>& blk = keys ? hd.k_block : hd.v_block;
        std::vector<int>& cur = keys ? hd.k_bits : hd.v_bits;
        std::vector<int32_t> done_blocks;
        for (int64_t s : slots) {
            if (s < 0 || s >= n) fail("demote: slot " + std::to_string(s) + " out of range");
            const int32_t b = blk[sz(s)];
            if (b < 0) fail("demote: slot " + std::to_string(s) + " is not quantised");
            if (bits >= cur[sz(s)])
                fail("demote: slot " + std::to_string(s) + " holds " + std::to_string(cur[sz(s)]) +
                     " bits, cannot demote to " + std::to_string(bits));
            const QuantBlock& qb = hd.blocks[sz(b)];
            QuantSpec spec{bits, qb.group_size, qb.axis, keys ? KVPart::kKeys : KVPart::kValues};
            if (qb.channel_scale) spec.channel_scale = *qb.channel_scale;
            std::vector<int64_t> members;
            if (qb.axis == QuantAxis::kPerToken) {
                members.push_back(s);
            } else {
                if (std::find(done_blocks.begin(), done_blocks.end(), b) != done_blocks.end())
                    continue;
                done_blocks.push_back(b);
                for (int64_t i = 0; i < n; ++i)
                    if (blk[sz(i)] == b) members.push_back(i);
            }
            quantize_part(hd, journal_at(layer, head), members, spec, keys, b);
            for (int64_t i : members) {
                CacheEvent e = make_event(layer, head, CacheOp::kDemote);
                e.position = hd.pos[sz(i)];
                e.slot = i;
                e.bits = bits;
                e.part = keys ? KVPart::kKeys : KVPart::kValues;
                events.push_back(e);
            }
        }
    };
    if (part != KVPart::kValues) one_part(true);
    if (part != KVPart::kKeys) one_part(false);
    for (const CacheEvent& e : events) emit(e);
}

int64_t KVCache::n_slots(int64_t layer, int64_t head) const {
    return static_cast<int64_t>(head_at(layer, head).pos.size());
}

int64_t KVCache::total_slots() const {
    int64_t t = 0;
    for (const Head& h : heads_) t += static_cast<int64_t>(h.pos.size());
    return t;
}

const float* KVCache::k(int64_t layer, int64_t head) const {
    return head_at(layer, head).k.data();
}
const float* KVCache::v(int64_t layer, int64_t head) const {
    return head_at(layer, head).v.data();
}
const float* KVCache::k_prerope(int64_t layer, int64_t head) const {
    const Head& hd = head_at(layer, head);
    return store_prerope_ ? hd.kpre.data() : nullptr;
}
std::span<const int64_t> KVCache::positions(int64_t layer, int64_t head) const {
    return head_at(layer, head).pos;
}
std::span<const int> KVCache::k_bits(int64_t layer, int64_t head) const {
    return head_at(layer, head).k_bits;
}
std::span<const int> KVCache::v_bits(int64_t layer, int64_t head) const {
    return head_at(layer, head).v_bits;
}
std::span<const int32_t> KVCache::merge_count(int64_t layer, int64_t head) const {
    return head_at(layer, head).merge_count;
}
std::span<const float> KVCache::merge_weight(int64_t layer, int64_t head) const {
    return head_at(layer, head).merge_weight;
}

SlotInfo KVCache::slot(int64_t layer, int64_t head, int64_t slot) const {
    const Head& hd = head_at(layer, head);
    if (slot < 0 || slot >= static_cast<int64_t>(hd.pos.size()))
        throw std::out_of_range("KVCache::slot: index out of range");
    return SlotInfo{hd.pos[sz(slot)], hd.k_bits[sz(slot)], hd.v_bits[sz(slot)],
                    hd.merge_count[sz(slot)], hd.merge_weight[sz(slot)]};
}

int64_t KVCache::find_position(int64_t layer, int64_t head, int64_t pos) const {
    const Head& hd = head_at(layer, head);
    auto it = std::lower_bound(hd.pos.begin(), hd.pos.end(), pos);
    if (it == hd.pos.end() || *it != pos) return -1;
    return it - hd.pos.begin();
}

int64_t KVCache::bytes_held(int64_t layer, int64_t head) const {
    return ceil_div(head_at(layer, head).bits_held, 8);
}

int64_t KVCache::bytes_held() const {
    int64_t t = 0;
    for (const Head& h : heads_) t += ceil_div(h.bits_held, 8);
    return t;
}

int64_t KVCache::bytes_full_precision(int64_t layer, int64_t head) const {
    return n_slots(layer, head) * 2 * head_dim_ * element_bytes_;
}

int64_t KVCache::recompute_bits(const Head& hd, int64_t head_dim, int element_bytes) {
    int64_t bits = 0;
    auto part = [&](int b) { return b == 16 ? head_dim * element_bytes * 8 : head_dim * b; };
    for (size_t i = 0; i < hd.pos.size(); ++i) bits += part(hd.k_bits[i]) + part(hd.v_bits[i]);
    std::vector<int64_t> live(hd.blocks.size(), 0);
    for (size_t i = 0; i < hd.pos.size(); ++i) {
        if (hd.k_block[i] >= 0) ++live[sz(hd.k_block[i])];
        if (hd.v_block[i] >= 0) ++live[sz(hd.v_block[i])];
    }
    for (size_t b = 0; b < hd.blocks.size(); ++b)
        if (live[b] > 0) bits += hd.blocks[b].n_groups * kScaleZeroBits;
    return bits;
}

std::string KVCache::check_consistency() const {
    const int64_t d = head_dim_;
    for (int64_t l = 0; l < n_layers_; ++l) {
        for (int64_t h = 0; h < n_kv_heads_; ++h) {
            const Head& hd = heads_[sz(l * n_kv_heads_ + h)];
            const std::string where =
                "layer " + std::to_string(l) + " head " + std::to_string(h) + ": ";
            const size_t n = hd.pos.size();
            if (hd.k.size() != n * sz(d) || hd.v.size() != n * sz(d))
                return where + "key/value arrays do not match the slot count";
            if (store_prerope_ && hd.kpre.size() != n * sz(d))
                return where + "pre-RoPE keys do not match the slot count";
            if (hd.k_bits.size() != n || hd.v_bits.size() != n || hd.k_block.size() != n ||
                hd.v_block.size() != n || hd.merge_count.size() != n || hd.merge_weight.size() != n)
                return where + "per-slot arrays do not match the slot count";
            for (size_t i = 1; i < n; ++i)
                if (hd.pos[i] <= hd.pos[i - 1]) return where + "positions not strictly increasing";
            std::vector<int64_t> live(hd.blocks.size(), 0);
            for (size_t i = 0; i < n; ++i) {
                for (int part = 0; part < 2; ++part) {
                    const int b = part ? hd.v_bits[i] : hd.k_bits[i];
                    const int32_t blk = part ? hd.v_block[i] : hd.k_block[i];
                    if (b != 16 && (b < 1 || b > 8)) return where + "bits out of range";
                    if ((b == 16) != (blk < 0))
                        return where + "bits and quantisation block disagree";
                    if (blk >= 0) {
                        if (sz(blk) >= hd.blocks.size()) return where + "bad block index";
                        if (hd.blocks[sz(blk)].bits != b)
                            return where + "slot bits differ from its block";
                        ++live[sz(blk)];
                    }
                }
            }
            for (size_t b = 0; b < hd.blocks.size(); ++b)
                if (live[b] != hd.blocks[b].live) return where + "block live count is wrong";
            const int64_t bits = recompute_bits(hd, d, element_bytes_);
            if (bits != hd.bits_held)
                return where + "accounted " + std::to_string(hd.bits_held) + " bits, slots hold " +
                       std::to_string(bits);
        }
    }
    return "";
}

}  // namespace kvscope
