// KVCache's pending rows: slots appended before their K/V rows (append_layer_slots), the rows
// filled later (fill_pending_rows), for a backend that reads a call's new rows from its own
// memory (kv_cache.h). Kept apart from kv_cache.cpp, which holds the cache's other operations.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/cache/kv_cache.h"

namespace kvscope {
namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::invalid_argument("KVCache: " + what);
}

size_t sz(int64_t i) {
    return static_cast<size_t>(i);
}

}  // namespace

void KVCache::append_layer_slots(int64_t layer, const int64_t* pos, int64_t n) {
    if (n <= 0) return;
    if (store_prerope_) fail("append_layer_slots: the cache stores pre-RoPE keys");
    const int64_t G = n_kv_heads_, d = head_dim_;
    const float none = 0.0f;  // check_rows reads positions only; the rows come later
    auto in = [&](int64_t g) {
        (void)g;
        return RowsIn{&none, &none, nullptr, d, pos, n};
    };
    for (int64_t g = 0; g < G; ++g) check_rows(layer, g, in(g));  // all checks before any change
    for (int64_t g = 0; g < G; ++g) {
        Head& hd = head_at(layer, g);
        const size_t total = (hd.pos.size() + static_cast<size_t>(n)) * static_cast<size_t>(d);
        for (RowVector* a : {&hd.k, &hd.v}) {
            if (a->capacity() < total) a->reserve(std::max(total, 2 * a->size()));
            a->resize(total);  // default-initialised (row_storage.h): nothing written
        }
        finish_rows(layer, g, in(g));
    }
    pending_[sz(layer)] = n;
}

void KVCache::fill_pending_rows(int64_t layer, const float* k, const float* v,
                                const ParallelFor& parallel) {
    (void)std::as_const(*this).head_at(layer, 0);  // range
    const int64_t n = pending_[sz(layer)], G = n_kv_heads_, d = head_dim_;
    if (n == 0) fail("fill_pending_rows: layer " + std::to_string(layer) + " has none pending");
    if (!k || !v) fail("fill_pending_rows: null keys or values");
    // Task t: head t / 2, K (even) or V (odd); rows [first, first + n) of the head's array.
    auto task = [&](int64_t t) {
        const int64_t g = t / 2;
        Head& hd = heads_[sz(layer * G + g)];
        const float* src = t % 2 == 0 ? k : v;
        float* dst = (t % 2 == 0 ? hd.k.data() : hd.v.data()) +
                     (static_cast<int64_t>(hd.pos.size()) - n) * d;
        for (int64_t i = 0; i < n; ++i) std::copy_n(src + (i * G + g) * d, d, dst + i * d);
    };
    if (parallel)
        parallel(2 * G, task);
    else
        for (int64_t t = 0; t < 2 * G; ++t) task(t);
    pending_[sz(layer)] = 0;
}

void KVCache::check_not_pending(int64_t layer) const {
    if (pending_[sz(layer)] > 0)
        fail("layer " + std::to_string(layer) + " is waiting for the rows of its last " +
             std::to_string(pending_[sz(layer)]) + " slots (fill_pending_rows)");
}

int64_t KVCache::pending_rows(int64_t layer) const {
    (void)head_at(layer, 0);
    return pending_[sz(layer)];
}

}  // namespace kvscope
