// Decode attention scores: out[j] = q . k[j, :] for j in [0, len), k [len, hd] row-major f32 (the
// cache's layout). Same contract as gemv_f32(q, hd, k, len, out), written for short rows
// (head_dim 48..128): gemv_f32 reduces 16 lanes to one sum per key, and at head_dim 48 those
// reductions were most of decode's score time (perf, issue 15: 17% of a decode step at 2k context
// against 3 FMAs of work per key). Here 16 keys are reduced together: each key's hd/16 FMAs
// leave one 16-lane partial vector, and a transpose-add butterfly (unpack ps, unpack pd, two
// 128-bit-lane shuffles) turns the 16 partial vectors into one vector of 16 sums: ~3 shuffle or
// add instructions per key instead of a 16-to-1 reduction each.
// AVX-512F only, chosen at run time (no -march); other CPUs, head_dim not a multiple of 16 and
// the last len % 16 keys go to gemv_f32. The sum order differs from gemv_f32's (each key: lanes
// then pairs), so results agree to fp32 rounding, not bit for bit.
#include <cstdint>

#include "kernels/cpu/cpu_ops.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define KVSCOPE_KEY_SCORES_AVX512 1
#endif

namespace kvscope::cpu {
namespace {

#ifdef KVSCOPE_KEY_SCORES_AVX512

// The shuffles are written in their masked form with every lane selected: the unmasked forms
// pass _mm512_undefined_ps() and GCC 12 then warns -Wuninitialized inside its own header.
constexpr __mmask16 kAll16 = 0xFFFF;
constexpr __mmask8 kAll8 = 0xFF;

// 16 keys starting at k (row stride hd, hd % 16 == 0): out[0..16) = q . k_l.
__attribute__((target("avx512f"))) inline __m512 dot16(const float* q, const float* k, int64_t hd) {
    __m512 p[16];
    for (int l = 0; l < 16; ++l) p[l] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; d += 16) {
        const __m512 qv = _mm512_loadu_ps(q + d);
        for (int l = 0; l < 16; ++l)
            p[l] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k + l * hd + d), p[l]);
    }
    // Level 1, keys (2i, 2i+1): per 128-bit lane [a0+a2, b0+b2, a1+a3, b1+b3].
    __m512 s1[8];
    for (int i = 0; i < 8; ++i)
        s1[i] = _mm512_add_ps(_mm512_mask_unpacklo_ps(p[2 * i], kAll16, p[2 * i], p[2 * i + 1]),
                              _mm512_mask_unpackhi_ps(p[2 * i], kAll16, p[2 * i], p[2 * i + 1]));
    // Level 2, keys 4i..4i+3: per 128-bit lane [a, b, c, d] (that lane's partial sums).
    __m512 s2[4];
    for (int i = 0; i < 4; ++i) {
        const __m512d x = _mm512_castps_pd(s1[2 * i]), y = _mm512_castps_pd(s1[2 * i + 1]);
        s2[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_mask_unpacklo_pd(x, kAll8, x, y)),
                              _mm512_castpd_ps(_mm512_mask_unpackhi_pd(x, kAll8, x, y)));
    }
    // Level 3, keys 8i..8i+7: 128-bit lanes [u(L0+L1), u(L2+L3), w(L0+L1), w(L2+L3)] of the two
    // 4-key vectors u, w.
    __m512 s3[2];
    for (int i = 0; i < 2; ++i) {
        const __m512 u = s2[2 * i], w = s2[2 * i + 1];
        s3[i] = _mm512_add_ps(_mm512_mask_shuffle_f32x4(u, kAll16, u, w, _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm512_mask_shuffle_f32x4(u, kAll16, u, w, _MM_SHUFFLE(3, 1, 3, 1)));
    }
    // Level 4: [keys 0-3, 4-7, 8-11, 12-15], each the full sum.
    return _mm512_add_ps(
        _mm512_mask_shuffle_f32x4(s3[0], kAll16, s3[0], s3[1], _MM_SHUFFLE(2, 0, 2, 0)),
        _mm512_mask_shuffle_f32x4(s3[0], kAll16, s3[0], s3[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

__attribute__((target("avx512f"))) int64_t key_scores_avx512(const float* q, int64_t hd,
                                                             const float* k, int64_t len,
                                                             float* out) {
    int64_t j = 0;
    for (; j + 16 <= len; j += 16) _mm512_storeu_ps(out + j, dot16(q, k + j * hd, hd));
    return j;
}

bool has_avx512f() {
    static const bool yes = __builtin_cpu_supports("avx512f");
    return yes;
}

#endif

}  // namespace

void key_scores_f32(const float* q, int64_t hd, const float* k, int64_t len, float* out) {
    int64_t done = 0;
#ifdef KVSCOPE_KEY_SCORES_AVX512
    if (hd % 16 == 0 && hd > 0 && has_avx512f()) done = key_scores_avx512(q, hd, k, len, out);
#endif
    if (done < len) gemv_f32(q, hd, k + done * hd, len - done, out + done);
}

}  // namespace kvscope::cpu
