#pragma once
// StepScrubber: the playback bar that drives every view: play / pause, one step back and
// forward, first / last, a slider and a step box to jump to a step, and the playback speed.
#include <QTimer>
#include <QWidget>

#include <cstdint>

class QComboBox;
class QLabel;
class QSlider;
class QSpinBox;
class QToolButton;

namespace kvscope::studio {

class StepScrubber : public QWidget {
    Q_OBJECT

  public:
    explicit StepScrubber(QWidget* parent = nullptr);

    // Number of steps (0 = nothing to scrub). Keeps the current step when still in range.
    void set_step_count(int64_t n);
    int64_t step_count() const { return count_; }
    int64_t step() const { return step_; }
    bool playing() const { return timer_.isActive(); }
    double steps_per_second() const;
    void set_steps_per_second(double v);
    // Size of the transport buttons' icons in logical pixels (presenter mode makes them large).
    void set_icon_size(int px);
    int icon_size() const { return icon_px_; }

  public slots:
    void set_step(int64_t step);  // no signal
    void go_to(int64_t step);     // emits step_changed when it moves
    void step_by(int64_t delta);
    void first();
    void last();
    void play();
    void pause();
    void toggle_play();

  signals:
    void step_changed(int64_t step);
    void playing_changed(bool playing);

  protected:
    void changeEvent(QEvent* e) override;  // icons follow the palette (theme changes)

  private:
    void sync_widgets();
    void update_icons();
    void tick();

    int64_t count_ = 0;
    int64_t step_ = 0;
    QTimer timer_;
    QToolButton* play_ = nullptr;
    QToolButton* prev_ = nullptr;
    QToolButton* next_ = nullptr;
    QToolButton* first_ = nullptr;
    QToolButton* last_ = nullptr;
    QSlider* slider_ = nullptr;
    QSpinBox* box_ = nullptr;
    QLabel* of_ = nullptr;
    QComboBox* speed_ = nullptr;
    int icon_px_ = 18;
};

}  // namespace kvscope::studio
