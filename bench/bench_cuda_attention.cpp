// Prefill attention kernels alone on the device (issue 9: the recorded 32k prefill spends most of
// its attention time here): the flash forward (out + LSE), the statistics pass with column sums
// and window rows (what a recorded prefill runs), and the rows-only pass (SnapKV's window), on a
// causal prompt of n tokens with the Llama-3 8B attention shape by default. Timed with CUDA
// events, median of --reps after one warm-up; TFLOP/s counts the causal half (n(n+1)/2 logits per
// head). Its peer is bench/peer_attention.py (torch SDPA, bf16, the same shape) run in the same
// call: compare the two lines, not numbers from different machines.
//
// Before timing, the tensor-core path is checked against the fp32 CUDA kernels
// (KVSCOPE_CUDA_ATTENTION=fp32) on the first --check-n queries of the same data: max |diff| of
// out, LSE and column sums relative to the largest |value| of each; over 2e-2 (the op tests'
// bound for this path, tests/kernels/backend_ops_harness.h) exits 1.
//
//   bench_cuda_attention [--n 32768] [--heads 32] [--kv-heads 8] [--dim 128] [--tail 32]
//                        [--reps 5] [--check-n 2048]   (--check-n 0: no check)
// Prints one JSON line per measurement.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_common.h"

namespace {

using kvscope::cuda::AttentionDev;

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
        std::fprintf(stderr, "bench_cuda_attention: %s: %s\n", what, cudaGetErrorString(e));
        std::exit(1);
    }
}

struct Dev {
    void* p = nullptr;
    explicit Dev(size_t bytes) { check(cudaMalloc(&p, std::max<size_t>(bytes, 16)), "cudaMalloc"); }
    ~Dev() { cudaFree(p); }
    Dev(const Dev&) = delete;
    Dev& operator=(const Dev&) = delete;
    template <class T>
    T* as() const {
        return static_cast<T*>(p);
    }
};

std::vector<float> randn(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

double median_ms(int reps, const std::function<void()>& f) {
    cudaEvent_t a, b;
    check(cudaEventCreate(&a), "event");
    check(cudaEventCreate(&b), "event");
    f();  // warm-up (allocations of the bf16 scratch pool, module load)
    check(cudaDeviceSynchronize(), "warm-up");
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
        check(cudaEventRecord(a), "record");
        f();
        check(cudaEventRecord(b), "record");
        check(cudaEventSynchronize(b), "sync");
        float ms = 0;
        check(cudaEventElapsedTime(&ms, a, b), "elapsed");
        t.push_back(ms);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

std::vector<float> get(const float* d, size_t n) {
    std::vector<float> h(n);
    check(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost), "copy back");
    return h;
}

// max |a - b| / max |b| over finite entries of b (both -inf counts as equal). Where a check
// fails, *worst is the index of the largest difference and *bad the number of entries over
// `bound` (relative to the same scale): a wrong layout shows as a pattern in those.
double rel_err(const std::vector<float>& a, const std::vector<float>& b, size_t* worst = nullptr,
               size_t* bad = nullptr, double bound = 2e-2) {
    double scale = 0, err = 0;
    size_t at = 0;
    for (size_t i = 0; i < b.size(); ++i) {
        if (!std::isfinite(b[i])) {
            if (a[i] != b[i]) {
                err = INFINITY;
                at = i;
            }
            continue;
        }
        scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
        const double e = std::fabs(static_cast<double>(a[i]) - b[i]);
        if (!(e <= err)) {  // NaN counts as worst
            err = e;
            at = i;
        }
    }
    if (worst) *worst = at;
    if (bad) {
        *bad = 0;
        for (size_t i = 0; i < b.size(); ++i)
            if (!(std::fabs(static_cast<double>(a[i]) - b[i]) <= bound * scale) && !(a[i] == b[i]))
                ++*bad;
    }
    return scale > 0 ? err / scale : err;
}

int usage(const char* why) {
    std::fprintf(stderr,
                 "bench_cuda_attention: %s\nusage: bench_cuda_attention [--n N] [--heads H] "
                 "[--kv-heads G] [--dim 64|128] [--tail W] [--reps R] [--check-n M]\n",
                 why);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    int64_t n = 32768, H = 32, G = 8, d = 128, tail = 32, check_n = 2048;
    int reps = 5;
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        if (i + 1 >= argc) return usage(("missing value after " + k).c_str());
        char* end = nullptr;
        const long long v = std::strtoll(argv[++i], &end, 10);
        if (!end || *end || v < (k == "--check-n" ? 0 : 1))
            return usage(("bad value for " + k).c_str());
        if (k == "--n")
            n = v;
        else if (k == "--heads")
            H = v;
        else if (k == "--kv-heads")
            G = v;
        else if (k == "--dim")
            d = v;
        else if (k == "--tail")
            tail = v;
        else if (k == "--reps")
            reps = static_cast<int>(v);
        else if (k == "--check-n")
            check_n = v;
        else
            return usage(("unknown flag " + k).c_str());
    }
    if (H % G != 0 || (d != 64 && d != 128) || tail > n)
        return usage("heads must be a multiple of kv-heads, dim 64 or 128, tail <= n");
    int devs = 0;
    if (cudaGetDeviceCount(&devs) != cudaSuccess || devs == 0) {
        std::fprintf(stderr, "bench_cuda_attention: no CUDA device\n");
        return 1;
    }
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "device properties");

    // A causal prompt: queries and keys at positions 0 .. n-1; every KV head holds all n.
    const auto hq = randn(static_cast<size_t>(n * H * d), 1);
    const auto hk = randn(static_cast<size_t>(n * G * d), 2);
    const auto hv = randn(static_cast<size_t>(n * G * d), 3);
    std::vector<int64_t> pos(static_cast<size_t>(n)), meta(static_cast<size_t>(2 * G));
    for (int64_t i = 0; i < n; ++i) pos[static_cast<size_t>(i)] = i;
    std::vector<int64_t> kpos;
    for (int64_t g = 0; g < G; ++g) {
        meta[static_cast<size_t>(g)] = g * n;
        meta[static_cast<size_t>(G + g)] = n;
        kpos.insert(kpos.end(), pos.begin(), pos.end());
    }
    Dev q(hq.size() * 4), k(hk.size() * 4), v(hv.size() * 4), qp(pos.size() * 8),
        kp(kpos.size() * 8), mt(meta.size() * 8), out(hq.size() * 4),
        lse(static_cast<size_t>(H * n) * 4), col(static_cast<size_t>(H * n) * 4),
        rows(static_cast<size_t>(H * tail * n) * 4);
    check(cudaMemcpy(q.p, hq.data(), hq.size() * 4, cudaMemcpyHostToDevice), "upload");
    check(cudaMemcpy(k.p, hk.data(), hk.size() * 4, cudaMemcpyHostToDevice), "upload");
    check(cudaMemcpy(v.p, hv.data(), hv.size() * 4, cudaMemcpyHostToDevice), "upload");
    check(cudaMemcpy(qp.p, pos.data(), pos.size() * 8, cudaMemcpyHostToDevice), "upload");
    check(cudaMemcpy(kp.p, kpos.data(), kpos.size() * 8, cudaMemcpyHostToDevice), "upload");
    check(cudaMemcpy(mt.p, meta.data(), meta.size() * 8, cudaMemcpyHostToDevice), "upload");

    AttentionDev a;
    a.q = q.as<float>();
    a.q_pos = qp.as<int64_t>();
    a.k = k.as<float>();
    a.v = v.as<float>();
    a.kpos = kp.as<int64_t>();
    a.kv_off = mt.as<int64_t>();
    a.kv_len = mt.as<int64_t>() + G;
    a.n = n;
    a.H = H;
    a.G = G;
    a.d = d;
    a.max_len = n;
    a.scale = 1.0f / std::sqrt(static_cast<float>(d));
    a.out = out.as<float>();
    a.lse = lse.as<float>();

    // 1. The tensor-core path against the fp32 kernels on the first check_n queries (and keys).
    if (check_n > 0) {
        AttentionDev c = a;
        c.n = std::min(check_n, n);
        c.max_len = c.n;
        Dev mc(meta.size() * 8);
        std::vector<int64_t> m2 = meta;
        for (int64_t g = 0; g < G; ++g) m2[static_cast<size_t>(G + g)] = c.n;
        check(cudaMemcpy(mc.p, m2.data(), m2.size() * 8, cudaMemcpyHostToDevice), "upload");
        c.kv_off = mc.as<int64_t>();
        c.kv_len = mc.as<int64_t>() + G;
        Dev ref_out(static_cast<size_t>(c.n * H * d) * 4),
            ref_lse(static_cast<size_t>(c.n * H) * 4), ref_col(static_cast<size_t>(c.n * H) * 4);
        auto run = [&](float* o, float* l, float* cs) {
            c.out = o;
            c.lse = l;
            kvscope::cuda::attention_prefill(c, nullptr);
            kvscope::cuda::attention_probs(c, 0, cs, nullptr, 0, nullptr);
            check(cudaDeviceSynchronize(), "check run");
        };
        setenv("KVSCOPE_CUDA_ATTENTION", "fp32", 1);
        run(ref_out.as<float>(), ref_lse.as<float>(), ref_col.as<float>());
        unsetenv("KVSCOPE_CUDA_ATTENTION");
        run(out.as<float>(), lse.as<float>(), col.as<float>());
        const size_t no = static_cast<size_t>(c.n * H * d), nl = static_cast<size_t>(c.n * H);
        size_t wo = 0, bo = 0, wl = 0, bl = 0;
        const double eo = rel_err(get(out.as<float>(), no), get(ref_out.as<float>(), no), &wo, &bo);
        const double el = rel_err(get(lse.as<float>(), nl), get(ref_lse.as<float>(), nl), &wl, &bl);
        const double ec = rel_err(get(col.as<float>(), nl), get(ref_col.as<float>(), nl));
        const bool ok = eo <= 2e-2 && el <= 2e-2 && ec <= 2e-2;  // the op tests' bf16 bound
        std::printf(
            "{\"check\":\"tensor cores vs fp32 kernels\",\"n\":%lld,\"out_rel\":%.3g,"
            "\"lse_rel\":%.3g,\"colsum_rel\":%.3g,\"bound\":0.02,\"ok\":%s}\n",
            static_cast<long long>(c.n), eo, el, ec, ok ? "true" : "false");
        if (!ok) {  // out is [n, H, d], LSE [H, n]
            std::printf(
                "{\"out_worst\":{\"query\":%zu,\"head\":%zu,\"dim\":%zu},\"out_bad\":%zu,"
                "\"lse_worst\":{\"head\":%zu,\"query\":%zu},\"lse_bad\":%zu,\"of\":%zu}\n",
                wo / static_cast<size_t>(H * d),
                wo / static_cast<size_t>(d) % static_cast<size_t>(H), wo % static_cast<size_t>(d),
                bo, wl / static_cast<size_t>(c.n), wl % static_cast<size_t>(c.n), bl, nl);
            return 1;
        }
    }

    // 2. Timings on the whole prompt.
    const double logits = static_cast<double>(H) * static_cast<double>(n) * (n + 1) / 2.0;
    auto line = [&](const char* what, double ms, double flops_per_logit) {
        std::printf(
            "{\"kernel\":\"%s\",\"device\":\"%s\",\"n\":%lld,\"heads\":%lld,\"kv_heads\":%lld,"
            "\"dim\":%lld,\"tail\":%lld,\"ms\":%.3f,\"tflops\":%.1f}\n",
            what, prop.name, static_cast<long long>(n), static_cast<long long>(H),
            static_cast<long long>(G), static_cast<long long>(d), static_cast<long long>(tail), ms,
            flops_per_logit * static_cast<double>(d) * logits / (ms * 1e-3) / 1e12);
        std::fflush(stdout);
    };
    const double fwd = median_ms(reps, [&] { kvscope::cuda::attention_prefill(a, nullptr); });
    line("forward", fwd, 4.0);  // Q.K^T and P.V: 2 FLOPs per multiply-add, 2d per logit each
    const double stats = median_ms(reps, [&] {
        kvscope::cuda::attention_probs(a, 0, col.as<float>(), rows.as<float>(), tail, nullptr);
    });
    line("colsum+rows", stats, 2.0);  // Q.K^T again
    const double win = median_ms(reps, [&] {
        kvscope::cuda::attention_probs(a, n - tail, nullptr, rows.as<float>(), tail, nullptr);
    });
    line("rows only", win,
         2.0 * static_cast<double>(tail) * n / (static_cast<double>(n) * (n + 1) / 2.0));
    line("recorded (forward+colsum+rows)", fwd + stats, 6.0);
    return 0;
}
