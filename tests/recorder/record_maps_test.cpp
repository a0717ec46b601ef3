// --record-maps streams the full prefill attention maps one layer at a time (issue 15): the
// engine hands each layer's P x P rows to Engine::on_prefill_map and keeps only the observation
// window, the recorder averages them per KV head and the trace writer holds at most
// TraceWriter::kMaxQueuedMaps of them. Checked on the bundled demo model (8 layers, 8 query /
// 2 KV heads): the maps and statistics equal those of the old way (every layer's P rows kept in
// the prefill statistics until the end), and memory does not grow with the layer count.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "app/recorder/run_recorder.h"
#include "app/recorder/run_setup.h"
#include "core/engine/engine.h"
#include "core/policies/registry.h"
#include "traces/trace_reader.h"
#include "traces/trace_writer.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;

const fs::path kDemo = fs::path(KVSCOPE_SOURCE_DIR) / "resources" / "models" / "kvscope-demo";

struct Demo {
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> tok;
    record::RunInput input;
};

// A NIAH prompt of `length` tokens.
Demo load_demo(int64_t length) {
    Demo d;
    d.model = load_model(kDemo);
    d.tok = load_tokenizer(kDemo);
    record::ScenarioRequest req;
    req.kind = "niah";
    req.length = length;
    req.seed = 3;
    d.input = record::build_scenario_input(*d.tok, kDemo.string(), req);
    return d;
}

fs::path scratch(const std::string& name) {
    return fs::temp_directory_path() /
           ("kvscope_maps_" + std::to_string(::getpid()) + "_" + name + ".kvtrace.h5");
}

// Records prefill + `max_new` steps under SnapKV with maps on; returns the trace path.
fs::path record_with_maps(const Demo& d, Backend& backend, const std::string& name,
                          const std::function<void(Engine&)>& observe = {}) {
    record::RecorderOptions ro;
    ro.record_maps = true;
    const int64_t P = static_cast<int64_t>(d.input.ids.size());
    EngineOptions eo;
    eo.threads = 2;
    eo.stats = record::RunRecorder::stats_needed(ro, P);
    Budget b;
    b.ratio = 0.25;
    auto policy = make_policy("snapkv", b);
    Engine engine(*d.model, backend, eo);
    engine.set_policy(policy.get());
    record::SamplingOptions so;
    so.max_new = 2;
    fs::path path = scratch(name);
    trace::TraceWriter::Options wo;
    wo.record_maps = true;
    wo.overwrite = true;
    trace::TraceWriter writer(path, wo);
    record::RunRecorder rec(engine, *d.tok, writer, ro);
    rec.begin(record::make_run_metadata(*d.model, kDemo.string(), *d.tok, policy.get(), "snapkv",
                                        0.25, d.input, so, backend.name(), ro.top_k),
              d.input.ids);
    if (observe) observe(engine);
    std::vector<float> logits = engine.prefill(d.input.ids);
    rec.write_prefill();
    const record::DecodeOutcome out =
        record::decode_and_record(engine, rec, std::move(logits), 0.0f, so, nullptr, {});
    trace::RunEnd end;
    end.complete = true;
    end.reason = out.reason;
    rec.end(end);
    return path;
}

TEST(RecordMaps, StreamedMapsEqualTheWholePrefillRowsAndOnlyTheWindowIsKept) {
    const Demo d = load_demo(300);
    const ModelSpec& sp = d.model->spec;
    const int64_t P = static_cast<int64_t>(d.input.ids.size());
    const int64_t L = sp.n_layers, H = sp.n_heads, G = sp.n_kv_heads, g = sp.group_size();
    auto backend = make_cpu_backend(2);

    // The old way: every prompt row of every layer kept in the prefill statistics.
    EngineOptions eo;
    eo.threads = 2;
    eo.stats.colsum = true;
    eo.stats.window = P;
    Engine full(*d.model, *backend, eo);
    (void)full.prefill(d.input.ids);
    const auto& all = full.prefill_stats();

    // While layer l streams, the layers before it hold only the window (<= 32 rows), never P.
    int64_t calls = 0;
    Budget b;
    b.ratio = 0.25;
    const int64_t window = std::max(record::RunRecorder::stats_needed({}, P).window,
                                    make_policy("snapkv", b)->needs().window);  // 32 and 32
    ASSERT_LT(window, P);
    const fs::path path = record_with_maps(d, *backend, "equal", [&](Engine& e) {
        auto forward = e.on_prefill_map;  // the recorder's
        e.on_prefill_map = [&, forward](int64_t l, const std::vector<std::vector<float>>& rows) {
            EXPECT_EQ(l, calls);
            ++calls;
            ASSERT_EQ(static_cast<int64_t>(rows.size()), H);
            EXPECT_EQ(static_cast<int64_t>(rows[0].size()), P * P);
            for (int64_t prev = 0; prev < l; ++prev) {
                const LayerPrefillStats& ps = e.prefill_stats()[static_cast<size_t>(prev)];
                EXPECT_EQ(ps.window_rows, window) << "layer " << prev;
                for (const auto& w : ps.window)
                    EXPECT_EQ(static_cast<int64_t>(w.size()), window * P) << "layer " << prev;
            }
            forward(l, rows);
        };
    });
    EXPECT_EQ(calls, L);

    trace::TraceReader r(path);
    ASSERT_TRUE(r.info().has_maps);
    for (int64_t l = 0; l < L; ++l) {
        const auto& rows = all[static_cast<size_t>(l)].window;  // [H][P*P]
        for (int64_t kv = 0; kv < G; ++kv) {
            const std::vector<float> got =
                r.prefill_map(static_cast<int32_t>(l), static_cast<int32_t>(kv));
            ASSERT_EQ(static_cast<int64_t>(got.size()), P * P);
            // Same kernel, same rows, same mean order as the recorder: exact.
            for (int64_t i = 0; i < P * P; ++i) {
                float want = 0.0f;
                for (int64_t q = 0; q < g; ++q)
                    want += rows[static_cast<size_t>(kv * g + q)][static_cast<size_t>(i)];
                want /= static_cast<float>(g);
                ASSERT_EQ(got[static_cast<size_t>(i)], want)
                    << "layer " << l << " head " << kv << " at " << i;
            }
        }
    }
    fs::remove(path);
}

// Resident memory in kB from /proc/self/status ("VmHWM" = peak, "VmRSS" = now); -1 if absent.
long status_kb(const std::string& key) {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
    return -1;
}

TEST(RecordMaps, PeakMemoryIsAboutOneLayerOfMapsNotAll) {
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "ASan's quarantine keeps freed buffers resident";
#endif
    const Demo d = load_demo(1024);
    const ModelSpec& sp = d.model->spec;
    const int64_t P = static_cast<int64_t>(d.input.ids.size());
    auto backend = make_cpu_backend(2);
    (void)record_with_maps(d, *backend, "warm");  // weights converted, allocator and HDF5 warm
    fs::remove(scratch("warm"));
    {  // "5" resets the peak (VmHWM) to the current RSS (Linux >= 4.0)
        std::ofstream clear("/proc/self/clear_refs");
        clear << "5";
    }
    const long before = status_kb("VmRSS");
    if (before < 0 || status_kb("VmHWM") > before + 1024)
        GTEST_SKIP() << "cannot reset the peak RSS here (/proc/self/clear_refs)";
    (void)record_with_maps(d, *backend, "peak");
    fs::remove(scratch("peak"));
    const double growth_mb = static_cast<double>(status_kb("VmHWM") - before) / 1024.0;
    const double mb = 1.0 / (1 << 20);
    const double layer_rows = static_cast<double>(sp.n_heads * P * P * 4) * mb;  // 32 MB
    const double one_map = static_cast<double>(sp.n_kv_heads * P * P * 4) * mb;  // 8 MB
    const double all_layers = layer_rows * static_cast<double>(sp.n_layers);     // 256 MB
    // Bound: one layer's rows + the map being averaged + the writer's queued and recycled maps
    // (2 * kMaxQueuedMaps) + 48 MB for everything else (the KV cache, activations, HDF5 chunk
    // cache, allocator slack; a run without maps grows ~20 MB here). Streaming gives ~90 MB;
    // keeping every layer's rows (the design this replaced) needed > all_layers = 256 MB.
    const double bound = layer_rows + one_map * (1 + 2 * trace::TraceWriter::kMaxQueuedMaps) + 48;
    ASSERT_LT(bound, all_layers);
    EXPECT_LT(growth_mb, bound) << "peak RSS grew " << growth_mb << " MB (bound " << bound
                                << " MB, all layers' rows " << all_layers << " MB)";
    std::printf("peak RSS growth %.1f MB (bound %.1f MB)\n", growth_mb, bound);
}

}  // namespace
}  // namespace kvscope
