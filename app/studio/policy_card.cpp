#include "app/studio/policy_card.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QListWidget>
#include <QPainter>
#include <QPainterPath>
#include <QTextDocument>
#include <QVBoxLayout>

#include <array>
#include <cmath>

namespace kvscope::studio {

namespace {

// A fixed, made-up score per cell (the picture illustrates the rule; it is not a trace), peaked so
// that a few "heavy hitters" stand out.
constexpr int kCells = 24;
constexpr std::array<double, kCells> kScore = {0.95, 0.55, 0.30, 0.20, 0.15, 0.62, 0.12, 0.18,
                                               0.10, 0.70, 0.22, 0.14, 0.08, 0.35, 0.11, 0.16,
                                               0.48, 0.09, 0.13, 0.25, 0.30, 0.40, 0.52, 0.60};

enum class Cell { kKept, kEvicted, kMerged, kLow, kWindow, kSink };

QColor cell_colour(Cell c) {
    switch (c) {
        case Cell::kKept:
            return QColor(76, 175, 80);
        case Cell::kEvicted:
            return QColor(90, 90, 90);
        case Cell::kMerged:
            return QColor(171, 71, 188);
        case Cell::kLow:
            return QColor(255, 179, 0);
        case Cell::kWindow:
            return QColor(66, 165, 245);
        case Cell::kSink:
            return QColor(239, 83, 80);
    }
    return Qt::gray;
}

// The k cells with the highest score among [0, end), as a mask.
std::array<bool, kCells> top(int k, int end, bool lowest = false) {
    std::array<bool, kCells> mask{};
    for (int i = 0; i < end; ++i) {
        int better = 0;
        for (int j = 0; j < end; ++j) {
            const bool b = lowest ? kScore[size_t(j)] < kScore[size_t(i)]
                                  : kScore[size_t(j)] > kScore[size_t(i)];
            if (b || (kScore[size_t(j)] == kScore[size_t(i)] && j < i)) ++better;
        }
        mask[size_t(i)] = better < k;
    }
    return mask;
}

struct Row {
    std::array<Cell, kCells> cells{};
    bool bars = false;         // draw the score above each cell
    bool lowest = false;       // bars show key norms (low = kept)
    int window_from = kCells;  // cells from here form the observation window / query
    QString caption;
};

Row row_for(RulePicture p) {
    Row r;
    r.cells.fill(Cell::kKept);
    const int W = 5;  // recent window / observation window
    switch (p) {
        case RulePicture::kNone:
            r.caption = QObject::tr("every token kept at full precision");
            break;
        case RulePicture::kSinksWindow:
            for (int i = 0; i < kCells; ++i)
                r.cells[size_t(i)] = i < 3             ? Cell::kSink
                                     : i >= kCells - 8 ? Cell::kWindow
                                                       : Cell::kEvicted;
            r.caption = QObject::tr("sinks (first tokens) + recent window; the middle is evicted");
            break;
        case RulePicture::kHittersRecent:
        case RulePicture::kWindowVotes:
        case RulePicture::kLastQuery:
        case RulePicture::kLowKeyNorm: {
            const bool low = p == RulePicture::kLowKeyNorm;
            const int end = p == RulePicture::kLastQuery || low ? kCells : kCells - W;
            const auto keep = top(low ? 10 : 7, end, low);
            for (int i = 0; i < kCells; ++i)
                r.cells[size_t(i)] = i >= end          ? Cell::kWindow
                                     : keep[size_t(i)] ? Cell::kKept
                                                       : Cell::kEvicted;
            r.bars = true;
            r.lowest = low;
            if (p == RulePicture::kWindowVotes) r.window_from = kCells - W;
            if (p == RulePicture::kLastQuery) r.window_from = kCells - 1;
            r.caption = p == RulePicture::kHittersRecent
                            ? QObject::tr("bars: attention accumulated; top scores + recent kept")
                        : p == RulePicture::kWindowVotes
                            ? QObject::tr("bars: votes of the last queries (blue); top votes kept")
                        : p == RulePicture::kLastQuery
                            ? QObject::tr("bars: the last query's attention; the top kept")
                            : QObject::tr("bars: key L2 norm; the lowest norms kept");
            break;
        }
        case RulePicture::kMerge: {
            const auto keep = top(9, kCells - W);
            for (int i = 0; i < kCells; ++i)
                r.cells[size_t(i)] = i >= kCells - W   ? Cell::kWindow
                                     : keep[size_t(i)] ? Cell::kKept
                                                       : Cell::kMerged;
            r.caption =
                QObject::tr("dropped tokens merged (arcs) into their most similar kept one");
            break;
        }
        case RulePicture::kMixedPrecision: {
            const auto keep = top(7, kCells - W);
            for (int i = 0; i < kCells; ++i)
                r.cells[size_t(i)] = i >= kCells - W   ? Cell::kWindow
                                     : keep[size_t(i)] ? Cell::kKept
                                                       : Cell::kLow;
            r.bars = true;
            r.caption = QObject::tr("important tokens at 16 bits, the rest at a few bits (amber)");
            break;
        }
        case RulePicture::kQuantizeAll:
            for (int i = 0; i < kCells; ++i)
                r.cells[size_t(i)] = i >= kCells - 6 ? Cell::kWindow : Cell::kLow;
            r.caption = QObject::tr("everything quantised (amber), a recent residual at 16 bits");
            break;
        case RulePicture::kLayerBudgets:
            r.caption = QObject::tr("layers (rows) get different budgets; votes choose inside");
            break;
    }
    return r;
}

QString param_list(const PolicyEntry& e, const QString& trace_params) {
    QString out;
    for (const ParamSpec& p : e.schema) {
        QString value = QString::fromStdString(param_value_to_string(p.default_value));
        const QString key = QString::fromStdString(p.name) + "=";
        for (const QString& item : trace_params.split(", ", Qt::SkipEmptyParts))
            if (item.startsWith(key)) value = item.mid(key.size());
        out += QStringLiteral("<b>%1</b> = %2 &nbsp;<span style='color:gray'>%3</span><br>")
                   .arg(QString::fromStdString(p.name).toHtmlEscaped(), value.toHtmlEscaped(),
                        QString::fromStdString(p.help).toHtmlEscaped());
    }
    return out.isEmpty() ? QObject::tr("(no parameters)") : out;
}

}  // namespace

RulePictureWidget::RulePictureWidget(QWidget* parent) : QWidget(parent) {
    setObjectName("rulePicture");
    setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
    setFixedHeight(112);
}

void RulePictureWidget::set_picture(RulePicture p) {
    picture_ = p;
    update();
}

void RulePictureWidget::paintEvent(QPaintEvent*) {
    QPainter g(this);
    g.setRenderHint(QPainter::Antialiasing);
    const QColor text = palette().color(QPalette::WindowText);
    const double w = (width() - 8.0) / kCells;
    const double base = height() - 36.0;  // bottom of the cells; the caption (two lines) below
    const Row r = row_for(picture_);
    if (picture_ == RulePicture::kLayerBudgets) {
        // Four layers, budgets shrinking with depth (PyramidKV's slope), kept cells by votes.
        const double rh = (base - 4.0) / 4.0;
        for (int l = 0; l < 4; ++l) {
            const auto keep = top(10 - 2 * l, kCells - 4);
            for (int i = 0; i < kCells; ++i) {
                const Cell c = i >= kCells - 4   ? Cell::kWindow
                               : keep[size_t(i)] ? Cell::kKept
                                                 : Cell::kEvicted;
                g.fillRect(QRectF(4 + i * w + 1, 4 + l * rh + 1, w - 2, rh - 2), cell_colour(c));
            }
        }
    } else {
        const double ch = 14.0;
        for (int i = 0; i < kCells; ++i) {
            const QRectF cell(4 + i * w + 1, base - ch, w - 2, ch);
            g.fillRect(cell, cell_colour(r.cells[size_t(i)]));
            if (r.bars && i < r.window_from) {
                const double h = (base - ch - 10.0) * kScore[size_t(i)];
                g.fillRect(QRectF(cell.left() + w * 0.2, base - ch - 3 - h, w * 0.6 - 2, h),
                           QColor(text.red(), text.green(), text.blue(), 110));
            }
        }
        if (r.window_from < kCells) {
            // The queries that vote: a bracket over them and arrows to the cells they favour.
            g.setPen(QPen(cell_colour(Cell::kWindow), 1.5));
            const double x0 = 4 + r.window_from * w, x1 = 4 + kCells * w;
            g.drawLine(QPointF(x0, 6), QPointF(x1 - 2, 6));
            g.drawText(QRectF(x0, 8, x1 - x0, 14), Qt::AlignHCenter, tr("queries"));
        }
        if (picture_ == RulePicture::kMerge) {
            // Each merged cell draws an arc into the nearest kept cell.
            g.setPen(QPen(cell_colour(Cell::kMerged), 1.2));
            for (int i = 0; i < kCells; ++i) {
                if (r.cells[size_t(i)] != Cell::kMerged) continue;
                int j = i;
                for (int d = 1; d < kCells && j == i; ++d) {
                    if (i - d >= 0 && r.cells[size_t(i - d)] == Cell::kKept)
                        j = i - d;
                    else if (i + d < kCells && r.cells[size_t(i) + size_t(d)] == Cell::kKept)
                        j = i + d;
                }
                const double xa = 4 + (i + 0.5) * w, xb = 4 + (j + 0.5) * w;
                QPainterPath arc(QPointF(xa, base - 15));
                arc.quadTo(QPointF((xa + xb) / 2, base - 15 - 10 - 3 * std::abs(i - j)),
                           QPointF(xb, base - 15));
                g.drawPath(arc);
            }
        }
    }
    g.setPen(text);
    g.drawText(QRectF(4, base + 3, width() - 8, 32),
               Qt::AlignLeft | Qt::AlignTop | Qt::TextWordWrap,
               picture_ == RulePicture::kLayerBudgets ? row_for(picture_).caption : r.caption);
}

PolicyCard::PolicyCard(QWidget* parent) : QWidget(parent) {
    setObjectName("policyCard");
    auto* v = new QVBoxLayout(this);
    v->setContentsMargins(6, 6, 6, 6);
    title_ = new QLabel(this);
    title_->setObjectName("policyCardTitle");
    QFont f = title_->font();
    f.setPointSizeF(f.pointSizeF() * 1.3);
    f.setBold(true);
    title_->setFont(f);
    title_->setWordWrap(true);
    paper_ = new QLabel(this);
    paper_->setObjectName("policyCardPaper");
    paper_->setWordWrap(true);
    paper_->setTextInteractionFlags(Qt::TextBrowserInteraction);
    paper_->setOpenExternalLinks(true);
    rule_ = new QLabel(this);
    rule_->setObjectName("policyCardRule");
    rule_->setWordWrap(true);
    picture_ = new RulePictureWidget(this);
    params_ = new QLabel(this);
    params_->setObjectName("policyCardParams");
    params_->setWordWrap(true);
    for (QWidget* w : std::initializer_list<QWidget*>{title_, paper_, rule_, picture_, params_})
        v->addWidget(w);
    v->addStretch(1);
}

bool PolicyCard::set_policy(const QString& policy, const QString& params) {
    policy_ = policy;
    const PolicyEntry* e = PolicyRegistry::global().find(policy.toStdString());
    if (!e) {
        title_->setText(policy);
        paper_->setText(tr("This build's policy registry does not know \"%1\".").arg(policy));
        rule_->clear();
        params_->clear();
        picture_->set_picture(RulePicture::kNone);
        return false;
    }
    const PolicyInfo& i = e->info;
    title_->setText(QString::fromStdString(i.full_name) + "  ·  " +
                    (i.regime == Regime::kPrefillOneshot ? tr("decides once, after the prompt")
                                                         : tr("decides at every step")));
    QString paper = "<i>" + QString::fromStdString(i.paper).toHtmlEscaped() + "</i>";
    if (!i.arxiv.empty()) {
        const QString id = QString::fromStdString(i.arxiv);
        // The palette's link colour is dark blue on every theme: the highlight reads on both.
        paper +=
            QStringLiteral(" — <a style='color:%2' href='https://arxiv.org/abs/%1'>arXiv %1</a>")
                .arg(id, palette().color(QPalette::Highlight).lighter(130).name());
    }
    if (!i.venue.empty()) paper += " (" + QString::fromStdString(i.venue).toHtmlEscaped() + ")";
    if (!i.code.empty()) paper += "<br>" + tr("code: %1").arg(QString::fromStdString(i.code));
    paper_->setText(paper);
    QString rule = tr("<b>Rule:</b> %1").arg(QString::fromStdString(i.rule).toHtmlEscaped());
    if (!i.score_name.empty())
        rule += "<br>" + tr("<b>Score:</b> %1").arg(QString::fromStdString(i.score_name));
    rule_->setText(rule);
    picture_->set_picture(i.picture);
    params_->setText(param_list(*e, params));
    return true;
}

QString PolicyCard::text() const {
    QTextDocument doc;
    QString all;
    for (const QLabel* l : {title_, paper_, rule_, params_}) {
        doc.setHtml(l->text());
        all += doc.toPlainText() + "\n";
    }
    return all;
}

PolicyExplainerDialog::PolicyExplainerDialog(QWidget* parent) : QDialog(parent) {
    setObjectName("policyExplainerDialog");
    setWindowTitle(tr("Policy explainers"));
    auto* h = new QHBoxLayout(this);
    list_ = new QListWidget(this);
    list_->setObjectName("policyList");
    list_->setMaximumWidth(180);
    card_ = new PolicyCard(this);
    h->addWidget(list_);
    h->addWidget(card_, 1);
    for (const PolicyEntry* e : PolicyRegistry::global().list()) {
        auto* item = new QListWidgetItem(QString::fromStdString(e->info.full_name), list_);
        item->setData(Qt::UserRole, QString::fromStdString(e->info.name));
    }
    connect(list_, &QListWidget::currentRowChanged, this, [this](int row) {
        if (row >= 0) card_->set_policy(list_->item(row)->data(Qt::UserRole).toString());
    });
    list_->setCurrentRow(0);
    resize(760, 420);
}

void PolicyExplainerDialog::select(const QString& policy) {
    for (int r = 0; r < list_->count(); ++r)
        if (list_->item(r)->data(Qt::UserRole).toString() == policy) list_->setCurrentRow(r);
}

}  // namespace kvscope::studio
