#include "traces/synthetic/synthetic_trace.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "core/probes/attention_density.h"
#include "core/probes/norm_attention.h"

namespace kvscope::trace {

namespace {

// splitmix64: fixed output on every platform (std:: distributions are implementation-defined).
class Rng {
  public:
    explicit Rng(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
    double normal() {  // Box-Muller
        const double u1 = std::max(uniform(), 1e-12);
        const double u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }

  private:
    uint64_t state_;
};

constexpr const char* kHaystack =
    "The old harbour town sits where the river meets the sea, and for three centuries its "
    "people have lived by the tides. Fishing boats leave before dawn and return in the "
    "afternoon, when the market square fills with crates of mackerel, crab and salt cod. "
    "Above the quay, narrow streets climb towards a chapel whose bell was cast from the metal "
    "of a wrecked ship.\n"
    "In the long winters the town turns inward. Families mend nets by the fire, children learn "
    "the names of the stars that guided their grandparents home, and the library lends out "
    "almanacs, sea charts and novels in equal measure. A small museum keeps the logbooks of "
    "captains who sailed as far as the spice islands, written in a careful hand.\n"
    "Spring brings painters and walkers. They follow the cliff path to the lighthouse, stop at "
    "the bakery for warm rolls, and argue about the best view of the bay. By midsummer the "
    "harbour is crowded with sails, and the evenings end with music on the green.\n";
constexpr const char* kNeedle = " The secret passkey is 48213.";
constexpr const char* kQuestion = "\nQuestion: What is the secret passkey?\nAnswer:";
constexpr const char* kAnswer[] = {" The", " secret",  " passkey", " is", " 482", "13",    ".",
                                   " It",  " was",     " hidden",  " in", " the", " text", " about",
                                   " the", " harbour", " town",    ".",   "\n"};

bool is_word_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '\'';
}

// Word pieces in the byte-level style: a leading space belongs to the next word, punctuation
// stands alone, digits come in groups of at most three.
std::vector<std::string> split_pieces(const std::string& text) {
    std::vector<std::string> out;
    std::string cur;
    auto flush = [&] {
        if (!cur.empty()) out.push_back(cur);
        cur.clear();
    };
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '\n') {
            flush();
            out.emplace_back("\n");
        } else if (c == ' ') {
            flush();
            cur = " ";
        } else if (is_word_char(c)) {
            const bool digit = std::isdigit(static_cast<unsigned char>(c)) != 0;
            const std::string core = cur.substr(cur.starts_with(' ') ? 1 : 0);
            if (digit && core.size() >= 3 && std::all_of(core.begin(), core.end(), [](char d) {
                    return std::isdigit(static_cast<unsigned char>(d));
                })) {
                flush();
            }
            cur += c;
        } else {
            flush();
            out.emplace_back(1, c);
        }
    }
    flush();
    return out;
}

struct Prompt {
    std::vector<std::string> pieces;
    std::vector<int32_t> kind;  // [P] dense id of the piece text (equal pieces, equal ids)
    int32_t n_kinds = 0;
    int64_t needle_begin = 0;
    int64_t needle_end = 0;
    std::string text;
};

Prompt build_prompt(int64_t target) {
    const std::vector<std::string> hay = split_pieces(kHaystack);
    const std::vector<std::string> needle = split_pieces(kNeedle);
    const std::vector<std::string> question = split_pieces(kQuestion);
    const int64_t fixed = 1 + std::ssize(needle) + std::ssize(question);
    const int64_t body_len = target > fixed ? target - fixed : std::ssize(hay);
    std::vector<std::string> body;
    while (std::ssize(body) < body_len) {
        for (const std::string& p : hay) {
            if (std::ssize(body) >= body_len) break;
            body.push_back(p);
        }
    }
    const int64_t at = body_len * 2 / 5;
    Prompt p;
    p.pieces.emplace_back("<s>");
    p.pieces.insert(p.pieces.end(), body.begin(), body.begin() + at);
    p.needle_begin = std::ssize(p.pieces);
    p.pieces.insert(p.pieces.end(), needle.begin(), needle.end());
    p.needle_end = std::ssize(p.pieces);
    p.pieces.insert(p.pieces.end(), body.begin() + at, body.end());
    p.pieces.insert(p.pieces.end(), question.begin(), question.end());
    for (size_t i = 1; i < p.pieces.size(); ++i) p.text += p.pieces[i];
    std::map<std::string, int32_t> kinds;
    for (const std::string& piece : p.pieces)
        p.kind.push_back(kinds.emplace(piece, static_cast<int32_t>(kinds.size())).first->second);
    p.n_kinds = static_cast<int32_t>(kinds.size());
    return p;
}

int32_t piece_id(const std::string& piece) {
    if (piece == "<s>") return 1;
    uint32_t h = 2166136261u;  // FNV-1a, folded into a 32k vocabulary
    for (char c : piece) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
    return static_cast<int32_t>(3 + h % 31997);
}

bool is_punct(const std::string& p) {
    return p == "." || p == "," || p == "\n" || p == "?";
}

// One simulated (layer, head) cache: per position its score and bits (0 = not held).
struct HeadCache {
    std::vector<float> score;  // cumulative attention received
    std::vector<int8_t> bits;
    int64_t held = 0;
    int64_t held_bits = 0;
    double threshold = -1.0;  // D2O-style EMA merge threshold
};

}  // namespace

void write_synthetic_trace(TraceWriter& writer, const SyntheticSpec& spec) {
    const Prompt prompt = build_prompt(spec.n_prompt_tokens);
    const int32_t L = std::max(spec.n_layers, 1);
    const int32_t H = std::max(spec.n_heads, 1);
    const int64_t P = std::ssize(prompt.pieces);
    const int64_t S = std::max<int64_t>(spec.n_steps, 1);
    const int64_t W = std::min<int64_t>(spec.window, P / 4);
    const int64_t sinks = std::min<int64_t>(spec.sinks, P / 8);
    const int64_t nb = prompt.needle_begin;
    const int64_t ne = prompt.needle_end;
    Rng rng(spec.seed);

    RunMetadata meta;
    meta.n_layers = L;
    meta.n_heads = H;
    meta.n_prompt_tokens = P;
    meta.top_k = 3;
    meta.spans = {{nb, ne, "needle", "48213"}};
    meta.model_name = "synthetic-llama (no model run)";
    meta.model_path = "";
    meta.architecture = "LlamaForCausalLM";
    meta.model_dtype = "bf16";
    meta.n_query_heads = 2 * H;
    meta.n_kv_heads = H;
    meta.head_dim = spec.head_dim;
    meta.model_spec = {{"num_hidden_layers", L},
                       {"num_key_value_heads", H},
                       {"num_attention_heads", 2 * H},
                       {"head_dim", spec.head_dim}};
    meta.tokenizer = "synthetic word pieces";
    meta.policy = "synthetic-demo";
    meta.policy_params = {{"budget_ratio", spec.budget_ratio},
                          {"window", W},
                          {"sinks", sinks},
                          {"merge", "D2O-style, EMA threshold"},
                          {"bits", "16 / 4 / 2 (MiKV-style)"},
                          {"protected_layers", "0, 1, L-1"}};
    meta.gqa_aggregation = "mean";
    meta.budget_ratio = spec.budget_ratio;
    meta.window = W;
    meta.sinks = sinks;
    meta.prompt = prompt.text;
    meta.seed = spec.seed;
    meta.sampling = {{"temperature", 0.0}, {"max_new_tokens", S}};
    meta.device = "none (synthetic)";
    meta.backend = "cpu";
    meta.extra = {{"generator", "traces/synthetic/synthetic_trace.cpp"},
                  {"prefill_appends_recorded", false},
                  {"note", "synthetic stand-in until kvscope run records the sample"}};
    writer.begin(meta);

    std::vector<TokenRecord> tokens;
    tokens.reserve(static_cast<size_t>(P));
    for (const std::string& p : prompt.pieces) {
        tokens.push_back({piece_id(p), p, TokenRole::kPrompt, 0});
    }
    writer.write_tokens(tokens);

    // ---- Prefill attention (column sums, sum = P per head) and key norms ----
    const size_t HP = static_cast<size_t>(H) * static_cast<size_t>(P);
    std::vector<std::vector<float>> colsum(static_cast<size_t>(L), std::vector<float>(HP));
    std::vector<float> density_layer(static_cast<size_t>(L));
    auto retrieval_head = [&](int32_t l, int32_t h) {
        return h % 2 == 1 && l >= L / 2 && l < L - 1;
    };
    for (int32_t l = 0; l < L; ++l) {
        const double depth = L > 1 ? static_cast<double>(l) / (L - 1) : 0.0;
        PrefillLayerStats st;
        st.layer = l;
        st.window_rows = W;
        for (int32_t h = 0; h < H; ++h) {
            // Deeper layers have more sharply peaked heads (sparser attention).
            const bool sharp = rng.uniform() < 0.15 + 0.7 * depth || (h == 0 && l > 1);
            const double gamma =
                l < 2 ? 0.35 : (sharp ? 1.6 + rng.uniform() : 0.7 + 0.4 * rng.uniform());
            float* c =
                &colsum[static_cast<size_t>(l)][static_cast<size_t>(h) * static_cast<size_t>(P)];
            double total = 0.0;
            for (int64_t j = 0; j < P; ++j) {
                double v = std::exp(0.8 * rng.normal());
                if (j < sinks) v += 40.0 / static_cast<double>(1 + j);
                v += 2.5 * std::exp(-static_cast<double>(P - 1 - j) / 12.0);
                if (is_punct(prompt.pieces[static_cast<size_t>(j)]) && h % 2 == 0) v *= 3.5;
                if (j >= nb && j < ne) v *= retrieval_head(l, h) ? 9.0 : (h == 0 ? 1.6 : 0.6);
                v = std::pow(v, gamma);
                c[j] = static_cast<float>(v);
                total += v;
            }
            for (int64_t j = 0; j < P; ++j)
                c[j] = static_cast<float>(c[j] / total * static_cast<double>(P));
            // Key norms: low norm <-> high attention, strongly in deep layers.
            const double corr = l < 2 ? 0.05 : 0.25 + 0.45 * depth;
            for (int64_t j = 0; j < P; ++j) {
                const double la = std::log(std::max(static_cast<double>(c[j]), 1e-9));
                double norm = 9.0 - 1.2 * corr * la + (1.0 - 0.6 * corr) * 1.8 * rng.normal();
                if (j < sinks) norm = 2.0 + 0.3 * rng.uniform();
                st.key_norm.push_back(static_cast<float>(std::max(norm, 0.5)));
                st.attn_received.push_back(c[j]);
                const double recency = std::exp(-static_cast<double>(P - 1 - j) / 48.0);
                st.window_scores.push_back(static_cast<float>(
                    c[j] * recency * static_cast<double>(W) / static_cast<double>(P)));
            }
            const std::span<const float> norms(
                st.key_norm.data() + static_cast<size_t>(h) * static_cast<size_t>(P),
                static_cast<size_t>(P));
            const std::span<const float> attn(c, static_cast<size_t>(P));
            st.spearman.push_back(static_cast<float>(key_norm_attention_spearman(norms, attn)));
            st.norm_attn_area.push_back(
                static_cast<float>(norm_attention_drop_curves(norms, attn).area));
        }
        const LayerDensity d = layer_attention_density(colsum[static_cast<size_t>(l)], H, P);
        for (double v : d.head_normalized) st.density.push_back(static_cast<float>(v));
        st.density_layer = static_cast<float>(d.density);
        density_layer[static_cast<size_t>(l)] = st.density_layer;
        writer.write_prefill(std::move(st));
    }

    // ---- D2O-style layer budgets: softmax(-F) x L x ratio, layers {0, 1, L-1} uncompressed ----
    auto is_protected = [&](int32_t l) { return l < 2 || l == L - 1; };
    std::vector<int64_t> budget(static_cast<size_t>(L), -1);
    {
        double z = 0.0;
        for (float f : density_layer) z += std::exp(-4.0 * f);
        for (int32_t l = 0; l < L; ++l) {
            if (is_protected(l)) continue;
            const double r = std::clamp(
                L * spec.budget_ratio * std::exp(-4.0 * density_layer[static_cast<size_t>(l)]) / z,
                0.08, 1.0);
            budget[static_cast<size_t>(l)] =
                std::max<int64_t>(sinks + W + 2, std::llround(r * static_cast<double>(P)));
        }
    }

    std::vector<HeadCache> caches(static_cast<size_t>(L) * static_cast<size_t>(H));
    const int64_t T = P + S;
    for (HeadCache& hc : caches) {
        hc.score.assign(static_cast<size_t>(T), 0.0f);
        hc.bits.assign(static_cast<size_t>(T), 0);
    }
    const float kNaN = std::nanf("");
    auto event = [&](int32_t step, int32_t l, int32_t h, CacheOp op, int64_t pos, int64_t dest,
                     float weight, float sim, float thr, int8_t bits) {
        EventRecord e{step,   l,   h,   op,  static_cast<int32_t>(pos), static_cast<int32_t>(dest),
                      weight, sim, thr, bits};
        if (op == CacheOp::kAppend) e.slot = static_cast<int32_t>(dest);
        return e;
    };
    // Rank of `pos` among held positions (its slot), skipping `excluded` (sorted).
    auto slot_of = [](const HeadCache& hc, int64_t pos) {
        int64_t r = 0;
        for (int64_t j = 0; j < pos; ++j) r += hc.bits[static_cast<size_t>(j)] != 0 ? 1 : 0;
        return r;
    };
    auto nearest_held = [](const HeadCache& hc, int64_t pos, int64_t n) {
        for (int64_t d = 1; d < n; ++d) {
            if (pos - d >= 0 && hc.bits[static_cast<size_t>(pos - d)] != 0) return pos - d;
            if (pos + d < n && hc.bits[static_cast<size_t>(pos + d)] != 0) return pos + d;
        }
        return int64_t{-1};
    };

    std::vector<std::vector<int64_t>> kept_by_kind(static_cast<size_t>(prompt.n_kinds));
    std::vector<int64_t> slots_before;
    for (int64_t s = 0; s < S; ++s) {
        StepData data;
        const int32_t st = static_cast<int32_t>(s);
        const int64_t n = s == 0 ? P : P + s;  // tokens in the cache context after this step
        for (int32_t l = 0; l < L; ++l) {
            std::vector<EventRecord> layer_events;
            for (int32_t h = 0; h < H; ++h) {
                HeadCache& hc = caches[static_cast<size_t>(l) * static_cast<size_t>(H) +
                                       static_cast<size_t>(h)];
                const float* c = &colsum[static_cast<size_t>(l)]
                                        [static_cast<size_t>(h) * static_cast<size_t>(P)];
                std::vector<EventRecord>& ev = layer_events;
                const int64_t C = budget[static_cast<size_t>(l)];
                if (s == 0) {
                    // The prompt is in the cache before the prefill's compression; as with
                    // `kvscope run`, its appends are not recorded (readers put them in:
                    // trace::with_prompt_appends), which halves the prefill's events.
                    for (int64_t j = 0; j < P; ++j) {
                        hc.bits[static_cast<size_t>(j)] = 16;
                        hc.score[static_cast<size_t>(j)] = c[j];
                    }
                    hc.held = P;
                    hc.held_bits = 16 * P;
                    if (C < 0 || C >= P) continue;
                    // Keep sinks, the recent window and the heaviest of the middle.
                    std::vector<int64_t> middle;
                    for (int64_t j = sinks; j < P - W; ++j) middle.push_back(j);
                    const int64_t keep_mid = std::max<int64_t>(C - sinks - W, 0);
                    std::stable_sort(middle.begin(), middle.end(),
                                     [&](int64_t a, int64_t b) { return c[a] > c[b]; });
                    std::vector<int64_t> evict(
                        middle.begin() + std::min<int64_t>(keep_mid, std::ssize(middle)),
                        middle.end());
                    std::vector<int64_t> kept_mid(
                        middle.begin(),
                        middle.begin() + std::min<int64_t>(keep_mid, std::ssize(middle)));
                    std::sort(evict.begin(), evict.end());
                    for (int64_t e : evict)
                        hc.bits[static_cast<size_t>(e)] = -1;  // marked, still "held"
                    // Merge candidates: similarity to the nearest kept token decays with distance.
                    // Kept positions, all and by piece, sorted: each search below is two binary
                    // searches (a scan per evicted token made the prefill O(P^2) per head).
                    std::vector<int64_t> kept;
                    for (auto& v : kept_by_kind) v.clear();
                    for (int64_t j = 0; j < P; ++j) {
                        if (hc.bits[static_cast<size_t>(j)] > 0) {
                            kept.push_back(j);
                            kept_by_kind[static_cast<size_t>(prompt.kind[static_cast<size_t>(j)])]
                                .push_back(j);
                        }
                    }
                    // Nearest entry of `sorted` to e (not in it) at a distance < limit; ties go
                    // to the lower position (the order of the original scan: e-d before e+d).
                    auto nearest = [](const std::vector<int64_t>& sorted, int64_t e,
                                      int64_t limit) {
                        const auto it = std::lower_bound(sorted.begin(), sorted.end(), e);
                        const int64_t below = it != sorted.begin() ? *(it - 1) : int64_t{-1};
                        const int64_t above = it != sorted.end() ? *it : int64_t{-1};
                        int64_t best = -1;
                        if (below >= 0 && e - below < limit) best = below;
                        if (above >= 0 && above - e < limit && (best < 0 || above - e < e - best))
                            best = above;
                        return best;
                    };
                    std::vector<std::pair<int64_t, int64_t>> targets;  // (source, target)
                    std::vector<float> sims;
                    double sum = 0.0;
                    for (int64_t e : evict) {
                        // Keys of the same word are similar wherever it occurs (long arcs); else
                        // the nearest kept token, less similar the further away.
                        int64_t t = nearest(
                            kept_by_kind[static_cast<size_t>(prompt.kind[static_cast<size_t>(e)])],
                            e, std::min<int64_t>(P, 1024));
                        float sim = 0.0f;
                        if (t >= 0) {
                            sim = static_cast<float>(0.7 + 0.28 * rng.uniform());
                        } else {
                            t = nearest(kept, e, P);
                            sim = static_cast<float>(
                                0.3 + 0.6 * rng.uniform() *
                                          std::exp(-std::abs(static_cast<double>(e - t)) / 30.0));
                        }
                        targets.emplace_back(e, t);
                        sims.push_back(sim);
                        sum += sim;
                    }
                    hc.threshold = evict.empty() ? 0.5 : sum / static_cast<double>(evict.size());
                    // Merge run first (sources leave), destinations as slots after the run.
                    std::vector<size_t> merged;
                    for (size_t i = 0; i < targets.size(); ++i) {
                        if (sims[i] >= hc.threshold && targets[i].second >= 0) merged.push_back(i);
                    }
                    for (size_t i : merged) hc.bits[static_cast<size_t>(targets[i].first)] = 0;
                    // Slot of a position = entries (bits != 0) before it, once the run's sources
                    // have left: one prefix count instead of a scan per merge.
                    slots_before.resize(static_cast<size_t>(P) + 1);
                    slots_before[0] = 0;
                    for (int64_t j = 0; j < P; ++j)
                        slots_before[static_cast<size_t>(j) + 1] =
                            slots_before[static_cast<size_t>(j)] +
                            (hc.bits[static_cast<size_t>(j)] != 0 ? 1 : 0);
                    for (size_t i : merged) {
                        const int64_t dst = slots_before[static_cast<size_t>(targets[i].second)];
                        const float w = sims[i];
                        ev.push_back(event(st, l, h, CacheOp::kMerge, targets[i].first, dst, w,
                                           sims[i], static_cast<float>(hc.threshold), 0));
                        ev.back().dst_position = static_cast<int32_t>(targets[i].second);
                    }
                    for (int64_t e : evict) {
                        if (hc.bits[static_cast<size_t>(e)] == 0) continue;
                        hc.bits[static_cast<size_t>(e)] = 0;
                        ev.push_back(event(st, l, h, CacheOp::kEvict, e, -1, kNaN, kNaN,
                                           static_cast<float>(hc.threshold), 0));
                    }
                    hc.held = P - std::ssize(evict);
                    hc.held_bits = 16 * hc.held;
                    // MiKV-style precision: top third of the kept middle stays 16 bits.
                    const size_t third = kept_mid.size() / 3;
                    for (size_t i = third; i < kept_mid.size(); ++i) {
                        const int8_t b = i < 2 * third ? 4 : 2;
                        hc.bits[static_cast<size_t>(kept_mid[i])] = b;
                        hc.held_bits -= 16 - b;
                        ev.push_back(event(st, l, h, CacheOp::kQuantize, kept_mid[i], -1, kNaN,
                                           kNaN, kNaN, b));
                    }
                    continue;
                }
                // Decode step s: feed generated token s-1 at position P+s-1.
                const int64_t pos = P + s - 1;
                ev.push_back(event(st, l, h, CacheOp::kAppend, pos, hc.held, kNaN, kNaN, kNaN, 16));
                hc.bits[static_cast<size_t>(pos)] = 16;
                ++hc.held;
                hc.held_bits += 16;
                // Cumulative scores: this step's attention row follows the prefill shape; the
                // needle only draws attention from the retrieval heads.
                for (int64_t j = 0; j < pos; ++j) {
                    if (hc.bits[static_cast<size_t>(j)] == 0) continue;
                    double a =
                        j < P ? c[j] / static_cast<double>(P) : 0.6 / static_cast<double>(pos);
                    if (j >= nb && j < ne && !retrieval_head(l, h)) a *= 0.05;
                    hc.score[static_cast<size_t>(j)] +=
                        static_cast<float>(a * (0.5 + rng.uniform()));
                }
                hc.score[static_cast<size_t>(pos)] =
                    static_cast<float>(0.8 / static_cast<double>(pos));
                if (C < 0) continue;
                if (hc.held > C) {
                    int64_t victim = -1;
                    for (int64_t j = sinks; j < n - W; ++j) {
                        if (hc.bits[static_cast<size_t>(j)] != 0 &&
                            (victim < 0 || hc.score[static_cast<size_t>(j)] <
                                               hc.score[static_cast<size_t>(victim)])) {
                            victim = j;
                        }
                    }
                    if (victim >= 0) {
                        const int8_t b = hc.bits[static_cast<size_t>(victim)];
                        hc.bits[static_cast<size_t>(victim)] = 0;
                        --hc.held;
                        hc.held_bits -= b;
                        const int64_t target = nearest_held(hc, victim, n);
                        const float sim = static_cast<float>(0.35 + 0.6 * rng.uniform());
                        hc.threshold = 0.5 * hc.threshold + 0.5 * sim;
                        if (target >= 0 && sim >= hc.threshold) {
                            ev.push_back(event(st, l, h, CacheOp::kMerge, victim,
                                               slot_of(hc, target), sim, sim,
                                               static_cast<float>(hc.threshold), 0));
                            ev.back().dst_position = static_cast<int32_t>(target);
                        } else {
                            ev.push_back(event(st, l, h, CacheOp::kEvict, victim, -1, kNaN, kNaN,
                                               static_cast<float>(hc.threshold), 0));
                        }
                    }
                }
                if (s % 4 == 0) {
                    // Demote one token by a precision level: lowest score at 16 -> 4, at 4 -> 2.
                    for (int8_t from : {int8_t{4}, int8_t{16}}) {
                        int64_t pick = -1;
                        for (int64_t j = sinks; j < n - W; ++j) {
                            if (hc.bits[static_cast<size_t>(j)] == from &&
                                (pick < 0 || hc.score[static_cast<size_t>(j)] <
                                                 hc.score[static_cast<size_t>(pick)])) {
                                pick = j;
                            }
                        }
                        if (pick < 0) continue;
                        const int8_t to = from == 16 ? 4 : 2;
                        hc.bits[static_cast<size_t>(pick)] = to;
                        hc.held_bits -= from - to;
                        ev.push_back(
                            event(st, l, h, CacheOp::kQuantize, pick, -1, kNaN, kNaN, kNaN, to));
                    }
                }
            }
            // Handed over a layer at a time, already in (layer, head) order: the writer queues
            // them without a sort, and neither side holds a second copy of the step's events.
            writer.add_events(std::move(layer_events));
            layer_events = {};
        }
        // Per-step tables.
        for (int32_t l = 0; l < L; ++l) {
            for (int32_t h = 0; h < H; ++h) {
                const int64_t C = budget[static_cast<size_t>(l)];
                data.budgets.push_back(static_cast<int32_t>(C < 0 ? n : C));
            }
        }
        for (int32_t l = 0; l < L; ++l) {
            for (int32_t h = 0; h < H; ++h) {
                const HeadCache& hc = caches[static_cast<size_t>(l) * static_cast<size_t>(H) +
                                             static_cast<size_t>(h)];
                int64_t kept = 0;
                for (int64_t j = nb; j < ne; ++j)
                    kept += hc.bits[static_cast<size_t>(j)] != 0 ? 1 : 0;
                data.needle_survival.push_back(static_cast<float>(kept) /
                                               static_cast<float>(ne - nb));
            }
        }
        StepRecord& r = data.record;
        r.step = s;
        const std::string piece = kAnswer[static_cast<size_t>(s) % std::size(kAnswer)];
        r.token_id = piece_id(piece);
        r.piece = piece;
        const double top = -0.05 - 0.4 * rng.uniform();
        r.topk_ids = {r.token_id, piece_id(piece + "s"), piece_id(" and")};
        r.topk_logprobs = {static_cast<float>(top), static_cast<float>(top - 1.5 - rng.uniform()),
                           static_cast<float>(top - 3.0 - rng.uniform())};
        r.entropy = static_cast<float>(0.3 + 1.5 * rng.uniform());
        for (int32_t l = 0; l < L; ++l) {
            int64_t bits = 0;
            for (int32_t h = 0; h < H; ++h)
                bits +=
                    caches[static_cast<size_t>(l) * static_cast<size_t>(H) + static_cast<size_t>(h)]
                        .held_bits;
            r.bytes_held.push_back(bits * spec.head_dim * 2 / 8);
        }
        r.time_ms = static_cast<float>(s == 0 ? 40.0 + 0.05 * static_cast<double>(P)
                                              : 18.0 + 4.0 * rng.uniform());
        writer.write_step(std::move(data));
        if (spec.delay_ms > 0) {
            writer.sync();
            std::this_thread::sleep_for(std::chrono::milliseconds(spec.delay_ms));
        }
    }
    RunEnd end;
    end.complete = true;
    end.reason = "max_new_tokens";
    end.extra = {{"synthetic", true}};
    writer.end(end);
}

void write_synthetic_trace(const std::filesystem::path& path, const SyntheticSpec& spec) {
    TraceWriter writer(path);
    write_synthetic_trace(writer, spec);
}

}  // namespace kvscope::trace
