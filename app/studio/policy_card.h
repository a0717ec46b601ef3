#pragma once
// Policy explainer card (issue 16, item 2): one policy's paper (title, arXiv id, venue, code),
// its rule in one line and in one picture, and its parameters — all drawn from the policy
// registry's metadata (core/policies/policy.h PolicyInfo, the ParamSchema), none of it kept here.
// Shown in the Story dock for the open trace's policy (with the trace's parameter values) and in
// Help > Policy explainers for every policy (with the defaults).
#include <QDialog>
#include <QString>
#include <QWidget>

// Qt defines `emit`, `slots` and `signals` as macros; core headers use these words as names
// (KVCache::emit, Plan's slots), so they are included with the macros suspended.
#pragma push_macro("emit")
#pragma push_macro("slots")
#pragma push_macro("signals")
#undef emit
#undef slots
#undef signals
#include "core/policies/registry.h"  // the card reads it; users of the card get it here
#pragma pop_macro("signals")
#pragma pop_macro("slots")
#pragma pop_macro("emit")

class QLabel;
class QListWidget;

namespace kvscope::studio {

// The rule as a small picture: a row of token cells coloured kept / evicted / merged / low
// precision, with the scores or layers that decide it (one drawing per RulePicture).
class RulePictureWidget : public QWidget {
    Q_OBJECT

  public:
    explicit RulePictureWidget(QWidget* parent = nullptr);
    void set_picture(RulePicture p);
    RulePicture picture() const { return picture_; }
    QSize sizeHint() const override { return {360, 112}; }
    QSize minimumSizeHint() const override { return {220, 112}; }

  protected:
    void paintEvent(QPaintEvent* e) override;

  private:
    RulePicture picture_ = RulePicture::kNone;
};

class PolicyCard : public QWidget {
    Q_OBJECT

  public:
    explicit PolicyCard(QWidget* parent = nullptr);
    // Shows the registry's entry for `policy` (CLI name); `params` is the trace's compact
    // "name=value, ..." list (TraceSummary::policy_params), "" for the defaults. False (and an
    // "unknown policy" card) when the registry does not know the name.
    bool set_policy(const QString& policy, const QString& params = {});
    const QString& policy() const { return policy_; }
    QString text() const;  // everything the card says, as plain text (tests)
    const RulePictureWidget* picture() const { return picture_; }

  private:
    QString policy_;
    QLabel* title_ = nullptr;
    QLabel* paper_ = nullptr;
    QLabel* rule_ = nullptr;
    QLabel* params_ = nullptr;
    RulePictureWidget* picture_ = nullptr;
};

// Help > Policy explainers: every registered policy in a list, its card beside it.
class PolicyExplainerDialog : public QDialog {
    Q_OBJECT

  public:
    explicit PolicyExplainerDialog(QWidget* parent = nullptr);
    void select(const QString& policy);
    PolicyCard* card() const { return card_; }
    QListWidget* list() const { return list_; }

  private:
    QListWidget* list_ = nullptr;
    PolicyCard* card_ = nullptr;
};

}  // namespace kvscope::studio
