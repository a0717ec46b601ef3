#include "views/story.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <string_view>

namespace kvscope::views {

namespace {

// Which recorded vector holds the policy's own score (see the table in story.h).
enum class Score { kNone, kWindowVotes, kAccumulated, kKeyNormLow, kPosition };

Score score_of(const std::string& policy) {
    if (policy == "snapkv" || policy == "pyramidkv" || policy == "dynamickv")
        return Score::kWindowVotes;
    if (policy == "h2o" || policy == "d2o" || policy == "mikv") return Score::kAccumulated;
    if (policy == "knorm") return Score::kKeyNormLow;
    if (policy == "streaming_llm") return Score::kPosition;
    return Score::kNone;
}

std::string fmt(const char* f, double x) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, x);
    return buf;
}

std::string num(int64_t x) {
    return std::to_string(x);
}

// A value of the compact "key=value, key=value" list of TraceSummary::policy_params.
std::optional<std::string> param(const std::string& params, std::string_view key) {
    size_t at = 0;
    while (at < params.size()) {
        size_t end = params.find(", ", at);
        if (end == std::string::npos) end = params.size();
        const std::string_view item(params.data() + at, end - at);
        const size_t eq = item.find('=');
        if (eq != std::string_view::npos && item.substr(0, eq) == key)
            return std::string(item.substr(eq + 1));
        at = end + 2;
    }
    return std::nullopt;
}

// A numeric parameter from that list, `fallback` when absent or not a number.
template <typename T>
T param_num(const std::string& params, std::string_view key, T fallback) {
    const auto v = param(params, key);
    if (!v || v->empty()) return fallback;
    try {
        return static_cast<T>(std::stod(*v));
    } catch (...) {
        return fallback;
    }
}

int64_t param_int(const std::string& params, std::string_view key, int64_t fallback) {
    return param_num<int64_t>(params, key, fallback);
}

double param_float(const std::string& params, std::string_view key, double fallback) {
    return param_num<double>(params, key, fallback);
}

// Token text for a sentence: quoted, whitespace made visible, at most 24 bytes.
std::string in_quotes(std::string_view text) {
    std::string out = "\"";
    for (char c : text.substr(0, 24)) out += (c == '\n' ? ' ' : c);
    if (text.size() > 24) out += "…";
    return out + "\"";
}

// The policy's score of every prompt token in (layer, head), as the policy ranks them: higher is
// kept first (key norms are negated). SnapKV-family votes are pooled over the positions before
// the window as the policy pools them (kernel, max ignoring the padding or avg dividing by the
// kernel: core/policies/snapkv.cpp). The recorded votes are the group mean of the last 32 prompt
// rows (app/recorder/run_recorder.h), pooled after that mean: close to, not bit-equal with, the
// policy's per-query-head pooling. Empty when the trace did not record it.
std::vector<double> policy_scores(const TraceModel& m, Score kind, const std::string& params,
                                  int32_t layer, int32_t head) {
    const int64_t P = m.summary().n_prompt_tokens;
    std::vector<double> s;
    auto take = [&](const std::vector<float>& v, double sign) {
        if (std::ssize(v) < P) return;
        for (int64_t j = 0; j < P; ++j) s.push_back(sign * v[static_cast<size_t>(j)]);
    };
    switch (kind) {
        case Score::kWindowVotes: {
            take(m.window_scores(layer, head), 1.0);
            const int64_t w = std::min(param_int(params, "window", 32), P);
            const int64_t k = param_int(params, "kernel", 7);
            const std::string pool = param(params, "pool").value_or("max");
            if (s.empty() || pool == "none" || k <= 1) break;
            const int64_t n = P - w;  // the window itself is not pooled (it is always kept)
            std::vector<double> pooled(s);
            for (int64_t j = 0; j < n; ++j) {
                double acc = pool == "max" ? -std::numeric_limits<double>::infinity() : 0.0;
                for (int64_t i = j - k / 2; i <= j + k / 2; ++i) {
                    if (i < 0 || i >= n) continue;
                    const double x = s[static_cast<size_t>(i)];
                    acc = pool == "max" ? std::max(acc, x) : acc + x;
                }
                pooled[static_cast<size_t>(j)] = pool == "max" ? acc : acc / static_cast<double>(k);
            }
            s = std::move(pooled);
            break;
        }
        case Score::kAccumulated:
            if (auto v = m.attn_received(layer, head)) take(*v, 1.0);
            break;
        case Score::kKeyNormLow:
            if (auto v = m.key_norm(layer, head)) take(*v, -1.0);
            break;
        case Score::kPosition:
        case Score::kNone:
            break;
    }
    for (double x : s)
        if (!std::isfinite(x)) return {};
    return s;
}

// Prompt positions the policy keeps whatever their score (so the cut-off is taken over the
// others): the observation window, H2O's recent share, the first `sinks`.
std::pair<int64_t, int64_t> protected_ends(const TraceModel& m, const std::string& policy,
                                           const std::string& params, int64_t budget) {
    const int64_t P = m.summary().n_prompt_tokens;
    int64_t head = param_int(params, "sinks", 0), tail = 0;
    if (score_of(policy) == Score::kWindowVotes) tail = param_int(params, "window", 32);
    if (policy == "h2o" || policy == "mikv")
        tail = std::llround(param_float(params, "recent_ratio", 0.5) * static_cast<double>(budget));
    if (policy == "d2o")
        tail = budget -
               std::llround(param_float(params, "hh_share", 0.5) * static_cast<double>(budget));
    return {std::clamp<int64_t>(head, 0, P), std::clamp<int64_t>(tail, 0, P)};
}

const char* score_phrase(Score s) {
    switch (s) {
        case Score::kWindowVotes:
            return "observation-window votes, as recorded, pooled like the policy";
        case Score::kAccumulated:
            return "accumulated attention";
        case Score::kKeyNormLow:
            return "key L2 norm";
        case Score::kPosition:
            return "position";
        case Score::kNone:
            break;
    }
    return "";
}

struct Cell {
    int32_t layer = 0, head = 0;
    std::shared_ptr<const HeadHistory> h;
};

// Where the needle's tokens are after a step, per layer.
struct NeedleAt {
    std::vector<int32_t> full, low, partial, gone;  // every token held at 16 bits / all held,
                                                    // some below 16 / some held / none held
    int bits_low = 16;                              // lowest precision seen
};

NeedleAt needle_at(const std::vector<Cell>& cells, int32_t L, const std::vector<int64_t>& toks,
                   int64_t step) {
    NeedleAt out;
    for (int32_t l = 0; l < L; ++l) {
        int64_t held = 0, low = 0, total = 0;
        for (const Cell& c : cells) {
            if (c.layer != l) continue;
            for (int64_t t : toks) {
                const CacheChange ch = c.h->state_at(t, step);
                ++total;
                if (!is_held(ch.state)) continue;
                ++held;
                if (ch.bits < 16) {
                    ++low;
                    out.bits_low = std::min<int>(out.bits_low, ch.bits);
                }
            }
        }
        if (held == 0) {
            out.gone.push_back(l);
        } else if (held < total) {
            out.partial.push_back(l);
        } else if (low > 0) {
            out.low.push_back(l);
        } else {
            out.full.push_back(l);
        }
    }
    return out;
}

std::string needle_sentence(const NeedleAt& n) {
    std::vector<std::string> parts;
    if (!n.full.empty()) parts.push_back("kept in layers " + format_ranges(n.full));
    if (!n.low.empty())
        parts.push_back("kept at " + num(n.bits_low) + " bits in layers " + format_ranges(n.low));
    if (!n.partial.empty()) parts.push_back("partly kept in layers " + format_ranges(n.partial));
    if (!n.gone.empty()) parts.push_back("dropped in layers " + format_ranges(n.gone));
    std::string s;
    for (size_t i = 0; i < parts.size(); ++i)
        s += (i == 0 ? "" : i + 1 == parts.size() ? " and " : ", ") + parts[i];
    return s;
}

class StoryBuilder {
  public:
    StoryBuilder(const TraceModel& m, const StoryPolicy& p)
        : m_(m), p_(p), s_(m.summary()), score_(score_of(s_.policy)) {
        for (int32_t l = 0; l < s_.n_layers; ++l)
            for (int32_t h = 0; h < s_.n_heads; ++h)
                if (auto hist = m_.history(l, h, Load::kNow)) cells_.push_back({l, h, hist});
        needle_ = needle_tokens(m_);
        needle_digits_ = std::any_of(needle_.begin(), needle_.end(), [&](int64_t t) {
            const std::string_view x = m_.token_text(t);
            return std::any_of(x.begin(), x.end(),
                               [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
        });
    }

    std::vector<StoryBeat> build() {
        if (cells_.empty() || s_.n_steps <= 0) return {};
        overview();
        compression();
        budgets();
        needle();
        decode();
        outcome();
        return std::move(beats_);
    }

  private:
    StoryBeat& add(BeatKind kind, int64_t step, std::string text) {
        StoryBeat b;
        b.kind = kind;
        b.step = step;
        b.text = std::move(text);
        beats_.push_back(std::move(b));
        return beats_.back();
    }
    std::string name() const { return p_.full_name.empty() ? s_.policy : p_.full_name; }
    int64_t last() const { return s_.n_steps - 1; }

    void overview() {
        std::string t = (s_.model_name.empty() ? std::string("The model") : s_.model_name) +
                        " reads a " + num(s_.n_prompt_tokens) + "-token prompt and generates " +
                        num(s_.n_steps) + " tokens; its cache has " + num(s_.n_layers) +
                        " layers × " + num(s_.n_heads) + " heads. Policy: " + name();
        if (s_.budget_tokens > 0) t += ", budget " + num(s_.budget_tokens) + " tokens per head";
        if (s_.budget_ratio > 0)
            t += " (" + fmt("%.0f", s_.budget_ratio * 100.0) + "% of the prompt)";
        if (!s_.policy_params.empty()) t += "; parameters " + s_.policy_params;
        add(BeatKind::kOverview, 0, t + ".");
    }

    std::string score_clause() const {
        const int64_t P = s_.n_prompt_tokens;
        switch (score_) {
            case Score::kWindowVotes:
                return "scores the " + num(P) + " prompt tokens with the last " +
                       num(param_int(s_.policy_params, "window", 32)) +
                       " queries (its observation-window votes)";
            case Score::kAccumulated:
                return "scores the " + num(P) +
                       " prompt tokens by the attention each received "
                       "(accumulated attention)";
            case Score::kKeyNormLow:
                return "ranks the " + num(P) + " prompt tokens by key L2 norm, lowest first";
            case Score::kPosition: {
                const int64_t sinks = param_int(s_.policy_params, "sinks", 4);
                return "looks at the " + num(P) + " prompt tokens' positions only (" +
                       (sinks > 0 ? "the first " + num(sinks) +
                                        " are attention sinks, then the "
                                        "most recent"
                                  : "no attention sinks: the most recent only") +
                       ")";
            }
            case Score::kNone:
                break;
        }
        return "takes the " + num(P) + "-token prompt" +
               (p_.score_name.empty() ? "" : " by " + p_.score_name);
    }

    void compression() {
        int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0, sum = 0, quant = 0;
        int bits = 16;
        int32_t min_layer = 0;
        for (const Cell& c : cells_) {
            const int64_t held = c.h->held(0);
            if (held < lo) min_layer = c.layer;
            lo = std::min(lo, held);
            hi = std::max(hi, held);
            sum += held;
            for (int64_t t = 0; t < s_.n_prompt_tokens; ++t) {
                const CacheChange ch = c.h->state_at(t, 0);
                if (is_held(ch.state) && ch.bits < 16) {
                    ++quant;
                    bits = std::min<int>(bits, ch.bits);
                }
            }
        }
        const int64_t P = s_.n_prompt_tokens;
        const int64_t n = std::ssize(cells_);
        std::string t = "Step 0: " + name() + " ";
        if (hi >= P && quant == 0) {
            t += "keeps all " + num(P) + " prompt tokens in every head after the prompt";
            t += p_.per_step ? "; it starts deciding once the cache is over its budget." : ".";
        } else if (lo == P) {  // nothing evicted, some held at fewer bits
            t += score_clause() + " and keeps all " + num(P) + " in every head";
        } else {
            t += score_clause() + " and keeps ";
            t += lo == hi ? num(lo) + " per head"
                          : num(lo) + " to " + num(hi) + " per head (mean " +
                                fmt("%.1f", double(sum) / double(n)) + ")";
        }
        if (quant > 0)
            t += "; " + num(quant) + " token slots in all (" +
                 fmt("%.1f", double(quant) / double(n)) + " per head) are held at " + num(bits) +
                 " bits instead of evicted";
        if (t.back() != '.') t += ".";
        StoryBeat& b = add(BeatKind::kCompression, 0, t);
        b.layer = min_layer;
    }

    void budgets() {
        if (!m_.has_budgets()) return;
        std::vector<int64_t> per_layer(static_cast<size_t>(s_.n_layers), 0);
        for (int32_t l = 0; l < s_.n_layers; ++l)
            for (int32_t h = 0; h < s_.n_heads; ++h)
                per_layer[static_cast<size_t>(l)] += std::max(m_.budget(0, l, h), 0);
        const auto [mn, mx] = std::minmax_element(per_layer.begin(), per_layer.end());
        if (*mn == *mx) return;  // one budget for every layer: said in the overview
        std::string t = "The budget differs per layer (tokens per head at step 0): ";
        for (int32_t l = 0; l < s_.n_layers; ++l)
            t += (l ? ", " : "") + std::string("L") + num(l) + " " +
                 fmt("%.0f", double(per_layer[static_cast<size_t>(l)]) / double(s_.n_heads));
        t += ". Layer " + num(static_cast<int32_t>(mn - per_layer.begin())) + " gets the least.";
        StoryBeat& b = add(BeatKind::kBudgets, 0, t);
        b.layer = static_cast<int32_t>(mn - per_layer.begin());
    }

    void needle() {
        if (needle_.empty()) return;
        const int64_t a = needle_.front(), z = needle_.back() + 1;
        std::string digits;
        for (int64_t t : needle_) digits += std::string(m_.token_text(t));
        const NeedleAt at0 = needle_at(cells_, s_.n_layers, needle_, 0);
        std::string t = "The needle's " + std::string(needle_digits_ ? "digits" : "tokens") +
                        " (tokens " + num(a) + "–" + num(z - 1) + ", " + in_quotes(digits) +
                        ") are " + needle_sentence(at0) + " after step 0.";
        StoryBeat& b = add(BeatKind::kNeedle, 0, t);
        b.token_begin = a;
        b.token_end = z;
        b.token = a;
        b.layer = !at0.gone.empty()      ? at0.gone.front()
                  : !at0.partial.empty() ? at0.partial.front()
                  : !at0.low.empty()     ? at0.low.front()
                                         : 0;
        const int32_t first_layer = b.layer;  // `b` dangles once why() adds a beat
        why(0);
        // A policy deciding at every step may lose it later.
        if (last() > 0) {
            const NeedleAt end = needle_at(cells_, s_.n_layers, needle_, last());
            if (end.gone != at0.gone || end.partial != at0.partial || end.low != at0.low) {
                const int64_t s = first_change_step();
                StoryBeat& e =
                    add(BeatKind::kNeedle, s,
                        "Step " + num(s) + ": " + name() +
                            " decides again while generating; by the last step (" + num(last()) +
                            ") the needle is " + needle_sentence(end) + ".");
                e.token_begin = a;
                e.token_end = z;
                e.token = a;
                e.layer = !end.gone.empty() ? end.gone.front() : first_layer;
                needle_decisions();
            }
        }
    }

    // Decision by decision: the decode steps that changed a needle token, one beat each (the
    // first kMaxDecisionBeats of them), naming every (layer, head) and what it did.
    static constexpr int kMaxDecisionBeats = 6;
    struct Decision {
        int32_t layer, head;
        int64_t token;
        CacheChange change;
    };
    void needle_decisions() {
        std::vector<std::vector<Decision>> by_step(static_cast<size_t>(s_.n_steps));
        for (const Cell& c : cells_)
            for (int64_t t : needle_)
                for (const CacheChange& ch : c.h->changes(t))
                    if (ch.step > 0 && ch.step < s_.n_steps)
                        by_step[size_t(ch.step)].push_back({c.layer, c.head, t, ch});
        int beats = 0;
        for (int64_t step = 1; step < s_.n_steps && beats < kMaxDecisionBeats; ++step) {
            const auto& ds = by_step[size_t(step)];
            if (ds.empty()) continue;
            ++beats;
            // One clause per (layer, head, action): "layer 2 head 0 evicts tokens 253–256".
            std::vector<std::pair<std::string, std::vector<int32_t>>> groups;
            for (const Decision& d : ds) {
                const std::string key =
                    "layer " + num(d.layer) + " head " + num(d.head) + " " + action(d.change);
                if (groups.empty() || groups.back().first != key) groups.push_back({key, {}});
                groups.back().second.push_back(static_cast<int32_t>(d.token));
            }
            std::string t = "Step " + num(step) + ": ";
            for (size_t g = 0; g < groups.size() && g < 4; ++g) {
                auto& [key, toks] = groups[g];
                std::sort(toks.begin(), toks.end());
                t += (g ? "; " : "") + key + (toks.size() > 1 ? " tokens " : " token ") +
                     format_ranges(toks);
            }
            if (groups.size() > 4)
                t += "; and " + num(std::ssize(groups) - 4) + " more heads change the needle";
            StoryBeat& b = add(BeatKind::kNeedle, step, t + ".");
            b.layer = ds.front().layer;
            b.head = ds.front().head;
            b.token = ds.front().token;
            b.token_begin = ds.front().token;
            b.token_end = ds.front().token + 1;
        }
    }

    static std::string action(const CacheChange& c) {
        switch (c.state) {
            case TokenCacheState::kEvicted:
                return "evicts";
            case TokenCacheState::kMerged:
                return c.into >= 0 ? "merges (into token " + std::to_string(c.into) + ", weight " +
                                         fmt("%.2f", c.weight) + ")"
                                   : std::string("merges");
            case TokenCacheState::kQuantized:
            case TokenCacheState::kDemoted:
                return "lowers to " + std::to_string(c.bits) + " bits";
            default:
                break;
        }
        return "keeps";
    }

    // First step after 0 at which any needle token changes state in any head.
    int64_t first_change_step() const {
        int64_t best = last();
        for (const Cell& c : cells_)
            for (int64_t t : needle_)
                for (const CacheChange& ch : c.h->changes(t))
                    if (ch.step > 0) best = std::min<int64_t>(best, ch.step);
        return best;
    }

    // A needle token the head no longer holds at full precision after `step`.
    static bool lost(const HeadHistory& h, int64_t t, int64_t step) {
        const CacheChange ch = h.state_at(t, step);
        return !is_held(ch.state) || ch.bits < 16;
    }

    // Why a head dropped (or quantised) the needle at `step`, in the policy's own score.
    void why(int64_t step) {
        const int64_t P = s_.n_prompt_tokens;
        const Cell* dropped = nullptr;
        int64_t dropped_tok = -1;
        for (const Cell& c : cells_) {
            for (int64_t t : needle_)
                if (lost(*c.h, t, step) && !dropped) {
                    dropped = &c;
                    dropped_tok = t;
                }
        }
        if (!dropped) return;
        const int32_t l = dropped->layer, h = dropped->head;
        const std::string where = "layer " + num(l) + " head " + num(h);
        if (score_ == Score::kPosition) {
            const int64_t sinks = param_int(s_.policy_params, "sinks", 4);
            StoryBeat& b =
                add(BeatKind::kWhy, step,
                    "Why " + where + " dropped token " + num(dropped_tok) + " " +
                        in_quotes(m_.token_text(dropped_tok)) + ": " + name() +
                        " looks at no score, only position — it is not among the first " +
                        num(sinks) + " (the sinks) nor among the " +
                        num(dropped->h->held(step) - sinks) + " most recent.");
            b.layer = l;
            b.head = h;
            b.token = dropped_tok;
            b.token_begin = dropped_tok;
            b.token_end = dropped_tok + 1;
            return;
        }
        const std::vector<double> sc = policy_scores(m_, score_, s_.policy_params, l, h);
        if (sc.empty()) return;
        // The needle token this head dropped that the score ranked best.
        int64_t best = -1;
        for (int64_t t : needle_)
            if (t < P && lost(*dropped->h, t, step) &&
                (best < 0 || sc[size_t(t)] > sc[size_t(best)]))
                best = t;
        if (best < 0) return;
        int64_t rank = 1;
        for (int64_t j = 0; j < P; ++j)
            if (sc[size_t(j)] > sc[size_t(best)]) ++rank;
        const auto [pro_head, pro_tail] =
            protected_ends(m_, s_.policy, s_.policy_params, std::max(m_.budget(step, l, h), 0));
        double cutoff = std::numeric_limits<double>::infinity();
        for (int64_t j = pro_head; j < P - pro_tail; ++j)
            if (!lost(*dropped->h, j, step)) cutoff = std::min(cutoff, sc[size_t(j)]);
        const double sign = score_ == Score::kKeyNormLow ? -1.0 : 1.0;
        const CacheChange bc = dropped->h->state_at(best, step);
        const std::string what =
            is_held(bc.state) ? "kept it at " + num(bc.bits) + " bits only" : "dropped it";
        std::string t = "Why " + where + " " + what + ": by " + name() + "'s own score (" +
                        score_phrase(score_) + ") the needle's best token there, " + num(best) +
                        " " + in_quotes(m_.token_text(best)) + ", scores " +
                        fmt("%.4g", sign * sc[size_t(best)]) + ", rank " + num(rank) + " of " +
                        num(P);
        if (std::isfinite(cutoff))
            t += "; the " + std::string(score_ == Score::kKeyNormLow ? "highest" : "lowest") +
                 " score still kept (at full precision) outside the protected tokens is " +
                 fmt("%.4g", sign * cutoff);
        StoryBeat& b = add(BeatKind::kWhy, step, t + ".");
        b.layer = l;
        b.head = h;
        b.token = best;
        b.token_begin = best;
        b.token_end = best + 1;
    }

    void decode() {
        if (last() < 1) return;
        int64_t ev = 0, mg = 0, q = 0, held = 0;
        int bits = 16;
        for (const Cell& c : cells_) {
            const auto [first, end] = c.h->step_changes(1);
            for (int32_t i = first; i < end; ++i) {
                const CacheChange& ch = c.h->change(i);
                if (ch.state == TokenCacheState::kEvicted) ++ev;
                if (ch.state == TokenCacheState::kMerged) ++mg;
                if (ch.state == TokenCacheState::kQuantized ||
                    ch.state == TokenCacheState::kDemoted) {
                    ++q;
                    bits = std::min<int>(bits, ch.bits);
                }
            }
            held += c.h->held(1);
        }
        const StepInfo fed = m_.step_info(0);
        std::string t = "Step 1: the first generated token " + in_quotes(fed.piece) +
                        " enters every cache (position " + num(s_.n_prompt_tokens) + "); " + name();
        if (ev == 0 && mg == 0 && q == 0) {
            t += " leaves the prompt's cache as it was";
        } else {
            std::vector<std::string> did;
            if (ev > 0) did.push_back("evicts " + num(ev) + " tokens");
            if (mg > 0) did.push_back("merges " + num(mg) + " into kept neighbours");
            if (q > 0) did.push_back("quantises " + num(q) + " tokens to " + num(bits) + " bits");
            for (size_t i = 0; i < did.size(); ++i) t += (i ? " and " : " ") + did[i];
            t += " over all " + num(std::ssize(cells_)) + " heads";
        }
        t += "; the heads hold " + fmt("%.1f", double(held) / double(cells_.size())) +
             " tokens on average.";
        StoryBeat& b = add(BeatKind::kDecode, 1, t);
        b.token_begin = s_.n_prompt_tokens;
        b.token_end = s_.n_prompt_tokens + 1;
        b.token = s_.n_prompt_tokens;
        int64_t merged = 0;
        for (const Cell& c : cells_) merged += c.h->merged(last());
        if (merged > 0)
            add(BeatKind::kDecode, last(),
                "By step " + num(last()) + ", " + num(merged) +
                    " tokens have been merged into kept tokens instead of dropped (the Merges view "
                    "draws each as an arc with its weight).");
    }

    void outcome() {
        std::string out;
        for (int64_t s = 0; s < s_.n_steps; ++s) out += m_.step_info(s).piece;
        int64_t held = 0, total = 0;
        for (const Cell& c : cells_) {
            held += c.h->held(last());
            total += c.h->appended(last());
        }
        std::string t = "Step " + num(last()) + ": the model wrote " + in_quotes(out) + ".";
        if (!m_.spans().empty()) {
            const auto& sp = m_.spans().front();
            const int8_t f = m_.answer_found(0);
            if (!sp.expected_answer.empty() && f >= 0)
                t += " The expected answer \"" + sp.expected_answer + "\" is " +
                     (f ? "in it" : "not in it") + ".";
        }
        t += " The cache holds " + num(held) + " of the " + num(total) + " token slots it saw (" +
             fmt("%.0f", total ? 100.0 * double(held) / double(total) : 0.0) + "%).";
        StoryBeat& b = add(BeatKind::kOutcome, last(), t);
        b.token_begin = s_.n_prompt_tokens;
        b.token_end = s_.n_tokens;
    }

    const TraceModel& m_;
    const StoryPolicy& p_;
    const TraceSummary& s_;
    Score score_;
    std::vector<Cell> cells_;
    std::vector<int64_t> needle_;
    bool needle_digits_ = false;
    std::vector<StoryBeat> beats_;
};

}  // namespace

std::string format_ranges(const std::vector<int32_t>& v) {
    std::string out;
    for (size_t i = 0; i < v.size();) {
        size_t j = i;
        while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
        if (!out.empty()) out += ", ";
        out += std::to_string(v[i]);
        if (j > i) out += "–" + std::to_string(v[j]);
        i = j + 1;
    }
    return out;
}

std::vector<int64_t> needle_tokens(const TraceModel& m) {
    if (m.spans().empty()) return {};
    const trace::MarkedSpan& sp = m.spans().front();
    const bool digits =
        std::any_of(sp.expected_answer.begin(), sp.expected_answer.end(),
                    [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    std::vector<int64_t> out;
    for (int64_t t = sp.begin; t < std::min(sp.end, m.summary().n_tokens); ++t) {
        const std::string_view text = m.token_text(t);
        if (!digits || std::any_of(text.begin(), text.end(), [](char c) {
                return std::isdigit(static_cast<unsigned char>(c));
            }))
            out.push_back(t);
    }
    if (out.empty())
        for (int64_t t = sp.begin; t < std::min(sp.end, m.summary().n_tokens); ++t)
            out.push_back(t);
    return out;
}

std::vector<StoryBeat> make_story(const TraceModel& model, const StoryPolicy& policy) {
    return StoryBuilder(model, policy).build();
}

}  // namespace kvscope::views
