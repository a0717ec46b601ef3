// The needles scenario (issue 12): the template set loader's errors name the file and the field;
// the builder hides the answer exactly once, never draws held-out templates in train mode (nor
// the reverse), keeps distractors in the asked template with other keys and values, and redraws
// a value that also occurs in the haystack; malformed alternations and placeholders that some
// choice of alternatives loses are errors naming the field. Python parity:
// tests/scripts/scenario_parity_test.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/scenarios/haystack.h"
#include "core/scenarios/needle_templates.h"
#include "core/scenarios/scenario.h"
#include "core/tokenizer/tokenizer.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
const fs::path kSrc = KVSCOPE_SOURCE_DIR;

const NeedleTemplateSet& bundled_templates() {
    static const NeedleTemplateSet s =
        load_needle_templates(kSrc / "resources" / "needles" / "templates.json");
    return s;
}

const Tokenizer& golden_tokenizer() {
    static const std::unique_ptr<Tokenizer> tok =
        load_tokenizer(kSrc / "tests" / "golden" / "tokenizers" / "bytelevel" / "tokenizer.json");
    return *tok;
}

const Haystack& split_haystack(TemplateSplit s) {
    static const Haystack train =
        load_haystack(bundled_templates().haystack_dir(TemplateSplit::kTrain));
    static const Haystack held =
        load_haystack(bundled_templates().haystack_dir(TemplateSplit::kHeldout));
    return s == TemplateSplit::kTrain ? train : held;
}

// A template file with one field changed; returns the error message of loading it.
std::string load_error(const std::string& json_text) {
    const fs::path f = fs::temp_directory_path() / "kvscope_needle_templates_test.json";
    std::ofstream(f) << json_text;
    try {
        load_needle_templates(f);
    } catch (const InputError& e) {
        fs::remove(f);
        EXPECT_NE(std::string(e.what()).find(f.string()), std::string::npos)
            << "the message names the file: " << e.what();
        return e.what();
    }
    fs::remove(f);
    ADD_FAILURE() << "expected InputError for " << json_text;
    return "";
}

std::string small_set(const std::string& tmpl_train, const std::string& tmpl_held) {
    return R"({"haystacks": {"train": "a", "heldout": "b"},
               "pools": {"k": ["Alpha", "Beta", "Gamma"], "w": ["red", "blue"]},
               "templates": [)" +
           tmpl_train + "," + tmpl_held + "]}";
}
const std::string kTrain =
    R"({"id": "t", "split": "train", "format": "sentence", "keys": "k",
        "value": {"kind": "number", "digits": [3, 5]}, "intro": "Intro.",
        "needle": "The number of {key} is {value}.", "questions": ["{key}'s number is"]})";
const std::string kHeld =
    R"({"id": "h", "split": "heldout", "format": "kv", "keys": "k",
        "value": {"kind": "word", "pool": "w"}, "intro": "Intro.",
        "needle": "\n{key}: {value}\n", "questions": ["{key}:"]})";

TEST(NeedleTemplates, BundledSetCoversFormatsEntitiesAndBothSplits) {
    const NeedleTemplateSet& s = bundled_templates();
    for (TemplateSplit split : {TemplateSplit::kTrain, TemplateSplit::kHeldout}) {
        std::set<std::string> formats;
        std::set<int> kinds;
        for (size_t i : s.of_split(split)) {
            formats.insert(s.templates[i].format);
            kinds.insert(static_cast<int>(s.templates[i].value.kind));
        }
        EXPECT_EQ(formats.size(), 4u) << template_split_name(split);
        EXPECT_EQ(kinds.size(), 4u) << template_split_name(split);
    }
    // Many train families, whole held-out families (their word 3-grams against every train
    // expansion: tests/scripts/needle_wording_overlap_test.py), each with key pools of its own.
    EXPECT_GE(s.of_split(TemplateSplit::kTrain).size(), 30u);
    EXPECT_GE(s.of_split(TemplateSplit::kHeldout).size(), 10u);
    for (size_t h : s.of_split(TemplateSplit::kHeldout))
        for (size_t t : s.of_split(TemplateSplit::kTrain)) {
            for (const std::string& n : s.templates[h].needles)
                for (const std::string& m : s.templates[t].needles) EXPECT_NE(n, m);
            EXPECT_NE(s.templates[h].key_pool, s.templates[t].key_pool);
        }
    for (size_t t : s.of_split(TemplateSplit::kTrain))
        EXPECT_GE(s.pools.at(s.templates[t].key_pool).size(), 60u) << s.templates[t].id;
    EXPECT_TRUE(fs::is_directory(s.haystack_dir(TemplateSplit::kHeldout)));
}

TEST(NeedleTemplates, BadFilesAreClearErrorsNamingFileAndField) {
    EXPECT_NE(load_error(small_set(kTrain, kHeld).substr(5)).find("JSON"), std::string::npos);
    std::string bad = kTrain;
    bad.replace(bad.find("{value}."), 7, "it");
    EXPECT_NE(load_error(small_set(bad, kHeld)).find("templates[0].needle"), std::string::npos);
    bad = kHeld;
    bad.replace(bad.find("\"w\""), 3, "\"nope\"");
    EXPECT_NE(load_error(small_set(kTrain, bad)).find("templates[1].value.pool"),
              std::string::npos);
    bad = kTrain;
    bad.replace(bad.find("\"train\""), 7, "\"dev\"");
    EXPECT_NE(load_error(small_set(bad, kHeld)).find("templates[0].split"), std::string::npos);
    bad = kTrain;
    bad.replace(bad.find("[3, 5]"), 6, "[5, 3]");
    EXPECT_NE(load_error(small_set(bad, kHeld)).find("digits"), std::string::npos);
    bad = kHeld;
    bad.replace(bad.find("{key}:\"]"), 6, "{ky}:");
    EXPECT_NE(load_error(small_set(kTrain, bad)).find("questions[0]"), std::string::npos);
    // Both splits must have templates.
    bad = kHeld;
    bad.replace(bad.find("\"heldout\""), 9, "\"train\"");
    bad.replace(bad.find("\"h\""), 3, "\"h2\"");
    EXPECT_NE(load_error(small_set(kTrain, bad)).find("split 'heldout'"), std::string::npos);
    // Alternations: malformed groups, and placeholders that not every choice keeps right.
    bad = kTrain;
    bad.replace(bad.find("The number"), 3, "((The|A)");
    EXPECT_NE(load_error(small_set(bad, kHeld))
                  .find("templates[0].needle: '((' at byte 0 is "
                        "never closed"),
              std::string::npos);
    bad = kHeld;
    bad.replace(bad.find("{key}:\"]"), 6, "((Q||Ask)) {key}:");
    EXPECT_NE(load_error(small_set(kTrain, bad))
                  .find("templates[1].questions[0]: empty "
                        "alternative"),
              std::string::npos);
    bad = kTrain;
    bad.replace(bad.find("Intro."), 6, "Intro)).");
    EXPECT_NE(load_error(small_set(bad, kHeld)).find("templates[0].intro: '))'"),
              std::string::npos);
    bad = kTrain;
    bad.replace(bad.find("is {value}."), 11, "((is {value}|was unknown)).");
    EXPECT_NE(load_error(small_set(bad, kHeld)).find("{value} exactly once"), std::string::npos);
    bad = kTrain;
    bad.replace(bad.find("\"The number of {key}"), 0, "[\"{value} is {key}'s\", ");
    bad.replace(bad.find("is {value}.\""), 12, "is.\"]");
    EXPECT_NE(load_error(small_set(bad, kHeld)).find("templates[0].needle[1]"), std::string::npos);
    bad = kHeld;
    bad.replace(bad.find("{key}:\"]"), 6, "((for {key}|in general)):");
    EXPECT_NE(load_error(small_set(kTrain, bad)).find("has no {key}"), std::string::npos);
    try {
        load_needle_templates(kSrc / "no-such-templates.json");
        ADD_FAILURE() << "expected InputError for a missing file";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("no-such-templates.json"), std::string::npos);
    }
}

TEST(NeedleTemplates, DrawsStayInTheirSplitWithDistinctKeysAndValues) {
    const NeedleTemplateSet& s = bundled_templates();
    // A code is upper-case letters, digits and dashes (no std::regex: GCC 12 warns inside it
    // under -O1 with ASan, and warnings are errors).
    const auto code_ok = [](const std::string& v) {
        return !v.empty() && std::all_of(v.begin(), v.end(), [](char c) {
            return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        });
    };
    for (TemplateSplit split : {TemplateSplit::kTrain, TemplateSplit::kHeldout}) {
        std::set<size_t> drawn;
        std::set<std::string> wordings;  // first needle's text before its key
        for (uint64_t seed = 0; seed < 400; ++seed) {
            SplitMix64 rng(seed);
            const int nn = 1 + static_cast<int>(seed % 3), nd = static_cast<int>(seed % 4);
            const NeedleDraw d = draw_needle_facts(s, split, nn, nd, 0.5, rng);
            ASSERT_EQ(d.facts.size(), static_cast<size_t>(nn + nd));
            ASSERT_LT(d.query, static_cast<size_t>(nn));
            EXPECT_EQ(d.facts[d.query].depth, 0.5);
            std::set<std::string> keys, values;
            for (size_t j = 0; j < d.facts.size(); ++j) {
                const NeedleFact& f = d.facts[j];
                const NeedleTemplate& t = s.templates[f.template_index];
                ASSERT_EQ(t.split, split) << "template " << t.id << " drawn in the other split";
                drawn.insert(f.template_index);
                keys.insert(f.key);
                values.insert(f.value);
                EXPECT_NE(f.text.find(f.value), std::string::npos);
                if (j >= static_cast<size_t>(nn)) {  // a distractor: the asked template
                    EXPECT_EQ(f.template_index, d.facts[d.query].template_index);
                }
                if (t.value.kind == EntitySpec::Kind::kNumber) {
                    EXPECT_GE(static_cast<int>(f.value.size()), t.value.min_digits);
                    EXPECT_LE(static_cast<int>(f.value.size()), t.value.max_digits);
                    EXPECT_NE(f.value[0], '0');
                } else if (t.value.kind == EntitySpec::Kind::kCode) {
                    EXPECT_EQ(f.value.size(), t.value.pattern.size());
                    EXPECT_TRUE(code_ok(f.value)) << f.value;
                }
            }
            EXPECT_EQ(keys.size(), d.facts.size());
            EXPECT_EQ(values.size(), d.facts.size());
            EXPECT_NE(d.question.find(d.facts[d.query].key), std::string::npos);
            for (const std::string& text : {d.intro, d.question, d.facts[0].text}) {
                EXPECT_EQ(text.find("(("), std::string::npos) << text;
                EXPECT_EQ(text.find("{key}"), std::string::npos) << text;
            }
            wordings.insert(d.facts[0].text.substr(0, d.facts[0].text.find(d.facts[0].key)));
        }
        EXPECT_EQ(drawn.size(), s.of_split(split).size()) << "every template is drawn";
        if (split == TemplateSplit::kTrain) {  // alternations: wordings far beyond the families
            EXPECT_GT(wordings.size(), 2 * drawn.size()) << wordings.size();
        }
    }
}

TEST(NeedleTemplates, PromptHoldsTheAnswerOnceFromTheAskedSplit) {
    const Tokenizer& tok = golden_tokenizer();
    const NeedleTemplateSet& s = bundled_templates();
    for (TemplateSplit split : {TemplateSplit::kTrain, TemplateSplit::kHeldout}) {
        ScenarioBuilder b(tok, &split_haystack(split));
        for (uint64_t t = 0; t < 12; ++t) {
            ScenarioOptions o;
            o.kind = ScenarioKind::kNeedles;
            o.length = 768;
            o.depth = static_cast<double>(t % 5) / 4.0;
            o.seed = trial_seed(2, ScenarioKind::kNeedles, 768, o.depth, static_cast<int64_t>(t));
            o.templates = &s;
            o.split = split;
            o.num_needles = 1 + static_cast<int>(t % 2);
            o.distractors = static_cast<int>(t % 3);
            const Scenario sc = b.build(o);
            EXPECT_LE(static_cast<int64_t>(sc.ids.size()), o.length);
            EXPECT_EQ(answer_occurrences(sc.text, sc.answer), 1) << sc.answer;
            EXPECT_EQ(sc.needles.size(), static_cast<size_t>(o.num_needles + o.distractors));
            int queried = 0;
            for (const Needle& n : sc.needles) {
                const std::vector<int32_t> span(sc.ids.begin() + n.token_begin,
                                                sc.ids.begin() + n.token_end);
                EXPECT_NE(tok.decode(span, false).find(n.value), std::string::npos);
                queried += n.queried;
            }
            EXPECT_EQ(queried, 1);
            bool in_split = false;
            for (size_t i : s.of_split(split)) in_split |= s.templates[i].id == sc.template_id;
            EXPECT_TRUE(in_split) << sc.template_id;
        }
    }
}

TEST(NeedleTemplates, ValueFoundInTheHaystackIsRedrawnOrRefused) {
    const fs::path dir = fs::temp_directory_path() / "kvscope_needle_redraw";
    fs::create_directories(dir);
    const fs::path f = dir / "templates.json";
    std::ofstream(f) << small_set(kTrain, kHeld);
    const NeedleTemplateSet s = load_needle_templates(f);
    // Every sentence says "red": a held-out draw of "red" must be redrawn to "blue".
    Haystack hay;
    hay.sentences = {"The barn is red.", "A red sky at night.", "Nothing red stays."};
    hay.keys = {"a", "b", "c", "d", "e", "f", "g", "h"};
    const Tokenizer& tok = golden_tokenizer();
    ScenarioBuilder b(tok, &hay);
    ScenarioOptions o;
    o.kind = ScenarioKind::kNeedles;
    o.length = 200;
    o.templates = &s;
    o.split = TemplateSplit::kHeldout;
    for (uint64_t seed = 0; seed < 20; ++seed) {
        o.seed = seed;
        const Scenario sc = b.build(o);
        EXPECT_EQ(sc.answer, "blue");
        EXPECT_EQ(answer_occurrences(sc.text, "blue"), 1);
    }
    hay.sentences = {"Red and blue: red, blue."};  // both values occur: no draw can work
    ScenarioBuilder b2(tok, &hay);
    EXPECT_THROW(b2.build(o), InputError);
    // Pools too small for the prompt are refused, not looped on.
    o.num_needles = 1;
    o.distractors = 2;  // three facts, two words
    EXPECT_THROW(b.build(o), InputError);
    o.distractors = 0;
    o.templates = nullptr;
    EXPECT_THROW(b.build(o), InputError);
    fs::remove_all(dir);
}

}  // namespace
}  // namespace kvscope
