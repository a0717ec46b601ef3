#include "core/policies/score_view.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace kvscope {

int64_t HeadScores::group() const {
    size_t g = std::max({colsum.size(), window.size(), last_row.size(), step_row.size()});
    return static_cast<int64_t>(g);
}

std::span<const float> HeadScores::last_query_row(int64_t q) const {
    const size_t i = static_cast<size_t>(q);
    if (i < last_row.size() && !last_row[i].empty()) return last_row[i];
    if (i < window.size() && window_rows > 0 && !window[i].empty()) {
        const size_t nn = positions.size();
        return window[i].subspan(static_cast<size_t>(window_rows - 1) * nn, nn);
    }
    return {};
}

const LayerScores& ScoreView::layer(int64_t l) const {
    for (const LayerScores& ls : layers)
        if (ls.layer == l) return ls;
    throw std::out_of_range("ScoreView: layer " + std::to_string(l) + " is not in the view");
}

void ScoreView::check() const {
    auto fail = [](const std::string& what) { throw std::invalid_argument("ScoreView: " + what); };
    if (n_kv_heads <= 0 || n_heads <= 0 || n_heads % n_kv_heads != 0)
        fail("heads (" + std::to_string(n_heads) + ") must be a positive multiple of KV heads (" +
             std::to_string(n_kv_heads) + ")");
    const size_t g = static_cast<size_t>(group());
    for (const LayerScores& ls : layers) {
        if (ls.heads.size() != static_cast<size_t>(n_kv_heads))
            fail("layer " + std::to_string(ls.layer) + " has " + std::to_string(ls.heads.size()) +
                 " KV heads, expected " + std::to_string(n_kv_heads));
        for (const HeadScores& hs : ls.heads) {
            const std::string where =
                "layer " + std::to_string(ls.layer) + " head " + std::to_string(hs.kv_head) + ": ";
            const size_t n = hs.positions.size();
            auto per_q = [&](const std::vector<std::span<const float>>& v, size_t len,
                             const char* name) {
                if (v.empty()) return;
                if (v.size() != g)
                    fail(where + name + " must have one entry per query head of the group");
                for (const auto& s : v)
                    if (s.size() != len) fail(where + name + " has the wrong length");
            };
            per_q(hs.colsum, n, "colsum");
            per_q(hs.window, static_cast<size_t>(hs.window_rows) * n, "window");
            per_q(hs.last_row, n, "last_row");
            per_q(hs.step_row, n, "step_row");
            if (!hs.key_norms.empty() && hs.key_norms.size() != n)
                fail(where + "key_norms has the wrong length");
            if (!hs.keys.empty() && hs.keys.size() != n * static_cast<size_t>(head_dim))
                fail(where + "keys has the wrong length");
            if (!hs.keys_prerope.empty() &&
                hs.keys_prerope.size() != n * static_cast<size_t>(head_dim))
                fail(where + "keys_prerope has the wrong length");
            for (size_t i = 1; i < n; ++i)
                if (hs.positions[i] <= hs.positions[i - 1])
                    fail(where + "positions not increasing");
        }
    }
}

}  // namespace kvscope
