#pragma once
// STATUS: stable (additions only from here on)
// TraceWriter: records a run into a .kvtrace.h5 file (schema in traces/trace_schema.h).
//
//   TraceWriter w(path, {.record_attention_rows = false, .record_maps = false});
//   w.begin(metadata);                 // creates every dataset, starts SWMR (synchronous)
//   w.write_tokens(prompt_tokens);     // the P prompt tokens
//   w.write_prefill(layer_stats);      // once per layer (any order)
//   w.write_prefill_map(layer, attn);  // optional, with record_maps
//   w.add_events(events);              // any number of times before write_step (optional)
//   w.write_step(step_data);           // per step 0, 1, 2, ...: commits + flushes the step
//   w.end(run_end);                    // marks the trace complete, closes the file
//
// All HDF5 work runs on the writer's own thread behind a bounded queue; calls return once the
// item is queued (they block only when the queue is full). Steps are committed (flushed, then
// counted in /meta/steps_committed) as soon as the writer thread's queue is empty, so with a
// producer slower than the disk every step is flushed on its own; a faster producer gets one
// flush per batch of at most 16 queued steps. A reader can follow the run live (SWMR) and a
// killed run leaves every committed step readable; sync() commits everything queued. Argument
// shapes are checked on the caller's thread (std::invalid_argument); an I/O error on the writer
// thread is rethrown by the next call and by end().
//
// Never lose a trace (trace_output.h): the run is recorded into recording_path() =
// "<path>.part" in the same folder, and end() renames it over path() in one rename(2). Until then
// path() is untouched, so a reader holding the previous trace open keeps reading it, and a live
// reader follows the .part (which becomes path() under it). Destroying a writer without end(), a
// kill, or a write error leaves path() as it was and the .part closed as incomplete
// (RunState::kRunning) with every committed step readable. begin() refuses an existing path()
// unless options.overwrite, and an existing .part always when another writer is recording into
// it, else unless options.overwrite (a stale .part is then discarded).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "traces/trace_schema.h"

namespace kvscope::trace {

struct TraceWriterOptions {
    bool record_attention_rows = false;  // keep StepData::attention
    bool record_maps = false;            // accept write_prefill_map (P <= kMaxMapTokens)
    size_t queue_capacity = 64;          // items queued before callers block
    // deflate 0..9. 1: the 128k x 32 x 8 prefill step writes 17% faster than at 4 for 2% more
    // bytes (bench_trace_writer, bench/RESULTS.md); the writer must keep up with a GPU prefill.
    int compression_level = 1;
    // Replace an existing trace at path() (by the rename at end()) and discard a stale .part.
    // Without it begin() throws InputError naming the file that is in the way.
    bool overwrite = false;
};

class TraceWriter {
  public:
    using Options = TraceWriterOptions;

    explicit TraceWriter(std::filesystem::path path, Options options = {});
    ~TraceWriter();
    TraceWriter(const TraceWriter&) = delete;
    TraceWriter& operator=(const TraceWriter&) = delete;

    // Creates recording_path(). Throws InputError when it cannot be created or something is in
    // the way (see above), std::invalid_argument on inconsistent metadata.
    void begin(const RunMetadata& metadata);
    // Appends tokens (normally the P prompt tokens; generated tokens come with write_step).
    void write_tokens(std::vector<TokenRecord> tokens);
    void write_prefill(PrefillLayerStats stats);
    // attention: [H*P*P] row-major (head, query, key). Ignored unless maps are recorded.
    // Blocks while kMaxQueuedMaps maps are queued or being written: a map is up to H * 16 MiB
    // (P = 2048), so the item count of the queue alone would let a fast producer queue every
    // layer's map (1 GiB at 8 x 8 x 2048) ahead of a slower deflate.
    void write_prefill_map(int32_t layer, std::vector<float> attention);
    static constexpr int kMaxQueuedMaps = 2;
    // An empty vector, with the capacity of a map the writer has finished with when there is one:
    // filling it instead of a fresh vector saves the page faults of a new H * P * P allocation
    // per layer (~10% of a --record-maps run's CPU on the 2-core VM, perf).
    std::vector<float> recycled_map_buffer();
    // Events of the step being built (stamped with the step of the next write_step).
    void add_events(std::vector<EventRecord> events);
    // Commits one step; data.record.step must be the number of steps committed so far.
    void write_step(StepData data);
    // Waits until everything queued so far is on disk (flushed).
    void sync();
    // Marks the trace complete (or aborted when end.complete is false), closes the file, renames
    // it to path(), joins the thread. Rethrows a pending writer-thread error (then the file is
    // closed all the same, stays at recording_path() and path() is untouched).
    void end(const RunEnd& end);

    // The trace's final name (the target).
    const std::filesystem::path& path() const { return path_; }
    // The file written until end(): "<path()>.part" (recording_path_for in trace_output.h).
    const std::filesystem::path& recording_path() const { return recording_path_; }
    const Options& options() const { return options_; }
    bool maps_recorded() const;  // record_maps and the prompt is short enough
    int64_t steps_queued() const { return steps_queued_; }

  private:
    struct Impl;
    std::filesystem::path path_;
    std::filesystem::path recording_path_;
    Options options_;
    RunMetadata meta_;
    bool begun_ = false;
    bool ended_ = false;
    int64_t steps_queued_ = 0;
    std::unique_ptr<Impl> impl_;
};

}  // namespace kvscope::trace
