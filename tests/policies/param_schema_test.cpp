// Parameter schemas, --param parsing with clear errors, budgets, and the registry.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/policies/param_schema.h"
#include "core/policies/registry.h"

namespace kvscope {
namespace {

using ::testing::HasSubstr;

ParamSchema schema() {
    return {
        ParamSpec{"window", ParamType::kInt, int64_t{8}, 1.0, 64.0, {}, "w"},
        ParamSpec{"ratio", ParamType::kFloat, 0.5, 0.0, 1.0, {}, "r"},
        ParamSpec{"flag", ParamType::kBool, false, std::nullopt, std::nullopt, {}, "f"},
        ParamSpec{"pool",
                  ParamType::kEnum,
                  std::string("max"),
                  std::nullopt,
                  std::nullopt,
                  {"max", "avg"},
                  "p"},
        ParamSpec{
            "layers", ParamType::kIntList, std::vector<int64_t>{0, 1}, 0.0, std::nullopt, {}, "l"},
    };
}

std::string error_of(const std::vector<std::string>& a) {
    try {
        parse_param_assignments("snapkv", schema(), a);
    } catch (const InputError& e) {
        return e.what();
    }
    return "";
}

TEST(ParamSchema, DefaultsAndOverrides) {
    const ParamValues v = parse_param_assignments(
        "snapkv", schema(), {"window=16", "ratio=0.25", "flag=yes", "pool=avg", "layers=2, 5"});
    EXPECT_EQ(v.get_int("window"), 16);
    EXPECT_DOUBLE_EQ(v.get_float("ratio"), 0.25);
    EXPECT_TRUE(v.get_bool("flag"));
    EXPECT_EQ(v.get_enum("pool"), "avg");
    EXPECT_EQ(v.get_int_list("layers"), (std::vector<int64_t>{2, 5}));
    const ParamValues d = parse_param_assignments("snapkv", schema(), {"layers="});
    EXPECT_EQ(d.get_int("window"), 8);
    EXPECT_TRUE(d.get_int_list("layers").empty());
    EXPECT_THROW(d.get_float("window"), std::invalid_argument);
}

TEST(ParamSchema, ErrorsNameThePolicyAndParameter) {
    EXPECT_THAT(error_of({"windw=3"}), HasSubstr("policy 'snapkv' has no parameter 'windw'"));
    EXPECT_THAT(error_of({"windw=3"}), HasSubstr("known: window, ratio, flag, pool, layers"));
    EXPECT_THAT(error_of({"window"}), HasSubstr("not of the form key=value"));
    EXPECT_THAT(error_of({"window=abc"}), HasSubstr("parameter 'window': 'abc' is not an integer"));
    EXPECT_THAT(error_of({"window=0"}), HasSubstr("out of range (expected int in [1, 64])"));
    EXPECT_THAT(error_of({"window=3.5"}), HasSubstr("is not an integer"));
    EXPECT_THAT(error_of({"ratio=2"}), HasSubstr("parameter 'ratio': value 2 is out of range"));
    EXPECT_THAT(error_of({"ratio=nan"}), HasSubstr("is not a number"));
    EXPECT_THAT(error_of({"flag=maybe"}), HasSubstr("is not a boolean"));
    EXPECT_THAT(error_of({"pool=mean"}), HasSubstr("'mean' is not one of: max, avg"));
    EXPECT_THAT(error_of({"layers=1,x"}), HasSubstr("comma-separated list of integers"));
    EXPECT_THAT(error_of({"layers=-1"}), HasSubstr("out of range"));
    EXPECT_THAT(error_of({"window=3", "window=4"}), HasSubstr("given twice"));
}

TEST(Budget, ResolveAndValidate) {
    Budget b;
    b.ratio = 0.3;
    EXPECT_EQ(b.resolve(10), 3);  // 0.3 * 10 is 3.0000000000000004 in double
    EXPECT_EQ(b.resolve(11), 4);  // ceil(3.3)
    EXPECT_EQ(b.resolve(1), 1);
    Budget t;
    t.tokens = 64;
    EXPECT_EQ(t.resolve(10), 64);
    EXPECT_THROW(validate_budget("h2o", Budget{}, true), InputError);
    EXPECT_NO_THROW(validate_budget("full", Budget{}, false));
    Budget both;
    both.tokens = 4;
    both.ratio = 0.5;
    EXPECT_THROW(validate_budget("h2o", both, true), InputError);
    Budget bad;
    bad.ratio = 1.5;
    EXPECT_THROW(validate_budget("h2o", bad, true), InputError);
    Budget zero;
    zero.tokens = 0;
    EXPECT_THROW(validate_budget("h2o", zero, true), InputError);
}

TEST(Registry, ListsAndCreatesPolicies) {
    const auto names = PolicyRegistry::global().names();
    for (const char* n : {"full", "streaming_llm", "h2o", "tova", "snapkv", "pyramidkv", "knorm"})
        EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
    for (const PolicyEntry* e : PolicyRegistry::global().list()) {
        EXPECT_FALSE(e->info.full_name.empty());
        EXPECT_FALSE(e->info.paper.empty());
        // Defaults must pass their own validation.
        EXPECT_NO_THROW(complete_params(e->info.name, e->schema, ParamValues{})) << e->info.name;
        Budget b;
        b.tokens = 16;
        auto p = PolicyRegistry::global().create(e->info.name, b, std::vector<std::string>{});
        EXPECT_EQ(p->info().name, e->info.name);
    }
    Budget b;
    b.tokens = 8;
    try {
        make_policy("snapkvv", b);
        FAIL();
    } catch (const InputError& e) {
        EXPECT_THAT(e.what(), HasSubstr("unknown policy 'snapkvv' (known: "));
        EXPECT_THAT(e.what(), HasSubstr("snapkv"));
    }
    EXPECT_THROW(make_policy("h2o", Budget{}), InputError);
    EXPECT_THROW(make_policy("snapkv", b, {"kernel=4"}), InputError);  // even kernel
    auto p = make_policy("snapkv", b, {"window=4"});
    EXPECT_EQ(p->needs().window, 4);
    EXPECT_EQ(p->info().arxiv, "2404.14469");
    EXPECT_EQ(p->info().regime, Regime::kPrefillOneshot);
    EXPECT_EQ(make_policy("h2o", b)->info().regime, Regime::kDecodeContinuous);
}

// Every numeric parameter of every policy has a finite range (declared, or the registry's default
// bounds), so a typo such as window=99999999999 is refused with the range, never taken.
TEST(Registry, EveryNumericParameterIsBounded) {
    for (const PolicyEntry* e : PolicyRegistry::global().list())
        for (const ParamSpec& p : e->schema) {
            if (p.type != ParamType::kInt && p.type != ParamType::kFloat &&
                p.type != ParamType::kIntList)
                continue;
            EXPECT_TRUE(p.min.has_value()) << e->info.name << "." << p.name;
            EXPECT_TRUE(p.max.has_value()) << e->info.name << "." << p.name;
        }
    Budget b;
    b.tokens = 8;
    try {
        make_policy("streaming_llm", b, {"sinks=99999999999"});
        FAIL();
    } catch (const InputError& e) {
        EXPECT_THAT(e.what(),
                    HasSubstr("99999999999 is out of range (expected int in [0, 16777216])"));
    }
}

}  // namespace
}  // namespace kvscope
