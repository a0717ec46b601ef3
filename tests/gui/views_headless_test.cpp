// The nine views drawn without a window (HeadlessImGui) from the bundled sample trace: each
// draws real content, exports SVG, and turns clicks / wheel into the shared selection.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "tests/gui/views_test_harness.h"
#include "traces/trace_reader.h"
#include "views/budget_view.h"
#include "views/eviction_timeline_view.h"
#include "views/headless_imgui.h"
#include "views/layer_head_view.h"
#include "views/needle_view.h"
#include "views/reader_trace_model.h"
#include "views/token_strip_view.h"

namespace kvscope::views {
namespace {

namespace fs = std::filesystem;
class ViewsHeadless : public ::testing::Test {
  protected:
    ViewsHeadless() : model_(kSample), im_(1200, 700) {
        state_.step = model_.summary().n_steps - 1;
        state_.layer = 3;
        state_.head = 0;
    }
    // Draws until every queued history is loaded, then once more.
    void settle(View& v, SvgRecorder* svg = nullptr) {
        for (int i = 0; i < 20; ++i) {
            im_.frame(v, model_, state_, theme(ThemeKind::kDark), nullptr, nullptr);
            if (!model_.has_pending()) break;
            model_.load_pending(1e6);
        }
        im_.frame(v, model_, state_, theme(ThemeKind::kDark), nullptr, svg);
    }
    void click(View& v, ImVec2 at) {
        im_.set_mouse(at, false);
        im_.frame(v, model_, state_, theme(ThemeKind::kDark));
        im_.set_mouse(at, true);
        im_.frame(v, model_, state_, theme(ThemeKind::kDark));
        im_.set_mouse(at, false);
        im_.frame(v, model_, state_, theme(ThemeKind::kDark));
        im_.set_mouse(ImVec2(-1e6f, -1e6f), false);
    }
    static ImVec2 centre(const PlotRect& r) {
        return ImVec2((r.min.x + r.max.x) * 0.5f, (r.min.y + r.max.y) * 0.5f);
    }

    ReaderTraceModel model_;
    ViewState state_;
    HeadlessImGui im_;
};

TEST_F(ViewsHeadless, EveryViewDrawsContentAndExportsSvg) {
    std::set<std::string> ids;
    // The compare view needs a trace B of the same prompt: the MiKV sample.
    const ReaderTraceModel mikv(fs::path(KVSCOPE_SOURCE_DIR) /
                                "resources/sample/sample_mikv.kvtrace.h5");
    for (int32_t l = 0; l < mikv.summary().n_layers; ++l) {
        for (int32_t h = 0; h < mikv.summary().n_heads; ++h) mikv.history(l, h, Load::kNow);
    }
    for (auto& view : make_all_views()) {
        ids.insert(view->id());
        im_.set_compare(std::string(view->id()) == "compare" ? &mikv : nullptr);
        settle(*view);
        // Vertex counts of an empty window are ~100; every view draws far more.
        EXPECT_GT(im_.vertices(), 1000) << view->id();
        SvgRecorder svg(ImVec2(0, 0), ImVec2(1200, 700), theme(ThemeKind::kDark).background);
        settle(*view, &svg);
        const std::string doc = svg.finish();
        EXPECT_GT(svg.elements(), 20u) << view->id();
        EXPECT_EQ(doc.rfind("<?xml", 0), 0u) << view->id();
        EXPECT_NE(doc.find("</svg>"), std::string::npos) << view->id();
        EXPECT_EQ(model_.take_error(), "") << view->id();
    }
    EXPECT_EQ(ids.size(), 9u);
}

TEST_F(ViewsHeadless, LayerHeadClickSelectsLayerAndHead) {
    LayerHeadView v;
    settle(v);
    click(v, centre(v.cell_rect(5, 1)));
    EXPECT_EQ(state_.layer, 5);
    EXPECT_EQ(state_.head, 1);
}

TEST_F(ViewsHeadless, LayerHeadCellValueIsFractionKept) {
    trace::TraceReader reader(kSample);
    LayerHeadView v;
    settle(v);
    for (int32_t l : {0, 3, 6}) {
        const auto states = reader.token_states(l, 1, state_.step);
        int held = 0, seen = 0;
        for (const auto& s : states) {
            seen += s.state != TokenCacheState::kAbsent ? 1 : 0;
            held += is_held(s.state) ? 1 : 0;
        }
        EXPECT_NEAR(LayerHeadView::cell_value(model_, LayerHeadView::Metric::kFractionKept, l, 1,
                                              state_.step, 0.0),
                    static_cast<double>(held) / seen, 1e-6);
    }
}

TEST_F(ViewsHeadless, TokenStripClickSelectsToken) {
    TokenStripView v;
    settle(v);
    const auto rect = v.token_rect(17);
    ASSERT_TRUE(rect.has_value());
    click(v, centre(*rect));
    EXPECT_EQ(state_.token, 17);
}

TEST_F(ViewsHeadless, TimelineWheelZoomsAroundTheMouse) {
    EvictionTimelineView v;
    settle(v);
    const double extent = v.axis().extent();
    const ImVec2 at = v.point_of(60, 0);
    im_.set_mouse(at, false);
    im_.set_wheel(3.0f);
    im_.frame(v, model_, state_, theme(ThemeKind::kDark));
    const double span = v.axis().hi() - v.axis().lo();
    EXPECT_NEAR(span, extent / std::pow(1.25, 3.0), 1.0);
    EXPECT_LE(v.axis().lo(), 60.0);
    EXPECT_GE(v.axis().hi(), 60.0);
}

TEST_F(ViewsHeadless, BudgetBarsFollowTheRecordedBudgets) {
    BudgetView v;
    settle(v);
    trace::TraceReader reader(kSample);
    const auto budgets = reader.budgets(state_.step);
    const int32_t H = model_.summary().n_heads;
    // Bar height is proportional to the layer's mean budget: compare two compressed layers' ratio
    // (D2O leaves layers 0, 1 and 7 uncompressed: no bar).
    const PlotRect a = v.bar_rect(3);
    const PlotRect b = v.bar_rect(2);
    const double ba = budgets[3 * static_cast<size_t>(H)];
    const double bb = budgets[2 * static_cast<size_t>(H)];
    ASSERT_GT(bb, 0.0);
    EXPECT_NEAR(a.height() / b.height(), ba / bb, 0.02);
    click(v, centre(v.bar_rect(4)));
    EXPECT_EQ(state_.layer, 4);
}

TEST_F(ViewsHeadless, NeedleLossMatchesSurvivalTable) {
    NeedleView v;
    settle(v);
    trace::TraceReader reader(kSample);
    const TraceSummary& s = model_.summary();
    const auto series = reader.needle_survival(0, 0, s.n_steps);  // [S, L, H]
    int64_t step = -1;
    int32_t layer = -1, head = -1;
    for (int64_t st = 0; st < s.n_steps && step < 0; ++st) {
        for (int32_t l = 0; l < s.n_layers && step < 0; ++l) {
            for (int32_t h = 0; h < s.n_heads && step < 0; ++h) {
                if (series[static_cast<size_t>((st * s.n_layers + l) * s.n_heads + h)] < 1.0f) {
                    step = st;
                    layer = l;
                    head = h;
                }
            }
        }
    }
    const NeedleView::Loss& loss = v.loss(model_, 0);
    EXPECT_EQ(loss.step, step);
    EXPECT_EQ(loss.layer, layer);
    EXPECT_EQ(loss.head, head);
    click(v, centre(v.cell_rect(6, 1)));
    EXPECT_EQ(state_.layer, 6);
    EXPECT_EQ(state_.head, 1);
}

// The Needle view without an explanation lists tokens by prefill attention, labelled as not
// the policy's score; with one (of this trace and its needle) it shows the policy's decisions for
// the selected (layer, head) instead, and ignores one of another trace.
TEST_F(ViewsHeadless, NeedleViewDrawsWithAndWithoutAnExplanation) {
    NeedleView v;
    state_.layer = 4;
    state_.head = 0;
    settle(v);
    EXPECT_FALSE(v.showing_explanation());
    EXPECT_NE(v.list_heading().find("not the policy's score"), std::string::npos);
    const size_t plain_vertices = im_.vertices();
    EXPECT_GT(plain_vertices, 1000u);

    const trace::MarkedSpan& ms = model_.spans().front();
    auto e = std::make_shared<NeedleExplanation>();
    e->trace = model_.summary().path;
    e->policy = "d2o";
    e->score_name = "attention received";
    e->span_begin = ms.begin;
    e->span_end = ms.end;
    e->same_as_trace = true;
    for (int64_t p = ms.begin; p < ms.end; ++p) {
        NeedleDecision kept;
        kept.layer = 4;
        kept.kv_head = 0;
        kept.position = p;
        kept.action = "kept";
        kept.score = 0.5 + 0.01 * static_cast<double>(p - ms.begin);
        kept.rank = 100;
        kept.candidates = 513;
        kept.cutoff = 0.4;
        kept.budget = 259;
        e->decisions.push_back(kept);
        NeedleDecision lost = kept;
        lost.step = 0;
        lost.action = p % 2 ? "merged" : "evicted";
        lost.into_position = p % 2 ? 251 : -1;
        lost.weight = 0.25f;
        lost.score = 0.1;
        lost.cutoff = 1.1;
        lost.rank = 400;
        lost.took_its_place = {{10, 1.1}, {20, 1.2}};
        e->decisions.push_back(lost);
    }
    NeedleDecision other = e->decisions.front();
    other.layer = 5;  // another layer: not shown for layer 4
    e->decisions.push_back(other);
    v.set_explanation(e);
    settle(v);
    EXPECT_TRUE(v.showing_explanation());
    EXPECT_NE(v.list_heading().find("policy's own score"), std::string::npos);
    ASSERT_EQ(v.shown_decisions().size(), static_cast<size_t>(2 * (ms.end - ms.begin)));
    for (const auto& d : v.shown_decisions()) EXPECT_EQ(d.layer, 4);
    EXPECT_GT(im_.vertices(), 1000u);
    EXPECT_EQ(model_.take_error(), "");

    auto elsewhere = std::make_shared<NeedleExplanation>(*e);
    elsewhere->trace = "/some/other.kvtrace.h5";
    v.set_explanation(elsewhere);
    settle(v);
    EXPECT_FALSE(v.showing_explanation());
    EXPECT_TRUE(v.shown_decisions().empty());
}

TEST(Theme, StateColoursAreDistinct) {
    for (ThemeKind k : {ThemeKind::kDark, ThemeKind::kLight}) {
        const Theme& t = theme(k);
        const std::set<ImU32> colours = {t.held,          t.bits_color(8), t.bits_color(4),
                                         t.bits_color(2), t.demoted,       t.merged,
                                         t.evicted,       t.panel};
        EXPECT_EQ(colours.size(), 8u);
        EXPECT_EQ(t.state_color(TokenCacheState::kAbsent, 0), t.panel);
        EXPECT_EQ(t.heat(0.0f), t.heat(-1.0f));  // clamped
        EXPECT_EQ(t.heat(std::nanf("")), t.missing);
    }
}

}  // namespace
}  // namespace kvscope::views
