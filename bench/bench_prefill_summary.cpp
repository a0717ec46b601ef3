// What recording adds to a prompt on the host (issue 9; not a timed test): RunRecorder::
// write_prefill summarises every layer's statistics for the trace (app/recorder/prefill_summary.h:
// group means of the column sums and of the window rows, key-norm vs attention Spearman and drop
// curves, D2O's density; several 32k-long sorts per head). Before this benchmark the layers ran
// one after another on one thread; this times that (`serial`) against the layers on a host thread
// pool (`pooled`, what the recorder now does), on statistics of the engine's shapes filled with
// pseudo-random values (colsum rows summing to the prompt's rows, positive norms). Both must give
// the same summaries (checked, exactly).
//
//   bench_prefill_summary [tokens=32768] [layers=32] [heads=32] [kv_heads=8] [window=32]
//                         [threads=0: all cores, at most 16]
// Prints the median ms of 3 repetitions of each way.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "app/recorder/prefill_summary.h"

using namespace kvscope;
using clk = std::chrono::steady_clock;

namespace {

double ms_since(clk::time_point t0) {
    return std::chrono::duration<double, std::milli>(clk::now() - t0).count();
}

int64_t arg(int argc, char** argv, int i, int64_t def) {
    return argc > i ? std::strtoll(argv[i], nullptr, 10) : def;
}

}  // namespace

int main(int argc, char** argv) {
    const int64_t P = arg(argc, argv, 1, 32768), L = arg(argc, argv, 2, 32),
                  H = arg(argc, argv, 3, 32), G = arg(argc, argv, 4, 8), w = arg(argc, argv, 5, 32);
    int threads = static_cast<int>(arg(argc, argv, 6, 0));
    if (threads <= 0)
        threads =
            static_cast<int>(std::min(16u, std::max(1u, std::thread::hardware_concurrency())));
    if (P < 1 || L < 1 || H < 1 || G < 1 || H % G != 0 || w < 0 || w > P) {
        std::fprintf(stderr,
                     "usage: bench_prefill_summary [tokens] [layers] [heads] [kv_heads dividing "
                     "heads] [window <= tokens] [threads]\n");
        return 2;
    }
    std::printf(
        "prefill summary: %lld tokens, %lld layers, %lld heads (%lld KV), window %lld, "
        "%d threads\n",
        static_cast<long long>(P), static_cast<long long>(L), static_cast<long long>(H),
        static_cast<long long>(G), static_cast<long long>(w), threads);
    // Values from a fast xorshift (the window rows alone are 1.1 G floats at 32k; the values'
    // distribution hardly changes the sorts' time).
    uint32_t x = 2463534242u;
    auto uniform = [&x] {  // (0, 1]
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        return static_cast<float>((x >> 8) + 1) / 16777216.0f;
    };
    std::vector<LayerPrefillStats> st(static_cast<size_t>(L));
    for (LayerPrefillStats& ps : st) {
        ps.colsum.assign(static_cast<size_t>(H), std::vector<float>(static_cast<size_t>(P)));
        ps.window.assign(static_cast<size_t>(H), std::vector<float>(static_cast<size_t>(w * P)));
        ps.key_norm.assign(static_cast<size_t>(G), std::vector<float>(static_cast<size_t>(P)));
        ps.window_rows = w;
        for (auto& c : ps.colsum) {
            double sum = 0;
            for (float& v : c) sum += (v = uniform());
            for (float& v : c) v = static_cast<float>(v * static_cast<double>(P) / sum);
        }
        for (auto& r : ps.window)
            for (float& v : r) v = uniform() / static_cast<float>(P);
        for (auto& k : ps.key_norm)
            for (float& v : k) v = 1.0f + uniform();
    }
    const int64_t g = H / G;
    std::vector<double> t_serial, t_pooled;
    std::vector<trace::PrefillLayerStats> a, b;
    for (int rep = 0; rep < 3; ++rep) {
        auto t0 = clk::now();
        a = record::summarize_prefill(st, G, g, w, 1);
        t_serial.push_back(ms_since(t0));
        t0 = clk::now();
        b = record::summarize_prefill(st, G, g, w, threads);
        t_pooled.push_back(ms_since(t0));
    }
    for (size_t l = 0; l < a.size(); ++l)
        if (a[l].window_scores != b[l].window_scores || a[l].spearman != b[l].spearman ||
            a[l].attn_received != b[l].attn_received || a[l].density != b[l].density ||
            a[l].norm_attn_area != b[l].norm_attn_area) {
            std::fprintf(stderr, "bench_prefill_summary: layer %zu differs between the ways\n", l);
            return 1;
        }
    std::sort(t_serial.begin(), t_serial.end());
    std::sort(t_pooled.begin(), t_pooled.end());
    std::printf("%-8s %10s\n", "way", "ms");
    std::printf("%-8s %10.1f\n", "serial", t_serial[1]);
    std::printf("%-8s %10.1f\n", "pooled", t_pooled[1]);
    std::printf("speedup  %10.2fx\n", t_serial[1] / t_pooled[1]);
    return 0;
}
