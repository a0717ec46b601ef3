#pragma once
// Canvas: the drawing calls the views make. Each call goes to the ImGui draw list and, while an
// SVG export is being recorded, to an SvgRecorder as well, so a view's plot exports as vectors
// (widgets such as combo boxes are not part of the SVG). Raster: a CPU-side RGBA image drawn as
// one textured quad (big rasters cost one quad per frame; it is rebuilt only when its inputs
// change). Without a texture host (headless use, SVG) a raster is drawn as run-length rects.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <imgui.h>

namespace kvscope::views {

// Creates GPU textures for rasters. The Studio implements it with OpenGL; generation() changes
// when every texture was lost (GL context re-created), so rasters upload again.
class TextureHost {
  public:
    virtual ~TextureHost() = default;
    // Creates (existing == nullptr) or replaces an RGBA8 texture; nullptr when unavailable.
    virtual ImTextureID upload(ImTextureID existing, int width, int height,
                               const uint32_t* rgba) = 0;
    virtual uint64_t generation() const = 0;
};

class SvgRecorder {
  public:
    // The exported picture covers [origin, origin + size) in ImGui coordinates.
    SvgRecorder(ImVec2 origin, ImVec2 size, ImU32 background);

    void rect(ImVec2 a, ImVec2 b, ImU32 fill);
    void rect_outline(ImVec2 a, ImVec2 b, ImU32 stroke, float thickness);
    void line(ImVec2 a, ImVec2 b, ImU32 stroke, float thickness);
    void polyline(const ImVec2* points, int count, ImU32 stroke, float thickness);
    void circle(ImVec2 centre, float radius, ImU32 fill);
    void bezier(ImVec2 p0, ImVec2 p1, ImVec2 p2, ImVec2 p3, ImU32 stroke, float thickness);
    void text(ImVec2 pos, ImU32 fill, float font_size, std::string_view utf8);

    std::string finish() const;  // the complete SVG document
    size_t elements() const { return elements_; }

  private:
    std::string point(ImVec2 p) const;
    ImVec2 origin_;
    ImVec2 size_;
    ImU32 background_;
    std::string body_;
    size_t elements_ = 0;
};

class Canvas {
  public:
    Canvas(ImDrawList* draw_list, SvgRecorder* svg) : dl_(draw_list), svg_(svg) {}

    ImDrawList* draw_list() const { return dl_; }
    SvgRecorder* svg() const { return svg_; }

    void rect(ImVec2 a, ImVec2 b, ImU32 fill);
    void rect_outline(ImVec2 a, ImVec2 b, ImU32 stroke, float thickness = 1.0f);
    void line(ImVec2 a, ImVec2 b, ImU32 stroke, float thickness = 1.0f);
    void polyline(const ImVec2* points, int count, ImU32 stroke, float thickness = 1.0f);
    void circle(ImVec2 centre, float radius, ImU32 fill);
    void bezier(ImVec2 p0, ImVec2 p1, ImVec2 p2, ImVec2 p3, ImU32 stroke, float thickness);
    void text(ImVec2 pos, ImU32 fill, std::string_view utf8);
    // Text centred on `centre` (horizontally and vertically).
    void text_centred(ImVec2 centre, ImU32 fill, std::string_view utf8);
    void push_clip(ImVec2 a, ImVec2 b);
    void pop_clip();

  private:
    ImDrawList* dl_;
    SvgRecorder* svg_;
};

class Raster {
  public:
    void resize(int width, int height);
    int width() const { return w_; }
    int height() const { return h_; }
    uint32_t* row(int y) { return px_.data() + static_cast<size_t>(y) * static_cast<size_t>(w_); }
    const uint32_t* row(int y) const {
        return px_.data() + static_cast<size_t>(y) * static_cast<size_t>(w_);
    }
    void fill(ImU32 colour);
    void mark_dirty() { dirty_ = true; }
    // Draws the image stretched over [a, b].
    void draw(Canvas& canvas, TextureHost* textures, ImVec2 a, ImVec2 b);

  private:
    void draw_as_rects(Canvas& canvas, ImVec2 a, ImVec2 b) const;
    int w_ = 0;
    int h_ = 0;
    std::vector<uint32_t> px_;
    ImTextureID texture_ = nullptr;
    uint64_t generation_ = 0;
    bool dirty_ = true;
};

}  // namespace kvscope::views
