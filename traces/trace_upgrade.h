#pragma once
// upgrade_trace: writes a copy of an older trace in the current schema version (trace_schema.h),
// for `kvscope upgrade` and programs that want version 2 files on disk. Readers do not need it:
// TraceReader and the Python reader open version 1 files and adapt them as they read.
//
// The copy is re-encoded through TraceWriter from what TraceReader reads, so it holds exactly
// what a current writer records for the same run: /events/destination -1 on evict, quantize and
// demote rows, the root attribute prefill_appends, /summary recomputed under the current replay
// rules (created for files written before it existed). Everything else is carried over value for
// value: metadata (run_json keeps the original software_version and created_utc, and gains
// extra.upgraded_from = {schema_version, software_version of the upgrade}), tokens, prefill
// statistics and maps, steps, events, budgets, needle survival, attention rows, the end record.
//
// The input is only read. The copy is written to "<output>.part" and renamed onto `output` at the
// end (trace_writer.h), so a failure never leaves a half-written output.
#include <cstdint>
#include <filesystem>
#include <functional>

namespace kvscope::trace {

struct UpgradeResult {
    int32_t from_version = 0;
    int32_t to_version = 0;
    int64_t steps = 0;
    int64_t events = 0;
};

// progress(done, total) is called after each step copied (total = the trace's steps).
// Throws InputError naming the file: `input` is not a readable trace, is still being recorded or
// was left by a killed run (not finished), or is already of the current version; `output` is the
// input itself, or exists and `overwrite` is false, or cannot be written.
UpgradeResult upgrade_trace(const std::filesystem::path& input, const std::filesystem::path& output,
                            bool overwrite,
                            const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace kvscope::trace
