#pragma once
// The policy flags shared by every command that runs the engine:
//   --policy NAME  [--budget N | --ratio R]  [--param key=value]...
// The parameters come from the policy's schema (kvscope policies lists them).
#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "core/model/model_spec.h"
#include "core/policies/policy.h"

namespace kvscope::cli {

// The largest --budget accepted: far beyond any prompt (a budget >= the prompt keeps it all).
inline constexpr int64_t kMaxBudgetTokens = int64_t{1} << 30;

struct PolicyArgs {
    std::string name = "full";
    int64_t budget = -1;
    double ratio = -1.0;
    std::vector<std::string> params;
};

void add_policy_options(CLI::App& sub, PolicyArgs& args);

// Builds the policy (nullptr for `full`, which the engine runs as "no policy"... except when
// `keep_full` is set, e.g. to record budgets). Throws InputError on unknown names, missing or
// invalid budgets and parameters.
std::unique_ptr<Policy> make_policy_from_args(const PolicyArgs& args, const ModelSpec& spec,
                                              int64_t prompt_len, bool keep_full = false);

}  // namespace kvscope::cli
