#include "core/scenarios/scenario.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/scenarios/splitmix64.h"

namespace kvscope {

namespace {

// Texts shared with tools/train_demo/scenarios.py: the demo model was trained on exactly these.
constexpr const char* kPasskeyIntro =
    "There is a pass key hidden inside a lot of irrelevant text. Find it and remember it.";
constexpr const char* kPasskeyQuestion = "What is the pass key? The pass key is";
const std::vector<std::string> kPasskeyFiller = {
    "The river runs to the sea.",
    "The hills are green and quiet.",
    "The birds sing in the trees.",
    "The wind moves over the fields.",
    "Here we go again.",
    "Back and forth we go.",
};
constexpr const char* kNiahIntro =
    "A special magic number is hidden in the text below. Remember it.";
constexpr const char* kNiahIntroMulti =
    "Special magic numbers are hidden in the text below. Remember them.";

std::string passkey_needle(const std::string& v) {
    return "The pass key is " + v + ". Remember it. " + v + " is the pass key.";
}
std::string niah_needle(const std::string& k, const std::string& v) {
    return "The special magic number for " + k + " is " + v + ".";
}
std::string niah_question(const std::string& k) {
    return "What is the special magic number for " + k + "? The special magic number for " + k +
           " is";
}

// Index among the pieces before which a needle goes: where the token count before it is closest
// to depth * total (first such index on ties).
size_t insert_index(const std::vector<int64_t>& costs, double depth) {
    const int64_t total = std::accumulate(costs.begin(), costs.end(), int64_t{0});
    const double target = depth * static_cast<double>(total);
    size_t best = 0;
    double best_err = std::fabs(target);
    int64_t acc = 0;
    for (size_t k = 0; k < costs.size(); ++k) {
        acc += costs[k];
        const double err = std::fabs(static_cast<double>(acc) - target);
        if (err < best_err) {
            best = k + 1;
            best_err = err;
        }
    }
    return best;
}

std::vector<std::string> split_words(const std::string& sentence) {
    std::vector<std::string> out;
    size_t start = 0;
    while (true) {
        const size_t sp = sentence.find(' ', start);
        out.push_back(
            sentence.substr(start, sp == std::string::npos ? std::string::npos : sp - start));
        if (sp == std::string::npos) break;
        start = sp + 1;
    }
    return out;
}

}  // namespace

const char* scenario_kind_name(ScenarioKind k) {
    switch (k) {
        case ScenarioKind::kPasskey:
            return "passkey";
        case ScenarioKind::kNiah:
            return "niah";
        case ScenarioKind::kNeedles:
            return "needles";
    }
    return "?";
}

ScenarioKind parse_scenario_kind(const std::string& name) {
    if (name == "passkey") return ScenarioKind::kPasskey;
    if (name == "niah") return ScenarioKind::kNiah;
    if (name == "needles") return ScenarioKind::kNeedles;
    throw InputError("unknown scenario '" + name + "' (expected passkey, niah or needles)");
}

uint64_t trial_seed(uint64_t base_seed, ScenarioKind kind, int64_t length, double depth,
                    int64_t trial) {
    const uint64_t kind_id = kind == ScenarioKind::kPasskey ? 1
                             : kind == ScenarioKind::kNiah  ? 2
                                                            : 3;
    const auto permille = static_cast<uint64_t>(std::floor(depth * 1000.0 + 0.5));
    return mix_seed({base_seed, kind_id, static_cast<uint64_t>(length), permille,
                     static_cast<uint64_t>(trial)});
}

namespace {
// A byte that continues a word or number: ASCII letters and digits, and every byte of a multi-byte
// UTF-8 character (so "café" does not match inside "cafés").
bool word_byte(char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 0x80 || std::isalnum(u) != 0;
}
}  // namespace

bool answer_found(const std::string& generated, const std::string& answer) {
    return answer_occurrences(generated, answer) > 0;
}

int64_t answer_occurrences(const std::string& generated, const std::string& answer) {
    if (answer.empty()) return 0;
    int64_t n = 0;
    // Whole-word match: "6140999" must not count as finding "61409", nor "a61409". The answer's
    // own edges decide: an answer that starts (ends) with punctuation may touch anything there.
    const bool check_left = word_byte(answer.front());
    const bool check_right = word_byte(answer.back());
    for (size_t at = generated.find(answer); at != std::string::npos;
         at = generated.find(answer, at + 1)) {
        const size_t end = at + answer.size();
        const bool left_ok = !check_left || at == 0 || !word_byte(generated[at - 1]);
        const bool right_ok = !check_right || end == generated.size() || !word_byte(generated[end]);
        n += left_ok && right_ok;
    }
    return n;
}

ScenarioBuilder::ScenarioBuilder(const Tokenizer& tok, const Haystack* haystack)
    : tok_(tok), haystack_(haystack) {}

int64_t ScenarioBuilder::encoded_size(const std::string& text, bool add_special) const {
    return static_cast<int64_t>(tok_.encode(text, add_special).size());
}

int64_t ScenarioBuilder::count(const std::string& piece) {
    auto it = counts_.find(piece);
    if (it != counts_.end()) return it->second;
    const int64_t n = encoded_size(" " + piece, false);
    counts_.emplace(piece, n);
    return n;
}

Scenario ScenarioBuilder::build(const ScenarioOptions& opts) {
    if (opts.kind != ScenarioKind::kNeedles) return build_once(opts, opts.seed);
    // A value that also occurs in the haystack (a word, a name, a short number) would make the
    // answer ambiguous: redraw from derived seeds, identically in scenarios.py.
    constexpr uint64_t kAttempts = 16;
    for (uint64_t attempt = 0; attempt < kAttempts; ++attempt) {
        Scenario sc = build_once(opts, attempt == 0 ? opts.seed : mix_seed({opts.seed, attempt}));
        if (answer_occurrences(sc.text, sc.answer) == 1) return sc;
    }
    throw InputError("needles: the answer kept occurring in the haystack text too (" +
                     std::to_string(kAttempts) + " draws from seed " + std::to_string(opts.seed) +
                     ")");
}

Scenario ScenarioBuilder::build_once(const ScenarioOptions& opts, uint64_t seed) {
    if (!(opts.depth >= 0.0 && opts.depth <= 1.0))
        throw InputError("needle depth " + std::to_string(opts.depth) + " is outside [0, 1]");
    if (opts.length < 1) throw InputError("scenario length must be positive");
    const bool passkey = opts.kind == ScenarioKind::kPasskey;
    if (opts.kind == ScenarioKind::kNeedles && opts.templates == nullptr)
        throw InputError("a needles scenario needs a template set (resources/needles)");
    if (!passkey && haystack_ == nullptr)
        throw InputError(std::string("a ") + scenario_kind_name(opts.kind) +
                         " scenario needs a haystack (resources/haystacks)");
    if (opts.num_needles < 1 || (passkey && opts.num_needles != 1))
        throw InputError("passkey has one needle; NIAH needs at least one");
    if (opts.kind == ScenarioKind::kNiah &&
        static_cast<size_t>(opts.num_needles) > haystack_->keys.size())
        throw InputError(haystack_->dir / "needle_keys.list",
                         "has " + std::to_string(haystack_->keys.size()) + " keys, fewer than " +
                             std::to_string(opts.num_needles) + " needles");

    // Random draws, in the order scenarios.py makes them.
    SplitMix64 rng(seed);
    Scenario sc;
    sc.options = opts;
    std::vector<double> depths;
    std::string intro, question;
    const std::vector<std::string>* sentences = &kPasskeyFiller;
    if (opts.custom) {
        const CustomNeedle& c = *opts.custom;
        if (passkey || opts.num_needles != 1)
            throw InputError("a custom needle is hidden in a NIAH haystack, one needle at a time");
        if (c.needle.empty() || c.question.empty() || c.answer.empty())
            throw InputError("a custom needle needs needle, question and answer texts");
        if (c.needle.find(c.answer) == std::string::npos)
            throw InputError("custom needle '" + c.needle + "' does not contain its answer '" +
                             c.answer + "'");
        sc.needles.push_back({c.needle, "", c.answer, true, 0, 0});
        depths.push_back(opts.depth);
        intro = c.intro.empty() ? kNiahIntro : c.intro;
        question = c.question;
        sentences = &haystack_->sentences;
    } else if (opts.kind == ScenarioKind::kNeedles) {
        if (opts.distractors < 0) throw InputError("needles: distractors must be >= 0");
        NeedleDraw d = draw_needle_facts(*opts.templates, opts.split, opts.num_needles,
                                         opts.distractors, opts.depth, rng);
        for (size_t j = 0; j < d.facts.size(); ++j) {
            NeedleFact& f = d.facts[j];
            sc.needles.push_back({std::move(f.text), f.key, f.value, j == d.query, 0, 0});
            depths.push_back(f.depth);
        }
        sc.template_id = opts.templates->templates[d.facts[d.query].template_index].id;
        intro = std::move(d.intro);
        question = std::move(d.question);
        sentences = &haystack_->sentences;
    } else if (passkey) {
        const std::string v = std::to_string(10000 + rng.below(90000));
        sc.needles.push_back({passkey_needle(v), "", v, true, 0, 0});
        depths.push_back(opts.depth);
        intro = kPasskeyIntro;
        question = kPasskeyQuestion;
    } else {
        const auto& keys = haystack_->keys;
        for (int j = 0; j < opts.num_needles; ++j) {
            std::string k = keys[rng.below(keys.size())];
            auto taken = [&](const std::string& key) {
                return std::any_of(sc.needles.begin(), sc.needles.end(),
                                   [&](const Needle& n) { return n.key == key; });
            };
            while (taken(k)) k = keys[rng.below(keys.size())];
            const std::string v = std::to_string(1000000 + rng.below(9000000));
            sc.needles.push_back({niah_needle(k, v), k, v, false, 0, 0});
        }
        const auto query = static_cast<size_t>(rng.below(static_cast<uint64_t>(opts.num_needles)));
        sc.needles[query].queried = true;
        for (size_t j = 0; j < sc.needles.size(); ++j)
            depths.push_back(j == query ? opts.depth
                                        : static_cast<double>(rng.below(1001)) / 1000.0);
        intro = opts.num_needles == 1 ? kNiahIntro : kNiahIntroMulti;
        question = niah_question(sc.needles[query].key);
        sentences = &haystack_->sentences;
    }
    const uint64_t start = rng.below(sentences->size());
    for (const Needle& n : sc.needles)
        if (n.queried) sc.answer = n.value;

    // Fill the haystack budget with whole sentences, then whole words of the next one.
    const int64_t overhead =
        encoded_size(intro + "\n\n", true) + encoded_size("\n\n" + question, false);
    int64_t needle_cost = 0;
    for (const Needle& n : sc.needles) needle_cost += encoded_size(" " + n.text, false);
    const int64_t budget = std::max<int64_t>(0, opts.length - overhead - needle_cost);
    std::vector<std::string> pieces;
    std::vector<int64_t> costs;
    int64_t used = 0;
    uint64_t i = start;
    const auto S = static_cast<uint64_t>(sentences->size());
    while (true) {
        const std::string& s = (*sentences)[i % S];
        const int64_t c = count(s);
        if (used + c > budget) break;
        pieces.push_back(s);
        costs.push_back(c);
        used += c;
        ++i;
    }
    for (const std::string& w : split_words((*sentences)[i % S])) {
        const int64_t c = count(w);
        if (used + c > budget) break;
        pieces.push_back(w);
        costs.push_back(c);
        used += c;
    }

    // Place the needles, encode, and drop trailing pieces while the prompt is too long.
    std::vector<std::pair<size_t, size_t>> char_spans(sc.needles.size());
    while (true) {
        std::vector<size_t> where(sc.needles.size());
        for (size_t j = 0; j < where.size(); ++j) where[j] = insert_index(costs, depths[j]);
        std::vector<size_t> order(sc.needles.size());
        std::iota(order.begin(), order.end(), size_t{0});
        std::stable_sort(order.begin(), order.end(),
                         [&](size_t a, size_t b) { return where[a] < where[b]; });
        std::string text = intro + "\n\n";
        bool first = true;
        auto append = [&](const std::string& part) {
            if (!first) text += ' ';
            first = false;
            text += part;
        };
        size_t k = 0;
        for (size_t j : order) {
            for (; k < where[j]; ++k) append(pieces[k]);
            append(sc.needles[j].text);
            char_spans[j] = {text.size() - sc.needles[j].text.size(), text.size()};
        }
        for (; k < pieces.size(); ++k) append(pieces[k]);
        text += "\n\n" + question;
        sc.ids = tok_.encode(text, true);
        if (static_cast<int64_t>(sc.ids.size()) <= opts.length || pieces.empty()) {
            sc.text = std::move(text);
            break;
        }
        pieces.pop_back();
        costs.pop_back();
    }
    if (static_cast<int64_t>(sc.ids.size()) > opts.length)
        throw InputError("scenario length " + std::to_string(opts.length) +
                         " is too small: the question and needle(s) alone take " +
                         std::to_string(sc.ids.size()) + " tokens");

    // Token spans: the needle starts where the text before it (without the joining space, which
    // belongs to the needle's first token) ends, and ends where the text through it ends.
    for (size_t j = 0; j < sc.needles.size(); ++j) {
        const auto [a, z] = char_spans[j];
        const size_t cut = (a > 0 && sc.text[a - 1] == ' ') ? a - 1 : a;
        Needle& n = sc.needles[j];
        n.token_begin = encoded_size(sc.text.substr(0, cut), true);
        n.token_end = std::min<int64_t>(encoded_size(sc.text.substr(0, z), true),
                                        static_cast<int64_t>(sc.ids.size()));
        n.token_begin = std::min(n.token_begin, n.token_end);
    }
    return sc;
}

}  // namespace kvscope
