// kvscope niah: the needle-in-a-haystack grid (haystacks x needle phrasings x lengths x depths x
// trials x policies x budgets), one prefill per cell; resumable and shardable
// (app/recorder/niah_sweep.h). kvscope niah-merge: one summary from the shards' summaries.
//
//   kvscope niah --model DIR --lengths 1024,2048 --depths 0,0.5,1 --policies snapkv,h2o
//                --ratios 0.1,0.25 --trials 2 --out sweep/ [--shard 0/4] [--needles-file n.json]
//   kvscope niah-merge sweep/
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "app/recorder/niah_sweep.h"
#include "core/error.h"

namespace kvscope::cli {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_sigint_niah(int) {
    g_stop = true;
}

template <typename T>
std::vector<T> parse_numbers(const std::string& text, const std::string& flag, double lo,
                             double hi) {
    std::vector<T> out;
    for (double v : parse_number_list(text, flag, lo, hi)) out.push_back(static_cast<T>(v));
    return out;
}

std::vector<std::string> split(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

struct NiahArgs {
    ModelArgs m;
    std::string lengths = "1024", depths = "0,0.25,0.5,0.75,1", policies = "snapkv";
    std::string ratios, budgets, memory, needles_file, out, shard = "0/1";
    std::vector<std::string> haystacks, params;
    int trials = 1, max_new = 16;
    uint64_t seed = 1;
    bool no_traces = false, quiet = false, json = false;
};

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<NiahArgs>();
    add_model_options(sub, a->m);
    sub.add_option("--lengths", a->lengths, "Prompt lengths in tokens")->capture_default_str();
    sub.add_option("--depths", a->depths, "Needle depths, 0 = start, 1 = end")
        ->capture_default_str();
    sub.add_option("--trials", a->trials, "Prompts per (length, depth), other seeds")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    sub.add_option("--seed", a->seed, "Base seed")->capture_default_str();
    sub.add_option("--haystack", a->haystacks,
                   "Haystack folder (repeatable: each is an axis value; default: the bundled one)");
    sub.add_option("--needles-file", a->needles_file,
                   "JSON array of {name?, needle, question, answer, intro?}: your own phrasings "
                   "(default: the built-in 'special magic number' template)");
    sub.add_option("--policies", a->policies, "Policies, comma-separated (full is always run)")
        ->capture_default_str();
    auto* r = sub.add_option("--ratios", a->ratios, "Budgets as ratios: 0.1,0.25");
    auto* b = sub.add_option("--budgets", a->budgets, "Budgets in tokens per (layer, KV head)");
    auto* mm = sub.add_option("--memory", a->memory,
                              "Equal-memory budgets, fractions of the full cache's bytes");
    r->excludes(b);
    r->excludes(mm);
    b->excludes(mm);
    sub.add_option("--param", a->params,
                   "key=value for every policy that has it, or policy.key=value (repeatable)");
    sub.add_option("--max-new", a->max_new, "Tokens generated per run")
        ->check(CLI::Range(1, 4096))
        ->capture_default_str();
    sub.add_option("--out", a->out, "Sweep folder (summary, traces, spec)")->required();
    sub.add_option("--shard", a->shard,
                   "Run shard I of N (0-based), e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT")
        ->capture_default_str();
    sub.add_flag("--no-traces", a->no_traces, "Keep the summary only");
    sub.add_flag("--quiet", a->quiet, "No progress lines");
    sub.add_flag("--json", a->json, "Print the result as one JSON document on stdout");
    return [a, r, b, mm]() {
        record::SweepSpec spec;
        spec.model = a->m.model;
        spec.haystacks = a->haystacks.empty() ? std::vector<std::string>{""} : a->haystacks;
        if (a->needles_file.empty()) {
            spec.needles.push_back({"builtin", true, {}});
        } else {
            spec.needles = record::load_needle_sets(a->needles_file);
        }
        spec.lengths = parse_numbers<int64_t>(a->lengths, "--lengths", 16, 1 << 22);
        spec.depths = parse_numbers<double>(a->depths, "--depths", 0, 1);
        spec.trials = a->trials;
        spec.seed = a->seed;
        spec.policies = split(a->policies);
        if (spec.policies.empty()) throw InputError("--policies: empty list");
        if (r->count()) {
            spec.budget_kind = "ratio";
            spec.budgets = parse_numbers<double>(a->ratios, "--ratios", 1e-9, 1);
        } else if (b->count()) {
            spec.budget_kind = "tokens";
            spec.budgets = parse_numbers<double>(a->budgets, "--budgets", 1, 1 << 22);
        } else if (mm->count()) {
            spec.budget_kind = "memory";
            spec.budgets = parse_numbers<double>(a->memory, "--memory", 1e-9, 1);
        }
        spec.params = a->params;
        spec.max_new = a->max_new;
        spec.traces = !a->no_traces;
        const record::Shard shard = record::parse_shard(a->shard);
        Loaded L = load_model_and_tokenizer(a->m, true);
        if (!spec.lengths.empty()) {
            const int64_t longest = *std::max_element(spec.lengths.begin(), spec.lengths.end());
            warn_past_trained_context(L.model->spec, longest + spec.max_new,
                                      "--lengths " + std::to_string(longest) + " + " +
                                          std::to_string(spec.max_new) + " new tokens");
        }
        g_stop = false;
        auto old = std::signal(SIGINT, on_sigint_niah);
        // Redrawn on a terminal; plain lines (no carriage returns), every few seconds, in a log
        // file or a batch job's output (cli_common.h).
        Progress progress("niah", a->quiet);
        const auto report = [&](const record::SweepProgress& p) {
            progress.update(p.rows_done + p.rows_skipped, p.rows_total, p.last);
        };
        int64_t ran = 0;
        try {
            ran = record::run_niah_sweep(*L.model, *L.tokenizer, spec, a->out, shard, a->m.threads,
                                         &g_stop, report);
        } catch (...) {
            std::signal(SIGINT, old);
            throw;
        }
        std::signal(SIGINT, old);
        progress.finish();
        if (a->json)
            std::printf("%s\n", nlohmann::json{{"rows_run", ran},
                                               {"out", a->out},
                                               {"summary", a->out + "/summary.csv"},
                                               {"interrupted", g_stop.load()}}
                                    .dump(2)
                                    .c_str());
        else
            std::printf("niah: %lld rows run into %s%s\n", static_cast<long long>(ran),
                        a->out.c_str(), g_stop ? " (interrupted: run again to resume)" : "");
        return g_stop ? 130 : 0;
    };
}

KVSCOPE_COMMAND("niah",
                "Needle-in-a-haystack grid: lengths x depths x policies x budgets, one prefill a "
                "cell; resumable, --shard I/N",
                setup);

std::function<int()> setup_merge(CLI::App& sub) {
    auto dir = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    sub.add_option("dir", *dir, "Sweep folder (holding sweep.json and the shards' summaries)")
        ->required();
    sub.add_flag("--json", *json, "Print the result as one JSON document on stdout");
    return [dir, json]() {
        const auto [rows, missing] = record::merge_niah_summaries(*dir);
        if (*json)
            std::printf("%s\n", nlohmann::json{{"rows", rows},
                                               {"missing", missing},
                                               {"summary", *dir + "/summary.csv"}}
                                    .dump(2)
                                    .c_str());
        else
            std::printf("niah-merge: %lld rows into %s/summary.csv, %lld missing\n",
                        static_cast<long long>(rows), dir->c_str(),
                        static_cast<long long>(missing));
        return missing > 0 ? 1 : 0;
    };
}

KVSCOPE_COMMAND("niah-merge", "Merge the shards' summaries of a niah sweep into summary.csv",
                setup_merge);

}  // namespace
}  // namespace kvscope::cli
