#pragma once
// Alternations in needle template texts (issue 12): "((A|B|C))" stands for one of A, B, C, picked
// by a seeded draw, so one template family yields many wordings and no fixed wording repeats
// through training. Example: "((The|A)) ((secret|hidden)) code for {key} ((is|reads)) {value}."
//   - "((" opens a group, "))" closes it, "|" separates alternatives inside a group; outside a
//     group "|" is ordinary text. Groups do not nest; "((" and "))" are reserved in template texts.
//   - Alternatives may hold {key} / {value}; none may be empty (a space is allowed: "(( |x))").
//   - resolve_alternations() draws rng.below(alternatives) once per group, left to right, also
//     for a group of one alternative. tools/train_demo/scenarios.py (resolve_alternations) makes
//     the same draws.
#include <cstdint>
#include <string>
#include <vector>

#include "core/scenarios/splitmix64.h"

namespace kvscope {

// A text cut into literal runs and groups: a piece with one alternative is literal text.
struct AlternationPiece {
    std::vector<std::string> alternatives;  // 1 for literal text, >= 1 for a group
    bool group = false;
};

// Throws InputError("<where>: ...") on an unclosed "((", a "))" without "((", a nested "((", or
// an empty alternative.
std::vector<AlternationPiece> parse_alternations(const std::string& text, const std::string& where);

// One draw per group, left to right. `text` must parse (the loader checks every template text).
std::string resolve_alternations(const std::string& text, SplitMix64& rng);

// Fewest and most occurrences of `what` over every resolution of `text`.
struct CountRange {
    size_t min = 0, max = 0;
};
CountRange count_over_resolutions(const std::vector<AlternationPiece>& pieces,
                                  const std::string& what);

}  // namespace kvscope
