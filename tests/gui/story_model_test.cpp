// Guided stories (views/story.h) on real traces recorded by `kvscope run` from the demo model: the
// bundled lessons' traces (resources/lessons, tools/make_lessons.sh), the D2O sample, and a trace
// this test records itself. Every number a beat states is recomputed here from the trace reader
// (traces/trace_reader.h: token states rebuilt from /events, the prefill datasets), not from the
// views' HeadHistory that the story reads, and looked for in the beat's text.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "app/studio/lesson.h"
#include "core/policies/registry.h"
#include "traces/trace_reader.h"
#include "views/reader_trace_model.h"
#include "views/story.h"

namespace fs = std::filesystem;
using namespace kvscope;
using trace::TokenCacheState;
using views::BeatKind;

namespace {

const fs::path kRoot = fs::path(KVSCOPE_SOURCE_DIR);

bool held(const trace::TokenState& s) {
    return s.state == TokenCacheState::kHeld || s.state == TokenCacheState::kQuantized ||
           s.state == TokenCacheState::kDemoted;
}

std::string g4(double x) {
    char b[64];
    std::snprintf(b, sizeof b, "%.4g", x);
    return b;
}

const views::StoryBeat* find(const std::vector<views::StoryBeat>& beats, BeatKind k) {
    for (const auto& b : beats)
        if (b.kind == k) return &b;
    return nullptr;
}

views::StoryPolicy policy_of(const std::string& name) {
    // The registry's names and regimes (core/policies), written out so the test fails when the
    // story stops using them.
    views::StoryPolicy p;
    p.name = name;
    const std::vector<std::pair<std::string, std::string>> names = {
        {"snapkv", "SnapKV"},
        {"pyramidkv", "PyramidKV"},
        {"dynamickv", "DynamicKV"},
        {"h2o", "H2O"},
        {"d2o", "D2O"},
        {"mikv", "MiKV"},
        {"kivi", "KIVI"},
        {"streaming_llm", "StreamingLLM"}};
    for (const auto& [n, f] : names)
        if (n == name) p.full_name = f;
    p.per_step = name == "h2o" || name == "d2o" || name == "mikv" || name == "kivi" ||
                 name == "streaming_llm";
    return p;
}

// The needle's digits as the reader sees them.
std::vector<int64_t> digit_tokens(const trace::TraceReader& r) {
    const auto& sp = r.spans().front();
    std::vector<int64_t> out;
    const auto toks = r.tokens(sp.begin, sp.end);
    for (size_t i = 0; i < toks.size(); ++i)
        if (std::any_of(toks[i].piece.begin(), toks[i].piece.end(),
                        [](char c) { return c >= '0' && c <= '9'; }))
            out.push_back(sp.begin + static_cast<int64_t>(i));
    return out;
}

void check_story(const fs::path& path) {
    SCOPED_TRACE(path.string());
    const trace::TraceReader r(path);
    const trace::TraceInfo info = r.info();
    const int64_t P = info.n_prompt_tokens, last = info.n_steps - 1;
    const std::string policy = r.metadata().policy;
    views::ReaderTraceModel model(path);
    const auto beats = views::make_story(model, policy_of(policy));
    ASSERT_GE(beats.size(), 4u);
    if (std::getenv("KVSCOPE_PRINT_STORIES"))  // to read the stories while writing lessons
        for (const auto& b : beats)
            std::printf("[step %lld] %s\n", (long long)b.step, b.text.c_str());
    for (const auto& b : beats) {
        EXPECT_FALSE(b.text.empty());
        EXPECT_GE(b.step, 0);
        EXPECT_LE(b.step, last);
        EXPECT_LT(b.layer, info.n_layers);
        EXPECT_LT(b.token, info.n_tokens);
    }

    // Overview: prompt length and generated tokens.
    const auto* ov = find(beats, BeatKind::kOverview);
    ASSERT_TRUE(ov);
    EXPECT_NE(ov->text.find(std::to_string(P) + "-token prompt"), std::string::npos) << ov->text;
    EXPECT_NE(ov->text.find("generates " + std::to_string(info.n_steps) + " tokens"),
              std::string::npos);

    // Step 0: tokens kept per head, from the reader's token states.
    int64_t lo = P, hi = 0, quant = 0;
    std::vector<std::vector<std::vector<trace::TokenState>>> at0(size_t(info.n_layers));
    for (int32_t l = 0; l < info.n_layers; ++l)
        for (int32_t h = 0; h < info.n_heads; ++h) {
            at0[size_t(l)].push_back(r.token_states(l, h, 0));
            int64_t n = 0;
            for (int64_t t = 0; t < P; ++t) {
                const auto& s = at0[size_t(l)].back()[size_t(t)];
                n += held(s);
                quant += held(s) && s.bits < 16;
            }
            lo = std::min(lo, n);
            hi = std::max(hi, n);
        }
    const auto* comp = find(beats, BeatKind::kCompression);
    ASSERT_TRUE(comp);
    if (lo == P && hi == P) {
        EXPECT_NE(comp->text.find("keeps all " + std::to_string(P)), std::string::npos)
            << comp->text;
        if (quant > 0) {
            EXPECT_NE(comp->text.find(std::to_string(quant) + " token slots"), std::string::npos)
                << comp->text;
        }
    } else {
        const std::string kept =
            lo == hi ? "keeps " + std::to_string(lo) + " per head"
                     : "keeps " + std::to_string(lo) + " to " + std::to_string(hi) + " per head";
        EXPECT_NE(comp->text.find(kept), std::string::npos) << comp->text << "\nwant: " << kept;
        if (quant > 0) {
            EXPECT_NE(comp->text.find(std::to_string(quant) + " token slots"), std::string::npos)
                << comp->text;
        }
    }

    // The needle: layers keeping / dropping its digits after step 0.
    ASSERT_FALSE(r.spans().empty());
    const auto digits = digit_tokens(r);
    ASSERT_FALSE(digits.empty());
    std::vector<int32_t> gone, full;
    for (int32_t l = 0; l < info.n_layers; ++l) {
        int64_t n = 0, low = 0, total = 0;
        for (const auto& states : at0[size_t(l)])
            for (int64_t t : digits) {
                ++total;
                n += held(states[size_t(t)]);
                low += held(states[size_t(t)]) && states[size_t(t)].bits < 16;
            }
        if (n == 0) gone.push_back(l);
        if (n == total && low == 0) full.push_back(l);
    }
    const auto* nd = find(beats, BeatKind::kNeedle);
    ASSERT_TRUE(nd);
    EXPECT_EQ(nd->token_begin, digits.front());
    EXPECT_EQ(nd->token_end, digits.back() + 1);
    if (!gone.empty()) {
        EXPECT_NE(nd->text.find("dropped in layers " + views::format_ranges(gone)),
                  std::string::npos)
            << nd->text;
    }
    if (!full.empty()) {
        EXPECT_NE(nd->text.find("kept in layers " + views::format_ranges(full)), std::string::npos)
            << nd->text;
    }

    // Why: the explained token is a digit the head dropped at step 0; score and rank by the
    // policy's own score, recomputed from the reader's prefill datasets.
    if (const auto* why = find(beats, BeatKind::kWhy)) {
        ASSERT_GE(why->layer, 0);
        ASSERT_GE(why->head, 0);
        ASSERT_TRUE(std::count(digits.begin(), digits.end(), why->token));
        const auto& ws = at0[size_t(why->layer)][size_t(why->head)][size_t(why->token)];
        EXPECT_TRUE(!held(ws) || ws.bits < 16);
        std::vector<float> score;
        if (policy == "h2o" || policy == "d2o" || policy == "mikv")
            score = r.attn_received(why->layer, why->head);
        if (policy == "snapkv") {
            // SnapKV's pooling (max, the trace's kernel, over the positions before its window).
            const auto& pp = r.metadata().policy_params;
            const int64_t w = std::stoll(pp.at("window").get<std::string>());
            const int64_t k = std::stoll(pp.at("kernel").get<std::string>());
            EXPECT_EQ(pp.at("pool").get<std::string>(), "max");
            const auto raw = r.window_scores(why->layer, why->head);
            score = raw;
            for (int64_t j = 0; j < P - w; ++j) {
                float m = -1e30f;
                for (int64_t i = std::max<int64_t>(0, j - k / 2);
                     i <= std::min<int64_t>(P - w - 1, j + k / 2); ++i)
                    m = std::max(m, raw[size_t(i)]);
                score[size_t(j)] = m;
            }
        }
        if (!score.empty()) {
            int64_t rank = 1;
            for (int64_t j = 0; j < P; ++j) rank += score[size_t(j)] > score[size_t(why->token)];
            EXPECT_NE(why->text.find("scores " + g4(score[size_t(why->token)])), std::string::npos)
                << why->text;
            EXPECT_NE(why->text.find("rank " + std::to_string(rank) + " of " + std::to_string(P)),
                      std::string::npos)
                << why->text;
        }
    }

    // Outcome: answer found, slots held after the last step.
    const auto* out = find(beats, BeatKind::kOutcome);
    ASSERT_TRUE(out);
    EXPECT_EQ(out->step, last);
    const int8_t found = r.answer_found().front();
    if (found >= 0) {
        EXPECT_NE(out->text.find(found ? "is in it" : "is not in it"), std::string::npos)
            << out->text;
    }
    int64_t kept = 0;
    for (int32_t l = 0; l < info.n_layers; ++l)
        for (int32_t h = 0; h < info.n_heads; ++h)
            for (const auto& s : r.token_states(l, h, last)) kept += held(s);
    EXPECT_NE(out->text.find("holds " + std::to_string(kept) + " of"), std::string::npos)
        << out->text;
}

}  // namespace

TEST(Story, FormatRanges) {
    EXPECT_EQ(views::format_ranges({}), "");
    EXPECT_EQ(views::format_ranges({3}), "3");
    EXPECT_EQ(views::format_ranges({0, 1, 2, 5, 7, 8}), "0–2, 5, 7–8");
}

TEST(Story, NumbersOfEveryLessonTraceMatchTheReader) {
    int traces = 0;
    for (const auto& lesson : studio::list_lessons(kRoot / "resources" / "lessons")) {
        check_story(lesson.trace);
        if (!lesson.compare.empty()) check_story(lesson.compare);
        traces += 1 + !lesson.compare.empty();
    }
    EXPECT_GE(traces, 5);
}

TEST(Story, NumbersOfTheD2OSampleMatchTheReader) {
    check_story(kRoot / "resources" / "sample" / "sample.kvtrace.h5");
    views::ReaderTraceModel model(kRoot / "resources" / "sample" / "sample.kvtrace.h5");
    const auto beats = views::make_story(model, policy_of("d2o"));
    // D2O merges: the story says how many, as the reader counts them.
    const trace::TraceReader r(kRoot / "resources" / "sample" / "sample.kvtrace.h5");
    const int64_t last = r.info().n_steps - 1;
    int64_t merged = 0;
    for (int32_t l = 0; l < r.info().n_layers; ++l)
        for (int32_t h = 0; h < r.info().n_heads; ++h)
            for (const auto& s : r.token_states(l, h, last))
                merged += s.state == TokenCacheState::kMerged;
    ASSERT_GT(merged, 0);
    // Decision beats: every (layer, head, token) a decode-step beat names changed state at that
    // step, by the reader's token states (before and after the step).
    int decisions = 0;
    for (const auto& b : beats) {
        if (b.kind != BeatKind::kNeedle || b.step == 0 || b.head < 0) continue;
        ++decisions;
        const auto before = r.token_states(b.layer, b.head, b.step - 1);
        const auto after = r.token_states(b.layer, b.head, b.step);
        EXPECT_NE(before[size_t(b.token)].state, after[size_t(b.token)].state) << b.text;
        const std::string what =
            after[size_t(b.token)].state == TokenCacheState::kMerged ? "merges" : "evicts";
        EXPECT_NE(b.text.find("layer " + std::to_string(b.layer) + " head " +
                              std::to_string(b.head) + " " + what),
                  std::string::npos)
            << b.text;
    }
    EXPECT_GE(decisions, 1);
    bool said = false;
    for (const auto& b : beats)
        said |=
            b.text.find(std::to_string(merged) + " tokens have been merged") != std::string::npos;
    EXPECT_TRUE(said);
}

TEST(Story, TraceRecordedHereByTheCli) {
    const fs::path dir =
        fs::temp_directory_path() / ("kvscope_story_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const fs::path trace = dir / "h2o.kvtrace.h5";
    const std::string cmd =
        std::string(KVSCOPE_CLI_EXE) + " run --model " +
        (kRoot / "resources/models/kvscope-demo").string() +
        " --scenario niah --length 256 --depth 0.4 --scenario-seed 3 --max-new 6"
        " --threads 1 --quiet --policy h2o --ratio 0.3 --trace " +
        trace.string() + " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    check_story(trace);
    fs::remove_all(dir);
}

TEST(Story, LessonScriptSplicesTheStory) {
    const auto lesson = studio::load_lesson(kRoot / "resources" / "lessons" / "observation_window");
    views::ReaderTraceModel model(lesson.trace);
    const auto story = views::make_story(model, policy_of("snapkv"));
    const auto beats = studio::lesson_beats(lesson, story);
    size_t script_text = 0;
    for (const auto& s : lesson.script) script_text += !s.story;
    ASSERT_EQ(beats.size(), script_text + story.size());
    EXPECT_EQ(beats.front().text, lesson.script.front().beat.text);
    EXPECT_EQ(beats.front().view, "token_strip");
    // The story follows the script's beats before the placeholder.
    size_t before = 0;
    while (!lesson.script[before].story) ++before;
    EXPECT_EQ(beats[before].text, story.front().text);
    // Every command recorded one of the lesson's traces with the bundled model.
    for (const auto& c : lesson.commands) {
        EXPECT_EQ(c.rfind("kvscope run ", 0), 0u) << c;
        EXPECT_NE(c.find("resources/models/kvscope-demo"), std::string::npos) << c;
    }
}

TEST(Story, BrokenLessonIsRefusedWithTheFile) {
    const fs::path dir =
        fs::temp_directory_path() / ("kvscope_lesson_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::FILE* f = std::fopen((dir / "lesson.json").c_str(), "w");
    std::fputs(R"({"title": "x", "trace": "missing.kvtrace.h5", "script": [{"text": "a"}]})", f);
    std::fclose(f);
    try {
        studio::load_lesson(dir);
        ADD_FAILURE() << "a lesson without its trace loaded";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("missing.kvtrace.h5"), std::string::npos) << e.what();
    }
    fs::remove_all(dir);
}

TEST(Story, EveryPolicyHasItsExplainerMetadataInTheRegistry) {
    // The explainer cards and the stories draw from these fields only.
    for (const PolicyEntry* e : PolicyRegistry::global().list()) {
        SCOPED_TRACE(e->info.name);
        EXPECT_FALSE(e->info.rule.empty());
        if (e->info.name == "full") continue;
        EXPECT_FALSE(e->info.venue.empty());
        EXPECT_FALSE(e->info.arxiv.empty());
        EXPECT_NE(e->info.picture, RulePicture::kNone);
    }
    for (const char* ranked : {"snapkv", "pyramidkv", "dynamickv", "h2o", "d2o", "mikv", "knorm",
                               "streaming_llm", "tova"})
        EXPECT_FALSE(PolicyRegistry::global().find(ranked)->info.score_name.empty()) << ranked;
}
