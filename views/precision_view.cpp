#include "views/precision_view.h"

#include <algorithm>
#include <cmath>

#include "views/text_fit.h"

namespace kvscope::views {

void PrecisionView::reset() {
    axis_ = TokenAxis();
    key_ = Key();
    built_step_ = -1;
    histories_.clear();
    states_.clear();
}

ImVec2 PrecisionView::point_of(int32_t layer, int64_t token) const {
    const float rh = plot_.height() / static_cast<float>(std::max(layers_, 1));
    return ImVec2(axis_.to_x(plot_, static_cast<double>(token) + 0.5),
                  plot_.min.y + rh * (static_cast<float>(layer) + 0.5f));
}

void PrecisionView::compose(int32_t layer, int x, const Theme& theme) {
    float rgb[3] = {0, 0, 0};
    int count = 0;
    bool missing = false;
    for (int hi = 0; hi < heads_used_; ++hi) {
        const size_t base =
            ((static_cast<size_t>(layer) * heads_used_ + hi) * columns_ + x) * samples_;
        for (int k = 0; k < samples_; ++k) {
            const uint32_t c = sample_colour_[base + static_cast<size_t>(k)];
            if (c == kNoSample) continue;
            if (c == kMissing) {
                missing = true;
                continue;
            }
            rgb[0] += static_cast<float>((c >> IM_COL32_R_SHIFT) & 0xFF);
            rgb[1] += static_cast<float>((c >> IM_COL32_G_SHIFT) & 0xFF);
            rgb[2] += static_cast<float>((c >> IM_COL32_B_SHIFT) & 0xFF);
            ++count;
        }
    }
    raster_.row(layer)[x] =
        count == 0 ? (missing ? theme.missing : theme.panel)
                   : IM_COL32(static_cast<int>(rgb[0] / static_cast<float>(count)),
                              static_cast<int>(rgb[1] / static_cast<float>(count)),
                              static_cast<int>(rgb[2] / static_cast<float>(count)), 255);
}

void PrecisionView::rebuild(const ViewContext& ctx, int width) {
    const TraceModel& model = ctx.model;
    const TraceSummary& s = model.summary();
    const Theme& theme = ctx.theme;
    const int64_t step = ctx.state.step;
    heads_used_ = ctx.state.head >= 0 ? 1 : std::max(s.n_heads, 1);
    const int64_t per_column = static_cast<int64_t>(layers_) * heads_used_;
    columns_ =
        static_cast<int>(std::min<int64_t>(width, std::max<int64_t>(kMaxLookups / per_column, 64)));
    samples_ = static_cast<int>(
        std::clamp<int64_t>(kMaxLookups / (per_column * columns_), 1, kSamplesPerColumn));
    raster_.resize(columns_, layers_);
    histories_.assign(static_cast<size_t>(per_column), nullptr);
    states_.assign(static_cast<size_t>(per_column), nullptr);
    for (int32_t l = 0; l < layers_; ++l) {
        for (int hi = 0; hi < heads_used_; ++hi) {
            const int32_t h = ctx.state.head >= 0 ? ctx.state.head : hi;
            const size_t i = static_cast<size_t>(l) * heads_used_ + hi;
            if (key_.states)
                states_[i] = model.head_states(l, h, Load::kLater);
            else
                histories_[i] = model.history(l, h, Load::kLater);
        }
    }
    // Sampled tokens: up to samples_ evenly spread over the tokens of each column.
    sample_token_.assign(static_cast<size_t>(columns_) * samples_, -1);
    int64_t first = -1, last = -1;
    for (int x = 0; x < columns_; ++x) {
        const auto [t0, t1] = axis_.column_tokens(x, columns_, s.n_tokens);
        const int64_t n = t1 - t0;
        const int k_max = static_cast<int>(std::min<int64_t>(n, samples_));
        for (int k = 0; k < k_max; ++k) {
            const int64_t t = t0 + (n * k) / k_max;
            sample_token_[static_cast<size_t>(x) * samples_ + k] = t;
            first = first < 0 ? t : std::min(first, t);
            last = std::max(last, t);
        }
    }
    slot_base_ = std::max<int64_t>(first, 0);
    token_slot_.assign(static_cast<size_t>(std::max<int64_t>(last - slot_base_ + 1, 0)), -1);
    for (size_t i = 0; i < sample_token_.size(); ++i) {
        if (sample_token_[i] >= 0)
            token_slot_[static_cast<size_t>(sample_token_[i] - slot_base_)] =
                static_cast<int32_t>(i);
    }
    sample_colour_.assign(static_cast<size_t>(per_column) * sample_token_.size(), kNoSample);
    for (int32_t l = 0; l < layers_; ++l) {
        for (int hi = 0; hi < heads_used_; ++hi) {
            const size_t lh = static_cast<size_t>(l) * heads_used_ + hi;
            const bool have = loaded(lh);
            const size_t base = lh * sample_token_.size();
            for (size_t i = 0; i < sample_token_.size(); ++i) {
                if (sample_token_[i] < 0) continue;
                sample_colour_[base + i] =
                    have ? theme.state_color(state_at(lh, sample_token_[i], step)) : kMissing;
            }
        }
        for (int x = 0; x < columns_; ++x) compose(l, x, theme);
    }
    dirty_.assign(static_cast<size_t>(layers_) * columns_, 0);
    built_step_ = step;
    raster_.mark_dirty();
}

void PrecisionView::update_step(const ViewContext& ctx, int64_t from, int64_t to) {
    const Theme& theme = ctx.theme;
    const int64_t lo = std::min(from, to) + 1;
    const int64_t hi_step = std::max(from, to);
    for (int32_t l = 0; l < layers_; ++l) {
        for (int hi = 0; hi < heads_used_; ++hi) {
            const size_t lh = static_cast<size_t>(l) * heads_used_ + hi;
            const HeadHistory* h = histories_[lh].get();
            const HeadStates* hs = states_[lh].get();
            if (!h && !hs) continue;
            const size_t base = lh * sample_token_.size();
            for (int64_t st = lo; st <= hi_step; ++st) {
                const auto [b, e] = hs ? hs->step_changes(st) : h->step_changes(st);
                for (int32_t i = b; i < e; ++i) {
                    const int64_t token = hs ? hs->change_token(i) : h->change(i).token;
                    const int64_t t = token - slot_base_;
                    if (t < 0 || t >= std::ssize(token_slot_) ||
                        token_slot_[static_cast<size_t>(t)] < 0)
                        continue;
                    const int32_t slot = token_slot_[static_cast<size_t>(t)];
                    sample_colour_[base + static_cast<size_t>(slot)] =
                        theme.state_color(state_at(lh, token, to));
                    dirty_[static_cast<size_t>(l) * columns_ + slot / samples_] = 1;
                }
            }
        }
        for (int x = 0; x < columns_; ++x) {
            uint8_t& d = dirty_[static_cast<size_t>(l) * columns_ + x];
            if (d) compose(l, x, theme);
            d = 0;
        }
    }
    built_step_ = to;
    raster_.mark_dirty();
}

void PrecisionView::draw(ViewContext& ctx) {
    const TraceModel& model = ctx.model;
    const TraceSummary& s = model.summary();
    const Theme& theme = ctx.theme;
    const int64_t step = ctx.state.step;
    layers_ = s.n_layers;
    if (layers_ <= 0) {
        ImGui::TextDisabled("This trace has no layers.");
        return;
    }
    axis_.set_extent(static_cast<double>(std::max<int64_t>(s.n_tokens, 1)));

    layer_head_selector(ctx, true);
    ImGui::SameLine();
    if (ImGui::Button("Fit")) axis_.zoom_to(0, axis_.extent());
    ImGui::SameLine();
    fitted_textf(0, "bits per token per layer after step %lld", static_cast<long long>(step));
    draw_state_legend(ctx, true);

    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const float font = ImGui::GetFontSize();
    const float left = ImGui::CalcTextSize("L000").x + 8;
    const float bar_w = std::clamp(avail.x * 0.12f, 40.0f, 110.0f);
    plot_ = PlotRect{ImVec2(o.x + left, o.y + 4),
                     ImVec2(o.x + avail.x - bar_w - 20, o.y + avail.y - font * 2 - 10)}
                .snapped();
    if (plot_.width() < 20 || plot_.height() < 10) return;

    // Record-time token states when the trace has them, else replayed histories.
    const bool states = model.has_head_states();
    auto available = [&](int32_t l, int32_t h) {
        return states ? model.head_states(l, h, Load::kLater) != nullptr
                      : model.history(l, h, Load::kLater) != nullptr;
    };
    int loaded = 0;
    for (int32_t l = 0; l < layers_; ++l) {
        if (ctx.state.head >= 0) {
            loaded += available(l, ctx.state.head) ? 1 : 0;
        } else {
            for (int32_t h = 0; h < s.n_heads; ++h) loaded += available(l, h) ? 1 : 0;
        }
    }
    Key key;
    key.states = states;
    key.head = ctx.state.head;
    key.lo = axis_.lo();
    key.hi = axis_.hi();
    key.width = std::clamp(static_cast<int>(plot_.width()), 1, 4096);
    key.loaded = loaded;
    key.steps = s.n_steps;
    key.theme = theme.kind;
    if (!(key == key_)) {
        key_ = key;
        rebuild(ctx, key.width);
    } else if (step != built_step_) {
        update_step(ctx, built_step_, step);
    }

    Canvas canvas = ctx.canvas();
    canvas.rect(plot_.min, plot_.max, theme.panel);
    raster_.draw(canvas, ctx.textures, plot_.min, plot_.max);
    draw_x_axis(canvas, theme, plot_, axis_.lo(), axis_.hi(), "token position");
    const float rh = plot_.height() / static_cast<float>(layers_);
    const int label_every = rh >= font ? 1 : static_cast<int>(std::ceil(font / rh));
    for (int32_t l = 0; l < layers_; ++l) {
        const float y0 = plot_.min.y + rh * static_cast<float>(l);
        if (l % label_every == 0 || l == ctx.state.layer) {
            canvas.text(ImVec2(o.x, y0 + (rh - font) * 0.5f),
                        l == ctx.state.layer ? theme.selection : theme.text_dim,
                        "L" + std::to_string(l));
        }
        if (rh >= 3 && l > 0) {
            canvas.line(ImVec2(plot_.min.x, y0), ImVec2(plot_.max.x, y0),
                        with_alpha(theme.background, 0.6f));
        }
        // Mean bits of the held tokens (over the selected head or every loaded head): the
        // trace's /summary counts beside record-time states, else the histories'.
        int64_t bits = 0;
        int64_t held = 0;
        for (int32_t h = 0; h < s.n_heads; ++h) {
            if (ctx.state.head >= 0 && h != ctx.state.head) continue;
            if (states) {
                if (const auto c = model.head_counts(l, h, step, Load::kLater)) {
                    bits += c->held_bits;
                    held += c->held;
                }
            } else if (const auto hist = model.history(l, h, Load::kLater)) {
                bits += hist->held_bits(step);
                held += hist->held(step);
            }
        }
        if (held > 0) {
            const double mean = static_cast<double>(bits) / static_cast<double>(held);
            const float x0 = plot_.max.x + 10;
            canvas.rect(ImVec2(x0, y0 + 1),
                        ImVec2(x0 + static_cast<float>(mean / 16.0) * bar_w, y0 + rh - 1),
                        theme.bits_color(static_cast<int>(std::lround(mean))));
        }
    }
    canvas.text(ImVec2(plot_.max.x + 10, plot_.max.y + 4), theme.text_dim, "mean bits");
    const float sel_y = plot_.min.y + rh * static_cast<float>(ctx.state.layer);
    canvas.rect_outline(ImVec2(plot_.min.x - 1, sel_y), ImVec2(plot_.max.x + 1, sel_y + rh),
                        theme.selection, 1.5f);
    canvas.push_clip(plot_.min, plot_.max);
    if (ctx.state.token >= 0) {
        draw_marker_x(canvas, axis_.to_x(plot_, static_cast<double>(ctx.state.token) + 0.5),
                      plot_.min.y, plot_.max.y, theme.selection);
    }
    canvas.pop_clip();

    ImGui::SetCursorScreenPos(plot_.min);
    ImGui::InvisibleButton("##precision", ImVec2(plot_.width(), plot_.height()));
    const bool hovered = ImGui::IsItemHovered();
    axis_.handle_input(plot_, hovered, ImGui::IsItemActive());
    int64_t hover_token = -1;
    if (hovered) {
        const ImVec2 m = ImGui::GetIO().MousePos;
        const int64_t t = static_cast<int64_t>(std::floor(axis_.to_token(plot_, m.x)));
        const int32_t l =
            std::clamp(static_cast<int32_t>((m.y - plot_.min.y) / rh), 0, layers_ - 1);
        if (t >= 0 && t < s.n_tokens) {
            hover_token = t;
            token_fate_tooltip(ctx, t);
            if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) {
                ctx.state.select_layer(l);
                ctx.state.select_token(t);
            }
        }
        if (ImGui::IsMouseDoubleClicked(ImGuiMouseButton_Left)) axis_.zoom_to(0, axis_.extent());
    }
    hover_.update(ctx.state, hover_token);
}

}  // namespace kvscope::views
