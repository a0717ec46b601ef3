#pragma once
// Help for newcomers (issue 16, item 5):
//  - Help > Keyboard shortcuts: a sheet of every shortcut, read from the window's own menu actions
//    (so it cannot drift from them), plus the mouse gestures of the views and of the window.
//  - Help > How to read the views: one paragraph per view (views/view_help.h), opened at the view
//    that has the focus, with a link to the policy explainers.
//  - The same paragraph as the tooltip of each view's title: dock title bars and dock tabs.
#include <QDialog>
#include <QObject>
#include <QString>

#include <vector>

class QMainWindow;
class QMenu;
class QTableWidget;
class QTextBrowser;

namespace kvscope::studio {

class MainWindow;

struct ShortcutRow {
    QString where;  // menu ("View") or "Mouse"
    QString what;   // "Zoom in"
    QString keys;   // "Ctrl++, Ctrl+="
};

// Every action with a shortcut in the window's menus (menu order), then the mouse gestures.
std::vector<ShortcutRow> shortcut_rows(const QMainWindow& window);

class ShortcutsDialog : public QDialog {
    Q_OBJECT

  public:
    explicit ShortcutsDialog(const QMainWindow& window, QWidget* parent = nullptr);
    QTableWidget* table() const { return table_; }

  private:
    QTableWidget* table_;
};

class ViewHelpDialog : public QDialog {
    Q_OBJECT

  public:
    explicit ViewHelpDialog(MainWindow* window);
    QTextBrowser* browser() const { return browser_; }
    void show_view_help(const QString& view_id);  // scrolls to the view's paragraph

  private:
    QTextBrowser* browser_;
};

// Help menu entries: shortcuts sheet, how to read the views (F1: at the focused view), policy
// explainers. Also installs the view-title tooltips.
void add_help_actions(QMenu* help, MainWindow* window);

// The "how to read" tooltip of a view's dock title bar or tab: watches the window's dock tab bars
// and title bars for tooltip events.
class ViewTitleTips : public QObject {
    Q_OBJECT

  public:
    explicit ViewTitleTips(MainWindow* window);
    // The tooltip text for a dock title ("" when the title is no view's).
    static QString tip_for_title(const QString& dock_title);

  protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

  private:
    MainWindow* window_;
};

}  // namespace kvscope::studio
