// kvscope-synthetic-trace: writes the Studio's synthetic sample trace (see synthetic_trace.h).
//   kvscope-synthetic-trace --out resources/sample/sample.kvtrace.h5
//   kvscope-synthetic-trace --out big.kvtrace.h5 --layers 32 --heads 8 --prompt-tokens 32768
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "traces/synthetic/synthetic_trace.h"

int main(int argc, char** argv) {
    CLI::App app{"Write a synthetic KVScope trace (the Studio's sample; no model is run)"};
    std::string out;
    kvscope::trace::SyntheticSpec spec;
    app.add_option("--out", out, "Output .kvtrace.h5")->required();
    app.add_option("--layers", spec.n_layers, "Layers")->check(CLI::Range(1, 256));
    app.add_option("--heads", spec.n_heads, "Cache heads per layer")->check(CLI::Range(1, 256));
    app.add_option("--head-dim", spec.head_dim, "Head dimension")->check(CLI::Range(1, 1024));
    app.add_option("--prompt-tokens", spec.n_prompt_tokens, "Prompt tokens (0 = haystack once)")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 22));
    app.add_option("--steps", spec.n_steps, "Steps (prefill + decode)")
        ->check(CLI::Range(1, 100000));
    app.add_option("--budget-ratio", spec.budget_ratio, "Mean kept fraction")
        ->check(CLI::Range(0.01, 1.0));
    app.add_option("--seed", spec.seed, "Seed");
    app.add_option("--delay-ms", spec.delay_ms, "Pause after each step (follow it live)")
        ->check(CLI::Range(0, 60000));
    CLI11_PARSE(app, argc, argv);
    try {
        kvscope::trace::write_synthetic_trace(out, spec);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kvscope-synthetic-trace: %s\n", e.what());
        return 1;
    }
    return 0;
}
