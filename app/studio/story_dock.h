#pragma once
// Story dock (issue 16, items 2 and 3): a guided story of the open trace (views/story.h) or a
// lesson's script around it (app/studio/lesson.h), stepped beat by beat with Next (N) and
// Previous (Shift+N). Each beat moves the shared ViewState — step, layer, head, token — and
// brings its view forward, so every view highlights the cells and tokens the beat talks about.
// Above the narration, the explainer card of the trace's policy (policy_card.h).
//
// install_teaching() is the whole hook into the main window: it creates the dock and adds
// Help > Lessons..., Help > Policy explainers..., the story keys (Playback menu) and the dock's
// toggle (View menu), finding those menus by title.
#include <QDockWidget>
#include <QString>

#include <vector>

#include "app/studio/lesson.h"
#include "views/story.h"

class QCommandLineParser;
class QLabel;
class QListWidget;
class QPushButton;

namespace kvscope::views {
class TraceModel;
}

namespace kvscope::studio {

class MainWindow;
class PolicyCard;

class StoryDock : public QDockWidget {
    Q_OBJECT

  public:
    explicit StoryDock(MainWindow* window);

    // Opens a lesson folder: its trace (and compare trace), its script with the trace's story
    // spliced in, at beat 0. False + a message in error() when the lesson or a trace fails.
    bool open_lesson(const QString& dir);
    // The generated story of the open trace; `start` applies its first beat.
    void show_story_of_open_trace(bool start = true);
    const QString& error() const { return error_; }

    int beat_count() const { return static_cast<int>(beats_.size()); }
    int current() const { return current_; }
    const views::StoryBeat& beat(int i) const { return beats_[static_cast<size_t>(i)]; }
    const std::vector<views::StoryBeat>& beats() const { return beats_; }
    QString beat_text() const;  // the narration shown now
    const QString& lesson_id() const { return lesson_id_; }
    PolicyCard* card() const { return card_; }

    void go_to(int i);  // applies beat i to the window (clamped)
    void next();
    void previous();

  private:
    // Rebuilds the beats when the window's trace is not the one they were made from.
    void ensure_current();
    void set_beats(std::vector<views::StoryBeat> beats, const QString& title, bool start = true);
    void update_labels();

    MainWindow* window_ = nullptr;
    std::vector<views::StoryBeat> beats_;
    int current_ = -1;
    const views::TraceModel* story_of_ = nullptr;  // the model the beats were made from
    QString lesson_id_;
    QString error_;
    QLabel* title_ = nullptr;
    PolicyCard* card_ = nullptr;
    QLabel* text_ = nullptr;
    QLabel* counter_ = nullptr;
    QPushButton* prev_ = nullptr;
    QPushButton* next_ = nullptr;
    QListWidget* list_ = nullptr;
};

// Help > Lessons...: the bundled lessons (title, summary, the commands that recorded them);
// Open starts the chosen one in the Story dock.
void show_lessons_dialog(MainWindow* window, StoryDock* dock);

// Creates the Story dock and its menu entries (see above). Called once by MainWindow.
StoryDock* install_teaching(MainWindow* window);

// kvscope-studio --lesson ID: a bundled lesson's folder name (resources/lessons/ID) or a lesson
// folder. open_lesson_option() opens it in the Story dock when the flag is set; on failure it
// prints the problem and returns false.
void add_lesson_option(QCommandLineParser& parser);
bool open_lesson_option(MainWindow& window, const QCommandLineParser& parser);

// The story facts of a policy from the registry (full name, score, regime).
views::StoryPolicy story_policy(const std::string& name);

}  // namespace kvscope::studio
