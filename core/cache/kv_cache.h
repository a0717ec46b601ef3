#pragma once
// STATUS: stable (additions only from here on)
// KVCache: the CPU reference KV cache, per (layer, KV head) a list of slots.
//
// Per (layer l, KV head h), n = n_slots(l, h), d = head_dim:
//   k(l,h)          float [n, d]  post-RoPE keys as attention reads them
//   v(l,h)          float [n, d]  values
//   k_prerope(l,h)  float [n, d]  pre-RoPE keys (only when store_prerope() is on; DMC)
//   positions(l,h)  int64 [n]     original token position, strictly increasing
//   k_bits/v_bits   int   [n]     16 = full precision (the model's storage dtype), else 1..8
//   merge_count     int32 [n]     tokens merged into the slot (transitively), 0 = never merged
//   merge_weight    float [n]     sum of the weights the sources were merged in with
// Quantised slots hold their DEQUANTISED values in k/v, so attention over them is
// dequantise-then-attend by construction.
//
// Memory accounting (bytes_held) counts what a real cache would hold, exactly:
//   full-precision part:  d * element_bytes per slot and tensor (K and V counted separately)
//   quantised part:       d * bits / 8 per slot and tensor (packed codes), plus per group one fp16
//                         scale and one fp16 zero point (4 bytes per group)
// A group of a per-channel block (KIVI keys) is shared by up to group_size slots; its 4 bytes are
// held while any of those slots is alive. Evicted slots are removed from the arrays: a masked
// token is not a freed one. The pre-RoPE copy is simulator bookkeeping (a real DMC cache keeps
// running sums instead of K) and is not counted.
//
// Every change is also written to a per-(layer, head) edit journal (kernels/kv_journal.h): a
// version that only grows plus a bounded log (removed slots, rewritten slots; appends only grow
// the slot count; clear and copy_contents_from reset it). A device backend follows it to keep its
// copy of a head current without copying the whole head again (head views carry uid(), the
// journal and its version). A copy of a cache is another cache (its own uid); caches are not
// assignable (use copy_contents_from).
//
// Slot indices passed to operations are the current ones (0..n-1). Every operation emits events
// (cache_event.h) to the registered observers after it has been applied. Misuse (bad index, merge
// of a slot into itself, quantising an already quantised part...) throws std::invalid_argument or
// std::out_of_range: these are programming errors of the caller, not input errors.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/cache/cache_event.h"
#include "core/cache/row_storage.h"
#include "kernels/kv_journal.h"

namespace kvscope {

// How a quantize() groups values. per_token: groups of group_size consecutive channels within
// one slot (KIVI values, MiKV). per_channel: the slots passed form one block; within each channel,
// groups of group_size consecutive slots of the block share a scale/zero (KIVI keys).
enum class QuantAxis : uint8_t { kPerToken, kPerChannel };

struct QuantSpec {
    int bits = 4;         // 1..8
    int group_size = 32;  // values per group (>= 1); a last partial group is allowed
    QuantAxis axis = QuantAxis::kPerToken;
    KVPart part = KVPart::kBoth;
    // Optional [head_dim], per_token keys only (MiKV key channel balancing): the cache quantises
    // K[s, c] * channel_scale[c] and then holds dequant(...) / channel_scale[c]; the scale stays
    // with the slot's block, so demote() re-quantises in the same scaled space. Values ignore it.
    // Not counted in bytes_held (one fp16 vector per head, shared by all slots).
    std::vector<float> channel_scale;
};

// Merge of cached slots into one cached slot (D2O): with w_dst = dst_weight, w_i = src_weights[i]
//   K[dst] <- w_dst * K[dst] + sum_i w_i * K[src_i]      (likewise V)
// then the sources are removed. With prerope = true the pre-RoPE keys are combined instead and
// K[dst] = rotate(Kpre[dst], positions[dst]) (needs store_prerope() and a rotate function).
// A quantised destination becomes full precision (its values are no longer codes).
struct MergeSpec {
    std::vector<int64_t> src;  // current slot indices, distinct, none equal to dst
    int64_t dst = -1;
    float dst_weight = 1.0f;
    std::vector<float> src_weights;  // [src.size()]
    std::vector<float> similarity;   // optional [src.size()], reported in the events
    float threshold = CacheEvent::kNone;
    bool prerope = false;
};

// Merge of a token that is not in the cache yet into a cached slot (DMC), instead of append():
//   Kpre[dst] <- dst_weight * Kpre[dst] + new_weight * k_prerope_new   (prerope = true)
//   K[dst]    <- rotate(Kpre[dst], positions[dst])
// or, with prerope = false, the same on post-RoPE K. V likewise. With take_position the slot moves
// to the new token's position (DMC rotates the averaged key at the newest position). When
// result_k / result_v are set, they are the slot's new key (pre-RoPE if prerope) / value instead
// of the weighted sum (DMC's 12-token window subtracts old contributions the cache no longer has).
struct IncomingMerge {
    int64_t dst = -1;
    float dst_weight = 1.0f;
    float new_weight = 1.0f;
    bool prerope = false;
    bool take_position = true;
    const float* result_k = nullptr;  // optional [d]
    const float* result_v = nullptr;  // optional [d]
    float similarity = CacheEvent::kNone;
    float threshold = CacheEvent::kNone;
};

struct SlotInfo {
    int64_t position = -1;
    int k_bits = 16;
    int v_bits = 16;
    int32_t merge_count = 0;
    float merge_weight = 0.0f;
};

class KVCache {
  public:
    // element_bytes: size of one element in the model's storage dtype (2 for bf16/fp16, 4 for
    // fp32); full-precision slots are accounted with it.
    KVCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int element_bytes);

    int64_t n_layers() const { return n_layers_; }
    int64_t n_kv_heads() const { return n_kv_heads_; }
    int64_t head_dim() const { return head_dim_; }
    int element_bytes() const { return element_bytes_; }

    // Removes every slot (no events) and resets step() to -1. Observers, rotate and
    // store_prerope stay.
    void clear();
    // Replaces every slot (K/V, positions, bits, merge metadata, quantisation groups) with a copy
    // of `other`'s, without events; store_prerope follows `other`. Observers, rotate and step
    // stay. Throws std::invalid_argument when the dimensions or element bytes differ. Used to
    // restart decoding from a saved full-cache state (core/whatif).
    void copy_contents_from(const KVCache& other);

    // Step stamped on events: -1 = prefill, 0.. = decode step. Set by the engine.
    void set_step(int64_t step) { step_ = step; }
    int64_t step() const { return step_; }

    // When on, append() requires the pre-RoPE key and k_prerope() is kept aligned with k().
    void set_store_prerope(bool on);
    bool store_prerope() const { return store_prerope_; }
    // Applies RoPE for position pos to one key [head_dim] in place (provided by the engine).
    using RotateFn = std::function<void(float* k, int64_t pos)>;
    void set_rotate(RotateFn fn) { rotate_ = std::move(fn); }

    // Observers get every event; returns an id for remove_observer().
    int add_observer(CacheObserver obs);
    void remove_observer(int id);

    // ---- operations --------------------------------------------------------------------------
    // Appends one token; pos must exceed the head's last position. Returns the new slot index.
    int64_t append(int64_t layer, int64_t head, const float* k, const float* v, int64_t pos,
                   const float* k_prerope = nullptr);
    // Appends n tokens to one head at once, as n append() calls would (same checks, events and
    // accounting): token i's key at k + i * stride, value at v + i * stride, pre-RoPE key at
    // k_prerope + i * stride (stride in floats: the engine's [n, n_kv_heads, head_dim] rows),
    // position pos[i]. Each array grows once: a prompt's keys are no longer appended row by row.
    void append_rows(int64_t layer, int64_t head, const float* k, const float* v, int64_t stride,
                     const int64_t* pos, int64_t n, const float* k_prerope = nullptr);
    // Runs task(0) .. task(tasks - 1), possibly at the same time on several threads.
    using ParallelFor =
        std::function<void(int64_t tasks, const std::function<void(int64_t)>& task)>;
    // append_rows() for every head of a layer: k, v (and k_prerope) are [n, n_kv_heads,
    // head_dim], positions pos[n] the same for every head. Every check runs before any change;
    // the row copies, independent per head, go through `parallel` when given (an 8B prompt of 8k
    // tokens copies 64 MB per layer into fresh pages); checks, events and accounting are those
    // of append_rows() head by head, in head order.
    void append_layer(int64_t layer, const float* k, const float* v, const int64_t* pos, int64_t n,
                      const float* k_prerope = nullptr, const ParallelFor& parallel = {});
    // A backend that reads a call's new rows from its own memory
    // (Backend::new_rows_stay_on_device()): the slots of every head of a layer go in now, with
    // positions, checks, accounting and events exactly as append_layer(), and their K/V rows
    // follow with fill_pending_rows() once the device's copy has arrived, before anything reads
    // them. Until then the rows' contents are unspecified (not even written: a prompt's rows
    // first touch their pages in the fill). No pre-RoPE keys (the cache must not store them).
    // While a layer's rows are pending, every other change to that layer throws.
    void append_layer_slots(int64_t layer, const int64_t* pos, int64_t n);
    // The pending rows of `layer`, k and v [n, n_kv_heads, head_dim] as append_layer() takes
    // them (heads in parallel through `parallel` when given); no events and no journal entry
    // (the append announced them). Throws when none are pending. It touches this layer's rows
    // and pending count only, so it may run on another thread while the caller changes other
    // layers (the engine fills a prompt's rows of layer l while the device runs layer l + 1);
    // nothing may read or change this layer meanwhile.
    void fill_pending_rows(int64_t layer, const float* k, const float* v,
                           const ParallelFor& parallel = {});
    int64_t pending_rows(int64_t layer) const;  // 0 when none
    // Room for `slots` tokens in every head without reallocating: a decode step that outgrows
    // a head's arrays copies the whole head (a 32k-token 8B cache: gigabytes in one step), so the
    // engine reserves the prompt plus headroom before prefill. Contents and accounting unchanged.
    void reserve(int64_t slots);
    // Keeps exactly `slots` (any order, no duplicates; survivors keep their relative order); the
    // others are evicted (one evict event each, in slot order).
    void keep(int64_t layer, int64_t head, std::span<const int64_t> slots);
    void merge(int64_t layer, int64_t head, const MergeSpec& spec);
    // Returns the destination's slot index (unchanged by this operation).
    int64_t merge_incoming(int64_t layer, int64_t head, const IncomingMerge& m, const float* k,
                           const float* v, int64_t pos, const float* k_prerope = nullptr);
    // Quantises full-precision parts of `slots` (ascending for per_channel). The k/v arrays then
    // hold the dequantised values.
    void quantize(int64_t layer, int64_t head, std::span<const int64_t> slots,
                  const QuantSpec& spec);
    // Lowers the bits of already quantised parts (re-quantising the dequantised values with the
    // same grouping). For a per-channel block the whole block is re-quantised and every live
    // slot of it gets a demote event.
    void demote(int64_t layer, int64_t head, std::span<const int64_t> slots, int bits,
                KVPart part = KVPart::kBoth);

    // ---- reading -----------------------------------------------------------------------------
    int64_t n_slots(int64_t layer, int64_t head) const;
    int64_t total_slots() const;
    const float* k(int64_t layer, int64_t head) const;
    const float* v(int64_t layer, int64_t head) const;
    const float* k_prerope(int64_t layer, int64_t head) const;  // nullptr when not stored
    std::span<const int64_t> positions(int64_t layer, int64_t head) const;
    std::span<const int> k_bits(int64_t layer, int64_t head) const;
    std::span<const int> v_bits(int64_t layer, int64_t head) const;
    std::span<const int32_t> merge_count(int64_t layer, int64_t head) const;
    std::span<const float> merge_weight(int64_t layer, int64_t head) const;
    SlotInfo slot(int64_t layer, int64_t head, int64_t slot) const;
    // Slot index holding `pos`, or -1.
    int64_t find_position(int64_t layer, int64_t head, int64_t pos) const;

    // ---- memory ------------------------------------------------------------------------------
    int64_t bytes_held(int64_t layer, int64_t head) const;
    int64_t bytes_held() const;
    // What the same slots would take at full precision.
    int64_t bytes_full_precision(int64_t layer, int64_t head) const;
    // Recomputes everything from the slot arrays and compares with the incremental state
    // (sizes, strictly increasing positions, bits in range, live quantisation groups, bytes).
    // Returns "" when consistent, else a description of the first problem.
    std::string check_consistency() const;

    // ---- followers (device copies) -----------------------------------------------------------
    // Unique per KVCache object for the life of the process (a counter, not an address).
    uint64_t uid() const { return uid_.value; }
    const KVJournal& journal(int64_t layer, int64_t head) const;

  private:
    struct QuantBlock {
        int bits = 16;
        int group_size = 0;
        QuantAxis axis = QuantAxis::kPerToken;
        int64_t n_groups = 0;  // scale/zero pairs held
        int64_t live = 0;      // live slots referencing the block
        std::shared_ptr<const std::vector<float>> channel_scale;  // QuantSpec::channel_scale
    };
    struct Head {
        RowVector k, v, kpre;  // [slots, head_dim] each (row_storage.h: huge pages)
        std::vector<int64_t> pos;
        std::vector<int> k_bits, v_bits;
        std::vector<int32_t> k_block, v_block;  // index into blocks, -1 = full precision
        std::vector<int32_t> merge_count;
        std::vector<float> merge_weight;
        std::vector<QuantBlock> blocks;
        int64_t bits_held = 0;  // incremental accounting, in bits
    };

    Head& head_at(int64_t layer, int64_t head);  // for a change: throws while rows pend
    const Head& head_at(int64_t layer, int64_t head) const;
    void check_not_pending(int64_t layer) const;  // layer in range
    void emit(const CacheEvent& e) const;
    CacheEvent make_event(int64_t layer, int64_t head, CacheOp op) const;
    int64_t slot_bits(const Head& hd, int64_t i) const;
    void release_block(Head& hd, int32_t block);
    void drop_part_block(Head& hd, int64_t i, bool keys);
    KVJournal& journal_at(int64_t layer, int64_t head);
    void remove_slots(Head& hd, KVJournal& jr, const std::vector<char>& remove);
    // append_rows() in three steps (append_layer() runs the middle one in parallel).
    struct RowsIn {
        const float *k, *v, *kpre;
        int64_t stride;
        const int64_t* pos;
        int64_t n;
    };
    static constexpr int kRowParts = 3;  // K, V, pre-RoPE K
    void check_rows(int64_t layer, int64_t head, const RowsIn& in) const;
    void copy_rows(Head& hd, const RowsIn& in, int part) const;
    void finish_rows(int64_t layer, int64_t head, const RowsIn& in);
    void quantize_part(Head& hd, KVJournal& jr, std::span<const int64_t> slots,
                       const QuantSpec& spec, bool keys, int32_t reuse_block);
    static int64_t recompute_bits(const Head& hd, int64_t head_dim, int element_bytes);

    std::vector<int64_t> pending_;  // [layers] rows announced by append_layer_slots()
    int64_t n_layers_, n_kv_heads_, head_dim_;
    int element_bytes_;
    int64_t step_ = -1;
    bool store_prerope_ = false;
    RotateFn rotate_;
    std::vector<Head> heads_;          // [layer * n_kv_heads + head]
    std::vector<KVJournal> journals_;  // [layer * n_kv_heads + head]; not part of Head: a copy
                                       // of another cache's heads must not copy its journals
    // A fresh value per object, copies included (followers key their copies by it).
    struct Uid {
        uint64_t value;
        Uid();
        Uid(const Uid&) : Uid() {}
        Uid& operator=(const Uid&) = delete;
    };
    Uid uid_;
    std::vector<std::pair<int, CacheObserver>> observers_;
    int next_observer_id_ = 1;
};

}  // namespace kvscope
