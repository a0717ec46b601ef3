// CSV export: every table is written with the right number of records and values that match the
// trace; text with quotes, commas, newlines and split UTF-8 survives as valid CSV.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tests/traces/trace_test_support.h"
#include "traces/synthetic/sample_trace.h"
#include "traces/trace_csv_export.h"
#include "traces/trace_reader.h"
#include "traces/trace_writer.h"

namespace kvscope::trace {
namespace {

using testing::ScratchDir;
using Table = std::vector<std::vector<std::string>>;

// Minimal RFC 4180 reader: quoted fields may hold commas, quotes ("") and newlines.
Table read_csv(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string s = ss.str();
    Table rows(1);
    std::string field;
    bool quoted = false;
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (quoted) {
            if (c == '"' && i + 1 < s.size() && s[i + 1] == '"')
                field += '"', ++i;
            else if (c == '"')
                quoted = false;
            else
                field += c;
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            rows.back().push_back(field), field.clear();
        } else if (c == '\n') {
            rows.back().push_back(field), field.clear();
            rows.emplace_back();
        } else {
            field += c;
        }
    }
    if (rows.back().empty()) rows.pop_back();
    return rows;
}

TEST(TraceExport, WritesEveryTable) {
    ScratchDir dir;
    auto path = dir / "t.kvtrace.h5";
    SampleTraceSpec spec;
    spec.attention_rows = true;
    const SampleTrace sample = make_sample_trace(spec);
    {
        TraceWriter w(path, {.record_attention_rows = true});
        write_sample_trace(w, sample);
    }
    TraceReader r(path);
    auto files = export_csv(r, dir / "csv");
    EXPECT_EQ(files.size(), 13u);  // 11 CSV files, metadata.json and dtypes.json
    {
        std::ifstream dt(dir / "csv" / "dtypes.json");
        const auto types = nlohmann::json::parse(dt);  // every column's type, by file
        EXPECT_EQ(types["tokens.csv"]["text"], "string");
        EXPECT_EQ(types["events.csv"]["op"], "string");
        EXPECT_EQ(types["events.csv"]["weight"], "float64");
        EXPECT_EQ(types["budgets.csv"]["budget"], "int64");
    }
    const TraceInfo info = r.info();

    auto tokens = read_csv(dir / "csv" / "tokens.csv");
    ASSERT_EQ(tokens.size(), static_cast<size_t>(info.n_tokens + 1));
    EXPECT_EQ(tokens[0], (std::vector<std::string>{"index", "id", "role", "text_offset",
                                                   "text_length", "text"}));
    for (const auto& row : tokens) ASSERT_EQ(row.size(), 6u);
    EXPECT_EQ(tokens[1 + 4][5], "w4\"q,\n ");  // quotes, comma and newline round-trip
    EXPECT_EQ(tokens[1 + 3][5], "w3\xC3\xA9 ");
    EXPECT_EQ(tokens[1 + 5][5], "\xEF\xBF\xBD");  // a lone UTF-8 lead byte becomes U+FFFD
    EXPECT_EQ(tokens[1 + 40][2], "generated");
    EXPECT_EQ(tokens[1 + 45][5], " blue");

    auto events = read_csv(dir / "csv" / "events.csv");
    ASSERT_EQ(events.size(), static_cast<size_t>(info.n_events + 1));
    auto ev = r.event_rows(0, info.n_events);
    for (size_t i = 0; i < ev.size(); i += 97) {
        EXPECT_EQ(events[i + 1][1], std::to_string(ev[i].step));
        EXPECT_EQ(events[i + 1][4], cache_op_name(ev[i].op));
        EXPECT_EQ(events[i + 1][5], std::to_string(ev[i].position));
        EXPECT_EQ(events[i + 1][12], std::to_string(ev[i].dst_position));
        EXPECT_EQ(events[i + 1][13], std::to_string(ev[i].part));
    }

    auto steps = read_csv(dir / "csv" / "steps.csv");
    ASSERT_EQ(steps.size(), 26u);
    EXPECT_EQ(steps[0].size(), 7u + 2u * 4u);
    EXPECT_EQ(steps[0][7], "topk_id_0");
    EXPECT_EQ(steps[0][11], "topk_logprob_0");
    EXPECT_EQ(steps[1 + 6][2], "42");
    EXPECT_NEAR(std::stod(steps[1 + 10][3]), 1.1, 1e-6);  // entropy 1 + 0.01 s
    EXPECT_EQ(steps[1 + 0][10], "-1");                    // step 0 has 3 of 4 top-k entries
    EXPECT_EQ(steps[1 + 0][14], "nan");

    EXPECT_EQ(read_csv(dir / "csv" / "budgets.csv").size(), 1u + 25u * 6u);
    EXPECT_EQ(read_csv(dir / "csv" / "bytes_held.csv").size(), 1u + 25u * 3u);
    EXPECT_EQ(read_csv(dir / "csv" / "needle_survival.csv").size(), 1u + 25u * 3u * 6u);
    EXPECT_EQ(read_csv(dir / "csv" / "prefill_tokens.csv").size(), 1u + 3u * 2u * 40u);
    EXPECT_EQ(read_csv(dir / "csv" / "prefill_heads.csv").size(), 1u + 3u * 2u);
    EXPECT_EQ(read_csv(dir / "csv" / "prefill_layers.csv").size(), 1u + 3u);
    auto spans = read_csv(dir / "csv" / "spans.csv");
    ASSERT_EQ(spans.size(), 4u);
    EXPECT_EQ(spans[1], (std::vector<std::string>{"0", "10", "14", "needle", "blue42", "1"}));
    size_t row_entries = 0;
    for (const auto& s : sample.steps)
        for (const auto& row : s.attention) row_entries += row.positions.size();
    EXPECT_EQ(read_csv(dir / "csv" / "attention_rows.csv").size(), 1 + row_entries);

    std::ifstream meta(dir / "csv" / "metadata.json");
    auto j = nlohmann::json::parse(meta);
    EXPECT_EQ(j["run"]["policy"], "toy");
    EXPECT_EQ(j["trace"]["n_steps"], 25);
    EXPECT_EQ(j["end"]["reason"], "max_new_tokens");
}

TEST(TraceExport, UnwritableFolderIsAnInputError) {
    ScratchDir dir;
    auto path = dir / "t.kvtrace.h5";
    {
        TraceWriter w(path);
        write_sample_trace(w, make_sample_trace());
    }
    std::ofstream(dir / "afile") << "x";
    TraceReader r(path);
    EXPECT_THROW(export_csv(r, dir / "afile" / "sub"), InputError);
}

}  // namespace
}  // namespace kvscope::trace
