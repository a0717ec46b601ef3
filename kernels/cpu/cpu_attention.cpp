// CPU attention: causal-by-position softmax attention with GQA, one query row at a time (the
// N x N matrix is never materialised). Twin of the device attention kernel.
// FLOPs ~ 4 * n * len * head_dim per query head; statistics (column sums, tail rows, row LSE)
// come for free because every row's probabilities are formed explicitly.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace kvscope::cpu {

void attention(ThreadPool& pool, const float* q, int64_t n, int64_t n_heads, int64_t head_dim,
               const int64_t* q_pos, const KVHeadView* kv, int64_t n_kv_heads, float scale,
               float* out, AttentionStats* stats) {
    const int64_t group = n_heads / n_kv_heads;
    const bool want_colsum = stats && !stats->colsum.empty();
    // Split rows into chunks so that small head counts still use every thread.
    const int64_t chunks =
        std::max<int64_t>(1, std::min<int64_t>(n, (2 * pool.size() + n_heads - 1) / n_heads));
    const int64_t tasks = n_heads * chunks;
    std::vector<std::vector<float>> partial(want_colsum ? static_cast<size_t>(tasks) : 0);

    pool.parallel_for(tasks, [&](int64_t t0, int64_t t1) {
        std::vector<float> p;
        for (int64_t task = t0; task < t1; ++task) {
            const int64_t h = task / chunks;
            const int64_t c = task % chunks;
            const int64_t r0 = n * c / chunks, r1 = n * (c + 1) / chunks;
            const KVHeadView& kvh = kv[h / group];
            const int64_t len = kvh.len;
            p.resize(static_cast<size_t>(len));
            float* colsum = nullptr;
            if (want_colsum) {
                partial[static_cast<size_t>(task)].assign(static_cast<size_t>(len), 0.0f);
                colsum = partial[static_cast<size_t>(task)].data();
            }
            for (int64_t i = r0; i < r1; ++i) {
                const float* qi = q + (i * n_heads + h) * head_dim;
                float mx = -std::numeric_limits<float>::infinity();
                for (int64_t j = 0; j < len; ++j) {
                    if (kvh.pos[j] > q_pos[i]) {
                        p[static_cast<size_t>(j)] = -std::numeric_limits<float>::infinity();
                        continue;
                    }
                    const float s = dot_f32(qi, kvh.k + j * head_dim, head_dim) * scale;
                    p[static_cast<size_t>(j)] = s;
                    mx = std::max(mx, s);
                }
                double sum = 0.0;
                for (int64_t j = 0; j < len; ++j) {
                    const float e = std::isinf(p[static_cast<size_t>(j)])
                                        ? 0.0f
                                        : std::exp(p[static_cast<size_t>(j)] - mx);
                    p[static_cast<size_t>(j)] = e;
                    sum += e;
                }
                const float inv = sum > 0 ? static_cast<float>(1.0 / sum) : 0.0f;
                float* oi = out + (i * n_heads + h) * head_dim;
                std::fill(oi, oi + head_dim, 0.0f);
                for (int64_t j = 0; j < len; ++j) {
                    const float pj = p[static_cast<size_t>(j)] * inv;
                    p[static_cast<size_t>(j)] = pj;
                    if (pj == 0.0f) continue;
                    const float* vj = kvh.v + j * head_dim;
                    for (int64_t d = 0; d < head_dim; ++d) oi[d] += pj * vj[d];
                }
                if (colsum)
                    for (int64_t j = 0; j < len; ++j) colsum[j] += p[static_cast<size_t>(j)];
                if (stats) {
                    if (!stats->lse.empty() && stats->lse[static_cast<size_t>(h)])
                        stats->lse[static_cast<size_t>(h)][i] =
                            mx + static_cast<float>(std::log(sum));
                    const int64_t tail0 = n - stats->n_rows_tail;
                    if (!stats->rows.empty() && stats->rows[static_cast<size_t>(h)] && i >= tail0)
                        std::copy(p.begin(), p.end(),
                                  stats->rows[static_cast<size_t>(h)] + (i - tail0) * len);
                }
            }
        }
    });
    if (want_colsum) {
        for (int64_t h = 0; h < n_heads; ++h) {
            float* dst = stats->colsum[static_cast<size_t>(h)];
            if (!dst) continue;
            const int64_t len = kv[h / group].len;
            for (int64_t c = 0; c < chunks; ++c) {
                const auto& part = partial[static_cast<size_t>(h * chunks + c)];
                for (int64_t j = 0; j < len; ++j) dst[j] += part[static_cast<size_t>(j)];
            }
        }
    }
}

}  // namespace kvscope::cpu
