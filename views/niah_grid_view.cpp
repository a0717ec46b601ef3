#include "views/niah_grid_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "views/view.h"

namespace kvscope::views {

namespace {

std::string fmt(const char* f, double v) {
    char buf[48];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

std::string join_lengths(const std::vector<int64_t>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s;
}

std::string join_depths(const std::vector<double>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + fmt("%g", v[i]);
    return s;
}

std::string join(const std::vector<std::string>& v, const char* empty_as) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + (v[i].empty() ? empty_as : v[i]);
    return s;
}

// One line of a generated output: newlines shown as ↵, long outputs cut.
std::string one_line(const std::string& text, size_t max_bytes) {
    std::string s;
    for (char c : text) {
        if (c == '\n') {
            s += "\xe2\x86\xb5";
        } else if (c != '\r') {
            s += c;
        }
    }
    if (s.size() > max_bytes) {
        size_t cut = max_bytes;
        while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // UTF-8
        s = s.substr(0, cut) + "...";
    }
    return s;
}

}  // namespace

ImU32 NiahGridView::score_colour(const Theme& theme, double t) {
    if (std::isnan(t)) return theme.missing;
    const float x = static_cast<float>(std::clamp(t, 0.0, 1.0));
    const ImU32 red = IM_COL32(196, 52, 48, 255);
    const ImU32 amber = IM_COL32(222, 170, 52, 255);
    const ImU32 green = IM_COL32(46, 160, 84, 255);
    return x < 0.5f ? mix(red, amber, x * 2.0f) : mix(amber, green, (x - 0.5f) * 2.0f);
}

int NiahGridView::selected_job(const NiahGrid& grid) const {
    const int j = grid.job_index(policy_, budget_);
    if (j >= 0) return j;
    // Default: the first policy's first budget (the baseline has its own row).
    return grid.jobs.size() > 1 ? 1 : 0;
}

void NiahGridView::select_job(const NiahGrid& grid, int job) {
    if (job < 0 || static_cast<size_t>(job) >= grid.jobs.size()) return;
    policy_ = grid.jobs[static_cast<size_t>(job)].policy;
    budget_ = grid.jobs[static_cast<size_t>(job)].budget;
}

PlotRect NiahGridView::cell_rect(int length_i, int depth_i) const {
    const float cw = grid_.width() / static_cast<float>(std::max(lengths_, 1));
    const float ch = grid_.height() / static_cast<float>(std::max(depths_, 1));
    const ImVec2 a(grid_.min.x + cw * static_cast<float>(length_i),
                   grid_.min.y + ch * static_cast<float>(depth_i));
    return PlotRect{a, ImVec2(a.x + cw, a.y + ch)};
}

PlotRect NiahGridView::baseline_rect(int length_i) const {
    const PlotRect top = cell_rect(length_i, 0);
    const float h = std::min(top.height(), ImGui::GetFontSize() * 2.0f + 4.0f);
    return PlotRect{ImVec2(top.min.x, baseline_y_), ImVec2(top.max.x, baseline_y_ + h)};
}

void NiahGridView::header(const NiahGrid& grid) {
    const NiahSweepAxes& a = grid.axes;
    ImGui::Text("%s", grid.folder.c_str());
    ImGui::SameLine();
    ImGui::TextDisabled(
        "%zu of %lld rows%s", grid.rows.size(), static_cast<long long>(grid.expected_rows),
        static_cast<int64_t>(grid.rows.size()) < grid.expected_rows ? " (running or partial)" : "");
    ImGui::PushTextWrapPos(0.0f);
    ImGui::TextDisabled(
        "model %s  ·  lengths %s  ·  depths %s  ·  %d trial%s  ·  budgets: %s  ·  max new %d",
        a.model.c_str(), join_lengths(a.lengths).c_str(), join_depths(a.depths).c_str(), a.trials,
        a.trials == 1 ? "" : "s",
        a.budget_kind == "memory" ? "equal memory" : a.budget_kind.c_str(), a.max_new);
    ImGui::TextDisabled(
        "needle sets: %s  ·  haystacks: %s%s", join(a.needle_sets, "builtin").c_str(),
        join(a.haystacks, "model default").c_str(), a.traces ? "" : "  ·  no traces (--no-traces)");
    ImGui::PopTextWrapPos();
    if (!grid.row_errors.empty()) {
        ImGui::TextColored(ImVec4(0.95f, 0.55f, 0.25f, 1.0f), "%zu row%s skipped: %s",
                           grid.row_errors.size(), grid.row_errors.size() == 1 ? "" : "s",
                           grid.row_errors.front().c_str());
    }
}

void NiahGridView::controls(const NiahGrid& grid) {
    const int job = selected_job(grid);
    const NiahJob& cur = grid.jobs[static_cast<size_t>(job)];
    // Policies in job order, each once.
    std::vector<std::string> policies;
    for (const NiahJob& j : grid.jobs)
        if (std::find(policies.begin(), policies.end(), j.policy) == policies.end())
            policies.push_back(j.policy);
    ImGui::SetNextItemWidth(ImGui::GetFontSize() * 9);
    if (ImGui::BeginCombo("policy", cur.policy.c_str())) {
        for (const std::string& p : policies) {
            if (ImGui::Selectable(p.c_str(), p == cur.policy)) {
                for (size_t j = 0; j < grid.jobs.size(); ++j)
                    if (grid.jobs[j].policy == p) {
                        select_job(grid, static_cast<int>(j));
                        break;
                    }
            }
        }
        ImGui::EndCombo();
    }
    ImGui::SameLine();
    ImGui::SetNextItemWidth(ImGui::GetFontSize() * 9);
    if (ImGui::BeginCombo("budget", grid.budget_label(cur).c_str())) {
        for (size_t j = 0; j < grid.jobs.size(); ++j) {
            if (grid.jobs[j].policy != cur.policy) continue;
            if (ImGui::Selectable(grid.budget_label(grid.jobs[j]).c_str(),
                                  static_cast<int>(j) == job))
                select_job(grid, static_cast<int>(j));
        }
        ImGui::EndCombo();
    }
    auto filter = [](const char* label, const std::vector<std::string>& names, int& chosen) {
        if (names.size() < 2) return;
        ImGui::SameLine();
        ImGui::SetNextItemWidth(ImGui::GetFontSize() * 8);
        const std::string shown = chosen >= 0 && static_cast<size_t>(chosen) < names.size()
                                      ? names[static_cast<size_t>(chosen)]
                                      : std::string("all");
        if (ImGui::BeginCombo(label, shown.c_str())) {
            if (ImGui::Selectable("all", chosen < 0)) chosen = -1;
            for (size_t i = 0; i < names.size(); ++i)
                if (ImGui::Selectable(names[i].c_str(), chosen == static_cast<int>(i)))
                    chosen = static_cast<int>(i);
            ImGui::EndCombo();
        }
    };
    filter("haystack", grid.haystack_names, haystack_);
    filter("needles", grid.needle_names, needle_set_);
    int m = static_cast<int>(metric_);
    ImGui::RadioButton("answer found", &m, 0);
    ImGui::SameLine();
    ImGui::RadioButton("needle kept", &m, 1);
    metric_ = static_cast<Metric>(m);
}

void NiahGridView::rows_tooltip(const NiahGrid& grid, const NiahCellStats& s,
                                const std::string& title) {
    ImGui::BeginTooltip();
    ImGui::TextUnformatted(title.c_str());
    if (s.rows == 0) {
        ImGui::TextDisabled("no rows yet");
        ImGui::EndTooltip();
        return;
    }
    ImGui::Text("found %d of %d  ·  needle kept %s (mean after the last step)", s.found, s.rows,
                std::isnan(s.needle_final) ? "n/a" : fmt("%.2f", s.needle_final).c_str());
    ImGui::Separator();
    constexpr size_t kMaxShown = 12;
    for (size_t i = 0; i < s.row_indices.size() && i < kMaxShown; ++i) {
        const NiahRow& r = grid.rows[static_cast<size_t>(s.row_indices[i])];
        ImGui::TextColored(r.found ? ImVec4(0.35f, 0.8f, 0.45f, 1) : ImVec4(0.95f, 0.4f, 0.35f, 1),
                           "%s", r.found ? "found" : "lost ");
        ImGui::SameLine();
        ImGui::Text("cell %lld  depth %g  trial %d%s%s  \"%s\"", static_cast<long long>(r.cell),
                    r.depth, r.trial,
                    grid.haystack_names.size() > 1 ? ("  " + r.haystack).c_str() : "",
                    grid.needle_names.size() > 1 ? ("  " + r.needle_set).c_str() : "",
                    one_line(r.output, 60).c_str());
        std::string bytes = "bytes held " + format_bytes(static_cast<double>(r.bytes_final)) +
                            " of " + format_bytes(static_cast<double>(r.bytes_full)) + " full";
        if (r.bytes_prompt >= 0)
            bytes +=
                " (after the prompt " + format_bytes(static_cast<double>(r.bytes_prompt)) + ")";
        if (r.budget_tokens >= 0) bytes += "  ·  " + std::to_string(r.budget_tokens) + " tok/head";
        if (r.needle_final_mean >= 0)
            bytes += "  ·  needle kept " + fmt("%.2f", r.needle_final_mean);
        ImGui::TextDisabled("      %s", bytes.c_str());
    }
    if (s.row_indices.size() > kMaxShown)
        ImGui::TextDisabled("... %zu more", s.row_indices.size() - kMaxShown);
    ImGui::TextDisabled(s.rows > 1 ? "click: choose a trial to open against the full cache"
                                   : "click: open this run against the full cache");
    ImGui::EndTooltip();
}

void NiahGridView::ask_open(const NiahCellStats& s) {
    if (s.row_indices.empty()) return;
    if (s.row_indices.size() == 1) {
        open_request_ = s.row_indices.front();
        return;
    }
    chooser_rows_ = s.row_indices;
    ImGui::OpenPopup("##trials");
}

void NiahGridView::trial_chooser(const NiahGrid& grid) {
    if (!ImGui::BeginPopup("##trials")) return;
    ImGui::TextDisabled("open which run?");
    for (int r : chooser_rows_) {
        if (r < 0 || static_cast<size_t>(r) >= grid.rows.size()) continue;
        const NiahRow& row = grid.rows[static_cast<size_t>(r)];
        const std::string label = std::string(row.found ? "found  " : "lost   ") + "depth " +
                                  fmt("%g", row.depth) + "  trial " + std::to_string(row.trial) +
                                  "  " + row.haystack + "  " + row.needle_set + "  \"" +
                                  one_line(row.output, 40) + "\"##" + std::to_string(r);
        if (ImGui::Selectable(label.c_str())) {
            open_request_ = r;
            ImGui::CloseCurrentPopup();
        }
    }
    ImGui::EndPopup();
}

void NiahGridView::draw(const NiahGrid* grid_ptr, const Theme& theme, SvgRecorder* svg,
                        const std::string& message) {
    if (!grid_ptr) {
        draw_empty_view(theme, message.empty() ? "Open a NIAH sweep folder: File > Open NIAH "
                                                 "sweep, or kvscope-studio --sweep DIR."
                                               : message.c_str());
        return;
    }
    const NiahGrid& grid = *grid_ptr;
    header(grid);
    if (!message.empty())
        ImGui::TextColored(ImVec4(0.95f, 0.55f, 0.25f, 1.0f), "%s", message.c_str());
    if (grid.jobs.empty() || grid.axes.lengths.empty() || grid.axes.depths.empty()) {
        ImGui::TextDisabled("This sweep has no lengths or depths.");
        return;
    }
    controls(grid);
    const int job = selected_job(grid);
    lengths_ = static_cast<int>(grid.axes.lengths.size());
    depths_ = static_cast<int>(grid.axes.depths.size());

    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const ImVec2 origin = ImGui::GetCursorScreenPos();
    const float font = ImGui::GetFontSize();
    const float label_w = ImGui::CalcTextSize("depth 0.75").x + 10.0f;
    const float title_h = font + 6.0f;
    const float axis_h = font + 8.0f;
    const float base_h = font * 2.0f + 4.0f;
    const float legend_w = avail.x > 360.0f ? 80.0f : 0.0f;
    const float grid_w = avail.x - label_w - legend_w - 16.0f;
    const float grid_h = avail.y - title_h - axis_h - base_h - font * 3.0f - 24.0f;
    if (grid_w < 32 || grid_h < 16) return;
    const float cw = std::min(grid_w / static_cast<float>(lengths_), 160.0f);
    const float ch = std::min(grid_h / static_cast<float>(depths_), std::max(cw * 0.6f, 28.0f));
    grid_ = PlotRect{ImVec2(origin.x + label_w, origin.y + title_h),
                     ImVec2(origin.x + label_w + cw * static_cast<float>(lengths_),
                            origin.y + title_h + ch * static_cast<float>(depths_))};
    baseline_y_ = grid_.max.y + axis_h + 6.0f;

    Canvas canvas(ImGui::GetWindowDrawList(), svg);
    const bool found_metric = metric_ == Metric::kFound;
    canvas.text(ImVec2(grid_.min.x, origin.y), theme.text,
                grid.job_label(job) + (found_metric ? "  —  answer found" : "  —  needle kept"));
    auto value_of = [&](const NiahCellStats& s) {
        return found_metric ? s.found_fraction() : s.needle_final;
    };
    auto draw_cell = [&](const PlotRect& r, double v, const NiahCellStats& s) {
        canvas.rect(r.min, ImVec2(r.max.x - 1, r.max.y - 1), score_colour(theme, v));
        if (std::isnan(v)) return;
        const std::string text = found_metric && s.rows > 1
                                     ? std::to_string(s.found) + "/" + std::to_string(s.rows)
                                     : fmt("%.2f", v);
        if (r.width() >= ImGui::CalcTextSize(text.c_str()).x + 6 && r.height() >= font + 2)
            canvas.text_centred(ImVec2((r.min.x + r.max.x) * 0.5f, (r.min.y + r.max.y) * 0.5f),
                                IM_COL32(250, 250, 250, 255), text);
    };

    int hovered_l = -1, hovered_d = -1;
    bool hovered_base = false;
    const ImVec2 mouse = ImGui::GetIO().MousePos;
    const bool window_hovered = ImGui::IsWindowHovered();
    for (int d = 0; d < depths_; ++d) {
        const PlotRect row = cell_rect(0, d);
        canvas.text(ImVec2(origin.x, (row.min.y + row.max.y) * 0.5f - font * 0.5f), theme.text_dim,
                    "depth " + fmt("%g", grid.axes.depths[static_cast<size_t>(d)]));
        for (int l = 0; l < lengths_; ++l) {
            const PlotRect r = cell_rect(l, d);
            const NiahCellStats s = grid.stats(job, l, d, haystack_, needle_set_);
            draw_cell(r, value_of(s), s);
            // The full cache failed here too: the model, not the policy.
            if (job != 0) {
                const NiahCellStats b = grid.stats(0, l, d, haystack_, needle_set_);
                if (b.rows > 0 && b.found < b.rows) {
                    const float k = std::min(r.height(), r.width()) * 0.3f;
                    const ImVec2 c(r.max.x - 2, r.min.y + 1);
                    canvas.rect(ImVec2(c.x - k, c.y), ImVec2(c.x, c.y + k * 0.35f),
                                IM_COL32(20, 20, 24, 230));
                    canvas.rect(ImVec2(c.x - k * 0.35f, c.y), ImVec2(c.x, c.y + k),
                                IM_COL32(20, 20, 24, 230));
                }
            }
            if (window_hovered && r.contains(mouse)) {
                hovered_l = l;
                hovered_d = d;
            }
        }
    }
    for (int l = 0; l < lengths_; ++l) {
        const PlotRect r = cell_rect(l, depths_ - 1);
        canvas.text_centred(ImVec2((r.min.x + r.max.x) * 0.5f, grid_.max.y + axis_h * 0.5f),
                            theme.text_dim,
                            std::to_string(grid.axes.lengths[static_cast<size_t>(l)]));
        const PlotRect b = baseline_rect(l);
        NiahCellStats s;
        for (int d = 0; d < depths_; ++d) {
            const NiahCellStats x = grid.stats(0, l, d, haystack_, needle_set_);
            s.rows += x.rows;
            s.found += x.found;
            s.row_indices.insert(s.row_indices.end(), x.row_indices.begin(), x.row_indices.end());
        }
        double kept = 0.0;
        int n = 0;
        for (int ri : s.row_indices) {
            const double v = grid.rows[static_cast<size_t>(ri)].needle_final_mean;
            if (v >= 0) {
                kept += v;
                ++n;
            }
        }
        s.needle_final = n > 0 ? kept / n : std::nan("");
        draw_cell(b, value_of(s), s);
        if (window_hovered && b.contains(mouse)) {
            hovered_l = l;
            hovered_base = true;
            rows_tooltip(grid, s,
                         "full cache (baseline), length " +
                             std::to_string(grid.axes.lengths[static_cast<size_t>(l)]) +
                             ", all depths: does the model itself find the needle?");
            if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) ask_open(s);
        }
    }
    canvas.text(ImVec2(origin.x, baseline_y_ + base_h * 0.5f - font * 0.5f), theme.text_dim,
                "full cache");
    canvas.text(ImVec2(grid_.min.x, baseline_y_ + base_h + 4.0f), theme.text_dim,
                "columns: context length (tokens)");
    canvas.text(ImVec2(grid_.min.x, baseline_y_ + base_h + 4.0f + font + 2.0f), theme.text_dim,
                "corner mark: the full cache failed there too");
    if (legend_w > 0.0f) {
        const PlotRect bar{
            ImVec2(grid_.max.x + 16.0f, grid_.min.y),
            ImVec2(grid_.max.x + 28.0f, grid_.min.y + std::min(grid_.height(), 200.0f))};
        constexpr int kSteps = 32;
        for (int i = 0; i < kSteps; ++i) {
            const float y0 = bar.max.y - bar.height() * static_cast<float>(i + 1) / kSteps;
            const float y1 = bar.max.y - bar.height() * static_cast<float>(i) / kSteps;
            canvas.rect(ImVec2(bar.min.x, y0), ImVec2(bar.max.x, y1),
                        score_colour(theme, (i + 0.5) / kSteps));
        }
        canvas.text(ImVec2(bar.max.x + 4, bar.min.y - font * 0.5f), theme.text_dim, "1");
        canvas.text(ImVec2(bar.max.x + 4, bar.max.y - font * 0.5f), theme.text_dim, "0");
    }

    if (hovered_d >= 0 && !hovered_base) {
        const NiahCellStats s = grid.stats(job, hovered_l, hovered_d, haystack_, needle_set_);
        const PlotRect r = cell_rect(hovered_l, hovered_d);
        canvas.rect_outline(r.min, r.max, theme.hover, 2.0f);
        rows_tooltip(grid, s,
                     grid.job_label(job) + "  ·  length " +
                         std::to_string(grid.axes.lengths[static_cast<size_t>(hovered_l)]) +
                         "  ·  depth " +
                         fmt("%g", grid.axes.depths[static_cast<size_t>(hovered_d)]));
        if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) ask_open(s);
    }
    // Keeps the clicks on the plot from dragging the (undecorated) window.
    ImGui::SetCursorScreenPos(ImVec2(origin.x, baseline_y_ + base_h + font * 2.0f + 10.0f));
    ImGui::Dummy(ImVec2(1, 1));
    trial_chooser(grid);
}

}  // namespace kvscope::views
