// upgrade_trace: an older trace re-encoded through TraceWriter (see trace_upgrade.h).
#include "traces/trace_upgrade.h"

#include <algorithm>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "core/error.h"
#include "kvscope_version.h"
#include "traces/trace_reader.h"
#include "traces/trace_writer.h"

namespace kvscope::trace {

namespace {
namespace fs = std::filesystem;

bool same_file(const fs::path& a, const fs::path& b) {
    std::error_code ec;
    if (fs::exists(b, ec)) return fs::equivalent(a, b, ec);
    return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

// One layer's prefill statistics as TraceWriter takes them ([H*P] row-major (head, position)).
PrefillLayerStats layer_stats(const TraceReader& r, int32_t layer,
                              const std::vector<float>& density,
                              const std::vector<float>& density_layer,
                              const std::vector<float>& spearman, const std::vector<float>& area,
                              const std::vector<int64_t>& window_rows) {
    const int32_t H = r.info().n_heads;
    PrefillLayerStats st;
    st.layer = layer;
    for (int32_t h = 0; h < H; ++h) {
        const auto kn = r.key_norm(layer, h);
        const auto ar = r.attn_received(layer, h);
        const auto ws = r.window_scores(layer, h);
        st.key_norm.insert(st.key_norm.end(), kn.begin(), kn.end());
        st.attn_received.insert(st.attn_received.end(), ar.begin(), ar.end());
        st.window_scores.insert(st.window_scores.end(), ws.begin(), ws.end());
        const auto lh =
            static_cast<size_t>(layer) * static_cast<size_t>(H) + static_cast<size_t>(h);
        st.density.push_back(density[lh]);
        st.spearman.push_back(spearman[lh]);
        st.norm_attn_area.push_back(area[lh]);
    }
    st.density_layer = density_layer[static_cast<size_t>(layer)];
    st.window_rows = window_rows[static_cast<size_t>(layer)];
    return st;
}

// Everything of step s as TraceWriter::write_step takes it.
StepData step_data(const TraceReader& r, const TraceInfo& info, int64_t s) {
    StepData d;
    d.record = r.step(s);
    d.events = r.events(s, s + 1);  // version 1 rows come adapted (trace_reader.h)
    d.budgets = r.budgets(s);
    for (int32_t n = 0; n < info.n_spans; ++n) {
        const auto surv = r.needle_survival(n, s, s + 1);
        d.needle_survival.insert(d.needle_survival.end(), surv.begin(), surv.end());
    }
    if (info.has_attention_rows)
        for (int32_t l = 0; l < info.n_layers; ++l)
            for (int32_t h = 0; h < info.n_heads; ++h)
                d.attention.push_back(r.attention_row(s, l, h));
    return d;
}
void copy_body(const TraceReader& r, const TraceInfo& info, TraceWriter& w,
               const std::function<void(int64_t, int64_t)>& progress) {
    w.write_tokens(r.tokens(0, std::min(info.n_prompt_tokens, info.n_tokens)));
    const auto density = r.density();
    const auto density_layer = r.density_layer();
    const auto spearman = r.spearman();
    const auto area = r.norm_attn_area();
    const auto window_rows = r.window_rows();
    for (int32_t l = 0; l < info.n_layers; ++l) {
        if (!r.prefill_layer_done(l)) continue;
        w.write_prefill(layer_stats(r, l, density, density_layer, spearman, area, window_rows));
        if (!info.has_maps) continue;
        std::vector<float> maps;  // [H*P*P] (head, query, key)
        for (int32_t h = 0; h < info.n_heads; ++h) {
            const auto m = r.prefill_map(l, h);
            maps.insert(maps.end(), m.begin(), m.end());
        }
        w.write_prefill_map(l, std::move(maps));
    }
    for (int64_t s = 0; s < info.n_steps; ++s) {
        w.write_step(step_data(r, info, s));
        if (progress) progress(s + 1, info.n_steps);
    }
    RunEnd end;
    if (auto e = r.run_end()) {
        end = *e;
    } else {
        end.complete = info.state == RunState::kComplete;
        end.reason = "unknown (no end record in the version " +
                     std::to_string(info.schema_version) + " file)";
    }
    w.end(end);
}
}  // namespace

UpgradeResult upgrade_trace(const fs::path& input, const fs::path& output, bool overwrite,
                            const std::function<void(int64_t, int64_t)>& progress) {
    if (same_file(input, output))
        throw InputError(output,
                         "is the input itself; upgrade writes a new file and never changes the "
                         "input (give another output path)");
    TraceReader r(input);
    const TraceInfo info = r.info();
    if (info.schema_version >= kSchemaVersion)
        throw InputError(input, "is already schema version " + std::to_string(info.schema_version) +
                                    " (the current one); nothing to upgrade");
    if (info.state == RunState::kRunning)
        throw InputError(input,
                         "is not a finished trace (still being recorded, or its writer was "
                         "killed): upgrade finished traces only; readers open this one as it is");
    RunMetadata meta = r.metadata();
    meta.extra["upgraded_from"] = {{"schema_version", info.schema_version},
                                   {"upgraded_by", std::string(KVSCOPE_VERSION)}};

    TraceWriter::Options opt;
    opt.record_attention_rows = info.has_attention_rows;
    opt.record_maps = info.has_maps;
    opt.overwrite = overwrite;
    auto w = std::make_unique<TraceWriter>(output, opt);
    w->begin(meta);  // refuses an existing output (without overwrite) before anything is written
    try {
        copy_body(r, info, *w, progress);
    } catch (...) {
        // Our own .part, half-written: removed so that a retry is not blocked by it (the output
        // itself was never touched).
        const fs::path part = w->recording_path();
        w.reset();
        std::error_code ec;
        fs::remove(part, ec);
        throw;
    }
    return {info.schema_version, kSchemaVersion, info.n_steps, info.n_events};
}

}  // namespace kvscope::trace
