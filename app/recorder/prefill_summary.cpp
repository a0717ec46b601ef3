#include "app/recorder/prefill_summary.h"

#include <algorithm>
#include <exception>

#include "core/probes/attention_density.h"
#include "core/probes/norm_attention.h"
#include "kernels/cpu/thread_pool.h"

namespace kvscope::record {

void group_mean_into(const std::vector<std::vector<float>>& per_q, int64_t kv, int64_t g,
                     size_t offset, size_t len, float* out) {
    std::fill(out, out + len, 0.0f);
    for (int64_t q = 0; q < g; ++q) {
        const auto& src = per_q[static_cast<size_t>(kv * g + q)];
        for (size_t j = 0; j < len; ++j) out[j] += src[offset + j];
    }
    for (size_t j = 0; j < len; ++j) out[j] /= static_cast<float>(g);
}

std::vector<float> group_mean(const std::vector<std::vector<float>>& per_q, int64_t kv, int64_t g,
                              size_t offset, size_t len) {
    std::vector<float> out(len);
    group_mean_into(per_q, kv, g, offset, len, out.data());
    return out;
}

trace::PrefillLayerStats summarize_prefill_layer(const LayerPrefillStats& ps, int64_t layer,
                                                 int64_t n_kv_heads, int64_t group,
                                                 int64_t window) {
    const int64_t G = n_kv_heads, g = group;
    const size_t P = ps.colsum.empty() ? 0 : ps.colsum[0].size();
    trace::PrefillLayerStats out;
    out.layer = static_cast<int32_t>(layer);
    const int64_t w = std::min<int64_t>(window, ps.window_rows);
    out.window_rows = w;
    out.density.resize(static_cast<size_t>(G));
    out.spearman.resize(static_cast<size_t>(G));
    out.norm_attn_area.resize(static_cast<size_t>(G));
    // D2O's density is defined over query heads; a cache head reports the mean of its group.
    const LayerDensity dens = layer_attention_density(ps.colsum);
    out.density_layer = static_cast<float>(dens.density);
    std::vector<float> row(P);
    for (int64_t kv = 0; kv < G; ++kv) {
        std::vector<float> recv = group_mean(ps.colsum, kv, g, 0, P);
        std::vector<float> win(P, 0.0f);
        for (int64_t r = ps.window_rows - w; r < ps.window_rows; ++r) {
            group_mean_into(ps.window, kv, g, static_cast<size_t>(r) * P, P, row.data());
            for (size_t j = 0; j < P; ++j) win[j] += row[j];
        }
        const auto& kn = ps.key_norm[static_cast<size_t>(kv)];
        double dsum = 0;
        for (int64_t q = 0; q < g; ++q)
            dsum += dens.head_normalized[static_cast<size_t>(kv * g + q)];
        out.density[static_cast<size_t>(kv)] = static_cast<float>(dsum / static_cast<double>(g));
        out.spearman[static_cast<size_t>(kv)] =
            static_cast<float>(key_norm_attention_spearman(kn, recv));
        out.norm_attn_area[static_cast<size_t>(kv)] =
            static_cast<float>(norm_attention_drop_curves(kn, recv).area);
        out.key_norm.insert(out.key_norm.end(), kn.begin(), kn.end());
        out.attn_received.insert(out.attn_received.end(), recv.begin(), recv.end());
        out.window_scores.insert(out.window_scores.end(), win.begin(), win.end());
    }
    return out;
}

std::vector<trace::PrefillLayerStats> summarize_prefill(const std::vector<LayerPrefillStats>& st,
                                                        int64_t n_kv_heads, int64_t group,
                                                        int64_t window, int threads) {
    const auto L = static_cast<int64_t>(st.size());
    std::vector<trace::PrefillLayerStats> out(st.size());
    if (threads <= 1 || L <= 1) {
        for (int64_t l = 0; l < L; ++l)
            out[static_cast<size_t>(l)] =
                summarize_prefill_layer(st[static_cast<size_t>(l)], l, n_kv_heads, group, window);
        return out;
    }
    // A failure on a pool thread comes back here (the first layer's that failed).
    std::vector<std::exception_ptr> failed(st.size());
    cpu::ThreadPool pool(static_cast<int>(std::min<int64_t>(threads, L)));
    pool.parallel_for(L, [&](int64_t b, int64_t e) {
        for (int64_t l = b; l < e; ++l) {
            try {
                out[static_cast<size_t>(l)] = summarize_prefill_layer(st[static_cast<size_t>(l)], l,
                                                                      n_kv_heads, group, window);
            } catch (...) {
                failed[static_cast<size_t>(l)] = std::current_exception();
            }
        }
    });
    for (const std::exception_ptr& f : failed)
        if (f) std::rethrow_exception(f);
    return out;
}

}  // namespace kvscope::record
