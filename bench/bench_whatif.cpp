// bench_whatif: what the Studio's what-if dock costs on one prompt. One full-cache prefill, then
// per policy: preview latency per budget-slider move (min / median / max over the moves) and the
// re-run from the saved prompt state (decode + trace), against a run with its own prefill in the
// same process (the ratio is what "no second prefill" buys).
//
//   bench_whatif MODEL_DIR [LENGTH=2048] [MOVES=50] [MAX_NEW=12] [OUT_DIR=/tmp]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "app/recorder/live_session.h"
#include "core/model/model.h"

namespace {

using namespace kvscope;
namespace fs = std::filesystem;

double now_ms() {
    return std::chrono::duration<double, std::milli>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr,
                     "usage: bench_whatif MODEL_DIR [LENGTH] [MOVES] [MAX_NEW] [OUT_DIR]\n");
        return 2;
    }
    const std::string model_dir = argv[1];
    const int64_t length = argc > 2 ? std::atoll(argv[2]) : 2048;
    const int moves = argc > 3 ? std::atoi(argv[3]) : 50;
    const int max_new = argc > 4 ? std::atoi(argv[4]) : 12;
    const fs::path out = argc > 5 ? fs::path(argv[5]) : fs::temp_directory_path();
    try {
        auto model = load_model(model_dir);
        auto tok = load_tokenizer(model_dir);
        record::ScenarioRequest req;
        req.length = length;
        req.depth = 0.5;
        record::RunInput input = record::build_scenario_input(*tok, model_dir, req);
        record::LiveSession s(*model, *tok, model_dir, input, 0);
        s.prefill();
        std::printf("prompt %zu tokens; full-cache prefill with statistics %.0f ms\n",
                    input.ids.size(), s.prefill_ms());
        std::printf("%-10s %8s %8s %8s   %10s %10s %6s\n", "policy", "prev min", "median", "max",
                    "rerun ms", "own ms", "ratio");
        for (const std::string name : {"snapkv", "pyramidkv", "h2o", "tova", "mikv", "d2o"}) {
            std::vector<double> t;
            for (int i = 0; i < moves; ++i) {
                record::PolicyChoice c{name, {}, {}};
                c.budget.ratio = 0.05 + 0.9 * i / std::max(1, moves - 1);  // a slider sweep
                const double t0 = now_ms();
                (void)s.preview(c);
                t.push_back(now_ms() - t0);
            }
            std::sort(t.begin(), t.end());
            record::RerunRequest rr;
            rr.policy = {name, {}, {}};
            rr.policy.budget.ratio = 0.25;
            rr.sampling.max_new = max_new;
            rr.sampling.ignore_eos = true;
            rr.trace = out / ("bench_whatif_" + name + ".kvtrace.h5");
            fs::remove(rr.trace);
            double t0 = now_ms();
            (void)s.rerun(rr);
            const double resumed = now_ms() - t0;
            // The same run with a prefill of its own, as `kvscope run` records it.
            record::RerunRequest own = rr;
            own.own_prefill = true;
            own.trace = out / ("bench_whatif_" + name + "_own.kvtrace.h5");
            fs::remove(own.trace);
            record::LiveSession fresh(*model, *tok, model_dir, input, 0);
            t0 = now_ms();
            (void)fresh.rerun(own);
            const double own_ms = now_ms() - t0;
            std::printf("%-10s %8.2f %8.2f %8.2f   %10.0f %10.0f %5.1fx\n", name.c_str(), t.front(),
                        t[t.size() / 2], t.back(), resumed, own_ms, own_ms / resumed);
            fs::remove(rr.trace);
            fs::remove(own.trace);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_whatif: %s\n", e.what());
        return 1;
    }
    return 0;
}
