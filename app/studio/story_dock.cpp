#include "app/studio/story_dock.h"

#include <QAction>
#include <QCommandLineParser>
#include <QCoreApplication>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QListWidget>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QPushButton>
#include <QScrollArea>
#include <QSplitter>
#include <QTextBrowser>
#include <QTimer>
#include <QVBoxLayout>

#include <cstdio>
#include <exception>

#include "app/studio/main_window.h"
#include "app/studio/policy_card.h"

namespace kvscope::studio {

namespace {

// A menu of the menu bar by its (translated) title, e.g. "&Help".
QMenu* find_menu(QMainWindow* w, const QString& title) {
    for (QAction* a : w->menuBar()->actions())
        if (a->menu() && a->text() == title) return a->menu();
    return nullptr;
}

QString short_line(const std::string& text) {
    QString s = QString::fromStdString(text).simplified();
    return s.size() > 70 ? s.left(69) + QStringLiteral("…") : s;
}

}  // namespace

views::StoryPolicy story_policy(const std::string& name) {
    views::StoryPolicy p;
    p.name = name;
    p.full_name = name;
    if (const PolicyEntry* e = PolicyRegistry::global().find(name)) {
        p.full_name = e->info.full_name;
        p.score_name = e->info.score_name;
        p.per_step = e->info.regime == Regime::kDecodeContinuous;
    }
    return p;
}

StoryDock::StoryDock(MainWindow* window) : QDockWidget(tr("Story"), window), window_(window) {
    setObjectName("story_dock");
    setFeatures(DockWidgetMovable | DockWidgetFloatable | DockWidgetClosable);
    auto* body = new QWidget(this);
    auto* v = new QVBoxLayout(body);
    title_ = new QLabel(body);
    title_->setObjectName("storyTitle");
    title_->setWordWrap(true);
    QFont tf = title_->font();
    tf.setBold(true);
    title_->setFont(tf);
    card_ = new PolicyCard(body);
    text_ = new QLabel(body);
    text_->setObjectName("storyText");
    text_->setWordWrap(true);
    text_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    text_->setAlignment(Qt::AlignTop | Qt::AlignLeft);
    text_->setMinimumHeight(110);
    QFont f = text_->font();
    f.setPointSizeF(f.pointSizeF() * 1.15);  // read aloud in a lecture
    text_->setFont(f);
    counter_ = new QLabel(body);
    counter_->setObjectName("storyCounter");
    prev_ = new QPushButton(tr("◀ Previous"), body);
    prev_->setObjectName("storyPrevious");
    prev_->setToolTip(tr("Previous beat (Shift+N)"));
    next_ = new QPushButton(tr("Next ▶"), body);
    next_->setObjectName("storyNext");
    next_->setToolTip(tr("Next beat (N)"));
    for (QPushButton* b : {prev_, next_}) b->setFocusPolicy(Qt::NoFocus);
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(prev_);
    buttons->addWidget(counter_, 1, Qt::AlignCenter);
    buttons->addWidget(next_);
    list_ = new QListWidget(body);
    list_->setObjectName("storyBeats");
    list_->setMaximumHeight(140);
    v->addWidget(title_);
    v->addWidget(card_);
    v->addWidget(text_, 1);
    v->addLayout(buttons);
    v->addWidget(list_);
    auto* scroll = new QScrollArea(this);
    scroll->setWidgetResizable(true);
    // Text wraps to the dock's width instead of scrolling sideways.
    scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    body->setMinimumWidth(240);
    scroll->setWidget(body);
    setWidget(scroll);
    connect(prev_, &QPushButton::clicked, this, &StoryDock::previous);
    connect(next_, &QPushButton::clicked, this, &StoryDock::next);
    // A trace opened while the dock is shown gets its story at once (not started: the selection
    // stays where the user put it until N). MainWindow has no "trace opened" signal; a pointer
    // comparison twice a second costs nothing.
    auto* follow = new QTimer(this);
    follow->setInterval(500);
    connect(follow, &QTimer::timeout, this, [this] {
        if (isVisible() && window_->model() != story_of_) ensure_current();
    });
    follow->start();
    connect(list_, &QListWidget::currentRowChanged, this, [this](int row) {
        if (row >= 0 && row != current_) go_to(row);
    });
    update_labels();
}

void StoryDock::set_beats(std::vector<views::StoryBeat> beats, const QString& title, bool start) {
    beats_ = std::move(beats);
    story_of_ = window_->model();
    title_->setText(title);
    const QSignalBlocker block(list_);
    list_->clear();
    for (size_t i = 0; i < beats_.size(); ++i)
        list_->addItem(QStringLiteral("%1. %2").arg(i + 1).arg(short_line(beats_[i].text)));
    const views::TraceModel* m = window_->model();
    if (m)
        card_->set_policy(QString::fromStdString(m->summary().policy),
                          QString::fromStdString(m->summary().policy_params));
    current_ = -1;
    if (start && !beats_.empty()) go_to(0);
    update_labels();
}

void StoryDock::show_story_of_open_trace(bool start) {
    const views::TraceModel* m = window_->model();
    lesson_id_.clear();
    if (!m) {
        set_beats({}, tr("Open a trace (or Help > Lessons) to tell its story."), start);
        return;
    }
    set_beats(views::make_story(*m, story_policy(m->summary().policy)),
              tr("Story of %1").arg(QFileInfo(window_->trace_path()).fileName()), start);
}

void StoryDock::ensure_current() {
    if (window_->model() != story_of_ || beats_.empty()) show_story_of_open_trace(false);
}

bool StoryDock::open_lesson(const QString& dir) {
    Lesson lesson;
    try {
        lesson = load_lesson(QFile::encodeName(dir).toStdString());
    } catch (const std::exception& e) {
        error_ = QString::fromUtf8(e.what());
        return false;
    }
    if (!window_->open_trace(QString::fromStdString(lesson.trace.string()))) {
        error_ = window_->last_error();
        return false;
    }
    if (!lesson.compare.empty()) {
        if (!window_->open_compare(QString::fromStdString(lesson.compare.string()))) {
            error_ = window_->last_error();
            return false;
        }
    } else {
        window_->close_compare();
    }
    error_.clear();
    const views::TraceModel* m = window_->model();
    const auto story = views::make_story(*m, story_policy(m->summary().policy));
    if (!isVisible()) {
        show();
        // Room for the card and the text, once the dock has its place in the layout.
        QTimer::singleShot(0, this,
                           [this] { window_->resizeDocks({this}, {440}, Qt::Horizontal); });
    }
    raise();
    set_beats(lesson_beats(lesson, story),
              tr("Lesson: %1").arg(QString::fromStdString(lesson.title)));
    lesson_id_ = QString::fromStdString(lesson.id);
    return true;
}

QString StoryDock::beat_text() const {
    return current_ >= 0 && current_ < beat_count()
               ? QString::fromStdString(beats_[static_cast<size_t>(current_)].text)
               : QString();
}

void StoryDock::go_to(int i) {
    if (beats_.empty()) return;
    current_ = std::clamp(i, 0, beat_count() - 1);
    const views::StoryBeat& b = beats_[static_cast<size_t>(current_)];
    views::ViewState& s = window_->view_state();
    if (b.layer >= 0) s.select_layer_head(b.layer, b.head);
    if (b.token >= 0) s.select_token(b.token);
    if (b.token_begin >= 0) s.select_span(0);
    if (!b.view.empty()) {
        const int v = window_->view_index(QString::fromStdString(b.view));
        if (v >= 0) window_->show_view(v);
    }
    window_->set_step(b.step);  // also refreshes the status bar when the step moves
    window_->repaint_views();
    {
        const QSignalBlocker block(list_);
        list_->setCurrentRow(current_);
    }
    update_labels();
}

void StoryDock::next() {
    ensure_current();
    go_to(current_ + 1);
}

void StoryDock::previous() {
    ensure_current();
    go_to(current_ - 1);
}

void StoryDock::update_labels() {
    text_->setText(beats_.empty() ? tr("No story yet: open a trace or a lesson (Help > Lessons).")
                   : current_ < 0 ? tr("%1 beats. Next (N) starts the story.").arg(beat_count())
                                  : beat_text());
    counter_->setText(beats_.empty() || current_ < 0
                          ? QString()
                          : tr("beat %1 of %2 · step %3")
                                .arg(current_ + 1)
                                .arg(beat_count())
                                .arg(beats_[static_cast<size_t>(current_)].step));
    prev_->setEnabled(current_ > 0);
    next_->setEnabled(current_ + 1 < beat_count());
}

// ---- Lessons dialog and the hook ------------------------------------------------------------

namespace {

// The bundled lessons: next to the Studio's checkout or in the working directory.
std::filesystem::path bundled_lessons() {
    return find_lessons_root(
        {QFile::encodeName(QCoreApplication::applicationDirPath()).toStdString(),
         std::filesystem::current_path()});
}

}  // namespace

void add_lesson_option(QCommandLineParser& parser) {
    parser.addOption(QCommandLineOption(
        "lesson", "Open a lesson: a folder name of resources/lessons or a lesson folder.", "ID"));
}

bool open_lesson_option(MainWindow& window, const QCommandLineParser& parser) {
    if (!parser.isSet("lesson")) return true;
    const QString id = parser.value("lesson");
    QString dir = id;
    if (!QFileInfo(dir).isDir())
        dir = QString::fromStdString(
            (bundled_lessons() / QFile::encodeName(id).toStdString()).string());
    auto* dock = window.findChild<StoryDock*>("story_dock");
    if (dock && dock->open_lesson(dir)) return true;
    const QString why = dock ? dock->error() : QStringLiteral("no Story dock");
    std::fprintf(stderr, "kvscope-studio: --lesson %s: %s\n", id.toLocal8Bit().constData(),
                 why.toLocal8Bit().constData());
    return false;
}

void show_lessons_dialog(MainWindow* window, StoryDock* dock) {
    const std::filesystem::path root = bundled_lessons();
    std::vector<Lesson> lessons;
    QString problem;
    try {
        if (!root.empty()) lessons = list_lessons(root);
    } catch (const std::exception& e) {
        problem = QString::fromUtf8(e.what());
    }
    if (lessons.empty()) {
        QMessageBox::information(window, QObject::tr("Lessons"),
                                 problem.isEmpty()
                                     ? QObject::tr("No lessons found (resources/lessons next to "
                                                   "the Studio, or KVSCOPE_LESSONS_DIR).")
                                     : problem);
        return;
    }
    auto* d = new QDialog(window);
    d->setObjectName("lessonsDialog");
    d->setWindowTitle(QObject::tr("Lessons"));
    d->setAttribute(Qt::WA_DeleteOnClose);
    auto* list = new QListWidget(d);
    list->setObjectName("lessonList");
    auto* about = new QTextBrowser(d);
    about->setObjectName("lessonAbout");
    for (const Lesson& l : lessons) {
        auto* item = new QListWidgetItem(QString::fromStdString(l.title), list);
        item->setData(Qt::UserRole, QString::fromStdString(l.dir.string()));
        QString html = "<p>" + QString::fromStdString(l.summary).toHtmlEscaped() + "</p><p>" +
                       QObject::tr("Recorded by:") + "</p>";
        for (const std::string& c : l.commands)
            html += "<pre style='white-space:pre-wrap'>" +
                    QString::fromStdString(c).toHtmlEscaped() + "</pre>";
        item->setData(Qt::UserRole + 1, html);
    }
    QObject::connect(list, &QListWidget::currentRowChanged, about, [list, about](int row) {
        if (row >= 0) about->setHtml(list->item(row)->data(Qt::UserRole + 1).toString());
    });
    list->setCurrentRow(0);
    auto* box = new QDialogButtonBox(QDialogButtonBox::Open | QDialogButtonBox::Cancel, d);
    auto open = [d, list, dock, window] {
        const QString dir = list->currentItem()->data(Qt::UserRole).toString();
        d->accept();
        if (!dock->open_lesson(dir))
            QMessageBox::warning(window, QObject::tr("Could not open the lesson"), dock->error());
    };
    QObject::connect(box, &QDialogButtonBox::accepted, d, open);
    QObject::connect(list, &QListWidget::itemDoubleClicked, d, open);
    QObject::connect(box, &QDialogButtonBox::rejected, d, &QDialog::reject);
    auto* split = new QSplitter(d);
    split->addWidget(list);
    split->addWidget(about);
    split->setSizes({260, 440});
    auto* v = new QVBoxLayout(d);
    v->addWidget(split);
    v->addWidget(box);
    d->resize(760, 380);
    d->open();
}

StoryDock* install_teaching(MainWindow* window) {
    auto* dock = new StoryDock(window);
    window->addDockWidget(Qt::RightDockWidgetArea, dock);
    dock->hide();
    QMenu* help = find_menu(window, QObject::tr("&Help"));
    QMenu* play = find_menu(window, QObject::tr("&Playback"));
    QMenu* view = find_menu(window, QObject::tr("&View"));
    if (!help) help = window->menuBar()->addMenu(QObject::tr("&Help"));
    QAction* first = help->actions().isEmpty() ? nullptr : help->actions().front();
    auto* lessons = new QAction(QObject::tr("&Lessons..."), help);
    lessons->setObjectName("lessonsAction");
    QObject::connect(lessons, &QAction::triggered, window,
                     [window, dock] { show_lessons_dialog(window, dock); });
    auto* explainers = new QAction(QObject::tr("&Policy explainers..."), help);
    explainers->setObjectName("policyExplainersAction");
    QObject::connect(explainers, &QAction::triggered, window, [window] {
        auto* d = new PolicyExplainerDialog(window);
        d->setAttribute(Qt::WA_DeleteOnClose);
        if (const views::TraceModel* m = window->model())
            d->select(QString::fromStdString(m->summary().policy));
        d->open();
    });
    help->insertActions(first, {lessons, explainers});
    if (first) help->insertSeparator(first);
    // N / Shift+N: free in the Studio's key map (Ctrl+Shift+N opens a sweep).
    QMenu* keys = play ? play : help;
    keys->addSeparator();
    QAction* next = keys->addAction(QObject::tr("Next story beat"), dock, [dock] {
        dock->show();
        dock->next();
    });
    next->setObjectName("storyNextAction");
    next->setShortcut(QKeySequence(Qt::Key_N));
    QAction* prev = keys->addAction(QObject::tr("Previous story beat"), dock, [dock] {
        dock->show();
        dock->previous();
    });
    prev->setObjectName("storyPreviousAction");
    prev->setShortcut(QKeySequence(Qt::SHIFT | Qt::Key_N));
    for (QAction* a : {next, prev}) a->setShortcutContext(Qt::WindowShortcut);
    if (view) {
        QAction* toggle = dock->toggleViewAction();
        toggle->setText(QObject::tr("&Story"));
        view->addAction(toggle);
    }
    return dock;
}

}  // namespace kvscope::studio
