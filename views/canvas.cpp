#include "views/canvas.h"

#include <cstdio>

namespace kvscope::views {

namespace {

std::string colour_attr(const char* name, ImU32 c) {
    char buf[64];
    const unsigned r = (c >> IM_COL32_R_SHIFT) & 0xFF;
    const unsigned g = (c >> IM_COL32_G_SHIFT) & 0xFF;
    const unsigned b = (c >> IM_COL32_B_SHIFT) & 0xFF;
    const unsigned a = (c >> IM_COL32_A_SHIFT) & 0xFF;
    if (a == 255) {
        std::snprintf(buf, sizeof buf, " %s=\"#%02x%02x%02x\"", name, r, g, b);
    } else {
        std::snprintf(buf, sizeof buf, " %s=\"#%02x%02x%02x\" %s-opacity=\"%.3f\"", name, r, g, b,
                      name, a / 255.0);
    }
    return buf;
}

std::string num(float v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(v));
    return buf;
}

std::string xml_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char ch : s) {
        switch (ch) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            default:
                // Control characters are not allowed in XML 1.0 text.
                if (static_cast<unsigned char>(ch) >= 0x20 || ch == '\t') out += ch;
        }
    }
    return out;
}

}  // namespace

// ---- SvgRecorder ----------------------------------------------------------------------------

SvgRecorder::SvgRecorder(ImVec2 origin, ImVec2 size, ImU32 background)
    : origin_(origin), size_(size), background_(background) {}

std::string SvgRecorder::point(ImVec2 p) const {
    return num(p.x - origin_.x) + "," + num(p.y - origin_.y);
}

void SvgRecorder::rect(ImVec2 a, ImVec2 b, ImU32 fill) {
    body_ += "<rect x=\"" + num(a.x - origin_.x) + "\" y=\"" + num(a.y - origin_.y) +
             "\" width=\"" + num(b.x - a.x) + "\" height=\"" + num(b.y - a.y) + "\"" +
             colour_attr("fill", fill) + "/>\n";
    ++elements_;
}

void SvgRecorder::rect_outline(ImVec2 a, ImVec2 b, ImU32 stroke, float thickness) {
    body_ += "<rect x=\"" + num(a.x - origin_.x) + "\" y=\"" + num(a.y - origin_.y) +
             "\" width=\"" + num(b.x - a.x) + "\" height=\"" + num(b.y - a.y) + "\" fill=\"none\"" +
             colour_attr("stroke", stroke) + " stroke-width=\"" + num(thickness) + "\"/>\n";
    ++elements_;
}

void SvgRecorder::line(ImVec2 a, ImVec2 b, ImU32 stroke, float thickness) {
    body_ += "<line x1=\"" + num(a.x - origin_.x) + "\" y1=\"" + num(a.y - origin_.y) + "\" x2=\"" +
             num(b.x - origin_.x) + "\" y2=\"" + num(b.y - origin_.y) + "\"" +
             colour_attr("stroke", stroke) + " stroke-width=\"" + num(thickness) + "\"/>\n";
    ++elements_;
}

void SvgRecorder::polyline(const ImVec2* points, int count, ImU32 stroke, float thickness) {
    if (count < 2) return;
    body_ += "<polyline fill=\"none\"" + colour_attr("stroke", stroke) + " stroke-width=\"" +
             num(thickness) + "\" points=\"";
    for (int i = 0; i < count; ++i) {
        if (i) body_ += ' ';
        body_ += point(points[i]);
    }
    body_ += "\"/>\n";
    ++elements_;
}

void SvgRecorder::circle(ImVec2 centre, float radius, ImU32 fill) {
    body_ += "<circle cx=\"" + num(centre.x - origin_.x) + "\" cy=\"" + num(centre.y - origin_.y) +
             "\" r=\"" + num(radius) + "\"" + colour_attr("fill", fill) + "/>\n";
    ++elements_;
}

void SvgRecorder::bezier(ImVec2 p0, ImVec2 p1, ImVec2 p2, ImVec2 p3, ImU32 stroke,
                         float thickness) {
    body_ += "<path fill=\"none\"" + colour_attr("stroke", stroke) + " stroke-width=\"" +
             num(thickness) + "\" d=\"M" + point(p0) + " C" + point(p1) + " " + point(p2) + " " +
             point(p3) + "\"/>\n";
    ++elements_;
}

void SvgRecorder::text(ImVec2 pos, ImU32 fill, float font_size, std::string_view utf8) {
    // ImGui places text by its top-left corner; SVG by the baseline (~0.8 em below the top).
    body_ += "<text x=\"" + num(pos.x - origin_.x) + "\" y=\"" +
             num(pos.y - origin_.y + 0.8f * font_size) + "\" font-size=\"" + num(font_size) +
             "\" font-family=\"sans-serif\" xml:space=\"preserve\"" + colour_attr("fill", fill) +
             ">" + xml_escape(utf8) + "</text>\n";
    ++elements_;
}

std::string SvgRecorder::finish() const {
    std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(size_.x) + "\" height=\"" +
           num(size_.y) + "\" viewBox=\"0 0 " + num(size_.x) + " " + num(size_.y) + "\">\n";
    out += "<rect width=\"100%\" height=\"100%\"" + colour_attr("fill", background_) + "/>\n";
    out += body_;
    out += "</svg>\n";
    return out;
}

// ---- Canvas ---------------------------------------------------------------------------------

void Canvas::rect(ImVec2 a, ImVec2 b, ImU32 fill) {
    dl_->AddRectFilled(a, b, fill);
    if (svg_) svg_->rect(a, b, fill);
}

void Canvas::rect_outline(ImVec2 a, ImVec2 b, ImU32 stroke, float thickness) {
    dl_->AddRect(a, b, stroke, 0.0f, 0, thickness);
    if (svg_) svg_->rect_outline(a, b, stroke, thickness);
}

void Canvas::line(ImVec2 a, ImVec2 b, ImU32 stroke, float thickness) {
    dl_->AddLine(a, b, stroke, thickness);
    if (svg_) svg_->line(a, b, stroke, thickness);
}

void Canvas::polyline(const ImVec2* points, int count, ImU32 stroke, float thickness) {
    dl_->AddPolyline(points, count, stroke, 0, thickness);
    if (svg_) svg_->polyline(points, count, stroke, thickness);
}

void Canvas::circle(ImVec2 centre, float radius, ImU32 fill) {
    dl_->AddCircleFilled(centre, radius, fill, 12);
    if (svg_) svg_->circle(centre, radius, fill);
}

void Canvas::bezier(ImVec2 p0, ImVec2 p1, ImVec2 p2, ImVec2 p3, ImU32 stroke, float thickness) {
    dl_->AddBezierCubic(p0, p1, p2, p3, stroke, thickness, 10);
    if (svg_) svg_->bezier(p0, p1, p2, p3, stroke, thickness);
}

void Canvas::text(ImVec2 pos, ImU32 fill, std::string_view utf8) {
    dl_->AddText(pos, fill, utf8.data(), utf8.data() + utf8.size());
    if (svg_) svg_->text(pos, fill, ImGui::GetFontSize(), utf8);
}

void Canvas::text_centred(ImVec2 centre, ImU32 fill, std::string_view utf8) {
    const ImVec2 size = ImGui::CalcTextSize(utf8.data(), utf8.data() + utf8.size());
    text(ImVec2(centre.x - size.x * 0.5f, centre.y - size.y * 0.5f), fill, utf8);
}

void Canvas::push_clip(ImVec2 a, ImVec2 b) {
    dl_->PushClipRect(a, b, true);
}

void Canvas::pop_clip() {
    dl_->PopClipRect();
}

// ---- Raster ---------------------------------------------------------------------------------

void Raster::resize(int width, int height) {
    width = std::max(width, 1);
    height = std::max(height, 1);
    if (width == w_ && height == h_) return;
    w_ = width;
    h_ = height;
    px_.assign(static_cast<size_t>(w_) * static_cast<size_t>(h_), 0);
    dirty_ = true;
}

void Raster::fill(ImU32 colour) {
    std::fill(px_.begin(), px_.end(), colour);
    dirty_ = true;
}

void Raster::draw(Canvas& canvas, TextureHost* textures, ImVec2 a, ImVec2 b) {
    if (w_ == 0 || h_ == 0) return;
    if (canvas.svg() || !textures) {
        draw_as_rects(canvas, a, b);
        return;
    }
    if (textures->generation() != generation_) {
        texture_ = nullptr;  // the old texture died with its GL context
        generation_ = textures->generation();
        dirty_ = true;
    }
    if (dirty_) {
        texture_ = textures->upload(texture_, w_, h_, px_.data());
        dirty_ = false;
    }
    if (texture_) {
        canvas.draw_list()->AddImage(texture_, a, b);
    } else {
        draw_as_rects(canvas, a, b);
    }
}

void Raster::draw_as_rects(Canvas& canvas, ImVec2 a, ImVec2 b) const {
    const float sx = (b.x - a.x) / static_cast<float>(w_);
    const float sy = (b.y - a.y) / static_cast<float>(h_);
    for (int y = 0; y < h_; ++y) {
        const uint32_t* r = row(y);
        for (int x = 0; x < w_;) {
            int e = x + 1;
            while (e < w_ && r[e] == r[x]) ++e;
            if ((r[x] >> IM_COL32_A_SHIFT) != 0) {
                canvas.rect(
                    ImVec2(a.x + static_cast<float>(x) * sx, a.y + static_cast<float>(y) * sy),
                    ImVec2(a.x + static_cast<float>(e) * sx, a.y + static_cast<float>(y + 1) * sy),
                    r[x]);
            }
            x = e;
        }
    }
}

}  // namespace kvscope::views
