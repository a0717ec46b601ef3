#pragma once
// ImGuiHostWidget: a QOpenGLWidget that owns one Dear ImGui context and draws one full-widget
// ImGui window per frame through a callback. Dear ImGui 1.86 has no Qt backend, so this is one:
// Qt events become queued ImGui inputs (at most one mouse-button change per frame, or a press and
// its release in the same frame would be lost), DeltaTime comes from a monotonic clock, and frames
// are drawn on demand (input, a request, or a few frames after input while hover state settles).
// It also implements views::TextureHost with OpenGL textures, and renders offscreen at a scale
// (PNG export at presentation resolution) or with an SVG recorder attached.
#include <QElapsedTimer>
#include <QImage>
#include <QOpenGLFunctions>
#include <QOpenGLWidget>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "views/canvas.h"
#include "views/theme.h"

struct ImGuiContext;
struct ImFontAtlas;

namespace kvscope::studio {

class ImGuiHostWidget : public QOpenGLWidget,
                        protected QOpenGLFunctions,
                        public views::TextureHost {
    Q_OBJECT

  public:
    // Called inside the frame, with this widget's ImGui context current and its window begun.
    using DrawFn = std::function<void(ImGuiHostWidget&)>;

    explicit ImGuiHostWidget(QWidget* parent = nullptr);
    ~ImGuiHostWidget() override;

    void set_draw(DrawFn draw) { draw_ = std::move(draw); }
    void set_theme(const views::Theme& theme);
    const views::Theme& theme() const { return *theme_; }
    // Asks for another frame soon (e.g. while data loads).
    void request_frame();

    // Renders one frame into an offscreen framebuffer `scale` times the widget's size (text is
    // drawn from a font atlas built at that scale, so it stays sharp). Null image on failure.
    // A non-empty `logical` lays the frame out at that size instead of the widget's (slide and
    // video export render a view at a fixed size whatever its dock's size).
    QImage render_image(double scale, QSize logical = {});
    // Renders one frame with an SVG recorder attached and returns the SVG document ("" on failure).
    std::string render_svg(QSize logical = {});
    // Set during render_svg() only; the draw callback hands it to the view.
    views::SvgRecorder* svg() const { return svg_; }

    // UI zoom (presenter mode, Ctrl+plus/minus): the view lays out in a logical space 1/scale of
    // the widget and is drawn `scale` times larger, fonts from an atlas built at that size, so
    // text, line widths and spacing grow together and stay sharp.
    void set_ui_scale(float scale);
    float ui_scale() const { return ui_scale_; }
    // The ImGui context of this widget (layout checks in tests read its windows and tables).
    ImGuiContext* imgui_context() const { return ctx_; }

    int frame_count() const { return frames_; }
    bool gl_ready() const { return gl_ready_; }

    // views::TextureHost
    ImTextureID upload(ImTextureID existing, int width, int height, const uint32_t* rgba) override;
    uint64_t generation() const override { return generation_; }

  signals:
    void frame_drawn();

  protected:
    void initializeGL() override;
    void paintGL() override;
    void mousePressEvent(QMouseEvent* e) override;
    void mouseReleaseEvent(QMouseEvent* e) override;
    void mouseDoubleClickEvent(QMouseEvent* e) override;
    void mouseMoveEvent(QMouseEvent* e) override;
    void wheelEvent(QWheelEvent* e) override;
    void keyPressEvent(QKeyEvent* e) override;
    void keyReleaseEvent(QKeyEvent* e) override;
    void leaveEvent(QEvent* e) override;
    void focusOutEvent(QFocusEvent* e) override;

  private:
    struct Input {
        enum Kind { kMove, kButton, kWheel, kKey, kText } kind = kMove;
        float x = 0, y = 0;  // logical pixels
        int button = 0;
        bool down = false;
        float wheel_x = 0, wheel_y = 0;
        int key = -1;  // ImGuiKey index, -1 = none
        Qt::KeyboardModifiers modifiers;
        std::string text;
    };
    void queue(Input in);
    void queue_mouse(QMouseEvent* e, bool down);
    void key_event(QKeyEvent* e, bool down);
    void apply_inputs();  // drains the queue into ImGuiIO for one frame
    void render_frame(QSize widget_size, float device_scale);
    ImFontAtlas* atlas_for(float scale);
    void cleanup_gl();

    DrawFn draw_;
    const views::Theme* theme_;
    ImGuiContext* ctx_ = nullptr;
    std::map<int, std::unique_ptr<ImFontAtlas>> atlases_;  // key: scale x 100
    std::vector<unsigned> textures_;                       // GL textures made by upload()
    std::vector<unsigned> font_textures_;                  // of atlases other than the main one
    uint64_t generation_ = 1;
    bool gl_ready_ = false;
    std::deque<Input> inputs_;
    int settle_frames_ = 0;
    int frames_ = 0;
    QElapsedTimer clock_;
    double last_time_ = 0.0;
    views::SvgRecorder* svg_ = nullptr;
    float ui_scale_ = 1.0f;
};

}  // namespace kvscope::studio
