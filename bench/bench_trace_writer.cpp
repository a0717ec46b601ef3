// Trace writer throughput (not a timed test): re-records an existing trace through
// traces/trace_writer.h with everything read into memory first, so only the writer is timed
// (begin() to end(): grouping, /summary counts, shuffle + deflate, HDF5 appends, flushes).
// Prints per step kind the events and seconds, and overall events/s and MB/s of the file written;
// compare the prefill step with the time the engine takes to produce it (performance.md) — the
// writer runs on its own thread while the engine computes the next step.
//
//   bench_trace_writer IN.kvtrace.h5 OUT.kvtrace.h5 [deflate level, default the writer's]
//   (OUT is replaced)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "traces/trace_reader.h"
#include "traces/trace_writer.h"

namespace {

using namespace kvscope;
using Clock = std::chrono::steady_clock;

double s_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3 && argc != 4) {
        std::fprintf(stderr, "usage: bench_trace_writer IN.kvtrace.h5 OUT.kvtrace.h5 [level]\n");
        return 2;
    }
    try {
        const trace::TraceReader in(argv[1]);
        const trace::TraceInfo info = in.info();
        const int64_t P = info.n_prompt_tokens, S = info.n_steps;
        auto t = Clock::now();
        const std::vector<trace::TokenRecord> prompt = in.tokens(0, P);
        std::vector<trace::PrefillLayerStats> prefill(static_cast<size_t>(info.n_layers));
        const std::vector<float> density = in.density(), spearman = in.spearman(),
                                 area = in.norm_attn_area(), density_layer = in.density_layer();
        for (int32_t l = 0; l < info.n_layers; ++l) {
            trace::PrefillLayerStats& st = prefill[static_cast<size_t>(l)];
            st.layer = l;
            for (int32_t h = 0; h < info.n_heads; ++h) {
                const size_t i = static_cast<size_t>(l) * static_cast<size_t>(info.n_heads) +
                                 static_cast<size_t>(h);
                for (auto [dst, src] : {std::pair{&st.key_norm, in.key_norm(l, h)},
                                        std::pair{&st.attn_received, in.attn_received(l, h)},
                                        std::pair{&st.window_scores, in.window_scores(l, h)}})
                    dst->insert(dst->end(), src.begin(), src.end());
                st.density.push_back(density[i]);
                st.spearman.push_back(spearman[i]);
                st.norm_attn_area.push_back(area[i]);
            }
            st.density_layer = density_layer[static_cast<size_t>(l)];
        }
        std::vector<trace::StepData> steps(static_cast<size_t>(S));
        int64_t n_events = 0;
        for (int64_t s = 0; s < S; ++s) {
            trace::StepData& d = steps[static_cast<size_t>(s)];
            d.record = in.step(s);
            d.events = in.events(s, s + 1);
            d.budgets = in.budgets(s);
            if (info.n_spans > 0) d.needle_survival = in.needle_survival(0, s, s + 1);
            n_events += std::ssize(d.events);
        }
        std::printf(
            "read %s: %d layers x %d heads, %lld prompt tokens, %lld steps, %lld events "
            "(%.1f s)\n",
            argv[1], info.n_layers, info.n_heads, static_cast<long long>(P),
            static_cast<long long>(S), static_cast<long long>(n_events), s_since(t));
        std::fflush(stdout);

        trace::TraceWriter::Options options;
        options.overwrite = true;
        if (argc == 4) options.compression_level = std::atoi(argv[3]);
        std::printf("deflate level %d\n", options.compression_level);
        trace::TraceWriter out(argv[2], options);
        t = Clock::now();
        out.begin(in.metadata());
        out.write_tokens(prompt);
        for (auto& st : prefill) out.write_prefill(std::move(st));
        const int64_t events0 = std::ssize(steps[0].events);
        out.write_step(std::move(steps[0]));
        out.sync();
        const double prefill_s = s_since(t);
        const auto t_decode = Clock::now();
        for (int64_t s = 1; s < S; ++s) out.write_step(std::move(steps[static_cast<size_t>(s)]));
        out.sync();
        const double decode_s = s_since(t_decode);
        out.end(in.run_end().value_or(trace::RunEnd{}));
        const double total_s = s_since(t);
        const double mb = static_cast<double>(std::filesystem::file_size(argv[2])) / 1e6;
        std::printf(
            "prefill step (tokens, prefill statistics, %lld events): %.2f s, %.1f M "
            "events/s\n",
            static_cast<long long>(events0), prefill_s,
            static_cast<double>(events0) / prefill_s / 1e6);
        std::printf("decode steps (%lld): %.3f s, %.2f ms a step\n", static_cast<long long>(S - 1),
                    decode_s, S > 1 ? decode_s * 1e3 / static_cast<double>(S - 1) : 0.0);
        std::printf("total %.2f s: %.1f MB written, %.1f MB/s, %.1f M events/s\n", total_s, mb,
                    mb / total_s, static_cast<double>(n_events) / total_s / 1e6);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_trace_writer: %s\n", e.what());
        return 1;
    }
    return 0;
}
