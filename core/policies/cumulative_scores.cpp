// CumulativeScores (see cumulative_scores.h): per-head accumulated attention, kept by position.
#include "core/policies/cumulative_scores.h"

#include <algorithm>
#include <utility>

namespace kvscope {

void CumulativeScores::seed(const HeadScores& hs) {
    pos.assign(hs.positions.begin(), hs.positions.end());
    acc.clear();
    for (const auto& c : hs.colsum) acc.push_back(to_scores(c));
}

std::vector<int64_t> CumulativeScores::realign(const HeadScores& hs) {
    const size_t g = std::max(hs.step_row.size(), acc.size());
    const size_t n = hs.positions.size();
    std::vector<Scores> next(g, Scores(n, 0.0));
    std::vector<int64_t> from(n, -1);
    size_t i = 0;
    for (size_t j = 0; j < n; ++j) {
        while (i < pos.size() && pos[i] < hs.positions[j]) ++i;
        if (i < pos.size() && pos[i] == hs.positions[j]) {
            for (size_t q = 0; q < acc.size(); ++q) next[q][j] = acc[q][i];
            from[j] = static_cast<int64_t>(i);
        }
    }
    pos.assign(hs.positions.begin(), hs.positions.end());
    acc = std::move(next);
    return from;
}

void CumulativeScores::add_step_rows(const HeadScores& hs) {
    for (size_t q = 0; q < hs.step_row.size(); ++q)
        for (size_t j = 0; j < pos.size(); ++j) acc[q][j] += static_cast<double>(hs.step_row[q][j]);
}

void CumulativeScores::keep_only(const std::vector<int64_t>& slots) {
    std::vector<int64_t> kept_pos;
    kept_pos.reserve(slots.size());
    for (int64_t s : slots) kept_pos.push_back(pos[static_cast<size_t>(s)]);
    std::vector<Scores> kept_acc;
    for (const Scores& a : acc) {
        Scores k2;
        for (int64_t s : slots) k2.push_back(a[static_cast<size_t>(s)]);
        kept_acc.push_back(std::move(k2));
    }
    pos = std::move(kept_pos);
    acc = std::move(kept_acc);
}

}  // namespace kvscope
