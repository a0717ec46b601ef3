#include "core/scenarios/needle_templates.h"

#include <algorithm>
#include <set>
#include <system_error>

#include "core/error.h"
#include "core/model/json_fields.h"
#include "core/scenarios/haystack.h"
#include "core/scenarios/text_alternation.h"

namespace kvscope {

namespace fs = std::filesystem;
using nlohmann::json;

const char* template_split_name(TemplateSplit s) {
    return s == TemplateSplit::kTrain ? "train" : "heldout";
}

TemplateSplit parse_template_split(const std::string& name) {
    if (name == "train") return TemplateSplit::kTrain;
    if (name == "heldout") return TemplateSplit::kHeldout;
    throw InputError("unknown template split '" + name + "' (expected train or heldout)");
}

std::vector<size_t> NeedleTemplateSet::of_split(TemplateSplit s) const {
    std::vector<size_t> out;
    for (size_t i = 0; i < templates.size(); ++i)
        if (templates[i].split == s) out.push_back(i);
    return out;
}

namespace {

// The text's alternation groups; a malformed group is an InputError naming file and field.
std::vector<AlternationPiece> parse_text(const std::string& text, const fs::path& file,
                                         const std::string& path) {
    try {
        return parse_alternations(text, path);
    } catch (const InputError& e) {
        throw InputError(file, e.problem());
    }
}

std::string required_string(const json& obj, const std::string& key, const fs::path& file,
                            const std::string& path) {
    const std::optional<std::string> v = json_string(obj, key, file, path + "." + key);
    if (!v || v->empty()) throw InputError(file, path + "." + key + ": missing or empty text");
    return *v;
}

// Every resolution of the text's alternations (text_alternation.h) must hold {key} at least once
// and, for a needle, {value} exactly once; a question holds no {value}. A placeholder other than
// {key} / {value} is a typo the builders would print verbatim.
void check_placeholders(const std::string& text, bool value_once, const fs::path& file,
                        const std::string& path) {
    const std::vector<AlternationPiece> pieces = parse_text(text, file, path);
    if (count_over_resolutions(pieces, "{key}").min == 0)
        throw InputError(file, path + ": has no {key} (in some choice of its alternatives)");
    const CountRange values = count_over_resolutions(pieces, "{value}");
    if (value_once && (values.min != 1 || values.max != 1))
        throw InputError(file, path + ": must hold {value} exactly once (in every choice of its " +
                                   "alternatives)");
    if (!value_once && values.max != 0)
        throw InputError(file, path + ": a question must not hold {value}");
    const std::string rest = fill_template(text, "", "");
    if (rest.find('{') != std::string::npos || rest.find('}') != std::string::npos)
        throw InputError(file, path + ": braces other than {key} and {value}");
}

// A non-empty JSON list of non-empty texts, each checked by check_placeholders.
std::vector<std::string> checked_texts(const json& list, bool value_once, const fs::path& file,
                                       const std::string& field) {
    if (list.empty()) throw InputError(file, field + ": expected a non-empty list of texts");
    std::vector<std::string> out;
    for (size_t i = 0; i < list.size(); ++i) {
        const std::string ip = field + "[" + std::to_string(i) + "]";
        if (!list[i].is_string() || list[i].get<std::string>().empty())
            throw InputError(file, ip + ": expected a non-empty text");
        out.push_back(list[i].get<std::string>());
        check_placeholders(out.back(), value_once, file, ip);
    }
    return out;
}

EntitySpec parse_entity(const json& t, const NeedleTemplateSet& set, const std::string& path) {
    const fs::path& file = set.file;
    const auto it = t.find("value");
    if (it == t.end() || !it->is_object())
        throw InputError(file, path + ".value: missing (an object with \"kind\")");
    const json& v = *it;
    const std::string vp = path + ".value";
    const std::string kind = required_string(v, "kind", file, vp);
    EntitySpec e;
    if (kind == "number") {
        e.kind = EntitySpec::Kind::kNumber;
        const auto d = v.find("digits");
        if (d == v.end() || !d->is_array() || d->size() != 2)
            throw InputError(file, vp + ".digits: expected [LO, HI]");
        e.min_digits = static_cast<int>(json_value_int((*d)[0], file, vp + ".digits[0]"));
        e.max_digits = static_cast<int>(json_value_int((*d)[1], file, vp + ".digits[1]"));
        if (e.min_digits < 1 || e.max_digits > 18 || e.min_digits > e.max_digits)
            throw InputError(file, vp + ".digits: expected 1 <= LO <= HI <= 18");
    } else if (kind == "word" || kind == "name") {
        e.kind = kind == "word" ? EntitySpec::Kind::kWord : EntitySpec::Kind::kName;
        e.pool = required_string(v, "pool", file, vp);
        if (!set.pools.count(e.pool))
            throw InputError(file, vp + ".pool: no pool named '" + e.pool + "' in \"pools\"");
    } else if (kind == "code") {
        e.kind = EntitySpec::Kind::kCode;
        e.pattern = required_string(v, "pattern", file, vp);
        if (e.pattern.find_first_of("@#") == std::string::npos)
            throw InputError(file, vp + ".pattern: needs '@' (letter) or '#' (digit) places");
    } else {
        throw InputError(file, vp + ".kind: '" + kind + "' (expected number, word, name or code)");
    }
    return e;
}

NeedleTemplate parse_template(const json& t, const NeedleTemplateSet& set, size_t index) {
    const fs::path& file = set.file;
    const std::string path = "templates[" + std::to_string(index) + "]";
    if (!t.is_object()) throw InputError(file, path + ": expected an object");
    NeedleTemplate nt;
    nt.id = required_string(t, "id", file, path);
    const std::string split = required_string(t, "split", file, path);
    if (split != "train" && split != "heldout")
        throw InputError(file, path + ".split: '" + split + "' (expected train or heldout)");
    nt.split = parse_template_split(split);
    nt.format = required_string(t, "format", file, path);
    static const std::vector<std::string> kFormats = {"sentence", "kv", "list", "dialogue"};
    if (std::find(kFormats.begin(), kFormats.end(), nt.format) == kFormats.end())
        throw InputError(
            file, path + ".format: '" + nt.format + "' (expected sentence, kv, list or dialogue)");
    nt.key_pool = required_string(t, "keys", file, path);
    if (!set.pools.count(nt.key_pool))
        throw InputError(file, path + ".keys: no pool named '" + nt.key_pool + "' in \"pools\"");
    nt.value = parse_entity(t, set, path);
    nt.intro = required_string(t, "intro", file, path);
    nt.intro_multi = json_string(t, "intro_multi", file, path + ".intro_multi").value_or(nt.intro);
    if (nt.intro_multi.empty()) nt.intro_multi = nt.intro;  // as scenarios.py: "" -> intro
    parse_text(nt.intro, file, path + ".intro");
    parse_text(nt.intro_multi, file, path + ".intro_multi");
    // "needle": one text or a list of forms (e.g. key first, value first).
    const auto n = t.find("needle");
    if (n != t.end() && n->is_array()) {
        nt.needles = checked_texts(*n, true, file, path + ".needle");
    } else {
        nt.needles.push_back(required_string(t, "needle", file, path));
        check_placeholders(nt.needles.back(), true, file, path + ".needle");
    }
    const auto q = t.find("questions");
    if (q == t.end() || !q->is_array())
        throw InputError(file, path + ".questions: expected a non-empty list of texts");
    nt.questions = checked_texts(*q, false, file, path + ".questions");
    return nt;
}

std::string draw_value(const EntitySpec& e, const NeedleTemplateSet& set, SplitMix64& rng) {
    switch (e.kind) {
        case EntitySpec::Kind::kNumber: {
            const auto n = static_cast<int>(static_cast<uint64_t>(e.min_digits) +
                                            rng.below(static_cast<uint64_t>(e.max_digits) -
                                                      static_cast<uint64_t>(e.min_digits) + 1));
            uint64_t base = 1;
            for (int i = 1; i < n; ++i) base *= 10;
            return std::to_string(base + rng.below(9 * base));
        }
        case EntitySpec::Kind::kWord:
        case EntitySpec::Kind::kName: {
            const auto& pool = set.pools.at(e.pool);
            return pool[rng.below(pool.size())];
        }
        case EntitySpec::Kind::kCode: {
            std::string out = e.pattern;
            for (char& c : out) {
                if (c == '@')
                    c = static_cast<char>('A' + rng.below(26));
                else if (c == '#')
                    c = static_cast<char>('0' + rng.below(10));
            }
            return out;
        }
    }
    return {};
}

// Distinct values a template's entity can take, capped (numbers and codes have plenty).
uint64_t value_capacity(const EntitySpec& e, const NeedleTemplateSet& set) {
    if (e.kind == EntitySpec::Kind::kWord || e.kind == EntitySpec::Kind::kName) {
        const auto& p = set.pools.at(e.pool);
        return static_cast<uint64_t>(std::set<std::string>(p.begin(), p.end()).size());
    }
    return 1000;  // >= 900 three-digit numbers; codes have at least 10 places of one kind
}

}  // namespace

std::string fill_template(const std::string& text, const std::string& key,
                          const std::string& value) {
    std::string out;
    out.reserve(text.size() + 32);
    for (size_t i = 0; i < text.size();) {
        if (text.compare(i, 5, "{key}") == 0) {
            out += key;
            i += 5;
        } else if (text.compare(i, 7, "{value}") == 0) {
            out += value;
            i += 7;
        } else {
            out += text[i++];
        }
    }
    return out;
}

NeedleTemplateSet load_needle_templates(const fs::path& file) {
    const json doc = read_json_file(file);
    NeedleTemplateSet set;
    set.file = file;
    const auto pools = doc.find("pools");
    if (pools == doc.end() || !pools->is_object())
        throw InputError(file, "pools: missing (an object: pool name -> list of texts)");
    for (const auto& [name, list] : pools->items()) {
        if (!list.is_array() || list.empty())
            throw InputError(file, "pools." + name + ": expected a non-empty list of texts");
        auto& out = set.pools[name];
        for (const json& v : list) {
            if (!v.is_string() || v.get<std::string>().empty())
                throw InputError(file, "pools." + name + ": every entry must be a non-empty text");
            out.push_back(v.get<std::string>());
        }
    }
    const auto ts = doc.find("templates");
    if (ts == doc.end() || !ts->is_array())
        throw InputError(file, "templates: missing (a list of needle templates)");
    for (size_t i = 0; i < ts->size(); ++i) {
        set.templates.push_back(parse_template((*ts)[i], set, i));
        for (size_t j = 0; j + 1 < set.templates.size(); ++j)
            if (set.templates[j].id == set.templates.back().id)
                throw InputError(file, "templates[" + std::to_string(i) + "].id: '" +
                                           set.templates[j].id + "' is used twice");
    }
    for (TemplateSplit s : {TemplateSplit::kTrain, TemplateSplit::kHeldout})
        if (set.of_split(s).empty())
            throw InputError(file, std::string("templates: no template of split '") +
                                       template_split_name(s) + "'");
    const auto hs = doc.find("haystacks");
    if (hs == doc.end() || !hs->is_object())
        throw InputError(file, "haystacks: missing ({\"train\": DIR, \"heldout\": DIR})");
    const fs::path base = file.parent_path();
    set.haystack_train = base / required_string(*hs, "train", file, "haystacks");
    set.haystack_heldout = base / required_string(*hs, "heldout", file, "haystacks");
    return set;
}

fs::path find_default_templates_file(const fs::path& model_path) {
    const fs::path hay = find_default_haystack_dir(model_path);
    if (hay.empty()) return {};
    const fs::path f = hay.parent_path() / "needles" / "templates.json";
    std::error_code ec;
    return fs::is_regular_file(f, ec) ? f : fs::path{};
}

NeedleDraw draw_needle_facts(const NeedleTemplateSet& set, TemplateSplit split, int num_needles,
                             int distractors, double depth, SplitMix64& rng) {
    if (num_needles < 1 || distractors < 0)
        throw InputError("needles: at least one needle and no negative distractor count");
    const std::vector<size_t> pool = set.of_split(split);
    const size_t total = static_cast<size_t>(num_needles) + static_cast<size_t>(distractors);
    NeedleDraw d;
    auto add_fact = [&](size_t ti) {
        const NeedleTemplate& t = set.templates[ti];
        const auto& keys = set.pools.at(t.key_pool);
        auto key_taken = [&](const std::string& k) {
            return std::any_of(d.facts.begin(), d.facts.end(),
                               [&](const NeedleFact& f) { return f.key == k; });
        };
        auto value_taken = [&](const std::string& v) {
            return std::any_of(d.facts.begin(), d.facts.end(),
                               [&](const NeedleFact& f) { return f.value == v; });
        };
        // The redraw loops below end only if a free key / value exists.
        if (std::all_of(keys.begin(), keys.end(), key_taken) ||
            d.facts.size() >= value_capacity(t.value, set))
            throw InputError(set.file, "template '" + t.id + "': its pools are too small for " +
                                           std::to_string(total) + " needles with distinct keys " +
                                           "and values");
        NeedleFact f;
        f.template_index = ti;
        f.key = keys[rng.below(keys.size())];
        while (key_taken(f.key)) f.key = keys[rng.below(keys.size())];
        f.value = draw_value(t.value, set, rng);
        while (value_taken(f.value)) f.value = draw_value(t.value, set, rng);
        const std::string& form = t.needles[rng.below(t.needles.size())];
        f.text = fill_template(resolve_alternations(form, rng), f.key, f.value);
        d.facts.push_back(std::move(f));
    };
    for (int j = 0; j < num_needles; ++j) add_fact(pool[rng.below(pool.size())]);
    d.query = static_cast<size_t>(rng.below(static_cast<uint64_t>(num_needles)));
    const size_t qt = d.facts[d.query].template_index;
    for (int j = 0; j < distractors; ++j) add_fact(qt);
    for (size_t j = 0; j < d.facts.size(); ++j)
        d.facts[j].depth = j == d.query ? depth : static_cast<double>(rng.below(1001)) / 1000.0;
    const NeedleTemplate& t = set.templates[qt];
    const std::string& question = t.questions[rng.below(t.questions.size())];
    d.question = fill_template(resolve_alternations(question, rng), d.facts[d.query].key, "");
    d.intro = resolve_alternations(total == 1 ? t.intro : t.intro_multi, rng);
    return d;
}

}  // namespace kvscope
