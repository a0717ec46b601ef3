// kvscope eval passkey|niah|needles: needle-retrieval accuracy over a grid of context lengths x
// needle depths, on our engine, under a cache policy. Prints the grid and writes it as CSV.
// `needles` draws from a template set (resources/needles/templates.json) and runs one grid per
// split (train, heldout), each on its split's haystacks, reported separately (issue 12).
//
// Each trial builds a prompt with core/scenarios (seeded per cell and trial exactly as
// tools/train_demo/train.py seeds its HF evaluation), prefills it, decodes greedily up to
// --max-new tokens, and counts the trial correct when the needle's digits appear in the output.
// A context length L holds a prompt of L - max_new tokens, so prompt and answer fit in L.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "app/cli/policy_flags.h"
#include "core/engine/engine.h"
#include "core/engine/sampler.h"
#include "core/error.h"
#include "core/scenarios/haystack.h"
#include "core/scenarios/needle_templates.h"
#include "core/scenarios/scenario.h"

namespace kvscope::cli {
namespace {

struct EvalArgs {
    ModelArgs m;
    PolicyArgs policy;
    std::string task;
    std::string lengths = "1024,2048,4096";
    std::string depths = "0,0.25,0.5,0.75,1";
    int trials = 5;
    uint64_t seed = 1;
    int needles = 1;
    int distractors = 0;
    std::string templates;
    std::string splits = "train,heldout";
    int max_new = 10;
    std::string haystack;
    std::string csv;
    std::string details;
    bool quiet = false;
    bool force = false;
    bool json = false;
};

std::vector<double> parse_depths(const std::string& text) {
    std::vector<double> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
        char* end = nullptr;
        const double v = std::strtod(item.c_str(), &end);
        if (item.empty() || end == item.c_str() || *end != '\0' || !(v >= 0.0 && v <= 1.0))
            throw InputError("--depths: '" + item + "' is not a depth in [0, 1]");
        out.push_back(v);
    }
    if (out.empty()) throw InputError("--depths: no depth given");
    return out;
}

std::string csv_quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"') out += '"';
        out += (c == '\n' || c == '\r') ? ' ' : c;
    }
    return out + "\"";
}

struct Cell {
    std::string split;  // needles: the template split; "" otherwise
    int64_t length = 0;
    double depth = 0;
    int correct = 0;
    int trials = 0;
};

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<EvalArgs>();
    sub.add_option("task", a->task, "passkey, niah or needles (template set, per split)")
        ->required()
        ->check(CLI::IsMember({"passkey", "niah", "needles"}));
    add_model_options(sub, a->m);
    sub.add_option("--lengths", a->lengths, "Context lengths in tokens (prompt + answer)")
        ->capture_default_str();
    sub.add_option("--depths", a->depths, "Needle depths in [0, 1]")->capture_default_str();
    sub.add_option("--trials", a->trials, "Prompts per cell")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    sub.add_option("--seed", a->seed, "Base seed of the prompts")->capture_default_str();
    sub.add_option("--needles", a->needles, "niah, needles: needles per prompt (one is asked for)")
        ->check(CLI::Range(1, 64));
    sub.add_option("--distractors", a->distractors,
                   "needles: extra needles of the asked template with other keys, never asked")
        ->check(CLI::Range(0, 64));
    sub.add_option("--templates", a->templates,
                   "needles: template set (default: resources/needles/templates.json beside the "
                   "haystacks)");
    sub.add_option("--split", a->splits,
                   "needles: template splits to evaluate, each on its own haystacks and "
                   "reported separately (train, heldout or train,heldout)")
        ->capture_default_str();
    sub.add_option("--max-new", a->max_new, "Tokens generated for the answer")
        ->check(CLI::Range(1, 256))
        ->capture_default_str();
    sub.add_option("--haystack", a->haystack,
                   "Haystack folder (*.txt + needle_keys.list); default: resources/haystacks "
                   "beside the model's resources/models/, else ./resources/haystacks; for "
                   "needles, the split's folder named in the template set");
    // String columns are always double-quoted (so "NA" or "007" survive); read them as strings:
    // pandas.read_csv(f, dtype={"task": str, "policy": str, "answer": str, "output": str},
    // keep_default_na=False). Everything else is numeric.
    sub.add_option("--csv", a->csv,
                   "Grid CSV to write (default eval_<task>_<policy>.csv). Columns: task, policy "
                   "(quoted strings); budget, length, trials, correct (int); ratio, depth, "
                   "accuracy (float); split (quoted string, \"\" unless needles)");
    sub.add_option("--details", a->details,
                   "Also write every trial as CSV: task, policy, answer, output are quoted "
                   "strings (read with dtype=str, keep_default_na=False), the rest numbers. A row "
                   "replays as a trace: kvscope run --scenario TASK [--split S] --length "
                   "LENGTH-MAX_NEW --depth DEPTH --scenario-seed SEED --max-new MAX_NEW with the "
                   "same model, policy, --needles and --distractors");
    sub.add_flag("--quiet", a->quiet, "No progress on stderr");
    sub.add_flag("--json", a->json,
                 "Print the grid as one JSON document on stdout instead of the table");
    sub.add_flag("--force", a->force, kForceHelp);
    add_policy_options(sub, a->policy);
    return [a]() {
        const ScenarioKind kind = parse_scenario_kind(a->task);
        // Refused before the evaluation runs, not after it.
        const std::string csv_path =
            a->csv.empty() ? "eval_" + a->task + "_" + a->policy.name + ".csv" : a->csv;
        check_output_path(csv_path, a->force);
        if (!a->details.empty()) check_output_path(a->details, a->force);
        std::vector<int64_t> lengths;
        for (int32_t v : parse_id_list(a->lengths, "--lengths")) lengths.push_back(v);
        const std::vector<double> depths = parse_depths(a->depths);
        if (kind == ScenarioKind::kPasskey && a->needles != 1)
            throw InputError("--needles applies to niah and needles only");
        if (kind != ScenarioKind::kNeedles &&
            (a->distractors != 0 || !a->templates.empty() || a->splits != "train,heldout"))
            throw InputError("--distractors, --templates and --split apply to needles only");
        std::vector<TemplateSplit> splits;
        if (kind == ScenarioKind::kNeedles) {
            std::stringstream ss(a->splits);
            std::string item;
            while (std::getline(ss, item, ',')) splits.push_back(parse_template_split(item));
            if (splits.empty()) throw InputError("--split: no split given");
        }

        Loaded L = load_model_and_tokenizer(a->m, true);
        const ModelSpec& spec = L.model->spec;
        // One grid per run: passkey / niah one run (split ""), needles one per split.
        struct Run {
            std::string split;
            TemplateSplit tsplit = TemplateSplit::kTrain;
            Haystack hay;
        };
        std::vector<Run> runs;
        NeedleTemplateSet templates;
        if (kind == ScenarioKind::kNeedles) {
            std::filesystem::path file = a->templates;
            if (file.empty()) file = find_default_templates_file(a->m.model);
            if (file.empty())
                throw InputError(
                    "needles needs a template set: pass --templates FILE "
                    "(resources/needles/templates.json)");
            templates = load_needle_templates(file);
            for (TemplateSplit sp : splits)
                runs.push_back(
                    {template_split_name(sp), sp,
                     load_haystack(a->haystack.empty() ? templates.haystack_dir(sp)
                                                       : std::filesystem::path(a->haystack))});
        } else {
            runs.emplace_back();
            if (kind == ScenarioKind::kNiah) {
                std::filesystem::path dir = a->haystack;
                if (dir.empty()) dir = find_default_haystack_dir(a->m.model);
                if (dir.empty())
                    throw InputError(
                        "niah needs haystack texts: pass --haystack DIR (resources/haystacks)");
                runs.back().hay = load_haystack(dir);
            }
        }
        for (int64_t len : lengths) {
            if (len <= a->max_new)
                throw InputError("--lengths: " + std::to_string(len) +
                                 " leaves no room for a prompt "
                                 "before the " +
                                 std::to_string(a->max_new) + " answer tokens");
            warn_past_trained_context(spec, len, "--lengths " + std::to_string(len));
        }
        auto backend = make_backend(a->m.device, a->m.threads);
        EngineOptions opts;
        opts.threads = a->m.threads;
        Engine engine(*L.model, *backend, opts);
        const auto& eos = spec.eos_ids;

        std::ofstream details;
        if (!a->details.empty()) {
            details.open(a->details);
            if (!details) throw InputError(a->details, "cannot open for writing");
            details << "task,policy,length,depth,trial,seed,prompt_tokens,needle_begin,needle_end,"
                       "answer,output,correct,split,template\n";
        }
        std::vector<Cell> cells;
        const auto t_all = std::chrono::steady_clock::now();
        Progress progress("eval", a->quiet);
        const int64_t n_trials =
            static_cast<int64_t>(runs.size() * lengths.size() * depths.size()) * a->trials;
        int64_t trials_done = 0;
        for (const Run& run : runs) {
            ScenarioBuilder builder(*L.tokenizer,
                                    kind == ScenarioKind::kPasskey ? nullptr : &run.hay);
            for (int64_t len : lengths) {
                for (double d : depths) {
                    Cell c{run.split, len, d, 0, 0};
                    const auto t0 = std::chrono::steady_clock::now();
                    for (int t = 0; t < a->trials; ++t) {
                        ScenarioOptions so;
                        so.kind = kind;
                        so.length = len - a->max_new;
                        so.depth = d;
                        so.seed = trial_seed(a->seed, kind, len, d, t);
                        so.num_needles = a->needles;
                        so.templates = kind == ScenarioKind::kNeedles ? &templates : nullptr;
                        so.split = run.tsplit;
                        so.distractors = a->distractors;
                        const Scenario sc = builder.build(so);
                        auto policy = make_policy_from_args(a->policy, spec,
                                                            static_cast<int64_t>(sc.ids.size()));
                        engine.set_policy(policy.get());
                        std::vector<float> logits = engine.prefill(sc.ids);
                        Sampler greedy({0.0f, 1.0f, 0});
                        std::vector<int32_t> out;
                        for (int i = 0; i < a->max_new; ++i) {
                            const int32_t next = greedy.sample(logits.data(), spec.vocab_size);
                            if (std::find(eos.begin(), eos.end(), next) != eos.end() ||
                                next == L.tokenizer->eos_id())
                                break;
                            out.push_back(next);
                            if (i + 1 < a->max_new) logits = engine.decode(next);
                        }
                        const std::string text = L.tokenizer->decode(out, true);
                        const bool ok = answer_found(text, sc.answer);
                        c.correct += ok;
                        ++c.trials;
                        progress.update(++trials_done, n_trials,
                                        (run.split.empty() ? "" : run.split + " ") + "length " +
                                            std::to_string(len) + " depth " +
                                            std::to_string(d).substr(0, 4));
                        if (details.is_open()) {
                            const Needle* q = nullptr;
                            for (const Needle& n : sc.needles)
                                if (n.queried) q = &n;
                            details << csv_quote(a->task) << ',' << csv_quote(a->policy.name) << ','
                                    << len << ',' << d << ',' << t << ',' << so.seed << ','
                                    << sc.ids.size() << ',' << (q ? q->token_begin : -1) << ','
                                    << (q ? q->token_end : -1) << ',' << csv_quote(sc.answer) << ','
                                    << csv_quote(text) << ',' << ok << ',' << csv_quote(run.split)
                                    << ',' << csv_quote(sc.template_id) << '\n';
                        }
                    }
                    cells.push_back(c);
                    if (!a->quiet && !Progress::stderr_is_tty()) {
                        const double s =
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                                .count();
                        std::fprintf(stderr,
                                     "  %s%slength %lld depth %.2f: %d/%d correct (%.1f s)\n",
                                     run.split.c_str(), run.split.empty() ? "" : " ",
                                     static_cast<long long>(len), d, c.correct, c.trials, s);
                    }
                }
            }
        }

        progress.finish();
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();
        // Grid: rows are lengths, columns depths.
        if (a->json) {
            nlohmann::json jc = nlohmann::json::array();
            nlohmann::json js = nlohmann::json::object();  // per split: correct, total, accuracy
            int ok = 0, n = 0;
            for (const Cell& c : cells) {
                if (!c.split.empty()) {
                    nlohmann::json& sj = js[c.split];
                    if (sj.is_null()) sj = {{"correct", 0}, {"total", 0}};
                    sj["correct"] = sj["correct"].get<int>() + c.correct;
                    sj["total"] = sj["total"].get<int>() + c.trials;
                    sj["accuracy"] =
                        static_cast<double>(sj["correct"].get<int>()) / sj["total"].get<int>();
                }
                jc.push_back({{"split", c.split},
                              {"length", c.length},
                              {"depth", c.depth},
                              {"trials", c.trials},
                              {"correct", c.correct},
                              {"accuracy", static_cast<double>(c.correct) / c.trials}});
                ok += c.correct;
                n += c.trials;
            }
            nlohmann::json j = {
                {"task", a->task},
                {"policy", a->policy.name},
                {"budget", a->policy.budget >= 0 ? nlohmann::json(a->policy.budget) : nullptr},
                {"ratio", a->policy.ratio >= 0 ? nlohmann::json(a->policy.ratio) : nullptr},
                {"trials_per_cell", a->trials},
                {"seed", a->seed},
                {"cells", jc},
                {"correct", ok},
                {"total", n},
                {"accuracy", n ? static_cast<double>(ok) / n : 0.0},
                {"seconds", secs},
                {"csv", csv_path}};
            if (kind == ScenarioKind::kNeedles) {
                j["splits"] = js;
                j["templates"] = templates.file.string();
                j["needles"] = a->needles;
                j["distractors"] = a->distractors;
            }
            std::printf("%s\n", j.dump(2).c_str());
        } else {
            std::printf("%s accuracy, policy %s", a->task.c_str(), a->policy.name.c_str());
            if (a->policy.budget >= 0)
                std::printf(" (budget %lld)", static_cast<long long>(a->policy.budget));
            if (a->policy.ratio >= 0) std::printf(" (ratio %g)", a->policy.ratio);
            std::printf(", %d trial(s) per cell, seed %llu\n", a->trials,
                        static_cast<unsigned long long>(a->seed));
            int total_ok = 0, total = 0;
            for (const Run& run : runs) {
                if (!run.split.empty()) std::printf("split %s\n", run.split.c_str());
                std::printf("length ");
                for (double d : depths) std::printf(" %6.2f", d);
                std::printf("   mean\n");
                int split_ok = 0, split_n = 0;
                for (int64_t len : lengths) {
                    std::printf("%6lld ", static_cast<long long>(len));
                    int ok = 0, n = 0;
                    for (const Cell& c : cells) {
                        if (c.length != len || c.split != run.split) continue;
                        std::printf(" %5.0f%%", 100.0 * c.correct / c.trials);
                        ok += c.correct;
                        n += c.trials;
                    }
                    std::printf("  %5.1f%%\n", 100.0 * ok / n);
                    split_ok += ok;
                    split_n += n;
                }
                if (!run.split.empty())
                    std::printf("%s %d/%d (%.1f%%)\n", run.split.c_str(), split_ok, split_n,
                                100.0 * split_ok / split_n);
                total_ok += split_ok;
                total += split_n;
            }
            std::printf("overall %d/%d (%.1f%%) in %.1f s\n", total_ok, total,
                        100.0 * total_ok / total, secs);
        }

        std::ofstream csv(csv_path);
        if (!csv) throw InputError(csv_path, "cannot open for writing");
        csv << "task,policy,budget,ratio,length,depth,trials,correct,accuracy,split\n";
        for (const Cell& c : cells)
            csv << csv_quote(a->task) << ',' << csv_quote(a->policy.name) << ',' << a->policy.budget
                << ',' << a->policy.ratio << ',' << c.length << ',' << c.depth << ',' << c.trials
                << ',' << c.correct << ',' << static_cast<double>(c.correct) / c.trials << ','
                << csv_quote(c.split) << '\n';
        if (!csv) throw InputError(csv_path, "write error");
        if (!a->quiet) std::fprintf(stderr, "wrote %s\n", csv_path.c_str());
        return 0;
    };
}

KVSCOPE_COMMAND(
    "eval", "Needle retrieval accuracy (passkey | niah | needles) over context lengths x depths",
    setup);

}  // namespace
}  // namespace kvscope::cli
