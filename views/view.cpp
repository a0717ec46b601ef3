#include "views/view.h"

#include "views/budget_view.h"
#include "views/compare_view.h"
#include "views/density_view.h"
#include "views/eviction_timeline_view.h"
#include "views/layer_head_view.h"
#include "views/merge_view.h"
#include "views/needle_view.h"
#include "views/precision_view.h"
#include "views/token_strip_view.h"

namespace kvscope::views {

std::vector<std::unique_ptr<View>> make_all_views() {
    std::vector<std::unique_ptr<View>> v;
    v.push_back(std::make_unique<TokenStripView>());
    v.push_back(std::make_unique<EvictionTimelineView>());
    v.push_back(std::make_unique<LayerHeadView>());
    v.push_back(std::make_unique<BudgetView>());
    v.push_back(std::make_unique<DensityView>());
    v.push_back(std::make_unique<MergeView>());
    v.push_back(std::make_unique<PrecisionView>());
    v.push_back(std::make_unique<NeedleView>());
    v.push_back(std::make_unique<CompareView>());
    return v;
}

void draw_empty_view(const Theme& theme, const char* message) {
    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const ImVec2 size = ImGui::CalcTextSize(message, nullptr, false, avail.x - 20);
    ImGui::GetWindowDrawList()->AddText(
        nullptr, 0.0f, ImVec2(o.x + (avail.x - size.x) * 0.5f, o.y + (avail.y - size.y) * 0.5f),
        theme.text_dim, message, nullptr, avail.x - 20);
}

}  // namespace kvscope::views
