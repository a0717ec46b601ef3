// Alternations "((A|B))" in needle template texts (core/scenarios/text_alternation.h, issue 12):
// parsing, malformed groups as clear errors, one seeded draw per group left to right, every
// alternative reachable, and the placeholder counts over all resolutions. The template loader's
// use of them (errors naming file and field) is in needle_templates_test.cpp.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/error.h"
#include "core/scenarios/text_alternation.h"

namespace kvscope {
namespace {

std::string parse_error(const std::string& text) {
    try {
        parse_alternations(text, "needle");
    } catch (const InputError& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected InputError for " << text;
    return "";
}

TEST(NeedleAlternations, ParsesGroupsAndLiterals) {
    const auto p = parse_alternations("((The|A)) code for {key} ((is|reads|=)) {value}.", "n");
    ASSERT_EQ(p.size(), 4u);
    EXPECT_TRUE(p[0].group);
    EXPECT_EQ(p[0].alternatives, (std::vector<std::string>{"The", "A"}));
    EXPECT_FALSE(p[1].group);
    EXPECT_EQ(p[1].alternatives, (std::vector<std::string>{" code for {key} "}));
    EXPECT_EQ(p[2].alternatives, (std::vector<std::string>{"is", "reads", "="}));
    EXPECT_EQ(p[3].alternatives, (std::vector<std::string>{" {value}."}));
    // "|" and single parentheses outside a group are text.
    const auto q = parse_alternations("a | b (c) {key}", "n");
    ASSERT_EQ(q.size(), 1u);
    EXPECT_FALSE(q[0].group);
    // A group of one alternative is still a group (it takes a draw).
    EXPECT_TRUE(parse_alternations("((only))", "n")[0].group);
}

TEST(NeedleAlternations, MalformedGroupsAreClearErrors) {
    EXPECT_NE(parse_error("((a|b) {key}").find("never closed"), std::string::npos);
    EXPECT_NE(parse_error("a)) {key}").find("closes no '(('"), std::string::npos);
    EXPECT_NE(parse_error("((a|((b|c))))").find("do not nest"), std::string::npos);
    EXPECT_NE(parse_error("((a||b))").find("empty alternative"), std::string::npos);
    EXPECT_NE(parse_error("((|b))").find("empty alternative"), std::string::npos);
    EXPECT_NE(parse_error("((a|))").find("empty alternative"), std::string::npos);
    EXPECT_NE(parse_error("x (())").find("empty alternative"), std::string::npos);
    // The message starts with the field it was given.
    EXPECT_EQ(parse_error("((a").rfind("needle: ", 0), 0u);
}

TEST(NeedleAlternations, OneDrawPerGroupLeftToRightAndEveryAlternativeReached) {
    const std::string text = "((x|y|z))-((1|2))-((only))";
    std::map<std::string, int> seen;
    for (uint64_t seed = 0; seed < 200; ++seed) {
        SplitMix64 rng(seed), expect(seed);
        const std::string r = resolve_alternations(text, rng);
        // The same draws by hand: below(3), below(2), below(1), in that order.
        const std::string a[] = {"x", "y", "z"}, b[] = {"1", "2"};
        std::string want = a[expect.below(3)];
        want += "-" + b[expect.below(2)];
        want += expect.below(1) == 0 ? "-only" : "-?";
        EXPECT_EQ(r, want);
        EXPECT_EQ(rng.next(), expect.next()) << "three draws, no more";
        ++seen[r];
    }
    EXPECT_EQ(seen.size(), 6u) << "every combination comes up in 200 seeds";
    SplitMix64 plain(7), untouched(7);
    EXPECT_EQ(resolve_alternations("no groups {key}", plain), "no groups {key}");
    EXPECT_EQ(plain.next(), untouched.next()) << "a text without groups draws nothing";
}

TEST(NeedleAlternations, PlaceholderCountsOverAllResolutions) {
    const auto p =
        parse_alternations("(({key} has {value}|{value} is {key}'s|none)) and {key}", "n");
    EXPECT_EQ(count_over_resolutions(p, "{value}").min, 0u);
    EXPECT_EQ(count_over_resolutions(p, "{value}").max, 1u);
    EXPECT_EQ(count_over_resolutions(p, "{key}").min, 1u);
    EXPECT_EQ(count_over_resolutions(p, "{key}").max, 2u);
}

}  // namespace
}  // namespace kvscope
