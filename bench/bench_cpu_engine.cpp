// CPU engine benchmark: prefill and decode throughput of a model on the fp32 CPU backend, with
// FLOP counts so the result reads as achieved GFLOP/s (the CPU floor is the core count times the
// per-core FMA rate; absolute times on the 2-core dev machines are noise, ratios in one run are
// what count). Usage: bench_cpu_engine MODEL_DIR [prompt_tokens=2048] [decode_steps=32] [policy]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/engine/sampler.h"
#include "core/model/model.h"
#include "core/policies/registry.h"

using namespace kvscope;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL_DIR [prompt_tokens] [decode_steps] [policy]\n",
                     argv[0]);
        return 2;
    }
    try {
        auto model = load_model(argv[1]);
        const int64_t n = argc > 2 ? std::atoll(argv[2]) : 2048;
        const int steps = argc > 3 ? std::atoi(argv[3]) : 32;
        const std::string pname = argc > 4 ? argv[4] : "full";
        const ModelSpec& s = model->spec;
        std::vector<int32_t> ids;
        for (int64_t i = 0; i < n; ++i)
            ids.push_back(static_cast<int32_t>(3 + (i * 7919) % (s.vocab_size - 3)));
        auto be = make_cpu_backend(0);
        EngineOptions opts;
        opts.stats.colsum = true;  // what the recorder asks for
        opts.stats.key_norms = true;
        opts.stats.window = 32;
        Engine e(*model, *be, opts);
        Budget b;
        b.ratio = 0.25;
        auto policy = pname == "full" ? nullptr : make_policy(pname, b);
        e.set_policy(policy.get());
        // FLOPs per token of the matmuls: 2 * (q + k + v + o + 3 MLP + lm_head) weights.
        const double w_per_layer = static_cast<double>(s.hidden) * (s.q_dim() + 2 * s.kv_dim()) +
                                   static_cast<double>(s.q_dim()) * s.hidden +
                                   3.0 * s.hidden * s.intermediate;
        const double mm_flops = 2.0 * (w_per_layer * s.n_layers);
        // Causal attention: QK^T and PV over n(n+1)/2 pairs per head.
        const double attn_flops = 4.0 * s.n_layers * s.n_heads * s.head_dim * (n * (n + 1) / 2.0);
        using clk = std::chrono::steady_clock;
        auto t0 = clk::now();
        auto logits = e.prefill(ids);
        auto t1 = clk::now();
        Sampler greedy({});
        for (int i = 0; i < steps; ++i)
            logits = e.decode(greedy.sample(logits.data(), s.vocab_size));
        auto t2 = clk::now();
        const double pre = std::chrono::duration<double>(t1 - t0).count();
        const double dec = std::chrono::duration<double>(t2 - t1).count();
        const double pre_flops = mm_flops * n + attn_flops + 2.0 * s.hidden * s.vocab_size;
        std::printf("model %s: %lld layers, hidden %lld, %lld/%lld heads, policy %s\n", argv[1],
                    static_cast<long long>(s.n_layers), static_cast<long long>(s.hidden),
                    static_cast<long long>(s.n_heads), static_cast<long long>(s.n_kv_heads),
                    pname.c_str());
        std::printf("%-8s %8s %10s %12s %10s\n", "phase", "tokens", "seconds", "tokens/s",
                    "GFLOP/s");
        std::printf("%-8s %8lld %10.3f %12.1f %10.2f\n", "prefill", static_cast<long long>(n), pre,
                    n / pre, pre_flops / pre / 1e9);
        std::printf("%-8s %8d %10.3f %12.1f %10.2f\n", "decode", steps, dec, steps / dec,
                    steps * (mm_flops + 2.0 * s.hidden * s.vocab_size) / dec / 1e9);
        std::printf("cache bytes held at the end: %lld\n",
                    static_cast<long long>(e.cache().bytes_held()));
    } catch (const std::exception& ex) {
        std::fprintf(stderr, "bench_cpu_engine: %s\n", ex.what());
        return 1;
    }
    return 0;
}
