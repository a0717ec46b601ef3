// Passkey / NIAH builders: deterministic seeds (bit-identical to tools/train_demo/scenarios.py),
// length and depth within stated tolerances, needle spans that hold the answer, clear errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/scenarios/haystack.h"
#include "core/scenarios/scenario.h"
#include "core/scenarios/splitmix64.h"
#include "core/tokenizer/tokenizer.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
const fs::path kSrc = KVSCOPE_SOURCE_DIR;

// A small byte-level BPE (512 tokens): words cost several tokens, which makes the length and
// depth tolerances below harder to meet than with a real vocabulary.
const Tokenizer& golden_tokenizer() {
    static const std::unique_ptr<Tokenizer> tok =
        load_tokenizer(kSrc / "tests" / "golden" / "tokenizers" / "bytelevel" / "tokenizer.json");
    return *tok;
}

const Haystack& bundled_haystack() {
    static const Haystack h = load_haystack(kSrc / "resources" / "haystacks");
    return h;
}

// Tokens the biggest piece the filler could add or drop costs; placement and filling are exact
// up to one piece.
int64_t max_piece_cost(const Tokenizer& tok, const std::vector<std::string>& sentences,
                       size_t limit) {
    int64_t m = 0;
    for (size_t i = 0; i < std::min(limit, sentences.size()); ++i)
        m = std::max<int64_t>(m,
                              static_cast<int64_t>(tok.encode(" " + sentences[i], false).size()));
    return m;
}

TEST(SplitMix64, MatchesReferenceSequenceAndPythonSeeds) {
    SplitMix64 r(0);
    EXPECT_EQ(r.next(), 0xE220A8397B1DCDAFull);  // the published first output for seed 0
    EXPECT_EQ(r.next(), 0x6E789E6AA1B965F4ull);
    // Values printed by tools/train_demo/scenarios.py (trial_seed, SplitMix64.below).
    EXPECT_EQ(trial_seed(1, ScenarioKind::kPasskey, 1024, 0.5, 0), 14218186209759490117ull);
    EXPECT_EQ(trial_seed(1, ScenarioKind::kNiah, 4096, 0.25, 3), 17489767193035125626ull);
    EXPECT_EQ(trial_seed(7, ScenarioKind::kNiah, 2048, 1.0, 9), 9778538051732290835ull);
    SplitMix64 p(trial_seed(1, ScenarioKind::kPasskey, 1024, 0.5, 0));
    EXPECT_EQ(10000 + p.below(90000), 60203u);
    EXPECT_EQ(p.below(6), 5u);
}

TEST(Haystack, SplitsSentencesLikeTheTrainingRecipe) {
    EXPECT_EQ(normalize_whitespace("  a \t b\n\n c  "), "a b c");
    const std::vector<std::string> want = {"Hello world.", "How are you?Fine!", "ok.", ".", "End"};
    EXPECT_EQ(split_sentences("  Hello  world. How are\n you?Fine! ok. . End"), want);
    EXPECT_TRUE(split_sentences(" \n\t ").empty());
}

TEST(Haystack, LoadsBundledTextsAndKeys) {
    const Haystack& h = bundled_haystack();
    EXPECT_GT(h.sentences.size(), 1000u);
    EXPECT_GE(h.keys.size(), 60u);
    EXPECT_EQ(h.keys.front(), "Amsterdam");
    for (const auto& s : h.sentences) ASSERT_FALSE(s.empty());
}

TEST(Haystack, MissingFolderOrKeysIsAClearError) {
    EXPECT_THROW(load_haystack(kSrc / "no-such-haystack-dir"), InputError);
    const fs::path tmp = fs::temp_directory_path() / "kvscope_haystack_test";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    std::ofstream(tmp / "a.txt") << "One sentence. Two sentences.";
    try {
        load_haystack(tmp);
        ADD_FAILURE() << "expected InputError for a missing needle_keys.list";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("needle_keys.list"), std::string::npos) << e.what();
    }
    fs::remove_all(tmp);
}

TEST(Haystack, DefaultFolderIsFoundBesideTheBundledModelLayout) {
    // resources/models/<model>/ -> resources/haystacks/, with or without a trailing slash, and
    // for a model file inside that folder.
    const fs::path root = fs::temp_directory_path() / "kvscope_layout_test";
    fs::remove_all(root);
    const fs::path model = root / "resources" / "models" / "demo";
    fs::create_directories(model);
    fs::create_directories(root / "resources" / "haystacks");
    std::ofstream(model / "config.json") << "{}";
    const fs::path want = (root / "resources" / "haystacks").lexically_normal();
    EXPECT_EQ(find_default_haystack_dir(model).lexically_normal(), want);
    EXPECT_EQ(find_default_haystack_dir(model / "").lexically_normal(), want);
    EXPECT_EQ(find_default_haystack_dir(model / "config.json").lexically_normal(), want);
    fs::remove_all(root);
}

void check_scenario(const Tokenizer& tok, const Scenario& sc, int64_t length, double depth,
                    int64_t piece_tol) {
    const auto n = static_cast<int64_t>(sc.ids.size());
    // Length: never above the target; below it by at most one piece (the filler stops before a
    // piece that does not fit) plus the drop loop's one piece.
    EXPECT_LE(n, length);
    EXPECT_GE(n, length - 2 * piece_tol) << "length " << length;
    EXPECT_EQ(sc.ids, tok.encode(sc.text, true));
    ASSERT_EQ(sc.needles.size(), 1u);
    const Needle& nd = sc.needles[0];
    EXPECT_TRUE(nd.queried);
    EXPECT_EQ(nd.value, sc.answer);
    ASSERT_LT(nd.token_begin, nd.token_end);
    ASSERT_LE(nd.token_end, n);
    // The needle's tokens decode to the needle, which holds the answer.
    const std::vector<int32_t> span(sc.ids.begin() + nd.token_begin, sc.ids.begin() + nd.token_end);
    const std::string decoded = tok.decode(span, false);
    EXPECT_NE(decoded.find(nd.text), std::string::npos) << decoded;
    EXPECT_NE(decoded.find(sc.answer), std::string::npos);
    // Depth: the haystack tokens before the needle are depth * (haystack tokens), within one
    // piece (needles go between pieces) and 2 tokens of boundary merging.
    const size_t intro_end = sc.text.find("\n\n") + 2;
    const auto intro_tokens =
        static_cast<int64_t>(tok.encode(sc.text.substr(0, intro_end), true).size());
    const size_t q = sc.text.rfind("\n\n");
    const auto question_tokens = static_cast<int64_t>(tok.encode(sc.text.substr(q), false).size());
    const int64_t needle_tokens = nd.token_end - nd.token_begin;
    const int64_t hay = n - intro_tokens - question_tokens - needle_tokens;
    const double want = static_cast<double>(intro_tokens) + depth * static_cast<double>(hay);
    EXPECT_NEAR(static_cast<double>(nd.token_begin), want, static_cast<double>(piece_tol) + 2.0)
        << "depth " << depth << " length " << length;
    // The prompt ends with the question; the answer follows it.
    EXPECT_EQ(sc.text.substr(sc.text.size() - 3), " is");
}

TEST(ScenarioBuilder, PasskeyHitsLengthAndDepth) {
    const Tokenizer& tok = golden_tokenizer();
    ScenarioBuilder b(tok, nullptr);
    const std::vector<std::string> filler = {"The river runs to the sea.",
                                             "The hills are green and quiet.",
                                             "The birds sing in the trees.",
                                             "The wind moves over the fields.",
                                             "Here we go again.",
                                             "Back and forth we go."};
    const int64_t tol = max_piece_cost(tok, filler, filler.size());
    for (int64_t len : {256, 1024, 3000}) {
        for (double d : {0.0, 0.25, 0.5, 0.75, 1.0}) {
            ScenarioOptions o{ScenarioKind::kPasskey, len, d,
                              trial_seed(3, ScenarioKind::kPasskey, len, d, 0), 1};
            const Scenario sc = b.build(o);
            check_scenario(tok, sc, len, d, tol);
            EXPECT_EQ(sc.answer.size(), 5u);
            EXPECT_NE(sc.text.find("What is the pass key? The pass key is"), std::string::npos);
        }
    }
}

TEST(ScenarioBuilder, NiahHitsLengthAndDepthInRealText) {
    const Tokenizer& tok = golden_tokenizer();
    const Haystack& h = bundled_haystack();
    ScenarioBuilder b(tok, &h);
    // Whole sentences are placed as pieces; the longest in the bundled texts bounds the error.
    const int64_t tol = max_piece_cost(tok, h.sentences, h.sentences.size());
    for (int64_t len : {512, 2048}) {
        for (double d : {0.0, 0.5, 1.0}) {
            ScenarioOptions o{ScenarioKind::kNiah, len, d,
                              trial_seed(5, ScenarioKind::kNiah, len, d, 1), 1};
            const Scenario sc = b.build(o);
            check_scenario(tok, sc, len, d, tol);
            EXPECT_EQ(sc.answer.size(), 7u);
            const std::string q = "What is the special magic number for " + sc.needles[0].key + "?";
            EXPECT_NE(sc.text.find(q), std::string::npos);
        }
    }
}

TEST(ScenarioBuilder, SameSeedSameIdsOtherSeedOtherNeedle) {
    const Tokenizer& tok = golden_tokenizer();
    ScenarioBuilder b(tok, &bundled_haystack());
    const ScenarioOptions o{ScenarioKind::kNiah, 600, 0.3, 42, 1};
    const Scenario a = b.build(o);
    EXPECT_EQ(b.build(o).ids, a.ids);
    ScenarioBuilder fresh(tok, &bundled_haystack());  // the count cache does not change results
    EXPECT_EQ(fresh.build(o).text, a.text);
    int differing = 0;
    for (uint64_t s = 1; s <= 5; ++s) {
        ScenarioOptions o2 = o;
        o2.seed = s;
        differing += b.build(o2).answer != a.answer;
    }
    EXPECT_EQ(differing, 5);
}

TEST(ScenarioBuilder, MultiNeedleHasDistinctKeysOneQueriedAndOrderedSpans) {
    const Tokenizer& tok = golden_tokenizer();
    ScenarioBuilder b(tok, &bundled_haystack());
    const Scenario sc = b.build({ScenarioKind::kNiah, 1500, 0.6, 9, 4});
    ASSERT_EQ(sc.needles.size(), 4u);
    EXPECT_EQ(std::count_if(sc.needles.begin(), sc.needles.end(),
                            [](const Needle& n) { return n.queried; }),
              1);
    std::vector<std::pair<int64_t, int64_t>> spans;
    for (const Needle& n : sc.needles) {
        for (const Needle& m : sc.needles) {
            if (&n != &m) {
                EXPECT_NE(n.key, m.key);
            }
        }
        const std::vector<int32_t> ids(sc.ids.begin() + n.token_begin,
                                       sc.ids.begin() + n.token_end);
        EXPECT_NE(tok.decode(ids, false).find(n.value), std::string::npos);
        spans.emplace_back(n.token_begin, n.token_end);
        if (n.queried) {
            EXPECT_EQ(n.value, sc.answer);
            EXPECT_NE(sc.text.rfind(n.key + "? The special magic number for " + n.key + " is"),
                      std::string::npos);
        }
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i) EXPECT_LE(spans[i - 1].second, spans[i].first);
    EXPECT_NE(sc.text.find("Special magic numbers are hidden"), std::string::npos);
}

TEST(ScenarioBuilder, BadOptionsAreClearErrors) {
    const Tokenizer& tok = golden_tokenizer();
    ScenarioBuilder passkey_only(tok, nullptr);
    EXPECT_THROW(passkey_only.build({ScenarioKind::kNiah, 512, 0.5, 1, 1}), InputError);
    EXPECT_THROW(passkey_only.build({ScenarioKind::kPasskey, 512, 1.5, 1, 1}), InputError);
    EXPECT_THROW(passkey_only.build({ScenarioKind::kPasskey, 512, -0.1, 1, 1}), InputError);
    EXPECT_THROW(passkey_only.build({ScenarioKind::kPasskey, 512, 0.5, 1, 2}), InputError);
    try {
        passkey_only.build({ScenarioKind::kPasskey, 20, 0.5, 1, 1});
        ADD_FAILURE() << "expected InputError for a length below the question's";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("too small"), std::string::npos) << e.what();
    }
    ScenarioBuilder b(tok, &bundled_haystack());
    EXPECT_THROW(b.build({ScenarioKind::kNiah, 4000, 0.5, 1, 1000}), InputError);
    EXPECT_THROW(parse_scenario_kind("haystack"), InputError);
    EXPECT_EQ(parse_scenario_kind("niah"), ScenarioKind::kNiah);
}

TEST(ScenarioBuilder, AnswerFoundNeedsTheWholeNumber) {
    EXPECT_TRUE(answer_found(" 4829174.", "4829174"));
    EXPECT_FALSE(answer_found(" 482917", "4829174"));
    EXPECT_FALSE(answer_found("anything", ""));
    // A longer number that starts or ends with the answer is a different number.
    EXPECT_FALSE(answer_found(" 6140999", "61409"));
    EXPECT_FALSE(answer_found("961409", "61409"));
    EXPECT_FALSE(answer_found("code x61409", "61409"));
    EXPECT_TRUE(answer_found("6140999 then 61409.", "61409"));  // a later whole occurrence counts
    EXPECT_TRUE(answer_found("61409", "61409"));
    EXPECT_TRUE(answer_found("(61409)", "61409"));
    // Words and codes: the same rule, case-sensitive; non-ASCII letters continue a word.
    EXPECT_TRUE(answer_found("The name is Ada.", "Ada"));
    EXPECT_FALSE(answer_found("The name is Adam.", "Ada"));
    EXPECT_FALSE(answer_found("caf\xc3\xa9s", "caf\xc3\xa9"));
    EXPECT_TRUE(answer_found("key: ZX-81, done", "ZX-81"));
    EXPECT_TRUE(answer_found("key=-5", "-5"));  // an answer starting with '-' may touch '='
}

// With the bundled demo model's own tokenizer: a 4096-token context is filled to within a few
// tokens (its pieces are short) and never overflows.
TEST(ScenarioBuilder, BundledTokenizerFillsLongContexts) {
    const fs::path demo = kSrc / "resources" / "models" / "kvscope-demo" / "tokenizer.json";
    if (!fs::exists(demo)) GTEST_SKIP() << "demo model not bundled: " << demo;
    const auto tok = load_tokenizer(demo);
    ScenarioBuilder b(*tok, &bundled_haystack());
    for (double d : {0.0, 1.0}) {
        const Scenario sc = b.build(
            {ScenarioKind::kNiah, 4086, d, trial_seed(1, ScenarioKind::kNiah, 4096, d, 0), 1});
        EXPECT_LE(sc.ids.size(), 4086u);
        EXPECT_GE(sc.ids.size(), 4086u - 40u);
        EXPECT_EQ(sc.ids.front(), tok->bos_id());
    }
}

}  // namespace
}  // namespace kvscope
