// Decode attention output: o[0, hd) += sum_j p[j] * v[j, :] for j in [k0, k1), v [len, hd]
// row-major f32 (the cache's layout). With AVX-512F (chosen at run time, no -march) and hd a
// multiple of 16 up to 128, the output row stays in registers for the whole key range (hd / 16
// zmm accumulators, two sets for alternate keys): per key, hd / 16 loads and FMAs, and o is read
// and written once. Otherwise four keys a pass in portable code (target clones), which loads and
// stores o once per four keys (the one-key loop, a load-add-store chain per key, dominated decode
// attention; perf, issue 15). Measured stand-alone on the dev VM (hd 48, 2048 keys in L2):
// 1.4 ns/key in registers against 2.3 for the four-key loop.
#include <cstdint>

#include "kernels/cpu/cpu_ops.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define KVSCOPE_VALUE_SUM_AVX512 1
#endif

namespace kvscope::cpu {
namespace {

#if defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define KVSCOPE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KVSCOPE_CLONES
#endif

KVSCOPE_CLONES
void value_sum_portable(const float* p, const float* __restrict v, int64_t k0, int64_t k1,
                        int64_t hd, float* __restrict o) {
    int64_t j = k0;
    for (; j + 4 <= k1; j += 4) {
        const float p0 = p[j], p1 = p[j + 1], p2 = p[j + 2], p3 = p[j + 3];
        const float* v0 = v + j * hd;
        const float* v1 = v0 + hd;
        const float* v2 = v1 + hd;
        const float* v3 = v2 + hd;
        for (int64_t d = 0; d < hd; ++d)
            o[d] += (p0 * v0[d] + p1 * v1[d]) + (p2 * v2[d] + p3 * v3[d]);
    }
    for (; j < k1; ++j) {
        const float pj = p[j];
        const float* vj = v + j * hd;
        for (int64_t d = 0; d < hd; ++d) o[d] += pj * vj[d];
    }
}

#ifdef KVSCOPE_VALUE_SUM_AVX512

// NV = hd / 16 accumulators per set; keys alternate between the two sets (two FMA chains).
template <int NV>
__attribute__((target("avx512f"))) void value_sum_regs(const float* p, const float* v, int64_t k0,
                                                       int64_t k1, float* o) {
    constexpr int64_t hd = 16 * NV;
    __m512 a[NV], b[NV];
    for (int i = 0; i < NV; ++i) {
        a[i] = _mm512_loadu_ps(o + 16 * i);
        b[i] = _mm512_setzero_ps();
    }
    int64_t j = k0;
    for (; j + 2 <= k1; j += 2) {
        const __m512 p0 = _mm512_set1_ps(p[j]), p1 = _mm512_set1_ps(p[j + 1]);
        const float* v0 = v + j * hd;
        for (int i = 0; i < NV; ++i) {
            a[i] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16 * i), a[i]);
            b[i] = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v0 + hd + 16 * i), b[i]);
        }
    }
    if (j < k1) {
        const __m512 p0 = _mm512_set1_ps(p[j]);
        for (int i = 0; i < NV; ++i)
            a[i] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v + j * hd + 16 * i), a[i]);
    }
    for (int i = 0; i < NV; ++i) _mm512_storeu_ps(o + 16 * i, _mm512_add_ps(a[i], b[i]));
}

using RegsFn = void (*)(const float*, const float*, int64_t, int64_t, float*);
constexpr RegsFn kRegs[8] = {value_sum_regs<1>, value_sum_regs<2>, value_sum_regs<3>,
                             value_sum_regs<4>, value_sum_regs<5>, value_sum_regs<6>,
                             value_sum_regs<7>, value_sum_regs<8>};

bool has_avx512f() {
    static const bool yes = __builtin_cpu_supports("avx512f");
    return yes;
}

#endif

}  // namespace

void value_sum_f32(const float* p, const float* v, int64_t k0, int64_t k1, int64_t hd, float* o) {
#ifdef KVSCOPE_VALUE_SUM_AVX512
    if (hd > 0 && hd % 16 == 0 && hd <= 128 && has_avx512f()) {
        kRegs[hd / 16 - 1](p, v, k0, k1, o);
        return;
    }
#endif
    value_sum_portable(p, v, k0, k1, hd, o);
}

}  // namespace kvscope::cpu
