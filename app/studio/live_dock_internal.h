#pragma once
// Helpers shared by the What-if dock's files (live_dock.cpp: setup, preview, re-runs;
// live_dock_sweep.cpp: the budget sweep; live_dock_forensics.cpp: needle explain and rescue).
#include <QLocale>
#include <QString>

#include <cmath>
#include <cstdint>

namespace kvscope::studio::live_dock_detail {

inline constexpr int kSliderSteps = 1000;  // ratio / memory fraction resolution: 0.001
inline constexpr int kSweepPoints = 25;    // ratios 0.04, 0.08, ..., 1.0

inline QString bytes_text(int64_t bytes) {
    const QLocale en(QLocale::English);
    if (bytes < 10 * 1024 * 1024) return en.toString(std::llround(bytes / 1024.0)) + " KB";
    return en.toString(bytes / (1024.0 * 1024.0), 'f', 1) + " MB";
}

inline QString verdict_name(int v) {
    return v == 1   ? QStringLiteral("FOUND")
           : v == 0 ? QStringLiteral("wrong")
                    : QStringLiteral("-");
}

}  // namespace kvscope::studio::live_dock_detail
