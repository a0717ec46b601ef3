// CPU fast path vs reference, one invocation (issue 15). Measures, side by side in one run:
//   1. matmul at the demo model's shapes: OpenBLAS's own sgemm (its threads = ours; the attainable
//      rate), our default matmul (f32 weights converted at upload), the reference loops (bf16
//      weights converted per call), at n = prompt rows and n = 1 (decode);
//   2. the engine on a model: prefill at several lengths and decode ms/token, reference kernels
//      (KVSCOPE_CPU_KERNELS=reference) vs the default, plus the default on 1 thread.
// Absolute times on the 2-core dev VM are noise (other builds run); the ratios are the result.
// Usage: bench_cpu_kernels MODEL_DIR [prefill lengths, default 512 1024 4096]
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/engine/engine.h"
#include "core/engine/sampler.h"
#include "core/model/model.h"

using namespace kvscope;
using clk = std::chrono::steady_clock;

namespace {

double secs_since(clk::time_point t0) {
    return std::chrono::duration<double>(clk::now() - t0).count();
}

// Median seconds of `reps` calls after one warm-up.
template <class F>
double median_time(int reps, F&& f) {
    f();
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = clk::now();
        f();
        t.push_back(secs_since(t0));
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

uint16_t to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

std::unique_ptr<Backend> backend(const char* kernels, int threads) {
    setenv("KVSCOPE_CPU_KERNELS", kernels, 1);
    auto be = make_cpu_backend(threads);
    unsetenv("KVSCOPE_CPU_KERNELS");
    return be;
}

using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                       float, float*, int);
using SetThreads = void (*)(int);

void bench_matmul(const ModelSpec& s, int64_t n_rows, int threads) {
    void* lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    auto sgemm = lib ? reinterpret_cast<Sgemm>(dlsym(lib, "cblas_sgemm")) : nullptr;
    auto set_threads =
        lib ? reinterpret_cast<SetThreads>(dlsym(lib, "openblas_set_num_threads")) : nullptr;
    auto fast = backend("fast", threads);
    auto ref = backend("reference", threads);
    std::printf("\n== matmul, %d threads (GFLOP/s; ours = %s)\n", threads,
                fast->describe().c_str());
    std::printf("%-10s %6s %6s %6s %10s %10s %10s %8s %8s\n", "shape", "n", "k", "m", "openblas",
                "ours", "reference", "ours/ob", "ours/ref");
    struct Shape {
        const char* name;
        int64_t k, m;
    };
    const Shape shapes[] = {{"q,o", s.hidden, s.q_dim()},
                            {"k,v", s.hidden, s.kv_dim()},
                            {"gate,up", s.hidden, s.intermediate},
                            {"down", s.intermediate, s.hidden},
                            {"lm_head", s.hidden, s.vocab_size}};
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.f, 1.f);
    double sum_ours = 0, sum_ob = 0, sum_ref = 0;
    for (int64_t n : {n_rows, int64_t{1}}) {
        for (const Shape& sh : shapes) {
            std::vector<float> x(static_cast<size_t>(n * sh.k)),
                wf(static_cast<size_t>(sh.m * sh.k)), o(static_cast<size_t>(n * sh.m));
            std::vector<uint16_t> wb(wf.size());
            for (auto& v : x) v = nd(rng);
            for (size_t i = 0; i < wf.size(); ++i) {
                wb[i] = to_bf16(nd(rng) * 0.05f);
                const uint32_t u = static_cast<uint32_t>(wb[i]) << 16;
                std::memcpy(&wf[i], &u, 4);
            }
            const double flops = 2.0 * n * sh.k * sh.m;
            const int reps = std::max(3, static_cast<int>(2e9 / flops / 10));
            double t_ob = 0;
            if (sgemm) {
                if (set_threads) set_threads(threads);
                t_ob = median_time(reps, [&] {
                    sgemm(101, 111, 112, static_cast<int>(n), static_cast<int>(sh.m),
                          static_cast<int>(sh.k), 1.f, x.data(), static_cast<int>(sh.k), wf.data(),
                          static_cast<int>(sh.k), 0.f, o.data(), static_cast<int>(sh.m));
                });
                if (set_threads) set_threads(1);  // what the backend runs with
            }
            auto run_be = [&](Backend& be, int r) {
                Tensor W = be.upload_weight(wb.data(), DType::kBf16, {sh.m, sh.k});
                Tensor X = be.alloc(DType::kF32, {n, sh.k});
                Tensor O = be.alloc(DType::kF32, {n, sh.m});
                be.from_host(X, x.data());
                const double t = median_time(r, [&] { be.matmul(X, W, nullptr, O); });
                be.release(X);
                be.release(O);
                be.release_weight(W);
                return t;
            };
            const double t_ours = run_be(*fast, reps);
            const double t_ref = run_be(*ref, std::max(3, reps / 4));
            if (n > 1) {
                sum_ours += t_ours;
                sum_ob += t_ob;
                sum_ref += t_ref;
            }
            std::printf("%-10s %6lld %6lld %6lld %10.2f %10.2f %10.2f %8.2f %8.2f\n", sh.name,
                        static_cast<long long>(n), static_cast<long long>(sh.k),
                        static_cast<long long>(sh.m), t_ob > 0 ? flops / t_ob / 1e9 : 0.0,
                        flops / t_ours / 1e9, flops / t_ref / 1e9, t_ob > 0 ? t_ob / t_ours : 0.0,
                        t_ref / t_ours);
        }
    }
    if (sum_ob > 0)
        std::printf(
            "all shapes at n = %lld, time-weighted: ours/openblas %.2f, ours/reference %.2f\n",
            static_cast<long long>(n_rows), sum_ob / sum_ours, sum_ref / sum_ours);
}

struct EngineRun {
    double prefill_s = 0, decode_ms = 0;
};

EngineRun run_engine(const Model& model, Backend& be, int64_t n, int steps) {
    const ModelSpec& s = model.spec;
    std::vector<int32_t> ids;
    for (int64_t i = 0; i < n; ++i)
        ids.push_back(static_cast<int32_t>(3 + (i * 7919) % (s.vocab_size - 3)));
    EngineOptions opts;
    opts.stats.colsum = true;  // what the recorder asks for
    opts.stats.key_norms = true;
    opts.stats.window = 32;
    Engine e(model, be, opts);
    EngineRun r;
    auto t0 = clk::now();
    auto logits = e.prefill(ids);
    r.prefill_s = secs_since(t0);
    Sampler greedy({});
    t0 = clk::now();
    for (int i = 0; i < steps; ++i) logits = e.decode(greedy.sample(logits.data(), s.vocab_size));
    r.decode_ms = steps > 0 ? secs_since(t0) * 1e3 / steps : 0;
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL_DIR [prefill lengths...]\n", argv[0]);
        return 2;
    }
    try {
        auto model = load_model(argv[1]);
        const ModelSpec& s = model->spec;
        std::vector<int64_t> lens;
        for (int i = 2; i < argc; ++i) lens.push_back(std::atoll(argv[i]));
        if (lens.empty()) lens = {512, 1024, 4096};
        const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
        std::printf(
            "model %s: %lld layers, hidden %lld, %lld/%lld heads x %lld, ffn %lld, vocab %lld\n",
            argv[1], static_cast<long long>(s.n_layers), static_cast<long long>(s.hidden),
            static_cast<long long>(s.n_heads), static_cast<long long>(s.n_kv_heads),
            static_cast<long long>(s.head_dim), static_cast<long long>(s.intermediate),
            static_cast<long long>(s.vocab_size));
        bench_matmul(s, 512, threads);
        bench_matmul(s, 512, 1);

        std::printf(
            "\n== engine (stats: colsum, key norms, window 32), decode = 16 steps after the "
            "prefill\n");
        std::printf("%-28s %7s %11s %11s %9s %12s %12s %9s\n", "", "tokens", "ref s", "fast s",
                    "speedup", "ref ms/tok", "fast ms/tok", "speedup");
        auto ref = backend("reference", threads);
        auto fast = backend("fast", threads);
        auto fast1 = backend("fast", 1);
        for (int64_t n : lens) {
            const EngineRun a = run_engine(*model, *ref, n, 16);
            const EngineRun b = run_engine(*model, *fast, n, 16);
            std::printf("%-28s %7lld %11.3f %11.3f %9.2f %12.2f %12.2f %9.2f\n",
                        ("prefill+decode, " + std::to_string(threads) + " threads").c_str(),
                        static_cast<long long>(n), a.prefill_s, b.prefill_s,
                        a.prefill_s / b.prefill_s, a.decode_ms, b.decode_ms,
                        a.decode_ms / b.decode_ms);
        }
        const int64_t n1 = lens[lens.size() / 2];
        const EngineRun b1 = run_engine(*model, *fast1, n1, 16);
        const EngineRun b2 = run_engine(*model, *fast, n1, 16);
        std::printf(
            "fast, 1 vs %d threads, %lld tokens: prefill %.3f s vs %.3f s (x%.2f), decode "
            "%.2f vs %.2f ms/token (x%.2f)\n",
            threads, static_cast<long long>(n1), b1.prefill_s, b2.prefill_s,
            b1.prefill_s / b2.prefill_s, b1.decode_ms, b2.decode_ms, b1.decode_ms / b2.decode_ms);
    } catch (const std::exception& ex) {
        std::fprintf(stderr, "bench_cpu_kernels: %s\n", ex.what());
        return 1;
    }
    return 0;
}
