#include "app/recorder/niah_sweep.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "app/recorder/live_session.h"
#include "core/error.h"
#include "core/policies/registry.h"
#include "core/scenarios/haystack.h"
#include "traces/niah_summary_columns.h"

namespace kvscope::record {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string>& kSummaryColumns = trace::niah_summary_columns();

std::string csv_quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}

std::string num(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

std::string budget_label(const SweepSpec& spec, double v) {
    if (spec.budget_kind == "tokens") return std::to_string(static_cast<int64_t>(v));
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

// "key=value" applies to every policy whose schema has `key`; "policy.key=value" to that one.
std::vector<std::string> params_for(const SweepSpec& spec, const std::string& policy) {
    std::vector<std::string> out;
    const PolicyEntry* e = PolicyRegistry::global().find(policy);
    for (const std::string& p : spec.params) {
        const size_t eq = p.find('=');
        if (eq == std::string::npos) throw InputError("--param '" + p + "': expected key=value");
        std::string key = p.substr(0, eq);
        const size_t dot = key.find('.');
        if (dot != std::string::npos) {
            if (key.substr(0, dot) != policy) continue;
            out.push_back(key.substr(dot + 1) + p.substr(eq));
            continue;
        }
        if (e && std::any_of(e->schema.begin(), e->schema.end(),
                             [&](const ParamSpec& s) { return s.name == key; }))
            out.push_back(p);
    }
    return out;
}

std::string row_key(const std::string& cell, const std::string& policy, const std::string& budget) {
    return cell + "|" + policy + "|" + budget;
}

fs::path shard_summary(const fs::path& out, Shard s) {
    if (s.count == 1) return out / "summary.csv";
    return out /
           ("summary-shard-" + std::to_string(s.index) + "-of-" + std::to_string(s.count) + ".csv");
}

}  // namespace

std::vector<std::vector<std::string>> read_csv(const fs::path& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw InputError(path, "cannot read the CSV file");
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string t = ss.str();
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> row;
    std::string cell;
    bool quoted = false, any = false;
    for (size_t i = 0; i < t.size(); ++i) {
        const char c = t[i];
        if (quoted) {
            if (c == '"' && i + 1 < t.size() && t[i + 1] == '"') {
                cell += '"';
                ++i;
            } else if (c == '"') {
                quoted = false;
            } else {
                cell += c;
            }
            continue;
        }
        if (c == '"') {
            quoted = any = true;
        } else if (c == ',') {
            row.push_back(cell);
            cell.clear();
            any = true;
        } else if (c == '\n') {
            row.push_back(cell);
            cell.clear();
            rows.push_back(std::move(row));
            row.clear();
            any = false;
        } else if (c != '\r') {
            cell += c;
            any = true;
        }
    }
    if (quoted) throw InputError(path, "unterminated quoted field (a row was cut off)");
    if (any) {  // a last row without a newline: written by a killed run, dropped for a re-run
        (void)row;
    }
    return rows;
}

std::vector<NeedleSet> load_needle_sets(const fs::path& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw InputError(path, "cannot read the needle file");
    const nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
    if (j.is_discarded() || !j.is_array() || j.empty())
        throw InputError(path, "expected a non-empty JSON array of {needle, question, answer}");
    std::vector<NeedleSet> out;
    for (size_t i = 0; i < j.size(); ++i) {
        const auto& e = j[i];
        auto str = [&](const char* k, bool required) {
            if (!e.is_object() || !e.contains(k) || !e[k].is_string()) {
                if (required)
                    throw InputError(path,
                                     "entry " + std::to_string(i) + " needs a string '" + k + "'");
                return std::string();
            }
            return e[k].get<std::string>();
        };
        NeedleSet n;
        n.builtin = false;
        n.custom.needle = str("needle", true);
        n.custom.question = str("question", true);
        n.custom.answer = str("answer", true);
        n.custom.intro = str("intro", false);
        n.name = str("name", false);
        if (n.name.empty()) n.name = "set" + std::to_string(i);
        if (n.custom.needle.find(n.custom.answer) == std::string::npos)
            throw InputError(path, "entry " + std::to_string(i) +
                                       ": the needle does not contain "
                                       "its answer '" +
                                       n.custom.answer + "'");
        out.push_back(n);
    }
    return out;
}

nlohmann::json SweepSpec::to_json() const {
    nlohmann::json n = nlohmann::json::array();
    for (const auto& s : needles)
        n.push_back({{"name", s.name},
                     {"builtin", s.builtin},
                     {"needle", s.custom.needle},
                     {"question", s.custom.question},
                     {"answer", s.custom.answer},
                     {"intro", s.custom.intro}});
    return {{"format", "kvscope-niah-sweep"},
            {"version", 1},
            {"model", model},
            {"haystacks", haystacks},
            {"needles", n},
            {"lengths", lengths},
            {"depths", depths},
            {"trials", trials},
            {"seed", seed},
            {"policies", policies},
            {"budget_kind", budget_kind},
            {"budgets", budgets},
            {"params", params},
            {"max_new", max_new},
            {"traces", traces}};
}

SweepSpec SweepSpec::from_json(const nlohmann::json& j) {
    try {
        SweepSpec s;
        if (j.value("format", std::string()) != "kvscope-niah-sweep")
            throw InputError("not a kvscope NIAH sweep spec");
        s.model = j.at("model").get<std::string>();
        s.haystacks = j.at("haystacks").get<std::vector<std::string>>();
        for (const auto& e : j.at("needles")) {
            NeedleSet n;
            n.name = e.at("name").get<std::string>();
            n.builtin = e.at("builtin").get<bool>();
            n.custom = {e.at("needle").get<std::string>(), e.at("question").get<std::string>(),
                        e.at("answer").get<std::string>(), e.at("intro").get<std::string>()};
            s.needles.push_back(n);
        }
        s.lengths = j.at("lengths").get<std::vector<int64_t>>();
        s.depths = j.at("depths").get<std::vector<double>>();
        s.trials = j.at("trials").get<int>();
        s.seed = j.at("seed").get<uint64_t>();
        s.policies = j.at("policies").get<std::vector<std::string>>();
        s.budget_kind = j.at("budget_kind").get<std::string>();
        s.budgets = j.at("budgets").get<std::vector<double>>();
        s.params = j.at("params").get<std::vector<std::string>>();
        s.max_new = j.at("max_new").get<int>();
        s.traces = j.at("traces").get<bool>();
        return s;
    } catch (const nlohmann::json::exception& e) {
        throw InputError(std::string("sweep spec: ") + e.what());
    }
}

int64_t SweepSpec::cell_count() const {
    return static_cast<int64_t>(haystacks.size() * needles.size() * lengths.size() *
                                depths.size()) *
           trials;
}

std::vector<SweepCell> sweep_cells(const SweepSpec& spec) {
    std::vector<SweepCell> out;
    int64_t i = 0;
    for (int h = 0; h < static_cast<int>(spec.haystacks.size()); ++h)
        for (int n = 0; n < static_cast<int>(spec.needles.size()); ++n)
            for (int64_t len : spec.lengths)
                for (double d : spec.depths)
                    for (int t = 0; t < spec.trials; ++t) {
                        SweepCell c;
                        c.index = i++;
                        c.haystack = h;
                        c.needle = n;
                        c.length = len;
                        c.depth = d;
                        c.trial = t;
                        c.seed = trial_seed(spec.seed + static_cast<uint64_t>(h * 1000 + n),
                                            ScenarioKind::kNiah, len, d, t);
                        out.push_back(c);
                    }
    return out;
}

Shard parse_shard(const std::string& text) {
    const size_t slash = text.find('/');
    Shard s;
    try {
        if (slash == std::string::npos) throw std::invalid_argument("no slash");
        size_t a = 0, b = 0;
        s.index = std::stoi(text.substr(0, slash), &a);
        s.count = std::stoi(text.substr(slash + 1), &b);
        if (a != slash || b != text.size() - slash - 1) throw std::invalid_argument("junk");
    } catch (const std::exception&) {
        throw InputError("--shard '" + text + "': expected I/N, e.g. 0/4 (0-based shard index)");
    }
    if (s.count < 1 || s.index < 0 || s.index >= s.count)
        throw InputError("--shard '" + text + "': need 0 <= I < N");
    return s;
}

int64_t run_niah_sweep(const Model& model, const Tokenizer& tok, const SweepSpec& spec,
                       const fs::path& out, Shard shard, int threads, const std::atomic<bool>* stop,
                       const std::function<void(const SweepProgress&)>& progress) {
    using clock = std::chrono::steady_clock;
    if (spec.needles.empty() || spec.lengths.empty() || spec.depths.empty() ||
        spec.haystacks.empty() || spec.trials < 1)
        throw InputError("the sweep has no cells (lengths, depths, needles, haystacks, trials)");
    for (const std::string& p : spec.policies) {
        const PolicyEntry* e = PolicyRegistry::global().find(p);
        if (!e) (void)PolicyRegistry::global().create(p, Budget{}, std::vector<std::string>{});
        if (e->info.needs_budget && spec.budgets.empty())
            throw InputError("policy " + p + " needs budgets (--ratios, --budgets or --memory)");
    }
    fs::create_directories(out);
    // The spec: written once, and a resumed or sharded run must match it.
    const fs::path spec_path = out / "sweep.json";
    if (fs::exists(spec_path)) {
        std::ifstream f(spec_path);
        const nlohmann::json old = nlohmann::json::parse(f, nullptr, false);
        if (old.is_discarded() || old != spec.to_json())
            throw InputError(spec_path,
                             "holds another sweep's spec; use another --out folder "
                             "(or the same flags to resume)");
    } else {
        const fs::path tmp = out / "sweep.json.part";
        std::ofstream(tmp) << spec.to_json().dump(2) << "\n";
        fs::rename(tmp, spec_path);
    }

    // Resume: rows this shard already wrote.
    const fs::path summary = shard_summary(out, shard);
    std::set<std::string> done;
    const bool exists = fs::exists(summary);
    if (exists) {
        // A run killed while writing a row leaves it incomplete: cut the file after the last
        // complete row (a newline outside quotes), so the row is run again.
        std::ifstream f(summary, std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        const std::string t = ss.str();
        size_t keep = 0;
        bool quoted = false;
        for (size_t i = 0; i < t.size(); ++i) {
            if (t[i] == '"')
                quoted = !quoted;
            else if (t[i] == '\n' && !quoted)
                keep = i + 1;
        }
        if (keep < t.size()) fs::resize_file(summary, keep);
        const auto rows = read_csv(summary);
        if (rows.empty() || rows.front() != kSummaryColumns)
            throw InputError(summary, "is not a summary of this version (header differs)");
        for (size_t i = 1; i < rows.size(); ++i)
            if (rows[i].size() == kSummaryColumns.size())
                done.insert(row_key(rows[i][0], rows[i][8], rows[i][10]));
    }
    std::ofstream csv(summary, std::ios::app | std::ios::binary);
    if (!csv) throw InputError(summary, "cannot write the summary");
    if (!exists) {
        for (size_t i = 0; i < kSummaryColumns.size(); ++i)
            csv << (i ? "," : "") << kSummaryColumns[i];
        csv << "\n";
    }

    // The rows of a cell: the full-cache baseline, then every policy x budget.
    struct Job {
        std::string policy, label;
        double value = 0;
    };
    std::vector<Job> jobs{{"full", "-", 0}};
    for (const std::string& p : spec.policies) {
        if (p == "full") continue;
        const bool needs = PolicyRegistry::global().find(p)->info.needs_budget;
        if (!needs) {
            jobs.push_back({p, "-", 0});
            continue;
        }
        for (double b : spec.budgets) jobs.push_back({p, budget_label(spec, b), b});
    }
    const std::vector<SweepCell> cells = sweep_cells(spec);
    SweepProgress pr;
    for (const SweepCell& c : cells)
        if (shard.owns(c.index))
            for (const Job& j : jobs) {
                ++pr.rows_total;
                if (done.count(row_key(std::to_string(c.index), j.policy, j.label)))
                    ++pr.rows_skipped;
            }
    const auto t0 = clock::now();
    int64_t ran = 0;
    std::map<std::string, Haystack> haystacks;
    for (const SweepCell& c : cells) {
        if (!shard.owns(c.index)) continue;
        const std::string cell_id = std::to_string(c.index);
        bool any = false;
        for (const Job& j : jobs) any = any || !done.count(row_key(cell_id, j.policy, j.label));
        if (!any) continue;
        if (stop && stop->load()) break;
        // The cell's prompt.
        const std::string& hdir = spec.haystacks[static_cast<size_t>(c.haystack)];
        fs::path dir = hdir.empty() ? find_default_haystack_dir(spec.model) : fs::path(hdir);
        if (dir.empty()) throw InputError("no haystack folder found: pass --haystack DIR");
        if (!haystacks.count(dir.string())) haystacks.emplace(dir.string(), load_haystack(dir));
        ScenarioBuilder builder(tok, &haystacks.at(dir.string()));
        ScenarioOptions so;
        so.kind = ScenarioKind::kNiah;
        so.length = c.length;
        so.depth = c.depth;
        so.seed = c.seed;
        const NeedleSet& ns = spec.needles[static_cast<size_t>(c.needle)];
        if (!ns.builtin) so.custom = &ns.custom;
        Scenario built = builder.build(so);
        RunInput in;
        in.prompt = built.text;
        in.ids = built.ids;
        in.answer = built.answer;
        for (const Needle& n : built.needles)
            in.spans.push_back({n.token_begin, n.token_end, "needle", built.answer});
        in.scenario = {{"kind", "niah"},        {"length", c.length},    {"depth", c.depth},
                       {"seed", c.seed},        {"needle_set", ns.name}, {"haystack", dir.string()},
                       {"answer", built.answer}};
        LiveSession session(model, tok, spec.model, in, threads);
        session.prefill();
        char cdir[32];
        std::snprintf(cdir, sizeof cdir, "c%04lld", static_cast<long long>(c.index));
        const fs::path trace_dir = out / "traces" / cdir;
        fs::create_directories(trace_dir);
        for (const Job& j : jobs) {
            if (done.count(row_key(cell_id, j.policy, j.label))) continue;
            if (stop && stop->load()) break;
            PolicyChoice choice{j.policy, {}, params_for(spec, j.policy)};
            if (j.label != "-") {
                if (spec.budget_kind == "tokens") {
                    choice.budget.tokens = static_cast<int64_t>(j.value);
                } else if (spec.budget_kind == "ratio") {
                    choice.budget.ratio = j.value;
                } else {
                    const whatif::MemoryFit fit =
                        session.fit_memory(choice, session.bytes_for_fraction(j.value));
                    choice.budget.tokens = fit.budget_tokens;
                }
            }
            std::string name = j.policy + (j.label == "-" ? "" : "-" + j.label);
            const fs::path trace = trace_dir / (name + ".kvtrace.h5");
            std::error_code ec;
            fs::remove(trace, ec);  // a row not in the summary: a killed earlier attempt
            fs::remove(trace.string() + ".part", ec);
            double prompt_mean = -1, prompt_min = -1;
            int64_t bytes_prompt = -1;
            if (session.blocker(choice).empty()) {
                const whatif::Preview pv = session.preview(choice);
                prompt_mean = pv.survival_mean(0);
                prompt_min = pv.survival_min(0);
                bytes_prompt = pv.bytes_total;
            }
            RerunRequest rr;
            rr.policy = choice;
            rr.sampling.max_new = spec.max_new;
            rr.trace = trace;
            const RerunResult r = session.rerun(rr);
            if (!spec.traces) fs::remove(trace, ec);
            const int64_t budget_tokens =
                choice.budget.given() ? choice.budget.resolve(session.state().prompt_len()) : -1;
            const std::vector<std::string> cols = {
                cell_id,
                csv_quote(dir.filename().string()),
                csv_quote(ns.name),
                std::to_string(c.length),
                num(c.depth),
                std::to_string(c.trial),
                std::to_string(c.seed),
                std::to_string(session.state().prompt_len()),
                csv_quote(j.policy),
                csv_quote(j.label == "-" ? "-" : spec.budget_kind),
                csv_quote(j.label),
                std::to_string(budget_tokens),
                std::to_string(session.state().bytes_full()),
                std::to_string(bytes_prompt),
                std::to_string(r.bytes_held_final),
                num(prompt_mean),
                num(prompt_min),
                num(r.needle_final_mean),
                num(r.needle_final_min),
                std::to_string(static_cast<int>(r.answer_found)),
                csv_quote(r.text),
                csv_quote(spec.traces ? fs::relative(trace, out).string() : ""),
                num(r.decode_ms)};
            for (size_t i = 0; i < cols.size(); ++i) csv << (i ? "," : "") << cols[i];
            csv << "\n";
            csv.flush();
            if (!csv) throw InputError(summary, "write failed (disk full?)");
            ++ran;
            ++pr.rows_done;
            pr.elapsed_s = std::chrono::duration<double>(clock::now() - t0).count();
            const int64_t left = pr.rows_total - pr.rows_skipped - pr.rows_done;
            pr.eta_s = pr.elapsed_s / static_cast<double>(pr.rows_done) * static_cast<double>(left);
            pr.last = "cell " + cell_id + " (length " + std::to_string(c.length) + ", depth " +
                      num(c.depth) + ", trial " + std::to_string(c.trial) + ") " + name + ": " +
                      (r.answer_found == 1 ? "found" : "lost");
            if (progress) progress(pr);
        }
    }
    return ran;
}

std::pair<int64_t, int64_t> merge_niah_summaries(const fs::path& dir) {
    const fs::path spec_path = dir / "sweep.json";
    std::ifstream sf(spec_path);
    if (!sf) throw InputError(spec_path, "missing: not a sweep folder");
    const nlohmann::json sj = nlohmann::json::parse(sf, nullptr, false);
    if (sj.is_discarded()) throw InputError(spec_path, "is not valid JSON");
    const SweepSpec spec = SweepSpec::from_json(sj);
    std::map<std::pair<int64_t, std::string>, std::vector<std::string>> rows;  // canonical order
    std::vector<fs::path> inputs;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string n = e.path().filename().string();
        if (n == "summary.csv" ||
            (n.rfind("summary-shard-", 0) == 0 && e.path().extension() == ".csv"))
            inputs.push_back(e.path());
    }
    std::sort(inputs.begin(), inputs.end());
    std::map<std::string, size_t> job_order;
    job_order["full|-"] = 0;
    for (const std::string& p : spec.policies)
        for (double b : spec.budgets)
            job_order.emplace(p + "|" + budget_label(spec, b), job_order.size());
    for (const std::string& p : spec.policies) job_order.emplace(p + "|-", job_order.size());
    for (const fs::path& in : inputs) {
        const auto table = read_csv(in);
        if (table.empty() || table.front() != kSummaryColumns)
            throw InputError(in, "is not a sweep summary (header differs)");
        for (size_t i = 1; i < table.size(); ++i) {
            const auto& r = table[i];
            if (r.size() != kSummaryColumns.size()) continue;
            const std::string job = r[8] + "|" + r[10];
            const auto it = job_order.find(job);
            const size_t order = it == job_order.end() ? job_order.size() : it->second;
            const auto key =
                std::make_pair(std::stoll(r[0]), std::to_string(1000000 + order) + job);
            auto [pos, inserted] = rows.emplace(key, r);
            // Same cell, policy and budget from two files: the verdicts must agree (timings and
            // the trace path may differ).
            if (!inserted && (pos->second[19] != r[19] || pos->second[14] != r[14]))
                throw InputError(
                    in, "row for cell " + r[0] + " " + job + " disagrees with another shard's");
        }
    }
    const fs::path tmp = dir / "summary.csv.part";
    {
        std::ofstream out(tmp, std::ios::binary);
        for (size_t i = 0; i < kSummaryColumns.size(); ++i)
            out << (i ? "," : "") << kSummaryColumns[i];
        out << "\n";
        for (const auto& [key, r] : rows) {
            for (size_t i = 0; i < r.size(); ++i)
                out << (i ? "," : "")
                    << (trace::niah_summary_column_is_text(kSummaryColumns[i]) ? csv_quote(r[i])
                                                                               : r[i]);
            out << "\n";
        }
        if (!out) throw InputError(tmp, "write failed");
    }
    fs::rename(tmp, dir / "summary.csv");
    int64_t per_cell = 1;
    for (const std::string& p : spec.policies)
        if (p != "full")
            per_cell += PolicyRegistry::global().find(p)->info.needs_budget
                            ? static_cast<int64_t>(spec.budgets.size())
                            : 1;
    const int64_t expected = spec.cell_count() * per_cell;
    return {static_cast<int64_t>(rows.size()),
            std::max<int64_t>(0, expected - static_cast<int64_t>(rows.size()))};
}

}  // namespace kvscope::record
