// CudaBackend::attention: the heads' keys and values (the mirror, or a per-call copy of plain
// views), then the prefill or decode kernels (cuda_attention*.cu) and the statistics the caller
// asked for, copied back now or, deferred, at the next synchronisation.
#include <algorithm>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/op_profile.h"

namespace kvscope::cuda {

void CudaBackend::attention(const AttentionArgs& args) {
    const int64_t n = args.q->dim(0), H = args.q->dim(1), d = args.q->dim(2);
    const int64_t G = args.n_kv_heads;
    prof::Scope ps = op_scope("attention.mirror");
    meta_.assign(static_cast<size_t>(2 * G), 0);  // offsets (rows), then lengths
    int64_t max_len = 0;
    for (int64_t g = 0; g < G; ++g) max_len = std::max(max_len, args.kv[g].len);
    AttentionDev a;
    const bool mirrored = mirrors_on_ && mirrorable(args);
    if (mirrored) {
        // 1. The device copy of the layer, brought up to date from the heads' journals.
        const LayerMirror& m = update_mirror(args, d);
        for (int64_t g = 0; g < G; ++g) {
            meta_[static_cast<size_t>(g)] = g * m.cap;
            meta_[static_cast<size_t>(G + g)] = args.kv[g].len;
        }
        a.k = m.k;
        a.v = m.v;
        a.kpos = m.pos;
    } else {
        // 1'. Plain views: every head's K, V and positions one after another, copied from the
        //     caller's host arrays (waited for before returning: the arrays are the caller's).
        int64_t total = 0;
        for (int64_t g = 0; g < G; ++g) {
            meta_[static_cast<size_t>(g)] = total;
            meta_[static_cast<size_t>(G + g)] = args.kv[g].len;
            total += args.kv[g].len;
        }
        const size_t kv_bytes =
            static_cast<size_t>(std::max<int64_t>(total, 1) * d) * sizeof(float);
        auto* dk = static_cast<float*>(kv_k_.ensure(kv_bytes));
        auto* dv = static_cast<float*>(kv_v_.ensure(kv_bytes));
        auto* dpos = static_cast<int64_t*>(
            kv_pos_.ensure(static_cast<size_t>(std::max<int64_t>(total, 1)) * sizeof(int64_t)));
        for (int64_t g = 0; g < G; ++g) {
            const KVHeadView& kv = args.kv[g];
            if (kv.len == 0) continue;
            const int64_t off = meta_[static_cast<size_t>(g)];
            const size_t b = static_cast<size_t>(kv.len * d) * sizeof(float);
            KVS_CUDA_CHECK(cudaMemcpyAsync(dk + off * d, kv.k, b, cudaMemcpyDefault, stream_));
            KVS_CUDA_CHECK(cudaMemcpyAsync(dv + off * d, kv.v, b, cudaMemcpyDefault, stream_));
            KVS_CUDA_CHECK(cudaMemcpyAsync(dpos + off, kv.pos,
                                           static_cast<size_t>(kv.len) * sizeof(int64_t),
                                           cudaMemcpyDefault, stream_));
        }
        a.k = dk;
        a.v = dv;
        a.kpos = dpos;
    }
    const int64_t* dmeta = stage_same(meta_.data(), meta_.size());

    a.q = args.q->as<float>();
    a.q_pos = stage_same(args.q_pos, static_cast<size_t>(n));
    a.kv_off = dmeta;
    a.kv_len = dmeta + G;
    a.n = n;
    a.H = H;
    a.G = G;
    a.d = d;
    a.max_len = max_len;
    a.scale = args.scale;
    a.out = args.out->as<float>();
    a.lse = static_cast<float*>(lse_.ensure(static_cast<size_t>(H * n) * sizeof(float)));

    // 2. What the caller asked for.
    const AttentionStats* st = args.stats;
    auto any = [](const std::vector<float*>& v) {
        return std::any_of(v.begin(), v.end(), [](float* p) { return p != nullptr; });
    };
    const bool want_colsum = st && any(st->colsum);
    const int64_t n_tail = st ? std::min(st->n_rows_tail, n) : 0;
    const bool want_rows = st && n_tail > 0 && any(st->rows);
    const bool want_lse = st && any(st->lse);
    const int64_t ld = std::max<int64_t>(max_len, 1);
    float* dcol =
        want_colsum
            ? static_cast<float*>(colsum_.ensure(static_cast<size_t>(H * ld) * sizeof(float)))
            : nullptr;
    float* drows = want_rows ? static_cast<float*>(rows_.ensure(
                                   static_cast<size_t>(H * n_tail * ld) * sizeof(float)))
                             : nullptr;

    // Prefill: rows of keys a whole query tile cannot see are skipped by the kernels, they stay 0.
    // The decode kernels write every key j < len of each row asked for, 0 where masked, and only
    // those are copied out: no memset, which would also break the step's chain of dependent
    // launches once a layer (cuda_device.cuh).
    if (want_rows && n > kDecodeMaxRows)
        KVS_CUDA_CHECK(cudaMemsetAsync(
            drows, 0, static_cast<size_t>(H * n_tail * ld) * sizeof(float), stream_));

    // 3. Kernels.
    ps.next("attention.kernels");
    if (n <= kDecodeMaxRows) {
        void* scratch =
            decode_.ensure_zeroed(attention_decode_scratch_bytes(a), kDecodeTicketBytes, stream_);
        attention_decode(a, scratch, dcol, drows, n_tail, stream_);
    } else {
        attention_prefill(a, stream_);
        if (want_colsum)
            attention_probs(a, 0, dcol, drows, n_tail, stream_);
        else if (want_rows)
            attention_probs(a, n - n_tail, nullptr, drows, n_tail, stream_);
    }
    // Plain views were copied from the caller's host arrays: wait before they may change.
    if (!want_colsum && !want_rows && !want_lse) {
        if (!mirrored) sync();
        return;
    }
    const int64_t group = H / G;
    if (defer_on_) {
        // 4. Statistics back to the caller's host buffers (colsum accumulates, as on the CPU):
        //    DMA into pinned memory, then each head's rows unpacked, by a pool thread when large
        //    (a recorded 32k prompt: 134 MB of window rows per layer, bench/RESULTS.md, fifth
        //    run). The unpacks run at the next sync(), or deliver_copies(): here below, unless
        //    the caller reads them later (AttentionStats::deferred), so they capture by value
        //    what they need of args and *st.
        ps.next("attention.stats_to_host");
        struct HeadDst {
            float* colsum;
            float* rows;
            int64_t len;
        };
        std::vector<HeadDst> dst(static_cast<size_t>(H));
        for (int64_t h = 0; h < H; ++h)
            dst[static_cast<size_t>(h)] = {
                want_colsum ? st->colsum[static_cast<size_t>(h)] : nullptr,
                want_rows ? st->rows[static_cast<size_t>(h)] : nullptr, args.kv[h / group].len};
        cpu::ThreadPool* pool =
            static_cast<size_t>(H * ld) * sizeof(float) * std::max<int64_t>(n_tail, 1) >=
                    kPinnedCopyMin
                ? copy_pool()
                : nullptr;
        const auto each_head = [pool, H](const std::function<void(int64_t)>& f) {
            if (!pool) {
                for (int64_t h = 0; h < H; ++h) f(h);
                return;
            }
            pool->parallel_for(H, [&](int64_t b, int64_t e) {
                for (int64_t h = b; h < e; ++h) f(h);
            });
        };
        if (want_colsum)
            later_.enqueue(dcol, static_cast<size_t>(H * ld) * sizeof(float), stream_,
                           [dst, ld, each_head](const void* p) {
                               const auto* src = static_cast<const float*>(p);
                               each_head([&](int64_t h) {
                                   const HeadDst& t = dst[static_cast<size_t>(h)];
                                   if (!t.colsum) return;
                                   const float* from = src + h * ld;
                                   for (int64_t j = 0; j < t.len; ++j) t.colsum[j] += from[j];
                               });
                           });
        if (want_rows)
            later_.enqueue(drows, static_cast<size_t>(H * n_tail * ld) * sizeof(float), stream_,
                           [dst, ld, n_tail, each_head](const void* p) {
                               const auto* src = static_cast<const float*>(p);
                               each_head([&](int64_t h) {
                                   const HeadDst& t = dst[static_cast<size_t>(h)];
                                   if (!t.rows) return;
                                   for (int64_t r = 0; r < n_tail; ++r)
                                       std::memcpy(t.rows + r * t.len, src + (h * n_tail + r) * ld,
                                                   static_cast<size_t>(t.len) * sizeof(float));
                               });
                           });
        if (want_lse) {
            std::vector<float*> lse_dst = st->lse;
            later_.enqueue(a.lse, static_cast<size_t>(H * n) * sizeof(float), stream_,
                           [lse_dst, H, n](const void* p) {
                               const auto* src = static_cast<const float*>(p);
                               for (int64_t h = 0; h < H; ++h)
                                   if (float* to = lse_dst[static_cast<size_t>(h)])
                                       std::memcpy(to, src + h * n,
                                                   static_cast<size_t>(n) * sizeof(float));
                           });
        }
        // Deferred: delivered at the caller's next synchronisation. Plain views were read from
        // the caller's host arrays, which may change once this returns: those wait here.
        if (!st->deferred || !mirrored) sync();
        return;
    }
    sync();
    ps.next("attention.stats_to_host");

    // 4'. Without KVSCOPE_CUDA_DEFER: pageable copies, unpacked on this thread.
    if (want_colsum) {
        std::vector<float>& h_col = h_col_;
        h_col.resize(static_cast<size_t>(H * ld));
        KVS_CUDA_CHECK(
            cudaMemcpy(h_col.data(), dcol, h_col.size() * sizeof(float), cudaMemcpyDeviceToHost));
        for (int64_t h = 0; h < H; ++h) {
            float* dst = st->colsum[static_cast<size_t>(h)];
            if (!dst) continue;
            const int64_t len = args.kv[h / group].len;
            for (int64_t j = 0; j < len; ++j) dst[j] += h_col[static_cast<size_t>(h * ld + j)];
        }
    }
    if (want_rows) {
        std::vector<float>& h_rows = h_rows_;
        h_rows.resize(static_cast<size_t>(H * n_tail * ld));
        KVS_CUDA_CHECK(cudaMemcpy(h_rows.data(), drows, h_rows.size() * sizeof(float),
                                  cudaMemcpyDeviceToHost));
        for (int64_t h = 0; h < H; ++h) {
            float* dst = st->rows[static_cast<size_t>(h)];
            if (!dst) continue;
            const int64_t len = args.kv[h / group].len;
            for (int64_t r = 0; r < n_tail; ++r)
                std::memcpy(dst + r * len, h_rows.data() + (h * n_tail + r) * ld,
                            static_cast<size_t>(len) * sizeof(float));
        }
    }
    if (want_lse) {
        std::vector<float>& h_lse = h_lse_;
        h_lse.resize(static_cast<size_t>(H * n));
        KVS_CUDA_CHECK(
            cudaMemcpy(h_lse.data(), a.lse, h_lse.size() * sizeof(float), cudaMemcpyDeviceToHost));
        for (int64_t h = 0; h < H; ++h)
            if (float* dst = st->lse[static_cast<size_t>(h)])
                std::memcpy(dst, h_lse.data() + h * n, static_cast<size_t>(n) * sizeof(float));
    }
}

}  // namespace kvscope::cuda
