#pragma once
// The needle template set of the "needles" scenario (issue 12): resources/needles/templates.json.
// A template hides one fact "{key} -> {value}" in a haystack and asks for it:
//     {"id", "split": "train"|"heldout", "format": "sentence"|"kv"|"list"|"dialogue",
//      "keys": POOL, "value": {"kind": "number", "digits": [LO, HI]} | {"kind": "word"|"name",
//      "pool": POOL} | {"kind": "code", "pattern": "@@-####"}, "intro", "intro_multi"?,
//      "needle": "... {key} ... {value} ..." | [FORM, ...], "questions": ["... {key} ...", ...]}
// and the file holds "pools" (name -> strings) and "haystacks" ({"train", "heldout"} folders,
// relative to the file). intro, intro_multi, needle and questions may hold alternations
// "((A|B|C))" (text_alternation.h), resolved per drawn fact / prompt, so a template is a family
// of wordings; every resolution of a needle holds {value} exactly once and {key} at least once,
// of a question {key} and no {value}. Held-out templates are whole families of their own
// wording, formats, pools and haystack source (tests/scripts/needle_wording_overlap_test.py
// bounds their word 3-grams shared with train expansions); training draws only train templates.
//
// draw_needle_facts() makes the seeded draws of one prompt in the order
// tools/train_demo/scenarios.py (build_needles) makes them, so both build the same prompt.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/scenarios/splitmix64.h"

namespace kvscope {

enum class TemplateSplit { kTrain, kHeldout };

const char* template_split_name(TemplateSplit s);
// "train" | "heldout"; throws InputError otherwise.
TemplateSplit parse_template_split(const std::string& name);

struct EntitySpec {
    enum class Kind { kNumber, kWord, kName, kCode };
    Kind kind = Kind::kNumber;
    int min_digits = 0, max_digits = 0;  // number: digit count drawn in [min, max], 1..18
    std::string pool;                    // word, name: the pool values are drawn from
    std::string pattern;                 // code: '@' -> A..Z, '#' -> 0..9, other bytes as they are
};

struct NeedleTemplate {
    std::string id;
    TemplateSplit split = TemplateSplit::kTrain;
    std::string format;
    std::string key_pool;
    EntitySpec value;
    std::string intro, intro_multi;
    std::vector<std::string> needles;    // forms; each holds {value} once, {key} at least once
    std::vector<std::string> questions;  // each holds {key}
};

struct NeedleTemplateSet {
    std::filesystem::path file;
    std::vector<NeedleTemplate> templates;  // in file order
    std::map<std::string, std::vector<std::string>> pools;
    std::filesystem::path haystack_train, haystack_heldout;  // resolved against file's folder

    // Indices (file order) of the templates of one split.
    std::vector<size_t> of_split(TemplateSplit s) const;
    const std::filesystem::path& haystack_dir(TemplateSplit s) const {
        return s == TemplateSplit::kTrain ? haystack_train : haystack_heldout;
    }
};

// Throws InputError naming the file and the field ("templates[3].value.digits: ...") on a
// missing or unreadable file, bad JSON, unknown fields' values, a pool that does not exist or is
// empty, a needle without exactly one {value}, a malformed alternation (unclosed "((", stray
// "))", nested group, empty alternative), or a split without templates.
NeedleTemplateSet load_needle_templates(const std::filesystem::path& file);

// resources/needles/templates.json beside the haystacks folder the model's layout implies (see
// find_default_haystack_dir); empty when there is none.
std::filesystem::path find_default_templates_file(const std::filesystem::path& model_path);

// `text` with every {key} and {value} replaced (alternations are resolved before).
std::string fill_template(const std::string& text, const std::string& key,
                          const std::string& value);

// One hidden fact of a prompt.
struct NeedleFact {
    size_t template_index = 0;
    std::string key, value, text;
    double depth = 0;
};

struct NeedleDraw {
    std::vector<NeedleFact> facts;  // `num_needles` facts, then the distractors
    size_t query = 0;               // index of the asked fact (< num_needles)
    std::string intro, question;
};

// Draws, in this order: per needle a template of the split, a key (unused so far), a value
// (unused so far), the needle form and its alternations (left to right); the queried needle; per
// distractor (same template as the queried needle) a key, a value, the form and its alternations;
// every non-queried fact's depth (below(1001) / 1000); the question form of the queried template
// and its alternations (filled with the queried fact's key); the intro's alternations (intro for
// one fact, intro_multi for several). The queried fact sits at `depth`. Throws InputError when a
// pool has fewer distinct entries than the prompt needs.
NeedleDraw draw_needle_facts(const NeedleTemplateSet& set, TemplateSplit split, int num_needles,
                             int distractors, double depth, SplitMix64& rng);

}  // namespace kvscope
