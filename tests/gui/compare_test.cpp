// Compare mode drawn headless: the diff overlay of the token strip and the eviction timeline, and
// the compare view, on real traces of one prompt: the D2O sample (A) and a SnapKV run of the same
// scenario recorded here by `kvscope run` (B). Expected numbers come from trace::TraceReader's
// token states, independently of HeadHistory and the views.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>

#include "traces/trace_reader.h"
#include "views/compare_diff.h"
#include "views/compare_view.h"
#include "views/eviction_timeline_view.h"
#include "views/headless_imgui.h"
#include "views/reader_trace_model.h"
#include "views/token_strip_view.h"

namespace kvscope::views {
namespace {

namespace fs = std::filesystem;
const fs::path kSource(KVSCOPE_SOURCE_DIR);
const fs::path kSample = kSource / "resources/sample/sample.kvtrace.h5";

// Removed when the test program exits.
struct TempDir {
    fs::path path;
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

fs::path temp_dir() {
    static const TempDir dir{[] {
        fs::path d =
            fs::temp_directory_path() / ("kvscope_compare_test_" + std::to_string(::getpid()));
        fs::create_directories(d);
        return d;
    }()};
    return dir.path;
}

// The sample's scenario (resources/sample/make_sample.sh) under another policy, or another seed
// (another haystack: a different prompt of the same length).
fs::path record(const std::string& name, const std::string& policy_args, int seed = 1) {
    fs::path out = temp_dir() / (name + ".kvtrace.h5");
    if (fs::exists(out)) return out;
    const std::string cmd = std::string(KVSCOPE_CLI_EXE) + " run --model " +
                            (kSource / "resources/models/kvscope-demo").string() +
                            " --scenario niah --length 512 --depth 0.5 --scenario-seed " +
                            std::to_string(seed) + " --max-new 16 --threads 2 --quiet " +
                            policy_args + " --trace " + out.string() + " > /dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return out;
}

struct Expected {
    int64_t only_a = 0;
    int64_t only_b = 0;
    int64_t both = 0;
};

// Counts from the readers' token states; head -1 sums the (head, token) pairs of every head.
Expected expected_diff(const trace::TraceReader& a, const trace::TraceReader& b, int32_t layer,
                       int32_t head, int64_t step) {
    Expected e;
    const int32_t h0 = head < 0 ? 0 : head;
    const int32_t h1 = head < 0 ? a.info().n_heads : head + 1;
    for (int32_t h = h0; h < h1; ++h) {
        const auto sa = a.token_states(layer, h, step);
        const auto sb = b.token_states(layer, h, step);
        const size_t n = std::max(sa.size(), sb.size());
        for (size_t t = 0; t < n; ++t) {
            const bool in_a = t < sa.size() && is_held(sa[t].state);
            const bool in_b = t < sb.size() && is_held(sb[t].state);
            e.only_a += in_a && !in_b;
            e.only_b += in_b && !in_a;
            e.both += in_a && in_b;
        }
    }
    return e;
}

class CompareHeadless : public ::testing::Test {
  protected:
    CompareHeadless()
        : b_path_(record("snapkv", "--policy snapkv --ratio 0.25")),
          a_(kSample),
          b_(b_path_),
          reader_a_(kSample),
          reader_b_(b_path_),
          im_(1200, 700) {
        state_.step = std::min(a_.summary().n_steps, b_.summary().n_steps) - 1;
        state_.layer = 3;
        state_.head = 0;
        im_.set_compare(&b_);
    }
    void settle(View& v, SvgRecorder* svg = nullptr) {
        for (int i = 0; i < 40; ++i) {
            im_.frame(v, a_, state_, theme(ThemeKind::kDark));
            if (!a_.has_pending() && !b_.has_pending()) break;
            a_.load_pending(1e6);
            b_.load_pending(1e6);
        }
        im_.frame(v, a_, state_, theme(ThemeKind::kDark), nullptr, svg);
    }
    void click(View& v, ImVec2 at) {
        im_.set_mouse(at, false);
        im_.frame(v, a_, state_, theme(ThemeKind::kDark));
        im_.set_mouse(at, true);
        im_.frame(v, a_, state_, theme(ThemeKind::kDark));
        im_.set_mouse(at, false);
        im_.frame(v, a_, state_, theme(ThemeKind::kDark));
        im_.set_mouse(ImVec2(-1e6f, -1e6f), false);
    }

    fs::path b_path_;
    ReaderTraceModel a_;
    ReaderTraceModel b_;
    trace::TraceReader reader_a_;
    trace::TraceReader reader_b_;
    ViewState state_;
    HeadlessImGui im_;
};

TEST_F(CompareHeadless, TracesOfOnePromptAreComparable) {
    EXPECT_EQ(compare_mismatch(a_, b_), "");
    EXPECT_EQ(compare_mismatch(b_, a_), "");
}

TEST_F(CompareHeadless, OverlayCountsMatchTheReadersTokenStates) {
    const int64_t last = state_.step;
    TokenStripView strip;
    EvictionTimelineView timeline;
    int64_t any_a = 0, any_b = 0;
    struct Case {
        int32_t layer, head;
        int64_t step;
    };
    for (const Case c : {Case{3, 0, last}, Case{4, 1, 5}, Case{2, -1, last}, Case{6, -1, 1},
                         Case{0, 1, 0}, Case{5, 0, last / 2}}) {
        state_.select_layer_head(c.layer, c.head);
        state_.set_step(c.step);
        const Expected e = expected_diff(reader_a_, reader_b_, c.layer, c.head, c.step);
        any_a += e.only_a;
        any_b += e.only_b;
        for (View* v : {static_cast<View*>(&strip), static_cast<View*>(&timeline)}) {
            settle(*v);
            const auto& shown = v == &strip ? strip.shown_diff() : timeline.shown_diff();
            ASSERT_TRUE(shown.has_value()) << v->id();
            // Counts of tokens: exact.
            EXPECT_EQ(shown->only_a, e.only_a)
                << v->id() << " L" << c.layer << " H" << c.head << " step " << c.step;
            EXPECT_EQ(shown->only_b, e.only_b)
                << v->id() << " L" << c.layer << " H" << c.head << " step " << c.step;
            EXPECT_EQ(shown->both, e.both) << v->id();
            EXPECT_EQ(shown->missing, 0) << v->id();
            EXPECT_EQ(shown->heads, c.head < 0 ? a_.summary().n_heads : 1) << v->id();
        }
    }
    // D2O at 0.5 and SnapKV at 0.25 keep different tokens both ways: the test sees both colours.
    EXPECT_GT(any_a, 0);
    EXPECT_GT(any_b, 0);
    // Unticked, no overlay is drawn (and no counts reported).
    state_.set_compare_diff(false);
    settle(strip);
    EXPECT_FALSE(strip.shown_diff().has_value());
    // Without a B neither.
    state_.set_compare_diff(true);
    im_.set_compare(nullptr);
    settle(strip);
    EXPECT_FALSE(strip.shown_diff().has_value());
}

TEST_F(CompareHeadless, CompareViewOverlapIsJaccardOfTheHeldSets) {
    CompareView v;
    settle(v);
    EXPECT_GT(im_.vertices(), 1000);
    const TraceSummary& s = a_.summary();
    for (int32_t l = 0; l < s.n_layers; ++l) {
        for (int32_t h = 0; h < s.n_heads; ++h) {
            const Expected e = expected_diff(reader_a_, reader_b_, l, h, state_.step);
            const HeldDiff& d = v.cell_diff(l, h);
            EXPECT_EQ(d.only_a, e.only_a) << "L" << l << " H" << h;
            EXPECT_EQ(d.only_b, e.only_b) << "L" << l << " H" << h;
            EXPECT_EQ(d.both, e.both) << "L" << l << " H" << h;
            // A ratio of two exact counts: equal to double rounding.
            EXPECT_NEAR(
                d.jaccard(),
                static_cast<double>(e.both) / static_cast<double>(e.both + e.only_a + e.only_b),
                1e-12);
        }
    }
    // Bars: A's and B's recorded bytes of a layer, in proportion.
    const PlotRect a3 = v.bar_rect(3, false);
    const PlotRect b3 = v.bar_rect(3, true);
    const double bytes_a = static_cast<double>(a_.bytes_held(state_.step, 3));
    const double bytes_b = static_cast<double>(b_.bytes_held(state_.step, 3));
    ASSERT_GT(bytes_a, 0.0);
    ASSERT_GT(a3.width(), 1.0f);
    EXPECT_NEAR(b3.width() / a3.width(), bytes_b / bytes_a, 0.01);  // float pixel widths
    // A click on a cell selects its layer and head everywhere.
    const PlotRect cell = v.cell_rect(6, 1);
    click(v, ImVec2((cell.min.x + cell.max.x) * 0.5f, (cell.min.y + cell.max.y) * 0.5f));
    EXPECT_EQ(state_.layer, 6);
    EXPECT_EQ(state_.head, 1);
    SvgRecorder svg(ImVec2(0, 0), ImVec2(1200, 700), theme(ThemeKind::kDark).background);
    settle(v, &svg);
    EXPECT_GT(svg.elements(), 40u);  // 16 cells + 16 bars + labels
    EXPECT_EQ(a_.take_error(), "");
    EXPECT_EQ(b_.take_error(), "");
}

TEST_F(CompareHeadless, CompareViewWithoutBDrawsAHint) {
    im_.set_compare(nullptr);
    CompareView v;
    const size_t before = a_.cached_history_bytes();
    settle(v);
    EXPECT_GT(im_.vertices(), 200);                // the hint's glyphs
    EXPECT_EQ(a_.cached_history_bytes(), before);  // reads nothing of A
    EXPECT_EQ(v.cell_diff(0, 0), HeldDiff());
    // And in the light theme too.
    im_.frame(v, a_, state_, theme(ThemeKind::kLight));
    EXPECT_GT(im_.vertices(), 200);
}

TEST(CompareMismatch, NamesWhatDiffers) {
    const ReaderTraceModel a(kSample);
    // Another model shape: the synthetic trace tool's 4 layers x 3 heads.
    const fs::path synthetic = temp_dir() / "synthetic.kvtrace.h5";
    const std::string cmd = std::string(KVSCOPE_SYNTHETIC_TOOL) + " --out " + synthetic.string() +
                            " --layers 4 --heads 3 --steps 4 > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const ReaderTraceModel shape(synthetic);
    const std::string m = compare_mismatch(a, shape);
    EXPECT_NE(m.find("model shape differs"), std::string::npos) << m;
    EXPECT_NE(m.find("4 layers x 3 cache heads"), std::string::npos) << m;
    // Same model and length, another haystack: the prompt differs at some token.
    const ReaderTraceModel other(record("seed2", "--policy full", 2));
    const std::string p = compare_mismatch(a, other);
    EXPECT_NE(p.find("prompt differs"), std::string::npos) << p;
}

TEST(Theme, DiffColoursAreDistinct) {
    for (ThemeKind k : {ThemeKind::kDark, ThemeKind::kLight}) {
        const Theme& t = theme(k);
        const std::set<ImU32> colours = {t.only_a,  t.only_b, t.held,   t.merged,   t.evicted,
                                         t.demoted, t.panel,  t.needle, t.selection};
        EXPECT_EQ(colours.size(), 9u);
        // A token differing in every head shows the pure colour; alike, the dimmed state.
        EXPECT_EQ(diff_colour(t, TokenDiff{2, 0}, 2, t.held), t.only_a);
        EXPECT_EQ(diff_colour(t, TokenDiff{0, 1}, 1, t.held), t.only_b);
        EXPECT_EQ(diff_colour(t, TokenDiff{0, 0}, 1, t.held), mix(t.panel, t.held, 0.35f));
    }
}

}  // namespace
}  // namespace kvscope::views
