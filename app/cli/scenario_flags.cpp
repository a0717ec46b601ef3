#include "app/cli/scenario_flags.h"

#include "core/error.h"

namespace kvscope::cli {

void add_scenario_options(CLI::App& sub, ScenarioFlags& f) {
    record::ScenarioRequest& r = f.req;
    f.scenario = sub.add_option("--scenario", r.kind,
                                "Build the prompt instead: a passkey or needle-in-a-haystack "
                                "test, or needles from the template set (one trial of `kvscope "
                                "eval needles`: --length = its context length - eval's "
                                "--max-new, --scenario-seed = the seed of its --details row); "
                                "the needle is marked and its answer checked")
                     ->check(CLI::IsMember({"passkey", "niah", "needles"}));
    sub.add_option("--length", r.length, "--scenario: prompt length in tokens, BOS included")
        ->check(CLI::Range(int64_t{16}, int64_t{1} << 22))
        ->capture_default_str();
    sub.add_option("--depth", r.depth, "--scenario: needle depth, 0 = start, 1 = end")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    sub.add_option("--scenario-seed", r.seed,
                   "--scenario: seed of the haystack and the needle's digits")
        ->capture_default_str();
    sub.add_option("--needles", r.needles,
                   "--scenario niah, needles: needles in the haystack (one is asked for)")
        ->check(CLI::Range(1, 64));
    sub.add_option("--haystack", r.haystack,
                   "--scenario niah: haystack folder (default: resources/haystacks); needles: "
                   "default the split's folder named in the template set");
    f.templates = sub.add_option("--templates", r.templates,
                                 "--scenario needles: template set (default: "
                                 "resources/needles/templates.json beside the haystacks)");
    f.split = sub.add_option("--split", r.split,
                             "--scenario needles: the template split drawn (train or heldout)")
                  ->check(CLI::IsMember({"train", "heldout"}))
                  ->capture_default_str();
    f.distractors = sub.add_option("--distractors", r.distractors,
                                   "--scenario needles: extra needles of the asked template "
                                   "with other keys, never asked")
                        ->check(CLI::Range(0, 64));
}

void ScenarioFlags::check() const {
    const bool scenario_given = given();
    if (!scenario_given && (req.needles != 1 || !req.haystack.empty()))
        throw InputError("--needles and --haystack apply to --scenario only");
    if (scenario_given && req.kind == "passkey" && (req.needles != 1 || !req.haystack.empty()))
        throw InputError("--needles and --haystack apply to --scenario niah or needles only");
    if ((!scenario_given || req.kind != "needles") &&
        templates->count() + split->count() + distractors->count() > 0)
        throw InputError("--templates, --split and --distractors apply to --scenario needles only");
}

}  // namespace kvscope::cli
