// CudaBackend::update_mirror: brings the device copy of one (cache, layer) up to date from its
// heads' edit journals (the plan is in cuda_backend.h's file comment; the row moves are
// cuda_kv_mirror.cu's kernel).
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/kv_journal.h"
#include "kernels/op_profile.h"

namespace kvscope::cuda {

// Brings the (cache, layer) mirror of args' heads up to date (see the file comment).
const LayerMirror& CudaBackend::update_mirror(const AttentionArgs& args, int64_t d) {
    const int64_t G = args.n_kv_heads;
    LayerMirror& m = mirrors_[{args.kv[0].cache_uid, args.kv[0].layer}];
    if (m.G != G || m.d != d) {
        if (m.k) {  // another shape: queued attention may still read the old slab
            sync();
            free_mirror(m);
        }
        m = LayerMirror{};
        m.G = G;
        m.d = d;
        m.version.assign(static_cast<size_t>(G), 0);
        m.len.assign(static_cast<size_t>(G), 0);
        m.valid.assign(static_cast<size_t>(G), 0);
    }
    // 1. What each head needs.
    if (plans_.size() < static_cast<size_t>(G)) plans_.resize(static_cast<size_t>(G));
    int64_t need = 0;
    for (int64_t g = 0; g < G; ++g) {
        const KVHeadView& kv = args.kv[g];
        const auto gi = static_cast<size_t>(g);
        KVReplayPlan& p = plans_[gi];
        if (m.valid[gi]) {
            plan_kv_replay(*kv.journal, m.version[gi], m.len[gi], kv.len, p);
        } else {
            p.full = true;
            p.appends_only = p.in_place = false;
            p.dirty = kv.len;
        }
        need = std::max(need, kv.len);
    }
    // 2. A larger slab when a head outgrows it: every head is copied over (the rows it keeps from
    //    the old slab, the rest from the host); the old slab is freed at the next sync().
    LayerMirror old;
    const bool regrow = need > m.cap;
    if (regrow) {
        // Also counted in the caller's "attention.mirror": how much of it is allocation.
        prof::Scope alloc("attention.mirror.regrow");
        old = m;
        LayerMirror grown = m;
        grown.cap = (need + std::max<int64_t>(need / 4, 256) + 63) / 64 * 64;
        grown.k = grown.v = nullptr;
        grown.pos = nullptr;
        const size_t rows = static_cast<size_t>(G * grown.cap);
        const size_t fbytes = rows * static_cast<size_t>(d) * sizeof(float);
        try {
            check_alloc(cudaMalloc(&grown.k, fbytes), fbytes, "KV mirror");
            check_alloc(cudaMalloc(&grown.v, fbytes), fbytes, "KV mirror");
            check_alloc(cudaMalloc(&grown.pos, rows * 8), rows * 8, "KV mirror");
        } catch (...) {
            if (grown.k) (void)cudaFree(grown.k);
            if (grown.v) (void)cudaFree(grown.v);
            throw;
        }
        count(static_cast<int64_t>(grown.bytes()));
        m = grown;
    }
    const int64_t cap = m.cap;
    // 3. Jobs, staged head by head (a head's staging is never split by a flush).
    RowBatch rb;
    rb.begin = ring_.mark();
    const size_t row_bytes = static_cast<size_t>(2 * d) * sizeof(float) + sizeof(int64_t);
    for (int64_t g = 0; g < G; ++g) {
        const KVHeadView& kv = args.kv[g];
        const auto gi = static_cast<size_t>(g);
        const KVReplayPlan& p = plans_[gi];
        const int64_t n = kv.len;
        const int64_t from_len = m.valid[gi] ? m.len[gi] : 0;
        const bool general = !p.full && !p.appends_only;
        const bool moves = general && (regrow || !p.in_place);  // rows go through a map
        // In place on the slab, rows move from j0 on (rows before it stay where they are).
        int64_t j0 = 0;
        if (moves && !regrow)
            while (j0 < n && p.src[static_cast<size_t>(j0)] == j0) ++j0;
        const int64_t n_map = moves ? n - j0 : 0;
        const int64_t n_idx = general && !moves ? p.dirty : 0;
        const int64_t scratch_need = moves && !regrow ? n - j0 : 0;
        // Rows this call produced on the device (args.new_k / new_v: the last rows of every
        // head) are copied within the device; only their positions come from the host. After an
        // edit (general plans) they are the head's last rows still, which the plan copies from
        // the cache (-1); a plan that says otherwise takes every row from the host.
        const int64_t n_new = new_rows_on_ && args.new_k ? args.new_k->dim(0) : 0;
        int64_t n_dev = 0;
        if (!general) {
            n_dev = std::min(n - (p.full ? 0 : from_len), n_new);
        } else if (n_new <= n) {
            n_dev = n_new;
            for (int64_t j = n - n_new; j < n; ++j)
                if (p.src[static_cast<size_t>(j)] >= 0) n_dev = 0;
        }
        // What this head stages: K and V of the rows packed from the host, the positions of all
        // dirty rows, the map or index, and the alignment of each reservation. (Counting every
        // dirty row's K and V, as before, made a 32k prompt's heads look 34 MB each while they
        // stage 256 KB: a flush and a full synchronisation per head.)
        const size_t payload =
            static_cast<size_t>(p.dirty - n_dev) * static_cast<size_t>(2 * d) * sizeof(float) +
            static_cast<size_t>(p.dirty + n_map + n_idx) * sizeof(int64_t) +
            4 * StagingRing::kAlign;
        const bool ring_short = !ring_.fits(payload + table_bytes(rb, 3));
        const bool scratch_short =
            static_cast<size_t>(rb.scratch_rows + scratch_need) * row_bytes > mirror_scratch_.cap;
        if (ring_short || scratch_short) {
            flush(rb, d);  // launches what this batch holds, so the ring / scratch may be reused
            if (!ring_.fits(payload + table_bytes(rb, 3))) {
                sync();
                if (!ring_.fits(payload + table_bytes(rb, 3)))
                    ring_.grow(payload + table_bytes(rb, 3));
                rb.begin = ring_.mark();
            }
            const size_t want = static_cast<size_t>(scratch_need) * row_bytes;
            if (want > mirror_scratch_.cap) {
                // Half again: compactions grow with the heads, one reallocation per step would
                // be slow. The old buffer is retired (queued jobs may still read it).
                const size_t before = mirror_scratch_.cap;
                mirror_scratch_.ensure(want + want / 2);
                count(static_cast<int64_t>(mirror_scratch_.cap) - static_cast<int64_t>(before));
            }
        }
        // Packed rows from the host: every other row the plan copies from the cache, in slot
        // order (K and V), and the positions of all of them.
        const int64_t nd = p.dirty - n_dev;
        const size_t o_pk = ring_.reserve(static_cast<size_t>(nd * d) * sizeof(float));
        const size_t o_pv = ring_.reserve(static_cast<size_t>(nd * d) * sizeof(float));
        const size_t o_pp = ring_.reserve(static_cast<size_t>(p.dirty) * sizeof(int64_t));
        auto* pk = reinterpret_cast<float*>(ring_.host(o_pk));
        auto* pv = reinterpret_cast<float*>(ring_.host(o_pv));
        auto* pp = reinterpret_cast<int64_t*>(ring_.host(o_pp));
        int64_t r = 0;
        auto pack = [&](int64_t j) {
            std::memcpy(pk + r * d, kv.k + j * d, static_cast<size_t>(d) * sizeof(float));
            std::memcpy(pv + r * d, kv.v + j * d, static_cast<size_t>(d) * sizeof(float));
            pp[r] = kv.pos[j];
            ++r;
        };
        float* hk = m.k + g * cap * d;  // this head's rows in the (new) slab
        float* hv = m.v + g * cap * d;
        int64_t* hp = m.pos + g * cap;
        const auto* dpk = reinterpret_cast<const float*>(ring_.dev(o_pk));
        const auto* dpv = reinterpret_cast<const float*>(ring_.dev(o_pv));
        const auto* dpp = reinterpret_cast<const int64_t*>(ring_.dev(o_pp));
        auto add = [](std::vector<KVRowJob>& to, int64_t& mx, const KVRowJob& jb) {
            if (jb.n <= 0) return;
            to.push_back(jb);
            mx = std::max(mx, jb.n);
        };
        // The device rows: slots [n - n_dev, n) from new_k / new_v (row i of head g is
        // new_k[i, g, :], stride G*d), their positions staged at spos.
        auto device_rows = [&](std::vector<KVRowJob>& to, int64_t& mx, const int64_t* spos) {
            const int64_t i0 = n_new - n_dev;
            KVRowJob dj;
            dj.dk = hk + (n - n_dev) * d;
            dj.dv = hv + (n - n_dev) * d;
            dj.dpos = hp + (n - n_dev);
            dj.sk = args.new_k->as<float>() + (i0 * G + g) * d;
            dj.sv = args.new_v->as<float>() + (i0 * G + g) * d;
            dj.spos = spos;
            dj.s_stride = G * d;
            dj.n = n_dev;
            add(to, mx, dj);
        };
        if (!general) {  // full, or appends only: rows [first, n) from the host / the device
            const int64_t first = p.full ? 0 : from_len;
            const int64_t host_end = n - n_dev;  // [first, host_end) host, [host_end, n) device
            for (int64_t j = first; j < host_end; ++j) pack(j);
            for (int64_t j = host_end; j < n; ++j) pp[j - first] = kv.pos[j];
            KVRowJob jb;
            jb.dk = hk + first * d;
            jb.dv = hv + first * d;
            jb.dpos = hp + first;
            jb.sk = dpk;
            jb.sv = dpv;
            jb.spos = dpp;
            jb.n = host_end - first;
            add(rb.a, rb.max_a, jb);
            if (n_dev > 0) device_rows(rb.a, rb.max_a, dpp + (host_end - first));
            if (regrow && !p.full && from_len > 0) {  // the rows it had: old slab -> new
                KVRowJob kept;
                kept.dk = hk;
                kept.dv = hv;
                kept.dpos = hp;
                kept.sk = old.k + g * old.cap * d;
                kept.sv = old.v + g * old.cap * d;
                kept.spos = old.pos + g * old.cap;
                kept.n = from_len;
                add(rb.a, rb.max_a, kept);
            }
        } else if (!moves) {  // in place: only the rewritten / appended rows
            const size_t o_idx = ring_.reserve(static_cast<size_t>(n_idx) * sizeof(int64_t));
            auto* idx = reinterpret_cast<int64_t*>(ring_.host(o_idx));
            for (int64_t j = 0; j < n - n_dev; ++j)
                if (p.src[static_cast<size_t>(j)] < 0) {
                    idx[r] = j;
                    pack(j);
                }
            KVRowJob jb;
            jb.dk = hk;
            jb.dv = hv;
            jb.dpos = hp;
            jb.sk = dpk;
            jb.sv = dpv;
            jb.spos = dpp;
            jb.dst_index = reinterpret_cast<const int64_t*>(ring_.dev(o_idx));
            jb.n = nd;
            add(rb.a, rb.max_a, jb);
            for (int64_t t = 0; t < n_dev; ++t) pp[nd + t] = kv.pos[n - n_dev + t];
            if (n_dev > 0) device_rows(rb.a, rb.max_a, dpp + nd);
        } else {  // rows move: gather (old slab -> new, or slab -> scratch -> slab) + host rows
            const size_t o_map = ring_.reserve(static_cast<size_t>(n_map) * sizeof(int64_t));
            auto* map = reinterpret_cast<int64_t*>(ring_.host(o_map));
            const int64_t n_moved = n - n_dev - j0;  // gathered rows; the device rows follow
            for (int64_t j = j0; j < n - n_dev; ++j) {
                const int64_t s = p.src[static_cast<size_t>(j)];
                if (s >= 0) {
                    map[j - j0] = s;
                } else {
                    map[j - j0] = -(r + 1);
                    pack(j);
                }
            }
            KVRowJob gather;
            gather.sk = regrow ? old.k + g * old.cap * d : hk;
            gather.sv = regrow ? old.v + g * old.cap * d : hv;
            gather.spos = regrow ? old.pos + g * old.cap : hp;
            gather.pk = dpk;
            gather.pv = dpv;
            gather.ppos = dpp;
            gather.map = reinterpret_cast<const int64_t*>(ring_.dev(o_map));
            gather.n = n_moved;
            for (int64_t t = 0; t < n_dev; ++t) pp[nd + t] = kv.pos[n - n_dev + t];
            if (regrow) {  // j0 == 0; the old slab is only read, so the device rows go in now
                gather.dk = hk;
                gather.dv = hv;
                gather.dpos = hp;
                add(rb.a, rb.max_a, gather);
                if (n_dev > 0) device_rows(rb.a, rb.max_a, dpp + nd);
            } else {
                // Scratch: [rows, d] K, then [rows, d] V, then [rows] positions, rows = what its
                // capacity holds; this head takes rows [scratch_rows, scratch_rows + n - j0).
                const auto srows = static_cast<int64_t>(mirror_scratch_.cap / row_bytes);
                auto* base = static_cast<float*>(mirror_scratch_.p);
                float* sk = base + rb.scratch_rows * d;
                float* sv = base + (srows + rb.scratch_rows) * d;
                int64_t* sp = reinterpret_cast<int64_t*>(base + 2 * srows * d) + rb.scratch_rows;
                gather.dk = sk;
                gather.dv = sv;
                gather.dpos = sp;
                add(rb.a, rb.max_a, gather);
                KVRowJob back;
                back.dk = hk + j0 * d;
                back.dv = hv + j0 * d;
                back.dpos = hp + j0;
                back.sk = sk;
                back.sv = sv;
                back.spos = sp;
                back.n = n_moved;
                add(rb.b, rb.max_b, back);
                // After the gather, which may still read the slab's rows [n - n_dev, n).
                if (n_dev > 0) device_rows(rb.b, rb.max_b, dpp + nd);
                rb.scratch_rows += n_moved;
            }
        }
        if (r != nd)
            throw std::logic_error("cuda KV mirror: packed " + std::to_string(r) +
                                   " rows, the plan has " + std::to_string(nd));
        m.version[gi] = kv.journal->version();
        m.len[gi] = n;
        m.valid[gi] = 1;
    }
    flush(rb, d);
    if (regrow && old.k) {
        retired_.push_back(old.k);  // read by the jobs just launched
        retired_.push_back(old.v);
        retired_.push_back(old.pos);
        count(-static_cast<int64_t>(old.bytes()));
    }
    return m;
}

}  // namespace kvscope::cuda
