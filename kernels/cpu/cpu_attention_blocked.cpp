// The default CPU attention: causal-by-position softmax attention with GQA, blocked over query
// rows (kRowBlock) and key tiles (kKeyTile). A key tile whose smallest position is past the
// block's largest query position is skipped (never scored, never read); a tile entirely at or
// before the block's smallest query position needs no mask test. Positions need not be sorted:
// the per-tile min / max make the skip exact for any order. Scores of a block are kept for its
// visible tiles ([kRowBlock, len] floats per thread), so the statistics the policies need (column
// sums, the last rows, row LSE) come from the same pass, exactly as in cpu_attention.cpp (the
// reference): same max, exp(s - max) / sum with the sum in double.
// QK^T and PV of a block are sgemm calls over each run of visible tiles when BLAS is loaded
// (shapes [rows, hd] x [hd, keys] and [rows, keys] x [keys, hd]); with fewer rows (decode) or no
// BLAS, key_scores_f32 per row for the scores and value_sum_f32 for P V.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_blas.h"
#include "kernels/cpu/cpu_ops.h"

namespace kvscope::cpu {
namespace {

constexpr int64_t kRowBlock = 16;
constexpr int64_t kKeyTile = 64;
constexpr int64_t kBlasMinRows = 4;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

#if defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define KVSCOPE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KVSCOPE_CLONES
#endif

// p[j] = exp(p[j] - mx) for j in [0, len), returns the sum in double. x = p[j] - mx <= 0; exp by
// range reduction x = n ln2 + r and a degree-6 polynomial in r (max error ~2 ulp against
// std::exp over [-87, 0]); below -87.3 the result is 0 (std::exp would give a denormal <= 1e-38,
// against a row maximum of 1). Three loops per block of kExpBlock: clamp, polynomial, select.
// In one loop GCC turned the clamp and the final select into a branch around the polynomial
// and did not vectorise it at all (-fopt-info-vec: "control flow in loop"; perf: exp_shifted 26%
// of a 4k prefill + decode, all scalar vfmadd...ss). The sum runs in 8 double lanes (a scalar
// double sum ran at 1 element per cycle).
constexpr int64_t kExpBlock = 64;

KVSCOPE_CLONES
double exp_shifted(float* p, int64_t len, float mx) {
    float t[kExpBlock];
    for (int64_t j0 = 0; j0 < len; j0 += kExpBlock) {
        const int64_t n = std::min(kExpBlock, len - j0);
        float* pj = p + j0;
        for (int64_t i = 0; i < n; ++i) {
            const float x = pj[i] - mx;
            t[i] = x > -87.3f ? x : -87.3f;
        }
        for (int64_t i = 0; i < n; ++i) {
            const float xc = t[i];
            // The int cast of (x + 0.5) is the exp approximation's own rounding step.
            const float fn =
                // NOLINTNEXTLINE(bugprone-incorrect-roundings): kept bit-exact on purpose
                -static_cast<float>(static_cast<int32_t>(-xc * 1.44269504088896341f + 0.5f));
            float r = xc - fn * 0.693359375f;
            r = r - fn * -2.12194440e-4f;
            float y = 1.9875691500e-4f;
            y = y * r + 1.3981999507e-3f;
            y = y * r + 8.3334519073e-3f;
            y = y * r + 4.1665795894e-2f;
            y = y * r + 1.6666665459e-1f;
            y = y * r + 5.0000001201e-1f;
            y = y * r * r + r + 1.0f;
            const int32_t bits = (static_cast<int32_t>(fn) + 127) << 23;
            float scale;
            std::memcpy(&scale, &bits, sizeof scale);
            t[i] = y * scale;
        }
        for (int64_t i = 0; i < n; ++i) pj[i] = pj[i] - mx < -87.3f ? 0.0f : t[i];
    }
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= len; j += 8)
        for (int l = 0; l < 8; ++l) acc[l] += static_cast<double>(p[j + l]);
    double sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; j < len; ++j) sum += static_cast<double>(p[j]);
    return sum;
}

// max(m, p[0..len)) in 16 lanes (a plain std::max reduction does not vectorise).
KVSCOPE_CLONES
float row_max(const float* p, int64_t len, float m) {
    float acc[16];
    for (float& a : acc) a = m;
    int64_t j = 0;
    for (; j + 16 <= len; j += 16)
        for (int l = 0; l < 16; ++l) acc[l] = acc[l] > p[j + l] ? acc[l] : p[j + l];
    for (; j < len; ++j) m = m > p[j] ? m : p[j];
    for (float a : acc) m = m > a ? m : a;
    return m;
}

KVSCOPE_CLONES
void scale_add(float* p, int64_t len, float inv, float* colsum) {
    for (int64_t j = 0; j < len; ++j) {
        p[j] *= inv;
        if (colsum) colsum[j] += p[j];
    }
}

struct Run {
    int64_t k0, k1;  // keys [k0, k1)
    bool masked;     // some key in the run may be invisible to some row of the block
};

}  // namespace

void attention_blocked(ThreadPool& pool, const float* q, int64_t n, int64_t n_heads,
                       int64_t head_dim, const int64_t* q_pos, const KVHeadView* kv,
                       int64_t n_kv_heads, float scale, float* out, AttentionStats* stats) {
    const BlasApi* blas = blas_api();
    const int64_t group = n_heads / n_kv_heads;
    const bool want_colsum = stats && !stats->colsum.empty();
    const int64_t ld = n_heads * head_dim;  // stride between query rows of one head
    // Per KV head and key tile: the smallest and largest position.
    std::vector<std::vector<int64_t>> tmin(static_cast<size_t>(n_kv_heads)),
        tmax(static_cast<size_t>(n_kv_heads));
    for (int64_t g = 0; g < n_kv_heads; ++g) {
        const int64_t len = kv[g].len;
        const int64_t tiles = (len + kKeyTile - 1) / kKeyTile;
        auto& mn = tmin[static_cast<size_t>(g)];
        auto& mxv = tmax[static_cast<size_t>(g)];
        mn.assign(static_cast<size_t>(tiles), std::numeric_limits<int64_t>::max());
        mxv.assign(static_cast<size_t>(tiles), std::numeric_limits<int64_t>::min());
        for (int64_t j = 0; j < len; ++j) {
            const auto t = static_cast<size_t>(j / kKeyTile);
            mn[t] = std::min(mn[t], kv[g].pos[j]);
            mxv[t] = std::max(mxv[t], kv[g].pos[j]);
        }
    }
    // Split rows into chunks so that small head counts still use every thread; chunk c of head h
    // is one task, so the work split (and the colsum summation order) depends on the thread
    // count only.
    const int64_t chunks =
        std::max<int64_t>(1, std::min<int64_t>(n, (2 * pool.size() + n_heads - 1) / n_heads));
    const int64_t tasks = n_heads * chunks;
    std::vector<std::vector<float>> partial(want_colsum ? static_cast<size_t>(tasks) : 0);

    int64_t max_len = 0;
    for (int64_t g = 0; g < n_kv_heads; ++g) max_len = std::max(max_len, kv[g].len);
    pool.parallel_for_work(tasks, n * n_heads * max_len * head_dim, [&](int64_t t0, int64_t t1) {
        std::vector<float> s, qs;
        std::vector<Run> runs;
        for (int64_t task = t0; task < t1; ++task) {
            const int64_t h = task / chunks;
            const int64_t c = task % chunks;
            const int64_t r0 = n * c / chunks, r1 = n * (c + 1) / chunks;
            const int64_t g = h / group;
            const KVHeadView& kvh = kv[g];
            const int64_t len = kvh.len;
            const auto& mn = tmin[static_cast<size_t>(g)];
            const auto& mxv = tmax[static_cast<size_t>(g)];
            // Sized by this task's rows: a decode step (1 row) must not clear 16 rows of len.
            const size_t s_size =
                static_cast<size_t>(std::min(kRowBlock, r1 - r0) * std::max<int64_t>(len, 1));
            if (s.size() < s_size) s.resize(s_size);
            float* colsum = nullptr;
            if (want_colsum) {
                partial[static_cast<size_t>(task)].assign(static_cast<size_t>(len), 0.0f);
                colsum = partial[static_cast<size_t>(task)].data();
            }
            float* lse =
                stats && !stats->lse.empty() ? stats->lse[static_cast<size_t>(h)] : nullptr;
            float* rows_out =
                stats && !stats->rows.empty() ? stats->rows[static_cast<size_t>(h)] : nullptr;
            const int64_t tail0 = stats ? n - stats->n_rows_tail : n;
            for (int64_t b0 = r0; b0 < r1; b0 += kRowBlock) {
                const int64_t nb = std::min(kRowBlock, r1 - b0);
                int64_t qlo = std::numeric_limits<int64_t>::max();
                int64_t qhi = std::numeric_limits<int64_t>::min();
                for (int64_t i = b0; i < b0 + nb; ++i) {
                    qlo = std::min(qlo, q_pos[i]);
                    qhi = std::max(qhi, q_pos[i]);
                }
                // Runs of consecutive visible tiles, split where the need for a mask changes.
                runs.clear();
                for (size_t t = 0; t < mn.size(); ++t) {
                    if (mn[t] > qhi) continue;
                    const int64_t k0 = static_cast<int64_t>(t) * kKeyTile;
                    const int64_t k1 = std::min(len, k0 + kKeyTile);
                    const bool masked = mxv[t] > qlo;
                    if (!runs.empty() && runs.back().k1 == k0 && runs.back().masked == masked)
                        runs.back().k1 = k1;
                    else
                        runs.push_back({k0, k1, masked});
                }
                // A few rows (decode): our loops; sgemm would repack K and V for one row.
                const bool use_blas = blas && nb >= kBlasMinRows;
                const float* qb = q + b0 * ld + h * head_dim;
                if (!use_blas) {
                    qs.resize(static_cast<size_t>(nb * head_dim));
                    for (int64_t i = 0; i < nb; ++i)
                        for (int64_t d = 0; d < head_dim; ++d)
                            qs[static_cast<size_t>(i * head_dim + d)] = qb[i * ld + d] * scale;
                }
                float* ob = out + b0 * ld + h * head_dim;
                // Scores S[i, j] = scale * q_i . k_j over the visible runs.
                for (const Run& r : runs) {
                    if (use_blas) {
                        blas->sgemm(kRowMajor, kNoTrans, kTrans, static_cast<int>(nb),
                                    static_cast<int>(r.k1 - r.k0), static_cast<int>(head_dim),
                                    scale, qb, static_cast<int>(ld), kvh.k + r.k0 * head_dim,
                                    static_cast<int>(head_dim), 0.0f, s.data() + r.k0,
                                    static_cast<int>(len));
                    } else {  // q pre-scaled (qs): the run's keys scored per row
                        for (int64_t i = 0; i < nb; ++i)
                            key_scores_f32(qs.data() + i * head_dim, head_dim,
                                           kvh.k + r.k0 * head_dim, r.k1 - r.k0,
                                           s.data() + i * len + r.k0);
                    }
                    if (r.masked)
                        for (int64_t i = 0; i < nb; ++i)
                            for (int64_t j = r.k0; j < r.k1; ++j)
                                if (kvh.pos[j] > q_pos[b0 + i])
                                    s[static_cast<size_t>(i * len + j)] = kNegInf;
                }
                // Row softmax over the visible runs (invisible entries become exactly 0).
                for (int64_t i = 0; i < nb; ++i) {
                    float* si = s.data() + i * len;
                    float mx = kNegInf;
                    for (const Run& r : runs) mx = row_max(si + r.k0, r.k1 - r.k0, mx);
                    double sum = 0.0;
                    if (mx != kNegInf) {
                        for (const Run& r : runs) sum += exp_shifted(si + r.k0, r.k1 - r.k0, mx);
                    } else {
                        for (const Run& r : runs) std::fill(si + r.k0, si + r.k1, 0.0f);
                    }
                    const float inv = sum > 0 ? static_cast<float>(1.0 / sum) : 0.0f;
                    for (const Run& r : runs)
                        scale_add(si + r.k0, r.k1 - r.k0, inv, colsum ? colsum + r.k0 : nullptr);
                    const int64_t row = b0 + i;
                    if (lse) lse[row] = mx + static_cast<float>(std::log(sum));
                    if (rows_out && row >= tail0) {
                        float* dst = rows_out + (row - tail0) * len;
                        std::fill(dst, dst + len, 0.0f);
                        for (const Run& r : runs) std::copy(si + r.k0, si + r.k1, dst + r.k0);
                    }
                }
                // Output O = P V over the visible runs.
                if (use_blas) {
                    bool first = true;
                    for (const Run& r : runs) {
                        blas->sgemm(kRowMajor, kNoTrans, kNoTrans, static_cast<int>(nb),
                                    static_cast<int>(head_dim), static_cast<int>(r.k1 - r.k0), 1.0f,
                                    s.data() + r.k0, static_cast<int>(len), kvh.v + r.k0 * head_dim,
                                    static_cast<int>(head_dim), first ? 0.0f : 1.0f, ob,
                                    static_cast<int>(ld));
                        first = false;
                    }
                    if (first)
                        for (int64_t i = 0; i < nb; ++i)
                            std::fill(ob + i * ld, ob + i * ld + head_dim, 0.0f);
                } else {
                    for (int64_t i = 0; i < nb; ++i) {
                        float* oi = ob + i * ld;
                        std::fill(oi, oi + head_dim, 0.0f);
                        const float* si = s.data() + i * len;
                        for (const Run& r : runs)
                            value_sum_f32(si, kvh.v, r.k0, r.k1, head_dim, oi);
                    }
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
