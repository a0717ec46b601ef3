#pragma once
// File > Export video... / Export figure...: a dialog for the view, the steps, the size (and the
// frame rate or the caption), then a file dialog, then slide_export.h with a progress dialog.
#include <QDialog>

class QComboBox;
class QLineEdit;
class QMenu;
class QSpinBox;

namespace kvscope::studio {

class MainWindow;

class SlideExportDialog : public QDialog {
    Q_OBJECT

  public:
    enum class Kind { kVideo, kFigure };
    SlideExportDialog(MainWindow& window, Kind kind);

    // Runs the dialog, asks for the file and exports; errors are shown in a message box.
    void run();

    QComboBox* view_box() const { return view_; }
    QSpinBox* first_box() const { return first_; }
    QSpinBox* last_box() const { return last_; }

  private:
    bool export_to(const QString& path);

    MainWindow& window_;
    Kind kind_;
    QComboBox* view_ = nullptr;
    QSpinBox* first_ = nullptr;  // the figure's step
    QSpinBox* last_ = nullptr;   // video only
    QSpinBox* fps_ = nullptr;    // video only
    QLineEdit* size_ = nullptr;
    QLineEdit* caption_ = nullptr;  // figure only
};

// Adds "Export video..." and "Export figure..." to `file` (the File menu).
void add_slide_export_actions(MainWindow* window, QMenu* file);

}  // namespace kvscope::studio
