#pragma once
// Passkey and needle-in-a-haystack (NIAH) prompts with deterministic seeds.
//
// A prompt is one string, encoded once with the model's tokenizer (BOS template included):
//     INTRO "\n\n" haystack-with-needle(s) "\n\n" QUESTION
// and the expected continuation is " " + the needle's digits. Haystack pieces (whole sentences,
// then whole words of one more sentence to come close to the target length) are joined by single
// spaces; a needle goes between pieces where the haystack token count before it is closest to
// depth * (haystack tokens). Passkey hides "The pass key is NNNNN. ..." in repetitive filler;
// NIAH hides "The special magic number for KEY is NNNNNNN." in real text (resources/haystacks).
//
// The "needles" kind draws its needles and question from a template set (needle_templates.h:
// phrasings, formats, entity kinds, train / held-out split) and places them the same way; its
// answer appears in the prompt exactly once (a draw whose answer also occurs in the haystack is
// redrawn from mix_seed({seed, attempt})).
//
// tools/train_demo/scenarios.py builds the same prompts (same texts, SplitMix64 draws, sentence
// splitting and placement), so the demo model was trained on exactly this format and, with the
// same tokenizer, both produce the same ids for the same seed.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/scenarios/haystack.h"
#include "core/scenarios/needle_templates.h"
#include "core/tokenizer/tokenizer.h"

namespace kvscope {

enum class ScenarioKind { kPasskey, kNiah, kNeedles };

const char* scenario_kind_name(ScenarioKind k);
// "passkey" | "niah" | "needles"; throws InputError otherwise.
ScenarioKind parse_scenario_kind(const std::string& name);

// A user's own needle (NIAH): e.g. {"The courier's PIN is 30592.", "Question: what is the
// courier's PIN? Answer:", "30592"}. The needle must contain the answer; it is hidden like the
// built-in one (one needle, at `depth`), with `intro` (or the built-in intro) before the haystack.
struct CustomNeedle {
    std::string needle;
    std::string question;
    std::string answer;
    std::string intro;  // "" = the built-in NIAH intro
};

struct ScenarioOptions {
    ScenarioKind kind = ScenarioKind::kNiah;
    int64_t length = 1024;  // target prompt length in tokens, BOS included; the prompt is <= it
    double depth = 0.5;     // where the (queried) needle sits in the haystack, 0 = first, 1 = last
    uint64_t seed = 0;
    int num_needles = 1;  // NIAH: needles with distinct keys; one (at `depth`) is asked for,
                          // the others sit at seeded random depths
    const CustomNeedle* custom = nullptr;  // NIAH with one needle: a user's phrasing instead
    // needles: the template set (must outlive the build), which split's templates are drawn,
    // and distractors (same template as the asked needle, other keys and values, never asked).
    const NeedleTemplateSet* templates = nullptr;
    TemplateSplit split = TemplateSplit::kTrain;
    int distractors = 0;
};

struct Needle {
    std::string text;   // the needle sentence
    std::string key;    // NIAH key ("" for passkey)
    std::string value;  // the digits
    bool queried = false;
    int64_t token_begin = 0;  // [token_begin, token_end) in Scenario::ids
    int64_t token_end = 0;
};

struct Scenario {
    ScenarioOptions options;
    std::string text;          // the whole prompt
    std::vector<int32_t> ids;  // tokenizer.encode(text, add_special = true)
    std::string answer;        // expected digits (the queried needle's value)
    std::vector<Needle> needles;
    std::string template_id;  // needles: the asked needle's template
};

// The seed of one trial of an accuracy grid cell (kvscope eval and the training recipe's HF
// evaluation use the same): mixes base seed, kind, length, round(depth * 1000) and trial.
uint64_t trial_seed(uint64_t base_seed, ScenarioKind kind, int64_t length, double depth,
                    int64_t trial);

// True when the generated text contains the expected answer as a whole word or number: "6140999"
// does not count as finding "61409" (issue 12). Letters, digits and UTF-8 bytes continue a word.
bool answer_found(const std::string& generated, const std::string& answer);
// Whole-word occurrences of `answer` in `text` (the rule of answer_found).
int64_t answer_occurrences(const std::string& text, const std::string& answer);

class ScenarioBuilder {
  public:
    // `haystack` is needed for NIAH only (may be null for passkey). Both must outlive the builder.
    ScenarioBuilder(const Tokenizer& tok, const Haystack* haystack);

    // Throws InputError on options out of range (length too small for the question and needles,
    // depth outside [0, 1], NIAH without a haystack or with more needles than keys, needles
    // without a template set, or whose answer keeps occurring in the haystack).
    Scenario build(const ScenarioOptions& opts);

  private:
    Scenario build_once(const ScenarioOptions& opts, uint64_t seed);
    int64_t count(const std::string& piece);  // tokens of " " + piece, cached
    int64_t encoded_size(const std::string& text, bool add_special) const;

    const Tokenizer& tok_;
    const Haystack* haystack_;
    std::unordered_map<std::string, int64_t> counts_;
};

}  // namespace kvscope
