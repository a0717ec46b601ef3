// `kvscope policies`: lists every registered KV-cache policy with its paper, regime and
// parameters (type, default, range / choices, help), as generated from the policy schemas.
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "app/cli/command.h"
#include "core/error.h"
#include "core/policies/registry.h"

namespace kvscope::cli {
namespace {

std::string number(double x) {
    if (std::isfinite(x) && std::abs(x) < 1e15 && x == std::floor(x))
        return std::to_string(static_cast<int64_t>(x));  // 16777216, not 1.67772e+07
    std::ostringstream os;
    os << x;
    return os.str();
}

std::string range_of(const ParamSpec& p) {
    if (p.type == ParamType::kEnum) {
        std::string s;
        for (const std::string& c : p.choices) s += (s.empty() ? "" : "|") + c;
        return s;
    }
    if (p.type == ParamType::kBool) return "true|false";
    if (!p.min && !p.max) return "";
    const std::string lo = p.min ? number(*p.min) : "-inf";
    const std::string hi = p.max ? number(*p.max) : "inf";
    return (p.type == ParamType::kIntList ? "each in [" : "[") + lo + ", " + hi + "]";
}

void print_entry(const PolicyEntry& e) {
    const PolicyInfo& i = e.info;
    std::printf("%s  (%s)  regime %s%s\n", i.name.c_str(), i.full_name.c_str(),
                regime_code(i.regime), i.needs_budget ? "" : ", budget optional");
    std::printf("    paper: %s", i.paper.c_str());
    if (!i.arxiv.empty()) std::printf("  [arXiv %s]", i.arxiv.c_str());
    std::printf("\n");
    if (!i.venue.empty()) std::printf("    venue: %s\n", i.venue.c_str());
    if (!i.code.empty()) std::printf("    code:  %s\n", i.code.c_str());
    if (!i.rule.empty()) std::printf("    rule:  %s\n", i.rule.c_str());
    if (!i.score_name.empty()) std::printf("    score: %s\n", i.score_name.c_str());
    if (e.schema.empty()) std::printf("    (no parameters)\n");
    for (const ParamSpec& p : e.schema) {
        std::printf("    --param %s=%s   %s", p.name.c_str(),
                    param_value_to_string(p.default_value).c_str(), param_type_name(p.type));
        const std::string r = range_of(p);
        if (!r.empty()) std::printf(" %s", r.c_str());
        std::printf("\n        %s\n", p.help.c_str());
    }
}

nlohmann::json entry_json(const PolicyEntry& e) {
    nlohmann::json params = nlohmann::json::array();
    for (const ParamSpec& p : e.schema)
        params.push_back({{"name", p.name},
                          {"type", param_type_name(p.type)},
                          {"default", param_value_to_string(p.default_value)},
                          {"min", p.min ? nlohmann::json(*p.min) : nullptr},
                          {"max", p.max ? nlohmann::json(*p.max) : nullptr},
                          {"choices", p.choices},
                          {"help", p.help}});
    return {{"name", e.info.name},
            {"full_name", e.info.full_name},
            {"regime", regime_code(e.info.regime)},
            {"needs_budget", e.info.needs_budget},
            {"paper", e.info.paper},
            {"arxiv", e.info.arxiv},
            {"code", e.info.code},
            {"venue", e.info.venue},
            {"rule", e.info.rule},
            {"score_name", e.info.score_name},
            {"params", params}};
}

}  // namespace

KVSCOPE_COMMAND("policies", "List the KV-cache policies, their papers and parameters",
                [](CLI::App& sub) {
                    // One capture: the macro's arguments cannot hold a top-level comma.
                    struct Args {
                        std::string name;
                        bool json = false;
                    };
                    auto args = std::make_shared<Args>();
                    sub.add_option("name", args->name, "Show only this policy");
                    sub.add_flag("--json", args->json,
                                 "Print the list as one JSON document on stdout");
                    return [args]() {
                        const std::string* name = &args->name;
                        const bool* json = &args->json;
                        const PolicyRegistry& reg = PolicyRegistry::global();
                        if (!name->empty()) {
                            const PolicyEntry* e = reg.find(*name);
                            if (!e) {
                                // Reuse the registry's message listing the known names.
                                Budget b;
                                b.tokens = 1;
                                reg.create(*name, b, std::vector<std::string>{});
                            }
                            if (*json)
                                std::printf("%s\n", entry_json(*e).dump(2).c_str());
                            else
                                print_entry(*e);
                            return 0;
                        }
                        if (*json) {
                            nlohmann::json all = nlohmann::json::array();
                            for (const PolicyEntry* e : reg.list()) all.push_back(entry_json(*e));
                            std::printf("%s\n", all.dump(2).c_str());
                            return 0;
                        }
                        std::printf(
                            "KV-cache policies. Budget: --budget N tokens per (layer, KV head), "
                            "sinks and window included, or --ratio R of the prompt length.\n"
                            "Regime P = compress once after the prompt; D = at every decode "
                            "step.\n\n");
                        for (const PolicyEntry* e : reg.list()) {
                            print_entry(*e);
                            std::printf("\n");
                        }
                        return 0;
                    };
                });

}  // namespace kvscope::cli
