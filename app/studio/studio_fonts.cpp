#include "app/studio/studio_fonts.h"

#include <QByteArray>
#include <QDirIterator>
#include <QFile>
#include <QStandardPaths>
#include <QStringList>

#include <imgui.h>

namespace kvscope::studio {

namespace {

struct FontData {
    QString path;
    QByteArray bytes;
};

const FontData& font_data() {
    static const FontData data = [] {
        FontData d;
        QStringList candidates;
        const QString env = qEnvironmentVariable("KVSCOPE_STUDIO_FONT");
        if (!env.isEmpty()) candidates << env;
        const QStringList names = {"DejaVuSans.ttf", "NotoSans-Regular.ttf",
                                   "LiberationSans-Regular.ttf", "Arial.ttf"};
        QStringList dirs = QStandardPaths::standardLocations(QStandardPaths::FontsLocation);
        for (const QString& base :
             QStandardPaths::standardLocations(QStandardPaths::GenericDataLocation)) {
            dirs << base + "/fonts";
        }
        for (const QString& name : names) {
            for (const QString& dir : dirs) {
                QDirIterator it(dir, {name}, QDir::Files, QDirIterator::Subdirectories);
                if (it.hasNext()) {
                    candidates << it.next();
                    break;
                }
            }
        }
        for (const QString& path : candidates) {
            QFile f(path);
            if (f.open(QIODevice::ReadOnly)) {
                d.bytes = f.readAll();
                if (d.bytes.size() > 1024) {
                    d.path = path;
                    break;
                }
                d.bytes.clear();
            }
        }
        return d;
    }();
    return data;
}

// Latin + Latin-1, Greek (rho), general punctuation, arrows, maths, box drawing and shapes.
const ImWchar kRanges[] = {0x0020, 0x00FF, 0x0370, 0x03FF, 0x2000, 0x206F, 0x2190, 0x21FF,
                           0x2200, 0x22FF, 0x2500, 0x25FF, 0x2700, 0x27BF, 0};

}  // namespace

QString ui_font_path() {
    return font_data().path;
}

void add_ui_font(ImFontAtlas* atlas, float size_px) {
    const FontData& d = font_data();
    if (!d.bytes.isEmpty()) {
        ImFontConfig cfg;
        cfg.FontDataOwnedByAtlas = false;  // the bytes live as long as the process
        cfg.OversampleH = 2;
        cfg.OversampleV = 1;
        // Dear ImGui takes a non-const pointer but does not write when it does not own the data.
        atlas->AddFontFromMemoryTTF(const_cast<char*>(d.bytes.constData()),
                                    static_cast<int>(d.bytes.size()), size_px, &cfg, kRanges);
    } else {
        ImFontConfig cfg;
        cfg.SizePixels = size_px;
        atlas->AddFontDefault(&cfg);
    }
    atlas->Build();
}

}  // namespace kvscope::studio
