#include "app/studio/imgui_host_widget.h"

#include <QKeyEvent>
#include <QMouseEvent>
#include <QOpenGLContext>
#include <QOpenGLFramebufferObject>
#include <QWheelEvent>

#include <algorithm>
#include <cfloat>
#include <cmath>

#include <backends/imgui_impl_opengl3.h>
#include <imgui.h>

#include "app/studio/studio_fonts.h"

namespace kvscope::studio {

namespace {

int imgui_key(int qt_key) {
    switch (qt_key) {
        case Qt::Key_Tab:
            return ImGuiKey_Tab;
        case Qt::Key_Left:
            return ImGuiKey_LeftArrow;
        case Qt::Key_Right:
            return ImGuiKey_RightArrow;
        case Qt::Key_Up:
            return ImGuiKey_UpArrow;
        case Qt::Key_Down:
            return ImGuiKey_DownArrow;
        case Qt::Key_PageUp:
            return ImGuiKey_PageUp;
        case Qt::Key_PageDown:
            return ImGuiKey_PageDown;
        case Qt::Key_Home:
            return ImGuiKey_Home;
        case Qt::Key_End:
            return ImGuiKey_End;
        case Qt::Key_Insert:
            return ImGuiKey_Insert;
        case Qt::Key_Delete:
            return ImGuiKey_Delete;
        case Qt::Key_Backspace:
            return ImGuiKey_Backspace;
        case Qt::Key_Space:
            return ImGuiKey_Space;
        case Qt::Key_Return:
            return ImGuiKey_Enter;
        case Qt::Key_Enter:
            return ImGuiKey_KeyPadEnter;
        case Qt::Key_Escape:
            return ImGuiKey_Escape;
        case Qt::Key_A:
            return ImGuiKey_A;
        case Qt::Key_C:
            return ImGuiKey_C;
        case Qt::Key_V:
            return ImGuiKey_V;
        case Qt::Key_X:
            return ImGuiKey_X;
        case Qt::Key_Y:
            return ImGuiKey_Y;
        case Qt::Key_Z:
            return ImGuiKey_Z;
        default:
            return -1;
    }
}

int imgui_button(Qt::MouseButton b) {
    switch (b) {
        case Qt::LeftButton:
            return 0;
        case Qt::RightButton:
            return 1;
        case Qt::MiddleButton:
            return 2;
        default:
            return -1;
    }
}

// Restores the previously current ImGui context on scope exit (several widgets share a thread).
class ContextScope {
  public:
    explicit ContextScope(ImGuiContext* ctx) : previous_(ImGui::GetCurrentContext()) {
        ImGui::SetCurrentContext(ctx);
    }
    ~ContextScope() { ImGui::SetCurrentContext(previous_); }
    ContextScope(const ContextScope&) = delete;
    ContextScope& operator=(const ContextScope&) = delete;

  private:
    ImGuiContext* previous_;
};

}  // namespace

ImGuiHostWidget::ImGuiHostWidget(QWidget* parent)
    : QOpenGLWidget(parent), theme_(&views::theme(views::ThemeKind::kDark)) {
    setMouseTracking(true);
    setFocusPolicy(Qt::StrongFocus);
    setMinimumSize(160, 120);
    ImFontAtlas* atlas = atlas_for(1.0f);
    ctx_ = ImGui::CreateContext(atlas);
    ContextScope scope(ctx_);
    ImGuiIO& io = ImGui::GetIO();
    io.IniFilename = nullptr;  // layout lives in QSettings, not imgui.ini
    io.LogFilename = nullptr;
    io.BackendPlatformName = "kvscope-qt";
    for (int k = 0; k < ImGuiKey_COUNT; ++k) io.KeyMap[k] = k;
    theme_->apply_to_imgui(ImGui::GetStyle());
    clock_.start();
}

ImGuiHostWidget::~ImGuiHostWidget() {
    if (context()) {
        disconnect(context(), nullptr, this, nullptr);
        makeCurrent();
        cleanup_gl();
        doneCurrent();
    }
    ImGui::DestroyContext(ctx_);  // before the atlases it points to
}

void ImGuiHostWidget::set_theme(const views::Theme& theme) {
    theme_ = &theme;
    ContextScope scope(ctx_);
    theme_->apply_to_imgui(ImGui::GetStyle());
    request_frame();
}

void ImGuiHostWidget::set_ui_scale(float scale) {
    ui_scale_ = std::clamp(scale, 0.5f, 4.0f);
    settle_frames_ = 2;  // ImGui sizes tables and child windows again in the next frame
    update();
}

void ImGuiHostWidget::request_frame() {
    QMetaObject::invokeMethod(this, qOverload<>(&QWidget::update), Qt::QueuedConnection);
}

ImFontAtlas* ImGuiHostWidget::atlas_for(float scale) {
    const int key = static_cast<int>(std::lround(scale * 100.0f));
    auto it = atlases_.find(key);
    if (it == atlases_.end()) {
        auto atlas = std::make_unique<ImFontAtlas>();
        add_ui_font(atlas.get(), kUiFontSize * scale);
        it = atlases_.emplace(key, std::move(atlas)).first;
    }
    return it->second.get();
}

// ---- GL lifetime ----------------------------------------------------------------------------

void ImGuiHostWidget::initializeGL() {
    initializeOpenGLFunctions();
    // A dock that floats re-creates the context: release our GL objects with the old one.
    connect(context(), &QOpenGLContext::aboutToBeDestroyed, this, [this] {
        makeCurrent();
        cleanup_gl();
        doneCurrent();
    });
    ContextScope scope(ctx_);
    ImGui::GetIO().Fonts = atlas_for(1.0f);  // the backend makes the texture of the main atlas
    ImGui_ImplOpenGL3_Init(nullptr);
    ImGui_ImplOpenGL3_CreateDeviceObjects();
    gl_ready_ = true;
}

void ImGuiHostWidget::cleanup_gl() {
    if (!gl_ready_) return;
    ContextScope scope(ctx_);
    ImGui::GetIO().Fonts = atlas_for(1.0f);
    ImGui_ImplOpenGL3_Shutdown();
    if (!textures_.empty())
        glDeleteTextures(static_cast<GLsizei>(textures_.size()), textures_.data());
    if (!font_textures_.empty()) {
        glDeleteTextures(static_cast<GLsizei>(font_textures_.size()), font_textures_.data());
    }
    textures_.clear();
    font_textures_.clear();
    for (auto& [key, atlas] : atlases_) atlas->SetTexID(nullptr);
    gl_ready_ = false;
    ++generation_;
}

ImTextureID ImGuiHostWidget::upload(ImTextureID existing, int width, int height,
                                    const uint32_t* rgba) {
    if (!gl_ready_ || width <= 0 || height <= 0) return nullptr;
    GLuint tex = static_cast<GLuint>(reinterpret_cast<intptr_t>(existing));
    if (tex == 0) {
        glGenTextures(1, &tex);
        textures_.push_back(tex);
    }
    GLint previous = 0;
    glGetIntegerv(GL_TEXTURE_BINDING_2D, &previous);
    glBindTexture(GL_TEXTURE_2D, tex);
    // Rasters are data: nearest sampling keeps cell edges sharp when stretched.
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_NEAREST);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_NEAREST);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
    glPixelStorei(GL_UNPACK_ALIGNMENT, 4);
    glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA, width, height, 0, GL_RGBA, GL_UNSIGNED_BYTE, rgba);
    glBindTexture(GL_TEXTURE_2D, static_cast<GLuint>(previous));
    // NOLINTNEXTLINE(performance-no-int-to-ptr): ImGui carries a GL texture name in a void*
    return reinterpret_cast<ImTextureID>(static_cast<intptr_t>(tex));
}

// ---- Frames ---------------------------------------------------------------------------------

void ImGuiHostWidget::render_frame(QSize widget_size, float device_scale) {
    ContextScope scope(ctx_);
    ImGuiIO& io = ImGui::GetIO();
    // The UI scale is one more device scale: ImGui sees a smaller display drawn larger.
    const float framebuffer_scale = device_scale * ui_scale_;
    const QSizeF logical = QSizeF(widget_size) / static_cast<double>(ui_scale_);
    ImFontAtlas* atlas = atlas_for(framebuffer_scale);
    if (atlas->TexID == nullptr) {
        // Atlases other than the main one (export scales, high-DPI screens) are uploaded here.
        unsigned char* pixels = nullptr;
        int w = 0, h = 0;
        atlas->GetTexDataAsRGBA32(&pixels, &w, &h);
        GLuint tex = 0;
        glGenTextures(1, &tex);
        font_textures_.push_back(tex);
        GLint previous = 0;
        glGetIntegerv(GL_TEXTURE_BINDING_2D, &previous);
        glBindTexture(GL_TEXTURE_2D, tex);
        glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
        glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
        glPixelStorei(GL_UNPACK_ALIGNMENT, 4);
        glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA, w, h, 0, GL_RGBA, GL_UNSIGNED_BYTE, pixels);
        glBindTexture(GL_TEXTURE_2D, static_cast<GLuint>(previous));
        // NOLINTNEXTLINE(performance-no-int-to-ptr): ImGui carries a GL texture name in a void*
        atlas->SetTexID(reinterpret_cast<ImTextureID>(static_cast<intptr_t>(tex)));
    }
    io.Fonts = atlas;
    io.FontGlobalScale = 1.0f / framebuffer_scale;
    io.DisplaySize =
        ImVec2(static_cast<float>(logical.width()), static_cast<float>(logical.height()));
    io.DisplayFramebufferScale = ImVec2(framebuffer_scale, framebuffer_scale);
    const double now = static_cast<double>(clock_.nsecsElapsed()) * 1e-9;
    io.DeltaTime = static_cast<float>(std::clamp(now - last_time_, 1e-4, 0.5));
    last_time_ = now;
    apply_inputs();

    const ImVec4 bg = ImGui::ColorConvertU32ToFloat4(theme_->background);
    glViewport(0, 0, static_cast<GLsizei>(std::lround(widget_size.width() * device_scale)),
               static_cast<GLsizei>(std::lround(widget_size.height() * device_scale)));
    glClearColor(bg.x, bg.y, bg.z, 1.0f);
    glClear(GL_COLOR_BUFFER_BIT);

    ImGui_ImplOpenGL3_NewFrame();
    ImGui::NewFrame();
    ImGui::SetNextWindowPos(ImVec2(0, 0));
    ImGui::SetNextWindowSize(io.DisplaySize);
    const ImGuiWindowFlags flags =
        ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoSavedSettings |
        ImGuiWindowFlags_NoScrollWithMouse | ImGuiWindowFlags_NoBringToFrontOnFocus;
    ImGui::Begin("##host", nullptr, flags);
    if (draw_) draw_(*this);
    ImGui::End();
    ImGui::Render();
    ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());

    io.Fonts = atlas_for(1.0f);
    ++frames_;
    if (settle_frames_ > 0) --settle_frames_;
}

void ImGuiHostWidget::paintGL() {
    if (!gl_ready_) return;
    render_frame(size(), static_cast<float>(devicePixelRatioF()));
    emit frame_drawn();
    if (!inputs_.empty() || settle_frames_ > 0) request_frame();
}

QImage ImGuiHostWidget::render_image(double scale, QSize logical) {
    if (logical.isEmpty()) logical = size();
    if (!gl_ready_ || logical.isEmpty() || scale <= 0) return {};
    makeCurrent();
    const QSize px(static_cast<int>(std::lround(logical.width() * scale)),
                   static_cast<int>(std::lround(logical.height() * scale)));
    QOpenGLFramebufferObject fbo(px, QOpenGLFramebufferObject::CombinedDepthStencil);
    QImage image;
    if (fbo.isValid() && fbo.bind()) {
        render_frame(logical, static_cast<float>(scale));
        image = fbo.toImage().convertToFormat(QImage::Format_RGB32);
        fbo.release();
    }
    doneCurrent();
    return image;
}

std::string ImGuiHostWidget::render_svg(QSize logical) {
    if (logical.isEmpty()) logical = size();
    views::SvgRecorder recorder(ImVec2(0, 0),
                                ImVec2(static_cast<float>(logical.width()) / ui_scale_,
                                       static_cast<float>(logical.height()) / ui_scale_),
                                theme_->background);
    svg_ = &recorder;
    const QImage image = render_image(1.0, logical);
    svg_ = nullptr;
    return image.isNull() ? std::string() : recorder.finish();
}

// ---- Input ----------------------------------------------------------------------------------

void ImGuiHostWidget::queue(Input in) {
    inputs_.push_back(std::move(in));
    settle_frames_ = 3;  // hover state and tooltips settle one frame after the input
    update();
}

void ImGuiHostWidget::queue_mouse(QMouseEvent* e, bool down) {
    const int b = imgui_button(e->button());
    if (b < 0) return;
    Input in;
    in.kind = Input::kButton;
    in.x = static_cast<float>(e->position().x());
    in.y = static_cast<float>(e->position().y());
    in.button = b;
    in.down = down;
    queue(in);
}

void ImGuiHostWidget::mousePressEvent(QMouseEvent* e) {
    setFocus(Qt::MouseFocusReason);
    queue_mouse(e, true);
}

void ImGuiHostWidget::mouseReleaseEvent(QMouseEvent* e) {
    queue_mouse(e, false);
}

void ImGuiHostWidget::mouseDoubleClickEvent(QMouseEvent* e) {
    // Qt sends press, release, double-click, release: the double-click is the second press, and
    // ImGui recognises the double click itself from the timing of the two presses.
    queue_mouse(e, true);
}

void ImGuiHostWidget::mouseMoveEvent(QMouseEvent* e) {
    Input in;
    in.kind = Input::kMove;
    in.x = static_cast<float>(e->position().x());
    in.y = static_cast<float>(e->position().y());
    // Coalesce consecutive moves: only the latest position matters.
    if (!inputs_.empty() && inputs_.back().kind == Input::kMove) {
        inputs_.back() = in;
        settle_frames_ = 3;
        update();
        return;
    }
    queue(in);
}

void ImGuiHostWidget::wheelEvent(QWheelEvent* e) {
    Input in;
    in.kind = Input::kWheel;
    in.x = static_cast<float>(e->position().x());
    in.y = static_cast<float>(e->position().y());
    in.wheel_x = static_cast<float>(e->angleDelta().x()) / 120.0f;
    in.wheel_y = static_cast<float>(e->angleDelta().y()) / 120.0f;
    queue(in);
    e->accept();
}

void ImGuiHostWidget::key_event(QKeyEvent* e, bool down) {
    Input in;
    in.kind = Input::kKey;
    in.key = imgui_key(e->key());
    in.down = down;
    in.modifiers = e->modifiers();
    queue(in);
    if (down && !e->text().isEmpty() && e->text().at(0).isPrint()) {
        Input t;
        t.kind = Input::kText;
        t.text = e->text().toStdString();
        queue(t);
    }
}

void ImGuiHostWidget::keyPressEvent(QKeyEvent* e) {
    key_event(e, true);
    QOpenGLWidget::keyPressEvent(e);  // unhandled keys reach the window (shortcuts, menus)
}

void ImGuiHostWidget::keyReleaseEvent(QKeyEvent* e) {
    key_event(e, false);
}

void ImGuiHostWidget::leaveEvent(QEvent* e) {
    Input in;
    in.kind = Input::kMove;
    in.x = -FLT_MAX;
    in.y = -FLT_MAX;
    queue(in);
    QOpenGLWidget::leaveEvent(e);
}

void ImGuiHostWidget::focusOutEvent(QFocusEvent* e) {
    // Release everything held so no key or button stays stuck down.
    for (int b = 0; b < 3; ++b) {
        Input in;
        in.kind = Input::kButton;
        in.button = b;
        in.down = false;
        in.x = -FLT_MAX;
        in.y = -FLT_MAX;
        queue(in);
    }
    QOpenGLWidget::focusOutEvent(e);
}

void ImGuiHostWidget::apply_inputs() {
    ImGuiIO& io = ImGui::GetIO();
    bool button_changed = false;
    while (!inputs_.empty()) {
        const Input& in = inputs_.front();
        if (button_changed) break;  // anything after a button change waits for the next frame
        switch (in.kind) {
            case Input::kMove:
                io.MousePos = ImVec2(in.x / ui_scale_, in.y / ui_scale_);
                break;
            case Input::kButton:
                if (io.MouseDown[in.button] != in.down) {
                    if (in.x > -FLT_MAX) io.MousePos = ImVec2(in.x / ui_scale_, in.y / ui_scale_);
                    io.MouseDown[in.button] = in.down;
                    button_changed = true;
                }
                break;
            case Input::kWheel:
                io.MousePos = ImVec2(in.x / ui_scale_, in.y / ui_scale_);
                io.MouseWheel += in.wheel_y;
                io.MouseWheelH += in.wheel_x;
                break;
            case Input::kKey:
                io.KeyCtrl = in.modifiers.testFlag(Qt::ControlModifier);
                io.KeyShift = in.modifiers.testFlag(Qt::ShiftModifier);
                io.KeyAlt = in.modifiers.testFlag(Qt::AltModifier);
                io.KeySuper = in.modifiers.testFlag(Qt::MetaModifier);
                if (in.key >= 0) io.KeysDown[in.key] = in.down;
                break;
            case Input::kText:
                io.AddInputCharactersUTF8(in.text.c_str());
                break;
        }
        inputs_.pop_front();
    }
}

}  // namespace kvscope::studio
