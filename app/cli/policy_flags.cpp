#include "app/cli/policy_flags.h"

#include <cstdio>

#include "core/policies/registry.h"

namespace kvscope::cli {

void add_policy_options(CLI::App& sub, PolicyArgs& args) {
    sub.add_option("--policy", args.name, "Cache policy (kvscope policies lists them)")
        ->capture_default_str();
    // Bounded so that a huge value is refused with the range, not saturated (main.cpp).
    auto* b = sub.add_option("--budget", args.budget,
                             "Tokens per (layer, KV head), sinks and window included (-1: none)")
                  ->check(CLI::Range(int64_t{1}, kMaxBudgetTokens));
    auto* r = sub.add_option("--ratio", args.ratio,
                             "Budget as a fraction of the prompt length, in (0, 1] (-1: none)");
    b->excludes(r);
    sub.add_option("--param", args.params, "Policy parameter key=value (repeatable)");
}

std::unique_ptr<Policy> make_policy_from_args(const PolicyArgs& args, const ModelSpec& /*spec*/,
                                              int64_t /*prompt_len*/, bool keep_full) {
    Budget budget;
    budget.tokens = args.budget;
    budget.ratio = args.ratio;
    auto policy = PolicyRegistry::global().create(args.name, budget, args.params);
    if (args.name == "full" && !keep_full) return nullptr;
    // DMC proper needs a DMC-retrofitted model; on a vanilla one the zeroed decision channel and
    // the merges it triggers change the model's attention. Say so every time it is used.
    if (args.name == "dmc" && policy->params().has("mode") &&
        param_value_to_string(policy->params().all().at("mode")) == "checkpoint") {
        static bool warned = false;
        if (!warned)
            std::fprintf(stderr,
                         "warning: dmc mode=checkpoint reads merge decisions from (and zeroes) "
                         "channel d-1 of every query and key: it is meant for DMC-retrofitted "
                         "checkpoints. On a vanilla model use --param mode=proxy.\n");
        warned = true;
    }
    return policy;
}

}  // namespace kvscope::cli
