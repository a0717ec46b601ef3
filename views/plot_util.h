#pragma once
// Helpers shared by the views: axes and ticks, legends, the token-fate tooltip, the layer/head
// selector, a zoomable token axis, and how a token piece is shown.
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "views/view.h"

namespace kvscope::views {

// Visible form of a token piece: newline -> "↵", tab -> "→", other control bytes -> "\xNN".
std::string display_piece(std::string_view piece);

// About max_ticks "nice" values (1, 2, 5 x 10^k steps) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int max_ticks);
std::string format_number(double v);  // 1234 -> "1234", 32768 -> "32.8k", 0.125 -> "0.125"
std::string format_bytes(double bytes);

struct PlotRect {
    ImVec2 min;
    ImVec2 max;
    // Corners on whole pixels, so a raster of width() x height() maps 1:1 onto screen pixels.
    PlotRect snapped() const {
        return PlotRect{ImVec2(std::floor(min.x), std::floor(min.y)),
                        ImVec2(std::floor(max.x), std::floor(max.y))};
    }
    float width() const { return max.x - min.x; }
    float height() const { return max.y - min.y; }
    bool contains(ImVec2 p) const {
        return p.x >= min.x && p.x < max.x && p.y >= min.y && p.y < max.y;
    }
};

// Ticks and labels below / left of a plot; the range maps linearly onto the rect.
void draw_x_axis(Canvas& canvas, const Theme& theme, const PlotRect& plot, double lo, double hi,
                 const char* label);
void draw_y_axis(Canvas& canvas, const Theme& theme, const PlotRect& plot, double lo, double hi,
                 const char* label, bool top_down = false);
// Vertical colour bar with end labels, for heatmaps.
void draw_colour_bar(Canvas& canvas, const Theme& theme, const PlotRect& bar, double lo, double hi,
                     bool diverging, const char* label);
// One line of coloured squares naming the token states (and bits when `with_bits`).
void draw_state_legend(const ViewContext& ctx, bool with_bits);

// Layer / head combo boxes bound to the shared selection ("all heads" when allowed).
void layer_head_selector(ViewContext& ctx, bool allow_all_heads);

// A vertical marker line on whole pixels (a 2 px line there is drawn without blending).
void draw_marker_x(Canvas& canvas, float x, float y0, float y1, ImU32 colour);
// Tooltip: a token's text and its state at the current step in every layer and head.
void token_fate_tooltip(const ViewContext& ctx, int64_t token);

// State of a token at a step over the heads of one layer (histories loaded later when missing).
struct HeadsState {
    int held = 0;       // full precision
    int quantized = 0;  // lower precision (quantised or demoted)
    int merged = 0;
    int evicted = 0;
    int absent = 0;
    int missing = 0;    // history not loaded yet
    int min_bits = 16;  // lowest precision among held heads
};
using HeadSet = std::vector<std::shared_ptr<const HeadHistory>>;  // [H], nullptr = not loaded
HeadSet layer_heads(const TraceModel& model, int32_t layer, Load load);
HeadsState heads_state(const HeadSet& heads, int64_t token, int64_t step);
// Colour of a HeadsState: the state colour of the majority, paler when heads disagree.
ImU32 heads_state_color(const Theme& theme, const HeadsState& s);

// Publishes the token under the mouse to the shared state without views fighting over it: only
// the view the mouse is in sets it, and a view clears it only if it set it.
class HoverLink {
  public:
    void update(ViewState& state, int64_t token_here) {
        if (token_here >= 0) {
            state.set_hover_token(token_here);
            owner_ = true;
        } else if (owner_) {
            state.set_hover_token(-1);
            owner_ = false;
        }
    }

  private:
    bool owner_ = false;
};

// A zoomable, pannable range over token positions [0, n): wheel zooms around the mouse,
// dragging (left button on empty space or middle button) pans.
class TokenAxis {
  public:
    void set_extent(double n);
    // Handles input over `plot` (call after an InvisibleButton covering it).
    void handle_input(const PlotRect& plot, bool hovered, bool active);
    void zoom_to(double lo, double hi);
    double lo() const { return lo_; }
    double hi() const { return hi_; }
    double extent() const { return n_; }
    float to_x(const PlotRect& plot, double token) const {
        return plot.min.x + static_cast<float>((token - lo_) / (hi_ - lo_)) * plot.width();
    }
    double to_token(const PlotRect& plot, float x) const {
        return lo_ + (x - plot.min.x) / plot.width() * (hi_ - lo_);
    }
    // Tokens [first, second) that raster column x of `columns` shows: zoomed in (a token spans
    // several columns), the token under the column's centre; zoomed out, the tokens whose start
    // falls inside the column. Clamped to [0, n).
    std::pair<int64_t, int64_t> column_tokens(int x, int columns, int64_t n) const;

  private:
    void clamp();
    double n_ = 1.0;
    double lo_ = 0.0;
    double hi_ = 1.0;
    bool full_ = true;  // follow the extent when it grows (live trace)
};

}  // namespace kvscope::views
