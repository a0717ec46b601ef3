// SCHEMA.md's dataset tables are the layout table (trace_layout.cpp) row for row, and it documents
// every root attribute; the JSON forms of the metadata records round-trip.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "traces/trace_layout_internal.h"
#include "traces/trace_schema.h"

namespace kvscope::trace {
namespace {

std::vector<std::string> schema_lines() {
    std::ifstream in(std::filesystem::path(KVSCOPE_SOURCE_DIR) / "traces" / "SCHEMA.md");
    EXPECT_TRUE(in.good()) << "traces/SCHEMA.md not found";
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// Each dataset row of SCHEMA.md is exactly schema_doc_row() of the layout table, in the table's
// order, and SCHEMA.md has no dataset row the table lacks. On a mismatch the message holds the
// row to paste into SCHEMA.md.
TEST(TraceSchemaDoc, DatasetRowsAreTheLayoutTable) {
    const auto lines = schema_lines();
    std::vector<std::string> doc_rows;  // table rows naming a dataset, in "## Datasets"
    bool in_datasets = false;
    for (const auto& l : lines) {
        if (l.rfind("## ", 0) == 0) in_datasets = l == "## Datasets";
        if (in_datasets && l.rfind("| `/", 0) == 0) doc_rows.push_back(l);
    }
    ASSERT_FALSE(doc_rows.empty()) << "SCHEMA.md has no dataset rows under \"## Datasets\"";
    std::vector<std::string> want;
    for (const auto& spec : dataset_specs()) want.push_back(schema_doc_row(spec));
    for (const auto& row : want) {
        const std::string key = row.substr(0, row.find(" |", 2) + 2);  // "| `/group/name` |"
        auto it = std::find_if(doc_rows.begin(), doc_rows.end(),
                               [&](const std::string& l) { return l.rfind(key, 0) == 0; });
        ASSERT_NE(it, doc_rows.end()) << "SCHEMA.md has no row for this dataset; add\n" << row;
        EXPECT_EQ(*it, row) << "SCHEMA.md's row differs from the layout table (trace_layout.cpp)";
    }
    for (const auto& l : doc_rows)
        EXPECT_NE(std::find(want.begin(), want.end(), l), want.end())
            << "SCHEMA.md row not in the layout table (trace_layout.cpp): " << l;
    EXPECT_EQ(doc_rows, want) << "SCHEMA.md lists the datasets in another order than the table";
}

TEST(TraceSchemaDoc, EveryRootAttributeIsDocumented) {
    const auto lines = schema_lines();
    for (const char* attr : {"format", "schema_version", "software_version", "created_utc",
                             "n_layers", "n_heads", "n_prompt_tokens", "top_k", "n_spans",
                             "record_attention_rows", "record_maps", "prefill_appends"}) {
        const std::string name = std::string("| `") + attr + "` |";
        EXPECT_TRUE(std::any_of(lines.begin(), lines.end(),
                                [&](const std::string& l) { return l.rfind(name, 0) == 0; }))
            << "SCHEMA.md does not document the root attribute " << attr;
    }
}

TEST(TraceSchemaDoc, MetadataJsonRoundTrips) {
    RunMetadata m;
    m.n_layers = 4;
    m.n_heads = 2;
    m.n_prompt_tokens = 9;
    m.top_k = 5;
    m.spans = {{1, 3, "needle", "42"}};
    m.model_name = "m";
    m.policy = "snapkv";
    m.policy_params = {{"window", 32}, {"kernel", 7}};
    m.budget_ratio = 0.25;
    m.seed = 18446744073709551615ull;
    m.prompt = "h\xC3\xA9llo \"x\"";
    RunMetadata back = run_metadata_from_json(nlohmann::json::parse(to_json(m).dump()));
    EXPECT_EQ(to_json(back), to_json(m));
    EXPECT_EQ(back.seed, m.seed);
    EXPECT_EQ(back.spans.at(0).expected_answer, "42");
    // Unknown keys are ignored and missing keys keep defaults (older / newer writers).
    RunMetadata partial = run_metadata_from_json({{"policy", "h2o"}, {"future_key", 1}});
    EXPECT_EQ(partial.policy, "h2o");
    EXPECT_EQ(partial.budget_tokens, -1);
    RunEnd e;
    e.reason = "eos";
    e.decode_ms = 3.5;
    EXPECT_EQ(to_json(run_end_from_json(to_json(e))), to_json(e));
}

}  // namespace
}  // namespace kvscope::trace
