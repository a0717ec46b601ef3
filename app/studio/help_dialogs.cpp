#include "app/studio/help_dialogs.h"

#include <QAction>
#include <QApplication>
#include <QCursor>
#include <QDialogButtonBox>
#include <QDockWidget>
#include <QHeaderView>
#include <QHelpEvent>
#include <QMainWindow>
#include <QMenu>
#include <QMenuBar>
#include <QRegularExpression>
#include <QScrollBar>
#include <QTabBar>
#include <QTableWidget>
#include <QTextBrowser>
#include <QToolTip>
#include <QUrl>
#include <QVBoxLayout>

#include "app/studio/main_window.h"
#include "views/view_help.h"

namespace kvscope::studio {

namespace {

QString plain(QString menu_text) {
    return menu_text.remove(QRegularExpression("&(?!&)")).replace("&&", "&");
}

void collect(const QMenu* menu, const QString& where, std::vector<ShortcutRow>* rows) {
    for (const QAction* a : menu->actions()) {
        if (a->menu()) {
            collect(a->menu(), where + " > " + plain(a->menu()->title()), rows);
            continue;
        }
        if (a->shortcuts().isEmpty()) continue;
        QStringList keys;
        for (const QKeySequence& k : a->shortcuts()) keys << k.toString(QKeySequence::NativeText);
        rows->push_back({where, plain(a->text()), keys.join(", ")});
    }
}

// The policy explainers are Help > Lessons entries of their own (issue 16, item 3): the link
// triggers the first menu action that names them, wherever it lives.
QAction* explainers_action(const QMainWindow& window) {
    if (auto* a = window.menuBar()->findChild<QAction*>("policyExplainersAction")) return a;
    for (QAction* a : window.menuBar()->findChildren<QAction*>()) {
        const QString t = plain(a->text()).toLower();
        if (!a->menu() && t.contains("explainer")) return a;
    }
    return nullptr;
}

QString view_help_html() {
    QString html = QObject::tr(
        "<p>Every view shows the same trace at the same step, layer, head and token: a click in "
        "one selects in all of them. Colours mean the same everywhere: green held, yellow to red "
        "held with fewer bits, purple demoted, blue merged, dark red evicted, pink the needle. "
        "What each policy keeps and why: <a href=\"kvscope:explainers\">the policy "
        "explainers</a> (Help &gt; Lessons; the reference is docs/policy_reference.md).</p>");
    for (const views::ViewHelp& h : views::all_view_help()) {
        html += QString("<h3><a name=\"%1\"></a>%2</h3><p>%3</p>")
                    .arg(QString::fromUtf8(h.id), QString::fromUtf8(h.title).toHtmlEscaped(),
                         QString::fromUtf8(h.how_to_read).toHtmlEscaped());
    }
    return html;
}

QString title_tip(const views::ViewHelp& h) {
    return QString("<b>%1</b><p>%2</p><p><i>%3</i></p>")
        .arg(QString::fromUtf8(h.title).toHtmlEscaped(),
             QString::fromUtf8(h.how_to_read).toHtmlEscaped(),
             QObject::tr("Help > How to read the views (F1)"));
}

}  // namespace

std::vector<ShortcutRow> shortcut_rows(const QMainWindow& window) {
    std::vector<ShortcutRow> rows;
    for (const QAction* a : window.menuBar()->actions()) {
        if (a->menu()) collect(a->menu(), plain(a->menu()->title()), &rows);
    }
    const QString mouse = QObject::tr("Mouse");
    rows.push_back(
        {mouse, QObject::tr("Select a token, layer, head or step"), QObject::tr("Click")});
    rows.push_back({mouse, QObject::tr("Zoom the token axis (timeline, merges, precision)"),
                    QObject::tr("Wheel")});
    rows.push_back({mouse, QObject::tr("Pan the token axis"), QObject::tr("Drag")});
    rows.push_back({mouse, QObject::tr("Fit the token axis"), QObject::tr("Double-click")});
    rows.push_back(
        {mouse, QObject::tr("Zoom text and controls (UI scale)"), QObject::tr("Ctrl+Wheel")});
    rows.push_back(
        {mouse, QObject::tr("What a view shows"), QObject::tr("Hover its title or tab")});
    return rows;
}

ShortcutsDialog::ShortcutsDialog(const QMainWindow& window, QWidget* parent) : QDialog(parent) {
    setObjectName("shortcutsDialog");
    setWindowTitle(tr("Keyboard shortcuts"));
    const std::vector<ShortcutRow> rows = shortcut_rows(window);
    table_ = new QTableWidget(static_cast<int>(rows.size()), 3, this);
    table_->setObjectName("shortcutsTable");
    table_->setHorizontalHeaderLabels({tr("Menu"), tr("Action"), tr("Keys")});
    table_->verticalHeader()->hide();
    table_->verticalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->setSelectionMode(QAbstractItemView::NoSelection);
    table_->setWordWrap(false);
    for (size_t r = 0; r < rows.size(); ++r) {
        const int row = static_cast<int>(r);
        table_->setItem(row, 0, new QTableWidgetItem(rows[r].where));
        table_->setItem(row, 1, new QTableWidgetItem(rows[r].what));
        table_->setItem(row, 2, new QTableWidgetItem(rows[r].keys));
    }
    // Columns as wide as their text, so nothing is elided at any UI scale.
    table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(table_);
    layout->addWidget(buttons);
    table_->resizeColumnsToContents();
    int width = table_->verticalScrollBar()->sizeHint().width() + 4 * table_->frameWidth();
    for (int c = 0; c < 3; ++c) width += table_->columnWidth(c);
    resize(width + 40, std::min(720, table_->rowHeight(0) * (table_->rowCount() + 4) + 80));
}

ViewHelpDialog::ViewHelpDialog(MainWindow* window) : QDialog(window) {
    setObjectName("viewHelpDialog");
    setWindowTitle(tr("How to read the views"));
    browser_ = new QTextBrowser(this);
    browser_->setObjectName("viewHelpText");
    browser_->setOpenLinks(false);
    browser_->setHtml(view_help_html());
    connect(browser_, &QTextBrowser::anchorClicked, this, [this, window](const QUrl& url) {
        if (url.toString() != "kvscope:explainers") return;
        if (QAction* a = explainers_action(*window)) {
            a->trigger();
        } else {
            QToolTip::showText(QCursor::pos(),
                               tr("No policy explainers in this build: see "
                                  "docs/policy_reference.md"),
                               browser_);
        }
    });
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(browser_);
    layout->addWidget(buttons);
    const int em = fontMetrics().horizontalAdvance('M');
    resize(em * 56, em * 44);
}

void ViewHelpDialog::show_view_help(const QString& view_id) {
    browser_->scrollToAnchor(view_id);
}

void add_help_actions(QMenu* help, MainWindow* window) {
    QAction* keys = help->addAction(QObject::tr("Keyboard &shortcuts"), window, [window] {
        auto* d = new ShortcutsDialog(*window, window);
        d->setAttribute(Qt::WA_DeleteOnClose);
        d->show();
    });
    keys->setObjectName("shortcutsAction");
    keys->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Slash));
    QAction* read = help->addAction(QObject::tr("How to &read the views"), window, [window] {
        auto* d = new ViewHelpDialog(window);
        d->setAttribute(Qt::WA_DeleteOnClose);
        d->show();
        const int i = window->current_view();
        if (i >= 0 && i < window->view_count())
            d->show_view_help(QString::fromUtf8(window->view(i)->id()));
    });
    read->setObjectName("viewHelpAction");
    read->setShortcut(QKeySequence::HelpContents);
    new ViewTitleTips(window);
}

ViewTitleTips::ViewTitleTips(MainWindow* window) : QObject(window), window_(window) {
    qApp->installEventFilter(this);
}

QString ViewTitleTips::tip_for_title(const QString& dock_title) {
    const QString title = plain(dock_title);
    for (const views::ViewHelp& h : views::all_view_help()) {
        if (title == QString::fromUtf8(h.short_title) || title == QString::fromUtf8(h.title))
            return title_tip(h);
    }
    return {};
}

bool ViewTitleTips::eventFilter(QObject* watched, QEvent* event) {
    if (event->type() != QEvent::ToolTip || !watched->isWidgetType()) return false;
    auto* w = static_cast<QWidget*>(watched);
    if (w->window() != window_) return false;
    const auto* help = static_cast<QHelpEvent*>(event);
    QString tip;
    if (auto* tabs = qobject_cast<QTabBar*>(w); tabs && tabs->parentWidget() == window_) {
        const int i = tabs->tabAt(help->pos());
        if (i >= 0) tip = tip_for_title(tabs->tabText(i));
    } else if (auto* dock = qobject_cast<QDockWidget*>(w)) {
        // Only on the title bar: the view inside has its own tooltips.
        if (dock->widget() && !dock->widget()->geometry().contains(help->pos()))
            tip = tip_for_title(dock->windowTitle());
    }
    if (tip.isEmpty()) return false;
    QToolTip::showText(help->globalPos(), tip, w);
    return true;
}

}  // namespace kvscope::studio
