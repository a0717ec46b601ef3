#include "views/headless_imgui.h"

#include <chrono>

namespace kvscope::views {

HeadlessImGui::HeadlessImGui(float width, float height) : size_(width, height) {
    ImGuiContext* previous = ImGui::GetCurrentContext();
    ctx_ = ImGui::CreateContext();
    ImGui::SetCurrentContext(ctx_);
    ImGuiIO& io = ImGui::GetIO();
    io.IniFilename = nullptr;
    io.LogFilename = nullptr;
    io.DisplaySize = size_;
    io.DeltaTime = 1.0f / 60.0f;
    // As the OpenGL 3 backend does: big draw lists are split instead of overflowing 16-bit
    // indices.
    io.BackendFlags |= ImGuiBackendFlags_RendererHasVtxOffset;
    unsigned char* pixels = nullptr;
    int w = 0, h = 0;
    io.Fonts->AddFontDefault();
    io.Fonts->GetTexDataAsRGBA32(&pixels, &w, &h);  // builds the atlas
    // NOLINTNEXTLINE(performance-no-int-to-ptr): ImGui texture ids are void*; 1 is a non-null tag
    io.Fonts->SetTexID(reinterpret_cast<ImTextureID>(static_cast<intptr_t>(1)));
    ImGui::SetCurrentContext(previous);
}

HeadlessImGui::~HeadlessImGui() {
    ImGui::DestroyContext(ctx_);
}

void HeadlessImGui::set_mouse(ImVec2 pos, bool left_down) {
    ImGuiContext* previous = ImGui::GetCurrentContext();
    ImGui::SetCurrentContext(ctx_);
    ImGui::GetIO().MousePos = pos;
    ImGui::GetIO().MouseDown[0] = left_down;
    ImGui::SetCurrentContext(previous);
}

void HeadlessImGui::set_wheel(float wheel) {
    ImGuiContext* previous = ImGui::GetCurrentContext();
    ImGui::SetCurrentContext(ctx_);
    ImGui::GetIO().MouseWheel = wheel;
    ImGui::SetCurrentContext(previous);
}

double HeadlessImGui::frame(View& view, const TraceModel& model, ViewState& state,
                            const Theme& theme, TextureHost* textures, SvgRecorder* svg) {
    ImGuiContext* previous = ImGui::GetCurrentContext();
    ImGui::SetCurrentContext(ctx_);
    theme.apply_to_imgui(ImGui::GetStyle());
    const auto start = std::chrono::steady_clock::now();
    ImGui::NewFrame();
    ImGui::SetNextWindowPos(ImVec2(0, 0));
    ImGui::SetNextWindowSize(size_);
    ImGui::Begin("##headless", nullptr,
                 ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove |
                     ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoScrollWithMouse);
    ViewContext ctx{model, state, theme, textures, svg, 0.0, compare_};
    view.draw(ctx);
    ImGui::End();
    ImGui::Render();
    const std::chrono::duration<double, std::milli> spent =
        std::chrono::steady_clock::now() - start;
    const ImDrawData* dd = ImGui::GetDrawData();
    vertices_ = dd ? dd->TotalVtxCount : 0;
    commands_ = 0;
    if (dd) {
        for (int i = 0; i < dd->CmdListsCount; ++i) commands_ += dd->CmdLists[i]->CmdBuffer.Size;
    }
    ImGui::GetIO().MouseWheel = 0.0f;
    ImGui::SetCurrentContext(previous);
    return spent.count();
}

}  // namespace kvscope::views
