#pragma once
// --scenario and its flags, shared by `kvscope run` and `kvscope whatif`: a passkey, NIAH or
// template-needles prompt built by core/scenarios (app/recorder/run_setup.h's ScenarioRequest).
#include <CLI/CLI.hpp>

#include "app/recorder/run_setup.h"

namespace kvscope::cli {

struct ScenarioFlags {
    record::ScenarioRequest req;
    CLI::Option* scenario = nullptr;  // --scenario
    CLI::Option* templates = nullptr;
    CLI::Option* split = nullptr;
    CLI::Option* distractors = nullptr;

    bool given() const { return scenario->count() > 0; }
    // Throws InputError (a usage error, exit 2) when a flag does not belong to the scenario
    // chosen, or to none.
    void check() const;
};

// Adds --scenario, --length, --depth, --scenario-seed, --needles, --haystack, --templates,
// --split and --distractors, writing into `f` (which must outlive the parse).
void add_scenario_options(CLI::App& sub, ScenarioFlags& f);

}  // namespace kvscope::cli
