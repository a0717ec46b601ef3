// The NIAH grid (views/niah_grid_model.h, app/studio/sweep_loader.h, views/niah_grid_view.h) on
// a real small sweep recorded here by `kvscope niah`: the grid's per-cell counts equal counts
// made independently from summary.csv, baselines pair with their cell, labels, errors naming the
// file, and the view draws headless and turns a click into a request or a trial chooser.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>

#include "app/recorder/niah_sweep.h"
#include "app/studio/sweep_loader.h"
#include "views/headless_imgui.h"
#include "views/niah_grid_model.h"
#include "views/niah_grid_view.h"
#include "views/reader_trace_model.h"

namespace kvscope::views {
namespace {

namespace fs = std::filesystem;
const fs::path kSource(KVSCOPE_SOURCE_DIR);

// 2 lengths x 2 depths x 2 trials = 8 cells; jobs full + snapkv x {0.2, 0.5} = 24 rows.
class NiahGridTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        dir_ = fs::temp_directory_path() / ("kvscope-niah-grid-test-" + std::to_string(::getpid()));
        fs::remove_all(dir_);
        const std::string cmd = std::string(KVSCOPE_CLI_EXE) + " niah --model " +
                                (kSource / "resources/models/kvscope-demo").string() +
                                " --lengths 192,256 --depths 0,1 --trials 2 --policies snapkv"
                                " --ratios 0.2,0.5 --max-new 6 --threads 2 --out " +
                                dir_.string() + " > /dev/null 2>&1";
        ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
    static void TearDownTestSuite() { fs::remove_all(dir_); }
    static fs::path dir_;
};
fs::path NiahGridTest::dir_;

int column(const std::vector<std::string>& header, const std::string& name) {
    for (size_t i = 0; i < header.size(); ++i)
        if (header[i] == name) return static_cast<int>(i);
    ADD_FAILURE() << "no column " << name;
    return 0;
}

TEST_F(NiahGridTest, CountsEqualThoseOfTheCsv) {
    const NiahGrid grid = studio::load_niah_sweep(dir_);
    EXPECT_TRUE(grid.row_errors.empty()) << grid.row_errors.front();
    ASSERT_EQ(grid.rows.size(), 24u);
    EXPECT_EQ(grid.expected_rows, 24);
    ASSERT_EQ(grid.jobs.size(), 3u);
    EXPECT_TRUE(grid.jobs[0].baseline());
    EXPECT_EQ(grid.job_label(1), "snapkv · ratio 0.2");
    EXPECT_EQ(grid.job_label(2), "snapkv · ratio 0.5");

    // Independent counts: straight from the CSV's columns by name.
    const auto table = record::read_csv(dir_ / "summary.csv");
    ASSERT_EQ(table.size(), 25u);
    const auto& h = table.front();
    const int c_policy = column(h, "policy"), c_budget = column(h, "budget"),
              c_length = column(h, "length"), c_depth = column(h, "depth"),
              c_found = column(h, "found"), c_kept = column(h, "needle_final_mean");
    struct Count {
        int rows = 0, found = 0;
        double kept = 0;
    };
    std::map<std::tuple<std::string, std::string, int64_t, double>, Count> expected;
    int found_total = 0;
    for (size_t i = 1; i < table.size(); ++i) {
        const auto& r = table[i];
        Count& c =
            expected[{r[c_policy], r[c_budget], std::stoll(r[c_length]), std::stod(r[c_depth])}];
        ++c.rows;
        c.found += r[c_found] == "1";
        c.kept += std::stod(r[c_kept]);
        found_total += r[c_found] == "1";
    }
    ASSERT_EQ(expected.size(), 3u * 2u * 2u);
    int seen_found = 0;
    for (const auto& [key, count] : expected) {
        const auto& [policy, budget, length, depth] = key;
        const int j = grid.job_index(policy, budget);
        const int l = grid.length_index(length);
        const int d = grid.depth_index(depth);
        ASSERT_GE(j, 0) << policy << " " << budget;
        ASSERT_GE(l, 0);
        ASSERT_GE(d, 0);
        const NiahCellStats s = grid.stats(j, l, d);
        EXPECT_EQ(s.rows, count.rows) << policy << budget << " " << length << " " << depth;
        EXPECT_EQ(s.rows, 2);  // the trials
        EXPECT_EQ(s.found, count.found) << policy << budget << " " << length << " " << depth;
        EXPECT_NEAR(s.found_fraction(), static_cast<double>(count.found) / count.rows, 1e-12);
        // Survival is written with %.9g: the means agree to 1e-8.
        EXPECT_NEAR(s.needle_final, count.kept / count.rows, 1e-8);
        seen_found += s.found;
        for (int r : s.row_indices) {
            const NiahRow& row = grid.rows[static_cast<size_t>(r)];
            EXPECT_EQ(row.policy, policy);
            EXPECT_EQ(row.length, length);
            // The baseline row is the same sweep cell and trial, policy full, with a trace.
            const int b = grid.baseline_row(r);
            ASSERT_GE(b, 0);
            const NiahRow& base = grid.rows[static_cast<size_t>(b)];
            EXPECT_EQ(base.policy, "full");
            EXPECT_EQ(base.cell, row.cell);
            EXPECT_EQ(base.trial, row.trial);
            EXPECT_TRUE(fs::exists(dir_ / base.trace)) << base.trace;
            EXPECT_TRUE(fs::exists(dir_ / row.trace)) << row.trace;
        }
    }
    EXPECT_EQ(seen_found, found_total);
    // A filter that matches every row changes nothing; one that matches none empties the cell.
    ASSERT_EQ(grid.haystack_names.size(), 1u);
    EXPECT_EQ(grid.stats(1, 0, 0, 0, 0).rows, 2);
    EXPECT_EQ(grid.stats(1, 0, 0, 5, -1).rows, 2);  // out of range = all
    EXPECT_TRUE(std::isnan(grid.stats(7, 0, 0).found_fraction()));
}

TEST_F(NiahGridTest, RunningSweepsAndBadFilesAreReportedNamingTheFile) {
    auto table = record::read_csv(dir_ / "summary.csv");
    NiahSweepAxes axes;
    axes.lengths = {192, 256};
    axes.depths = {0, 1};
    axes.trials = 2;
    axes.policies = {"snapkv"};
    axes.budgets = {0.2, 0.5};
    // A row being written (short, last) is not an error; the same row mid-file is.
    auto partial = table;
    partial.back().resize(5);
    NiahGrid g = build_niah_grid(axes, partial, "x/summary.csv");
    EXPECT_EQ(g.rows.size(), 23u);
    EXPECT_TRUE(g.row_errors.empty());
    std::swap(partial[3], partial.back());
    g = build_niah_grid(axes, partial, "x/summary.csv");
    EXPECT_EQ(g.rows.size(), 23u);
    ASSERT_EQ(g.row_errors.size(), 1u);
    EXPECT_EQ(g.row_errors[0], "x/summary.csv line 4: 5 columns, expected 23");
    auto bad = table;
    bad[2][column(table[0], "found")] = "yes";
    g = build_niah_grid(axes, bad, "x/summary.csv");
    ASSERT_EQ(g.row_errors.size(), 1u);
    EXPECT_NE(g.row_errors[0].find("line 3"), std::string::npos) << g.row_errors[0];
    // Equal-memory budgets are labelled as such.
    axes.budget_kind = "memory";
    axes.budgets = {0.25};
    g = build_niah_grid(axes, {table.front()}, "x/summary.csv");
    ASSERT_EQ(g.jobs.size(), 2u);
    EXPECT_EQ(g.jobs[1].budget, "0.25");
    EXPECT_EQ(g.budget_label(g.jobs[1]), "mem 0.25");
    EXPECT_EQ(g.expected_rows, 8 * 2);
    // Not a summary / not a sweep folder: errors name the file.
    try {
        build_niah_grid(axes, {{"a", "b"}}, "x/summary.csv");
        ADD_FAILURE() << "a foreign header was accepted";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("x/summary.csv"), std::string::npos) << e.what();
    }
    const fs::path empty = dir_.string() + "-empty";
    fs::create_directories(empty);
    try {
        studio::load_niah_sweep(empty);
        ADD_FAILURE() << "a folder without sweep.json was accepted";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find((empty / "sweep.json").string()), std::string::npos)
            << e.what();
    }
    // A sweep that has written its spec but no row yet: an empty grid with every cell to come.
    fs::copy_file(dir_ / "sweep.json", empty / "sweep.json");
    const NiahGrid none = studio::load_niah_sweep(empty);
    EXPECT_TRUE(none.rows.empty());
    EXPECT_EQ(none.expected_rows, 24);
    EXPECT_EQ(none.stats(1, 0, 0).rows, 0);
    std::ofstream(empty / "summary.csv") << "not,a,summary\n";
    try {
        studio::load_niah_sweep(empty);
        ADD_FAILURE() << "a bad summary was accepted";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find((empty / "summary.csv").string()), std::string::npos)
            << e.what();
    }
    fs::remove_all(empty);
}

// HeadlessImGui drives Views; this one draws the grid and ignores the trace.
class GridAsView final : public View {
  public:
    explicit GridAsView(const NiahGrid& grid) : grid_(grid) {}
    const char* id() const override { return "niah_grid"; }
    const char* title() const override { return "NIAH grid"; }
    void draw(ViewContext& ctx) override { view.draw(&grid_, ctx.theme, ctx.svg); }
    NiahGridView view;

  private:
    const NiahGrid& grid_;
};

TEST_F(NiahGridTest, ViewDrawsHeadlessAndClicksAskToOpen) {
    const NiahGrid grid = studio::load_niah_sweep(dir_);
    const ReaderTraceModel model(kSource / "resources/sample/sample.kvtrace.h5");
    ViewState state;
    HeadlessImGui im(900, 700);
    GridAsView v(grid);
    const Theme& th = theme(ThemeKind::kDark);
    for (int i = 0; i < 2; ++i) im.frame(v, model, state, th);
    EXPECT_GT(im.vertices(), 1000);
    SvgRecorder svg(ImVec2(0, 0), ImVec2(900, 700), th.background);
    im.frame(v, model, state, th, nullptr, &svg);
    EXPECT_GT(svg.elements(), 4u + 2u * 2u + 2u);  // cells, baseline row, labels
    const std::string doc = svg.finish();
    EXPECT_NE(doc.find("snapkv · ratio 0.2"), std::string::npos);

    // Cell colours follow the found fraction: as many cells filled with the colour of 0, 1/2 and
    // 1 as the grid has cells (job 1 and the baseline row) of that fraction. (The colour bar's
    // 32 steps sit at (i + 0.5) / 32, never on these.)
    auto count = [](const std::string& text, const std::string& what) {
        size_t n = 0;
        for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
            ++n;
        return n;
    };
    size_t total = 0;
    for (const double f : {0.0, 0.5, 1.0}) {
        SvgRecorder one(ImVec2(0, 0), ImVec2(1, 1), th.background);
        one.rect(ImVec2(0, 0), ImVec2(1, 1), NiahGridView::score_colour(th, f));
        const std::string one_doc = one.finish();
        const size_t p0 = one_doc.rfind(" fill=\"#");
        ASSERT_NE(p0, std::string::npos);
        const std::string fill = one_doc.substr(p0, 15);  // ` fill="#rrggbb"`
        size_t expected = 0;
        for (int l = 0; l < 2; ++l) {
            for (int d = 0; d < 2; ++d)
                expected += std::abs(grid.stats(1, l, d).found_fraction() - f) < 1e-9;
            const int found = grid.stats(0, l, 0).found + grid.stats(0, l, 1).found;
            const int rows = grid.stats(0, l, 0).rows + grid.stats(0, l, 1).rows;
            expected += std::abs(static_cast<double>(found) / rows - f) < 1e-9;
        }
        EXPECT_EQ(count(doc, fill + "/>"), expected) << "fraction " << f << " " << fill;
        total += expected;
    }
    EXPECT_GE(total, 4u);  // job 1's four cells (two trials each) are all 0, 1/2 or 1

    v.view.select_job(grid, 2);
    EXPECT_EQ(v.view.selected_job(grid), 2);
    v.view.set_metric(NiahGridView::Metric::kNeedleKept);
    im.frame(v, model, state, th);
    EXPECT_GT(im.vertices(), 1000);

    // A click on a cell of two trials opens the chooser, not a run.
    const PlotRect r = v.view.cell_rect(1, 1);
    ASSERT_GT(r.width(), 10.0f);
    const ImVec2 at((r.min.x + r.max.x) * 0.5f, (r.min.y + r.max.y) * 0.5f);
    im.set_mouse(at, false);
    im.frame(v, model, state, th);
    im.set_mouse(at, true);
    im.frame(v, model, state, th);
    im.set_mouse(at, false);
    im.frame(v, model, state, th);
    EXPECT_EQ(v.view.take_open_request(), -1);
    const NiahCellStats s = grid.stats(2, 1, 1);
    EXPECT_EQ(v.view.chooser_rows(), s.row_indices);
    ASSERT_EQ(s.row_indices.size(), 2u);
}

TEST(NiahGridColours, RedToGreen) {
    const Theme& th = theme(ThemeKind::kDark);
    const ImU32 lo = NiahGridView::score_colour(th, 0.0), hi = NiahGridView::score_colour(th, 1.0);
    auto red = [](ImU32 c) { return static_cast<int>((c >> IM_COL32_R_SHIFT) & 0xFF); };
    auto green = [](ImU32 c) { return static_cast<int>((c >> IM_COL32_G_SHIFT) & 0xFF); };
    EXPECT_GT(red(lo), green(lo) + 100);
    EXPECT_GT(green(hi), red(hi) + 80);
    EXPECT_EQ(NiahGridView::score_colour(th, std::nan("")), th.missing);
}

}  // namespace
}  // namespace kvscope::views
