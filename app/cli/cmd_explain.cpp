// kvscope explain: why was the needle lost? For a recorded run, re-runs its policy from one
// full-cache prefill (no change to the decisions) with whatif::ExplainPolicy following the
// needle's tokens, and reports per (layer, KV head) when and how the needle left — evicted,
// merged into which token with which weight, quantised to how many bits — with the policy's OWN
// score for each needle token, its rank, the cut-off the policy kept above, and the tokens that
// took its place. Also a position-debiased attention measure for the needle (the prefill
// attention it received divided by the number of queries that can see it).
//
//   kvscope explain run.kvtrace.h5 [--json why.json] [--all]
#include <unistd.h>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "app/cli/trace_rerun.h"
#include "app/recorder/live_session.h"
#include "core/error.h"
#include "core/whatif/explain_policy.h"
#include "traces/trace_reader.h"

namespace kvscope::cli {
namespace {

namespace fs = std::filesystem;

struct ExplainArgs {
    std::string trace, json_out, out_dir;
    ModelArgs m;
    bool all = false, force = false, quiet = false;
};

std::string piece(const Tokenizer& tok, const std::vector<int32_t>& ids, int64_t pos) {
    if (pos < 0 || pos >= static_cast<int64_t>(ids.size())) return "?";
    std::string s = tok.token_bytes(ids[static_cast<size_t>(pos)]);
    std::string out;
    for (char c : s) out += c == '\n' ? std::string("\\n") : std::string(1, c);
    return "'" + out + "'";
}

std::string fmt(double v) {
    if (std::isnan(v)) return "-";
    if (std::isinf(v)) return "protected";
    char b[32];
    std::snprintf(b, sizeof b, "%.4g", v);
    return b;
}

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<ExplainArgs>();
    sub.add_option("trace", a->trace, "A recorded run with a needle")->required();
    add_trace_model_options(sub, a->m);
    sub.add_option("--json", a->json_out,
                   "Write every decision as JSON to this file; '-': print it on stdout as the "
                   "only output (the text goes to stderr)");
    sub.add_flag("--all", a->all, "List every (layer, head), also those that kept the needle");
    sub.add_flag("--force", a->force, "Replace an existing --json file");
    sub.add_flag("--quiet", a->quiet, "No progress on stderr");
    return [a]() {
        // --json -: the JSON document alone on stdout, the text on stderr.
        const bool json_stdout = a->json_out == "-";
        FILE* txt = json_stdout ? stderr : stdout;
        if (!a->json_out.empty() && !json_stdout) check_output_path(a->json_out, a->force);
        TraceRun run = load_trace_run(a->trace, a->m, true);
        const trace::TraceReader& reader = *run.reader;
        const trace::RunMetadata& meta = reader.metadata();
        const Loaded& L = run.loaded;
        const record::RunInput& input = run.input;
        const trace::MarkedSpan* needle = run.needle;
        std::vector<int64_t> followed;
        for (int64_t p = needle->begin; p < needle->end; ++p) followed.push_back(p);

        record::LiveSession session(*L.model, *L.tokenizer, a->m.model, input, a->m.threads,
                                    a->m.device);
        if (!a->quiet)
            std::fprintf(stderr, "[prefill] %zu tokens (full cache, once) ...", input.ids.size());
        session.prefill();
        if (!a->quiet) std::fprintf(stderr, " %.2f s\n", session.prefill_ms() / 1e3);
        const record::PolicyChoice choice = record::policy_from_trace(meta);
        auto decided = std::make_shared<std::vector<whatif::TokenDecision>>();
        record::RerunRequest rr;
        rr.policy = choice;
        rr.sampling = record::sampling_from_trace(meta);
        const fs::path scratch = fs::temp_directory_path() /
                                 ("kvscope-explain-" + std::to_string(::getpid()) + ".kvtrace.h5");
        rr.trace = scratch;
        rr.overwrite = true;
        rr.wrap_policy = [&](std::unique_ptr<Policy> p) {
            return std::unique_ptr<Policy>(
                std::make_unique<whatif::ExplainPolicy>(std::move(p), followed, decided));
        };
        const record::RerunResult res = session.rerun(rr);
        std::error_code ec;
        fs::remove(scratch, ec);
        const std::vector<int32_t> gen =
            reader.token_ids(meta.n_prompt_tokens, reader.info().n_tokens);
        std::string recorded;
        for (int32_t id : gen) recorded += L.tokenizer->token_bytes(id);

        std::fprintf(txt, "policy   %s\n", choice.describe().c_str());
        std::string needle_text;
        for (int64_t p = needle->begin; p < needle->end; ++p)
            needle_text += L.tokenizer->token_bytes(input.ids[static_cast<size_t>(p)]);
        std::fprintf(txt, "needle   tokens [%lld, %lld) \"%s\", answer '%s'\n",
                     static_cast<long long>(needle->begin), static_cast<long long>(needle->end),
                     needle_text.c_str(), input.answer.c_str());
        std::fprintf(txt, "re-run   output \"%s\" (%s)%s\n", res.text.c_str(),
                     res.answer_found == 1 ? "answer found" : "answer lost",
                     res.text == L.tokenizer->decode(gen, true) ? ", same as the trace"
                                                                : ", DIFFERS from the trace");
        const auto& decisions = *decided;
        const std::string score_name = [&] {
            for (const auto& d : decisions)
                if (!d.score_name.empty()) return d.score_name;
            return std::string("(this policy does not rank tokens by a score)");
        }();
        std::fprintf(txt, "score    %s\n", score_name.c_str());

        // Position-debiased prefill attention: received / queries that can see the key.
        const PrefillState& st = session.state();
        const int64_t P = st.prompt_len(), g = L.model->spec.group_size();
        std::fprintf(txt,
                     "attention (prefill, mean per query that sees the token, x1e3; summed "
                     "attention favours early tokens):\n  layer:");
        for (int64_t l = 0; l < L.model->spec.n_layers; ++l)
            std::fprintf(txt, " %6lld", static_cast<long long>(l));
        std::fprintf(txt, "\n  needle:");
        for (const auto& ls : st.stats) {
            double sum = 0;
            int64_t n = 0;
            for (size_t h = 0; h < ls.colsum.size(); ++h)
                for (int64_t p = needle->begin; p < needle->end; ++p) {
                    sum += ls.colsum[h][static_cast<size_t>(p)] / static_cast<double>(P - p);
                    ++n;
                }
            std::fprintf(txt, " %6.2f", 1e3 * sum / static_cast<double>(std::max<int64_t>(1, n)));
        }
        std::fprintf(txt, "\n  all:   ");
        for (const auto& ls : st.stats) {
            double sum = 0;
            int64_t n = 0;
            for (size_t h = 0; h < ls.colsum.size(); ++h)
                for (int64_t p = 0; p < P; ++p) {
                    sum += ls.colsum[h][static_cast<size_t>(p)] / static_cast<double>(P - p);
                    ++n;
                }
            std::fprintf(txt, " %6.2f", 1e3 * sum / static_cast<double>(std::max<int64_t>(1, n)));
        }
        std::fprintf(txt, "\n");
        (void)g;

        // Per (layer, head): the prompt's decision, then the first decode-time loss.
        struct HeadSummary {
            int64_t kept = 0, total = 0;
            std::vector<const whatif::TokenDecision*> lost;
        };
        std::map<std::pair<int64_t, int64_t>, HeadSummary> heads;
        for (const auto& d : decisions) {
            auto& h = heads[{d.layer, d.kv_head}];
            if (d.step < 0) {
                ++h.total;
                if (d.action == "kept") ++h.kept;
            }
            if (d.action != "kept") h.lost.push_back(&d);
        }
        const int64_t span_len = needle->end - needle->begin;
        std::fprintf(txt,
                     "layer head  after prompt  losses (step: action, tokens)      needle score "
                     "(min..max)  rank (best..worst)/n   cut-off     took its place\n");
        for (const auto& [key, h] : heads) {
            if (h.lost.empty() && !a->all) continue;
            std::map<std::string, int64_t> acts;
            double smin = INFINITY, smax = -INFINITY, cut = NAN;
            int64_t rmin = INT64_MAX, rmax = -1, n = 0;
            std::string took;
            int64_t first_step = h.lost.empty() ? -2 : h.lost.front()->step;
            for (const auto* d : h.lost) {
                if (d->step != first_step) continue;
                std::string act = d->action;
                if (d->action == "merged") act += " into " + std::to_string(d->into_position);
                if (d->action == "quantized" || d->action == "demoted")
                    act += " to " + std::to_string(d->bits) + " bits";
                ++acts[act];
                if (!std::isnan(d->score)) {
                    smin = std::min(smin, d->score);
                    smax = std::max(smax, d->score);
                    rmin = std::min(rmin, d->rank);
                    rmax = std::max(rmax, d->rank);
                    n = d->candidates;
                    cut = d->cutoff;
                }
                if (took.empty())
                    for (const auto& [p, v] : d->took_its_place)
                        took += piece(*L.tokenizer, input.ids, p) + "(" + fmt(v) + ") ";
            }
            std::string losses;
            for (const auto& [act, c] : acts)
                losses += (losses.empty() ? "" : ", ") + act + " x" + std::to_string(c);
            const std::string when = first_step == -2   ? "-"
                                     : first_step == -1 ? "prompt"
                                                        : "step " + std::to_string(first_step + 1);
            std::fprintf(
                txt,
                "%5lld %4lld  %5lld/%-6lld  %-36s %10s..%-10s %6lld..%-6lld/%-5lld %-10s  %s\n",
                static_cast<long long>(key.first), static_cast<long long>(key.second),
                static_cast<long long>(h.kept), static_cast<long long>(span_len),
                (when + ": " + losses).c_str(), fmt(smin).c_str(), fmt(smax).c_str(),
                static_cast<long long>(rmin == INT64_MAX ? -1 : rmin), static_cast<long long>(rmax),
                static_cast<long long>(n), fmt(cut).c_str(), took.c_str());
        }
        if (!a->json_out.empty()) {
            nlohmann::json j = nlohmann::json::array();
            for (const auto& d : decisions) {
                nlohmann::json t = nlohmann::json::array();
                for (const auto& [p, v] : d.took_its_place) t.push_back({p, v});
                auto num = [](double v) -> nlohmann::json {
                    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
                };
                j.push_back({{"trace_step", d.step + 1},
                             {"layer", d.layer},
                             {"head", d.kv_head},
                             {"position", d.position},
                             {"action", d.action},
                             {"into_position", d.into_position},
                             {"weight", num(d.weight)},
                             {"bits", d.bits},
                             {"score", num(d.score)},
                             {"protected", std::isinf(d.score)},
                             {"rank", d.rank},
                             {"candidates", d.candidates},
                             {"cutoff", num(d.cutoff)},
                             {"budget", d.budget},
                             {"took_its_place", t}});
            }
            const nlohmann::json doc = {{"trace", a->trace},
                                        {"policy", choice.describe()},
                                        {"score", score_name},
                                        {"needle", {needle->begin, needle->end}},
                                        {"decisions", j}};
            if (json_stdout) {
                std::printf("%s\n", doc.dump(1).c_str());
                return 0;
            }
            std::ofstream f(a->json_out);
            f << doc.dump(1) << "\n";
            if (!f) throw InputError(a->json_out, "cannot write the JSON file");
        }
        return 0;
    };
}

KVSCOPE_COMMAND("explain",
                "Why the needle was lost: the policy's own score, rank and cut-off for every "
                "needle token where it left, and what took its place",
                setup);

}  // namespace
}  // namespace kvscope::cli
