#include "kernels/kv_journal.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "kernels/backend.h"

namespace kvscope {

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::invalid_argument("KV journal: " + what);
}

size_t sz(int64_t i) {
    return static_cast<size_t>(i);
}

}  // namespace

void KVJournal::record_gather(int64_t len_before, std::vector<int64_t> removed, int64_t len_after) {
    if (removed.empty()) return;  // nothing moved: appends alone need no edit
    logged_ += static_cast<int64_t>(removed.size());
    edits_.push_back(KVEdit{KVEdit::Kind::kGather, len_before, std::move(removed)});
    ++version_;
    bound(len_after);
}

void KVJournal::record_rewrite(int64_t len_before, std::vector<int64_t> slots) {
    if (slots.empty()) return;
    std::sort(slots.begin(), slots.end());
    slots.erase(std::unique(slots.begin(), slots.end()), slots.end());
    logged_ += static_cast<int64_t>(slots.size());
    edits_.push_back(KVEdit{KVEdit::Kind::kRewrite, len_before, std::move(slots)});
    ++version_;
    bound(len_before);
}

void KVJournal::record_reset() {
    ++version_;
    base_ = version_;
    edits_.clear();
    logged_ = 0;
}

void KVJournal::bound(int64_t len_now) {
    while (!edits_.empty() && (edits_.size() > kMaxEdits || logged_ > kMaxIndicesSlack + len_now)) {
        logged_ -= static_cast<int64_t>(edits_.front().slots.size());
        edits_.pop_front();
        ++base_;
    }
}

void plan_kv_replay(const KVJournal& j, uint64_t from_version, int64_t from_len, int64_t to_len,
                    KVReplayPlan& plan) {
    plan.full = false;
    plan.appends_only = false;
    plan.in_place = false;
    plan.src.clear();
    plan.dirty = 0;
    if (from_version > j.version())
        fail("follower at version " + std::to_string(from_version) + ", journal at " +
             std::to_string(j.version()));
    if (from_version < j.base()) {
        plan.full = true;
        plan.dirty = to_len;
        return;
    }
    if (from_version == j.version()) {
        if (to_len < from_len)
            fail("the head shrank from " + std::to_string(from_len) + " to " +
                 std::to_string(to_len) + " slots without an edit");
        plan.appends_only = true;
        plan.dirty = to_len - from_len;
        return;
    }
    std::vector<int64_t>& src = plan.src;
    src.resize(sz(from_len));
    for (int64_t i = 0; i < from_len; ++i) src[sz(i)] = i;
    const auto& edits = j.edits();
    for (size_t e = static_cast<size_t>(from_version - j.base()); e < edits.size(); ++e) {
        const KVEdit& ed = edits[e];
        if (ed.len_before < static_cast<int64_t>(src.size()))
            fail("an edit starts at " + std::to_string(ed.len_before) + " slots, the follower's " +
                 "replay holds " + std::to_string(src.size()));
        src.resize(sz(ed.len_before), -1);  // rows appended before the edit
        if (ed.kind == KVEdit::Kind::kRewrite) {
            for (int64_t s : ed.slots) {
                if (s < 0 || s >= ed.len_before) fail("rewritten slot out of range");
                src[sz(s)] = -1;
            }
        } else {
            std::vector<int64_t>& out = plan.tmp;
            out.clear();
            size_t r = 0;
            for (int64_t i = 0; i < ed.len_before; ++i) {
                if (r < ed.slots.size() && ed.slots[r] == i) {
                    ++r;
                    continue;
                }
                out.push_back(src[sz(i)]);
            }
            if (r != ed.slots.size()) fail("removed slots not ascending or out of range");
            src.swap(out);
        }
    }
    if (to_len < static_cast<int64_t>(src.size()))
        fail("the head holds " + std::to_string(to_len) + " slots, its journal " +
             std::to_string(src.size()));
    src.resize(sz(to_len), -1);
    plan.in_place = true;
    for (int64_t i = 0; i < to_len; ++i) {
        const int64_t s = src[sz(i)];
        if (s < 0)
            ++plan.dirty;
        else if (s != i)
            plan.in_place = false;
    }
}

int64_t KVShadow::sync(const KVHeadView& view) {
    if (!view.journal) fail("KVShadow::sync needs a view with a journal");
    if (view.version != view.journal->version()) fail("view and journal versions differ");
    const size_t d = sz(d_), n = sz(view.len);
    if (valid_)
        plan_kv_replay(*view.journal, version_, len(), view.len, plan_);
    else {
        plan_.full = true;
        plan_.appends_only = false;
        plan_.dirty = view.len;
    }
    auto row_from_view = [&](size_t j) {
        std::copy_n(view.k + j * d, d, k_.begin() + static_cast<ptrdiff_t>(j * d));
        std::copy_n(view.v + j * d, d, v_.begin() + static_cast<ptrdiff_t>(j * d));
        pos_[j] = view.pos[j];
    };
    if (plan_.full || plan_.appends_only) {
        const size_t from = plan_.full ? 0 : pos_.size();
        k_.resize(n * d);
        v_.resize(n * d);
        pos_.resize(n);
        for (size_t j = from; j < n; ++j) row_from_view(j);
    } else {
        // Out of place, as the device does (its rows move in parallel).
        std::vector<float> nk(n * d), nv(n * d);
        std::vector<int64_t> np(n);
        for (size_t j = 0; j < n; ++j) {
            const int64_t s = plan_.src[j];
            if (s < 0) continue;
            std::copy_n(k_.begin() + s * d_, d, nk.begin() + static_cast<ptrdiff_t>(j * d));
            std::copy_n(v_.begin() + s * d_, d, nv.begin() + static_cast<ptrdiff_t>(j * d));
            np[j] = pos_[sz(s)];
        }
        k_.swap(nk);
        v_.swap(nv);
        pos_.swap(np);
        for (size_t j = 0; j < n; ++j)
            if (plan_.src[j] < 0) row_from_view(j);
    }
    version_ = view.journal->version();
    valid_ = true;
    return plan_.dirty;
}

}  // namespace kvscope
