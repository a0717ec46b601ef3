// kvscope rescue: "which layers' loss of the needle caused the wrong answer?" for a recorded run.
// Decodes the trace's prompt again under its policy from one full-cache prefill, with the needle
// force-kept in chosen layers (--layers) or searching an irreducible set of layers that restores
// the answer (app/recorder/rescue.h).
//
//   kvscope rescue run.kvtrace.h5 [--layers 2,5] [--out rescue/] [--max-runs 20]
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "app/cli/trace_rerun.h"
#include "app/recorder/rescue.h"
#include "core/error.h"
#include "traces/trace_reader.h"

namespace kvscope::cli {
namespace {

namespace fs = std::filesystem;

struct RescueArgs {
    std::string trace, layers, out = "rescue";
    ModelArgs m;
    int max_runs = 0, max_new = -1;
    bool json = false, quiet = false;
};

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<RescueArgs>();
    sub.add_option("trace", a->trace, "A recorded run whose needle was lost")->required();
    add_trace_model_options(sub, a->m);
    sub.add_option("--layers", a->layers,
                   "Keep the needle in these layers (0-based, comma-separated) and run once; "
                   "default: search an irreducible set that restores the answer");
    sub.add_option("--out", a->out, "Folder for the runs' traces")->capture_default_str();
    sub.add_option("--max-runs", a->max_runs, "Search: at most this many runs (default 2 + layers)")
        ->check(CLI::Range(2, 100000));
    sub.add_option("--max-new", a->max_new, "Tokens to generate (default: as recorded)")
        ->check(CLI::Range(1, 1 << 16));
    sub.add_flag("--json", a->json,
                 "Print the runs and the result as one JSON document on stdout (the text goes "
                 "to stderr)");
    sub.add_flag("--quiet", a->quiet, "No progress on stderr");
    return [a]() {
        FILE* txt = a->json ? stderr : stdout;  // stdout holds the JSON document alone
        nlohmann::json runs = nlohmann::json::array();
        TraceRun run = load_trace_run(a->trace, a->m, true);
        const trace::RunMetadata& meta = run.reader->metadata();
        const Loaded& L = run.loaded;
        const record::RunInput& input = run.input;
        const trace::MarkedSpan* needle = run.needle;
        if (input.answer.empty())
            throw InputError(a->trace, "has no needle with an expected answer to rescue");
        const record::PolicyChoice choice = record::policy_from_trace(meta);
        record::SamplingOptions so = record::sampling_from_trace(meta);
        if (a->max_new > 0) so.max_new = a->max_new;
        record::LiveSession session(*L.model, *L.tokenizer, a->m.model, input, a->m.threads,
                                    a->m.device);
        if (!a->quiet)
            std::fprintf(stderr, "[prefill] %zu tokens (full cache, once) ...", input.ids.size());
        session.prefill();
        if (!a->quiet) std::fprintf(stderr, " %.2f s\n", session.prefill_ms() / 1e3);
        std::fprintf(txt, "policy   %s\nneedle   tokens [%lld, %lld), answer '%s'\n",
                     choice.describe().c_str(), static_cast<long long>(needle->begin),
                     static_cast<long long>(needle->end), input.answer.c_str());
        // One step per run (a decode from the saved prompt state); the search stops early when
        // it has its answer, so the total is the most it may take.
        const int max_runs =
            a->layers.empty()
                ? (a->max_runs > 0 ? a->max_runs : static_cast<int>(2 + L.model->spec.n_layers))
                : 1;
        Progress progress("rescue", a->quiet);
        int64_t runs_done = 0;
        progress.update(0, max_runs, a->layers.empty() ? "runs, at most" : "run");
        const auto show = [txt, &runs, &progress, &runs_done,
                           max_runs](const record::RescueRun& r) {
            progress.clear();
            std::fprintf(txt, "run      needle kept in layers %-24s %s  (%s)\n",
                         record::layer_list(r.layers).c_str(), r.found == 1 ? "FOUND" : "wrong",
                         r.trace.string().c_str());
            std::fflush(txt);
            runs.push_back({{"layers", std::vector<int64_t>(r.layers.begin(), r.layers.end())},
                            {"found", r.found == 1},
                            {"trace", r.trace.string()}});
            progress.update(++runs_done, max_runs, max_runs > 1 ? "runs, at most" : "run");
        };
        const auto print_json = [&](const std::string& summary) {
            if (!a->json) return;
            const nlohmann::json j = {{"trace", a->trace},
                                      {"policy", choice.describe()},
                                      {"needle", {needle->begin, needle->end}},
                                      {"answer", input.answer},
                                      {"runs", runs},
                                      {"result", summary}};
            std::printf("%s\n",
                        j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        };
        if (!a->layers.empty()) {
            std::set<int64_t> layers;
            std::stringstream ss(a->layers);
            std::string item;
            while (std::getline(ss, item, ',')) {
                char* end = nullptr;
                const long v = std::strtol(item.c_str(), &end, 10);
                if (item.empty() || *end || v < 0 || v >= L.model->spec.n_layers)
                    throw InputError("--layers: '" + item + "' is not a layer in [0, " +
                                     std::to_string(L.model->spec.n_layers) + ")");
                layers.insert(v);
            }
            fs::create_directories(a->out);
            const fs::path t = fs::path(a->out) / "rescue-layers.kvtrace.h5";
            std::error_code ec;
            fs::remove(t, ec);
            show(record::run_with_needle_kept(session, choice, so, needle->begin, needle->end,
                                              layers, t));
            progress.finish();
            print_json("");
            return 0;
        }
        const record::RescueResult r = record::rescue_needle(session, choice, so, needle->begin,
                                                             needle->end, a->out, max_runs, show);
        progress.update(runs_done, runs_done, "runs");  // the search's own end: its last line
        progress.finish();
        std::fprintf(txt, "result   %s\n", r.summary.c_str());
        print_json(r.summary);
        return 0;
    };
}

KVSCOPE_COMMAND("rescue",
                "Which layers' loss of the needle broke the answer: re-run with the needle kept "
                "in chosen layers, or search the smallest such set",
                setup);

}  // namespace
}  // namespace kvscope::cli
