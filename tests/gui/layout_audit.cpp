#include "tests/gui/layout_audit.h"

#include <QAbstractButton>
#include <QComboBox>
#include <QDockWidget>
#include <QLabel>
#include <QMainWindow>
#include <QMenuBar>
#include <QSpinBox>
#include <QStyle>
#include <QTabBar>
#include <QTextDocument>
#include <QToolButton>

#include <algorithm>

#include <imgui.h>
#include <imgui_internal.h>

namespace kvscope::studio::testing {

namespace {

QString line(const QString& where, float need, float have) {
    return QString("%1: needs %2 px, has %3 px")
        .arg(where)
        .arg(need, 0, 'f', 1)
        .arg(have, 0, 'f', 1);
}

QString name_of(const QWidget* w) {
    return QString("%1 '%2'").arg(w->metaObject()->className(), w->objectName());
}

}  // namespace

QStringList imgui_clipped(ImGuiContext* ctx, const QString& where, float tolerance_px) {
    QStringList out;
    ImGuiContext& g = *ctx;
    for (ImGuiWindow* w : g.Windows) {
        if (!w->Active || w->Hidden || w->ScrollbarX) continue;
        if (w->Flags & (ImGuiWindowFlags_Tooltip | ImGuiWindowFlags_Popup)) continue;
        const float reach = w->DC.CursorMaxPos.x;
        const float edge = w->InnerClipRect.Max.x;
        if (reach > edge + tolerance_px) {
            out << line(QString("%1 window %2").arg(where, QString::fromUtf8(w->Name)),
                        reach - w->InnerClipRect.Min.x, edge - w->InnerClipRect.Min.x);
        }
    }
    for (int t = 0; t < g.Tables.GetMapSize(); ++t) {
        const ImGuiTable* table = g.Tables.TryGetMapData(t);
        if (!table || table->LastFrameActive < g.FrameCount - 1) continue;
        for (int c = 0; c < table->ColumnsCount; ++c) {
            const ImGuiTableColumn& col = table->Columns[c];
            if (!col.IsEnabled || !col.IsVisibleX) continue;
            const float reach = std::max(
                {col.ContentMaxXFrozen, col.ContentMaxXUnfrozen, col.ContentMaxXHeadersIdeal});
            // Cells are clipped at the column's work edge plus its cell padding.
            const float edge = col.WorkMaxX + table->CellPaddingX;
            if (reach > edge + tolerance_px) {
                const char* name = table->ColumnsNames.Buf.Size > 0 && col.NameOffset >= 0
                                       ? table->ColumnsNames.c_str() + col.NameOffset
                                       : "";
                out << line(QString("%1 table column %2 '%3'").arg(where).arg(c).arg(name),
                            reach - col.WorkMinX, edge - col.WorkMinX);
            }
        }
    }
    return out;
}

QStringList qt_clipped(QWidget* root, int tol) {
    QStringList out;
    for (QWidget* w : root->findChildren<QWidget*>()) {
        if (!w->isVisibleTo(root) || w->width() <= 0) continue;
        const QFontMetrics fm = w->fontMetrics();
        if (auto* label = qobject_cast<QLabel*>(w)) {
            if (label->text().isEmpty() || label->wordWrap()) continue;
            int need = 0;
            if (Qt::mightBeRichText(label->text())) {
                QTextDocument doc;
                doc.setDefaultFont(label->font());
                doc.setDocumentMargin(0);
                doc.setHtml(label->text());
                need = static_cast<int>(doc.idealWidth());
            } else {
                for (const QString& l : label->text().split('\n'))
                    need = std::max(need, fm.horizontalAdvance(l));
            }
            const int have =
                label->contentsRect().width() - 2 * label->margin() - std::max(label->indent(), 0);
            if (need > have + tol)
                out << line(name_of(w) + " \"" + label->text() + "\"", need, have);
        } else if (auto* button = qobject_cast<QAbstractButton*>(w)) {
            // A tool button shows its icon: the icon must fit; others their text. Qt's own
            // icon-only buttons (dock title bars) are not labels.
            const auto* tool = qobject_cast<QToolButton*>(w);
            if (!tool && button->text().isEmpty()) continue;
            const int need = tool && tool->toolButtonStyle() == Qt::ToolButtonIconOnly
                                 ? button->iconSize().width()
                                 : button->sizeHint().width();
            if (need > button->width() + tol)
                out << line(name_of(w) + " \"" + button->text() + "\"", need, button->width());
        } else if (qobject_cast<QSpinBox*>(w) || qobject_cast<QComboBox*>(w)) {
            const int need = w->minimumSizeHint().width();
            if (need > w->width() + tol) out << line(name_of(w), need, w->width());
        } else if (auto* tabs = qobject_cast<QTabBar*>(w)) {
            const int hspace =
                tabs->style()->pixelMetric(QStyle::PM_TabBarTabHSpace, nullptr, tabs);
            for (int i = 0; i < tabs->count(); ++i) {
                const QRect r = tabs->tabRect(i);
                const int need = fm.horizontalAdvance(tabs->tabText(i)) + hspace;
                if (need > r.width() + tol || !tabs->rect().contains(r))
                    out << line("tab \"" + tabs->tabText(i) + "\"", need, r.width());
            }
        } else if (auto* dock = qobject_cast<QDockWidget*>(w)) {
            if (dock->titleBarWidget()) continue;
            // Tabbed docks show their title in the tab; a lone one in its title bar, next to
            // the float and close buttons (one title-bar height each).
            const auto* main = qobject_cast<QMainWindow*>(root);
            if (main && !main->tabifiedDockWidgets(dock).isEmpty()) continue;
            const int buttons = 2 * (fm.height() + 8);
            const int need = fm.horizontalAdvance(dock->windowTitle()) + buttons;
            if (need > dock->width() + tol)
                out << line("dock title \"" + dock->windowTitle() + "\"", need, dock->width());
        } else if (auto* bar = qobject_cast<QMenuBar*>(w)) {
            for (QAction* a : bar->actions()) {
                const QRect r = bar->actionGeometry(a);
                if (a->isVisible() && (r.isEmpty() || !bar->rect().contains(r)))
                    out << line("menu \"" + a->text() + "\"", r.width(), 0);
            }
        }
    }
    return out;
}

}  // namespace kvscope::studio::testing
