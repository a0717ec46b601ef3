// Studio benchmark (not a timed test): writes a synthetic trace (default 32 layers x 8 heads x
// 32k prompt tokens) with the trace writer, opens it with the views' ReaderTraceModel, and draws
// every view headless (Dear ImGui without a GPU: draw lists are built, nothing is rendered),
// reporting open time, the time to load what a view needs, and the CPU time per frame, steady
// and while scrubbing (step changes every frame). Target (docs/performance.md): <= 8 ms a frame.
//
//   bench_studio_frames [--layers 32] [--heads 8] [--tokens 32768] [--steps 16] [--frames 30]
//                       [--trace PATH (reuse / keep the file)]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "app/studio/synthetic_trace.h"
#include "views/headless_imgui.h"
#include "views/reader_trace_model.h"

namespace {

using namespace kvscope;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Stands in for the GPU upload: copies the pixels, which is the CPU side of glTexImage2D.
class CopyTextureHost : public views::TextureHost {
  public:
    ImTextureID upload(ImTextureID existing, int w, int h, const uint32_t* rgba) override {
        buffer_.assign(rgba, rgba + static_cast<size_t>(w) * static_cast<size_t>(h));
        return existing ? existing : reinterpret_cast<ImTextureID>(static_cast<intptr_t>(++next_));
    }
    uint64_t generation() const override { return 1; }

  private:
    std::vector<uint32_t> buffer_;
    intptr_t next_ = 100;
};

struct Stats {
    double median = 0, p95 = 0, max = 0;
};

Stats stats(std::vector<double> v) {
    Stats s;
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    s.median = v[v.size() / 2];
    s.p95 = v[std::min(v.size() - 1, v.size() * 95 / 100)];
    s.max = v.back();
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    studio::SyntheticSpec spec;
    spec.n_layers = 32;
    spec.n_heads = 8;
    spec.n_prompt_tokens = 32768;
    spec.n_steps = 16;
    spec.head_dim = 128;
    spec.budget_ratio = 0.2;
    int frames = 30;
    std::string trace_path;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        const char* v = argv[i + 1];
        if (k == "--layers")
            spec.n_layers = std::atoi(v);
        else if (k == "--heads")
            spec.n_heads = std::atoi(v);
        else if (k == "--tokens")
            spec.n_prompt_tokens = std::atoll(v);
        else if (k == "--steps")
            spec.n_steps = std::atoll(v);
        else if (k == "--frames")
            frames = std::max(1, std::atoi(v));
        else if (k == "--trace")
            trace_path = v;
        else {
            std::fprintf(stderr, "unknown option %s\n", k.c_str());
            return 2;
        }
    }
    const bool keep = !trace_path.empty();
    const std::filesystem::path path =
        keep ? std::filesystem::path(trace_path)
             : std::filesystem::temp_directory_path() / "kvscope_bench_studio.kvtrace.h5";
    try {
        if (!keep || !std::filesystem::exists(path)) {
            const auto t = Clock::now();
            studio::write_synthetic_trace(path, spec);
            std::printf(
                "wrote %s: %d layers x %d heads, %lld prompt tokens, %lld steps, %.1f MB in %.0f "
                "ms\n",
                path.c_str(), spec.n_layers, spec.n_heads,
                static_cast<long long>(spec.n_prompt_tokens), static_cast<long long>(spec.n_steps),
                static_cast<double>(std::filesystem::file_size(path)) / 1e6, ms_since(t));
        }
        auto t = Clock::now();
        views::ReaderTraceModel model(path);
        const double open_ms = ms_since(t);
        const views::TraceSummary& s = model.summary();
        std::printf("open: %.1f ms (%d layers x %d heads, %lld tokens, %lld steps)\n\n", open_ms,
                    s.n_layers, s.n_heads, static_cast<long long>(s.n_tokens),
                    static_cast<long long>(s.n_steps));
        std::fflush(stdout);
        std::printf("%-18s %-6s %9s %9s %10s %10s %10s %10s %9s\n", "view", "heads", "load ms",
                    "first ms", "steady med", "steady p95", "scrub med", "scrub p95", "vertices");
        CopyTextureHost textures;
        const views::Theme& theme = views::theme(views::ThemeKind::kDark);
        bool all_within = true;
        for (int32_t head : {0, -1}) {
            for (auto& view : views::make_all_views()) {
                views::HeadlessImGui im(1600, 900);
                views::ViewState state;
                state.layer = s.n_layers / 2;
                state.head = head;
                state.step = s.n_steps - 1;
                t = Clock::now();
                const double first = im.frame(*view, model, state, theme, &textures);
                double load = 0.0;
                for (int i = 0; i < 1000 && model.has_pending(); ++i) {
                    const auto tl = Clock::now();
                    model.load_pending(1e9);
                    load += ms_since(tl);
                    im.frame(*view, model, state, theme, &textures);
                }
                im.frame(*view, model, state, theme, &textures);
                std::vector<double> steady, scrub;
                for (int f = 0; f < frames; ++f)
                    steady.push_back(im.frame(*view, model, state, theme, &textures));
                for (int f = 0; f < frames; ++f) {
                    state.set_step(f % s.n_steps);
                    scrub.push_back(im.frame(*view, model, state, theme, &textures));
                }
                const Stats a = stats(steady);
                const Stats b = stats(scrub);
                all_within = all_within && a.p95 <= 8.0 && b.p95 <= 8.0;
                std::fflush(stdout);
                std::printf("%-18s %-6s %9.1f %9.2f %10.2f %10.2f %10.2f %10.2f %9lld\n",
                            view->id(), head < 0 ? "all" : "one", load, first, a.median, a.p95,
                            b.median, b.p95, static_cast<long long>(im.vertices()));
                std::fflush(stdout);
            }
        }
        std::printf("\nhistory cache: %.1f MB; frame target 8 ms (p95): %s\n",
                    static_cast<double>(model.cached_history_bytes()) / 1e6,
                    all_within ? "met" : "NOT met");
        if (!keep) std::filesystem::remove(path);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_studio_frames: %s\n", e.what());
        return 1;
    }
    return 0;
}
