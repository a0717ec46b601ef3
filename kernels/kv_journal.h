#pragma once
// The edit journal of one (layer, KV head) of a KV cache, and how a follower (a device mirror of
// the head's K, V and positions, or a host shadow copy in tests) brings itself up to date from it
// without copying the whole head again.
//
// The cache (core/cache/kv_cache.h) writes it; backends read it through KVHeadView::journal. It
// lives in kernels/ because backends may not depend on core/.
//
// Model: a head is an array of `len` slots (rows of K [d], V [d] and a position). Its journal has
// a version that only grows. Appends do not change the version: they only make `len` grow (new
// rows at the end). Every other change is one edit and bumps the version by one:
//   gather   slots removed (keep / merge sources); survivors keep their relative order
//   rewrite  rows whose K, V or position changed in place (merge destinations, quantisation:
//            the cache's arrays hold the dequantised values attention reads)
//   reset    anything else (clear, copy of another cache): the follower starts over
// A follower remembers (version, len) of what it copied. The log keeps the edits since a recent
// version only (bounded, see kMaxEdits / kMaxIndicesSlack): when it no longer reaches back to a
// follower's version, that follower re-copies the whole head.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace kvscope {

struct KVEdit {
    enum class Kind : uint8_t { kGather, kRewrite };
    Kind kind = Kind::kGather;
    int64_t len_before = 0;      // the head's slot count right before the edit (appends included)
    std::vector<int64_t> slots;  // ascending; gather: REMOVED slots, rewrite: rewritten slots
                                 // (indices into the array as it was right before the edit)
};

class KVJournal {
  public:
    // Bounds: at most kMaxEdits edits, and at most kMaxIndicesSlack + the head's slot count
    // logged indices; the oldest edits go first.
    static constexpr size_t kMaxEdits = 64;
    static constexpr int64_t kMaxIndicesSlack = 4096;

    uint64_t version() const { return version_; }
    // The oldest version the log reaches back to: a follower at version v in [base(), version()]
    // can replay; below it must re-copy.
    uint64_t base() const { return base_; }
    const std::deque<KVEdit>& edits() const { return edits_; }  // edits_[i]: base()+i -> +i+1

    // Writers (the cache). `len_before`: slot count before the edit; `len_after` (gather): after.
    void record_gather(int64_t len_before, std::vector<int64_t> removed, int64_t len_after);
    void record_rewrite(int64_t len_before, std::vector<int64_t> slots);
    void record_reset();

  private:
    void bound(int64_t len_now);

    uint64_t version_ = 0;
    uint64_t base_ = 0;
    std::deque<KVEdit> edits_;
    int64_t logged_ = 0;  // indices held in edits_
};

// What a follower at (from_version, from_len) must do to hold the head as it is now (to_len
// slots, journal at version()):
//   full          copy every row from the cache;
//   appends_only  no edit since: copy rows [from_len, to_len) (src is left empty);
//   otherwise     src[j] for every current slot j: >= 0 the follower's own row src[j] (as it
//                 holds it now), -1 the row must be copied from the cache. Survivors keep their
//                 order, so src[j] >= j wherever src[j] >= 0. in_place: src[j] is j or -1 for
//                 every j (no row moves, only copies of the -1 rows).
struct KVReplayPlan {
    bool full = false;
    bool appends_only = false;
    bool in_place = false;
    std::vector<int64_t> src;  // [to_len] (capacity reused between calls)
    int64_t dirty = 0;         // rows to copy from the cache
    std::vector<int64_t> tmp;  // scratch of plan_kv_replay
};
// Throws std::invalid_argument when the follower's state cannot be a past state of this journal
// (a version from the future, or a length the log contradicts).
void plan_kv_replay(const KVJournal& j, uint64_t from_version, int64_t from_len, int64_t to_len,
                    KVReplayPlan& plan);

// The host twin of the CUDA backend's device mirror (kernels/cuda/cuda_kv_mirror.cu): a copy of
// one head's K, V and positions, brought up to date from a KVHeadView's journal with the same
// plan. Tests compare it with the cache after every edit.
struct KVHeadView;
class KVShadow {
  public:
    explicit KVShadow(int64_t head_dim) : d_(head_dim) {}
    // Brings the copy up to `view` (which must carry a journal). Returns the rows copied from the
    // view (what a device mirror would upload).
    int64_t sync(const KVHeadView& view);
    const std::vector<float>& k() const { return k_; }
    const std::vector<float>& v() const { return v_; }
    const std::vector<int64_t>& pos() const { return pos_; }
    uint64_t version() const { return version_; }
    int64_t len() const { return static_cast<int64_t>(pos_.size()); }

  private:
    int64_t d_;
    std::vector<float> k_, v_;
    std::vector<int64_t> pos_;
    uint64_t version_ = 0;
    bool valid_ = false;
    KVReplayPlan plan_;
};

}  // namespace kvscope
