#pragma once
// Internal to traces/: the HDF5 side of TraceWriter. Runs on the writer thread only. Creating it
// creates every dataset of the layout (SWMR needs all objects to exist before writing starts),
// then switches the file to SWMR writing; each method writes one item. The file is the
// recording path (<target>.part, trace_output.h); end() closes it and renames it over the target.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "traces/hdf5_io.h"
#include "traces/head_counts.h"
#include "traces/trace_layout_internal.h"
#include "traces/trace_output.h"
#include "traces/trace_schema.h"

namespace kvscope::trace {

class TraceFileWriter {
  public:
    struct Config {
        bool record_attention_rows = false;
        bool record_maps = false;   // already false when P > kMaxMapTokens
        int compression_level = 1;  // as TraceWriterOptions
        bool overwrite = false;     // replace an existing target / discard a stale .part
    };
    // Creates <target>.part. Throws InputError when the target exists (without overwrite), when a
    // .part exists (being recorded, or stale without overwrite) or when it cannot be created.
    TraceFileWriter(const std::filesystem::path& target, const RunMetadata& meta, Config config);
    // Closes the file if still open (errors swallowed); the .part stays where it is.
    ~TraceFileWriter();

    void write_tokens(const std::vector<TokenRecord>& tokens);
    void write_prefill(const PrefillLayerStats& stats);
    void write_map(int32_t layer, const std::vector<float>& attention);
    void add_events(const std::vector<EventRecord>& events);
    // Writes the step's rows without flushing; commit() makes written steps durable and
    // visible. The writer thread commits whenever its queue runs empty (and at least every
    // kMaxUncommittedSteps), so a slow producer gets a flush per step and a fast one a flush per
    // batch of queued steps.
    void write_step(StepData& data);
    void commit();
    int64_t uncommitted_steps() const { return steps_ - committed_; }
    static constexpr int64_t kMaxUncommittedSteps = 16;
    void flush();
    // Writes the end record and state, closes, then renames the .part over the target. On a
    // failure the file is closed all the same and the .part (every committed step) is kept.
    // close() alone leaves the state "running" and the .part in place.
    void end(const RunEnd& end);
    void close();
    const std::filesystem::path& recording_path() const { return part_; }

  private:
    h5::Dataset& d(const char* name);
    template <typename T>
    void append(const char* name, const std::vector<T>& v, hsize_t rows);
    // Appends one event column converted from `ev` in blocks (see the definition for why).
    template <typename T>
    void append_column(const char* name, const std::vector<EventRecord>& ev,
                       T (*get)(const EventRecord&));
    void append_text(const std::string& piece, int32_t id, TokenRole role);

    std::filesystem::path path_;  // the target
    std::filesystem::path part_;  // what is written until end()
    RecordingLock lock_;          // marks part_ as being recorded; dropped after the rename
    RunMetadata meta_;
    Config config_;
    AxisSizes sizes_;
    h5::Id file_;
    std::map<std::string, h5::Dataset> ds_;
    int64_t tokens_ = 0;
    int64_t text_bytes_ = 0;
    int64_t steps_ = 0;      // steps written
    int64_t committed_ = 0;  // steps flushed and counted in /meta/steps_committed
    int64_t events_ = 0;
    int64_t row_entries_ = 0;
    std::vector<EventRecord> pending_;
    HeadCounter head_counts_;     // /summary rows
    std::string generated_text_;  // for answer_found
};

}  // namespace kvscope::trace
