#pragma once
// ViewState: what the user has chosen, shared by every view (linked selection). A view that
// changes it bumps `revision`; the Studio repaints the other views when the revision moves.
#include <algorithm>
#include <cstdint>

#include "views/trace_model.h"

namespace kvscope::views {

struct ViewState {
    int64_t step = 0;          // the step every view shows ("after step")
    int32_t layer = 0;         // selected layer
    int32_t head = -1;         // selected cache head; -1 = all heads of the layer (aggregated)
    int64_t token = -1;        // selected token position, -1 = none
    int32_t span = 0;          // selected marked span (needle)
    int64_t hover_token = -1;  // token under the mouse in any view (transient highlight)
    bool compare_diff = true;  // compare mode: overlay the A/B held-set difference
    uint64_t revision = 0;

    void set_step(int64_t s) { assign(step, s); }
    void select_layer(int32_t l) { assign(layer, l); }
    void select_head(int32_t h) { assign(head, h); }
    void select_layer_head(int32_t l, int32_t h) {
        select_layer(l);
        select_head(h);
    }
    void select_token(int64_t t) { assign(token, t); }
    void select_span(int32_t s) { assign(span, s); }
    void set_hover_token(int64_t t) { assign(hover_token, t); }
    void set_compare_diff(bool on) { assign(compare_diff, on); }

    // Keeps every index inside the trace's axes (after opening or refreshing a trace).
    void clamp_to(const TraceSummary& s) {
        assign(step, std::clamp<int64_t>(step, 0, std::max<int64_t>(s.n_steps - 1, 0)));
        assign(layer, std::clamp<int32_t>(layer, 0, std::max(s.n_layers - 1, 0)));
        assign(head, std::clamp<int32_t>(head, -1, s.n_heads - 1));
        if (token >= s.n_tokens) assign(token, int64_t{-1});
    }

  private:
    template <typename T, typename U>
    void assign(T& field, U value) {
        if (field != static_cast<T>(value)) {
            field = static_cast<T>(value);
            ++revision;
        }
    }
};

}  // namespace kvscope::views
