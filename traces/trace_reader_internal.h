#pragma once
// Internal to traces/: state behind TraceReader, shared by trace_reader.cpp (opening, accessors),
// trace_reader_events.cpp (events and token states) and trace_validate.cpp (deep checks).
#include <cstdint>
#include <filesystem>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "traces/hdf5_io.h"
#include "traces/trace_layout_internal.h"
#include "traces/trace_reader.h"

namespace kvscope::trace {

// Upper bounds of the axes a reader accepts (far above any model or prompt recorded so far), and
// of one read: a damaged file must not decide how much memory is allocated.
inline constexpr int64_t kMaxLayers = 4096;
inline constexpr int64_t kMaxHeads = 4096;
inline constexpr int64_t kMaxPromptTokens = int64_t{1} << 24;
inline constexpr int64_t kMaxTopK = 1 << 16;
inline constexpr int64_t kMaxSpans = 1 << 16;
using h5::kMaxReadBytes;

struct TraceReader::Impl {
    std::filesystem::path path;
    mutable std::mutex mu;
    h5::Id file;
    bool swmr = false;
    int32_t schema_version = 0;
    RunMetadata meta;
    AxisSizes sizes;
    bool has_rows = false;
    bool has_maps = false;
    bool has_summary = false;               // every /summary dataset is there
    bool prefill_appends = false;           // step 0 appends the prompt (root attribute)
    std::map<std::string, h5::Dataset> ds;  // every dataset present, held open
    std::vector<MarkedSpan> spans;

    // Counts, re-read by refresh().
    RunState state = RunState::kRunning;
    int64_t n_steps = 0;
    int64_t n_tokens = 0;
    int64_t n_events = 0;
    int64_t n_text_bytes = 0;
    int32_t n_layers_done = 0;
    std::optional<RunEnd> end;

    // Events of one (layer, head) for steps [0, steps_covered), in recorded order.
    struct LhEvents {
        std::vector<EventRecord> events;
        int64_t steps_covered = 0;
    };
    static constexpr size_t kLhCacheSize = 64;
    std::list<std::pair<int64_t, LhEvents>> lh_cache;  // most recently used first

    void open();
    void read_counts();
    hid_t d(const char* name) const;
    bool has(const char* name) const { return ds.count(name) > 0; }

    template <typename T>
    std::vector<T> read(const char* name, const h5::Dims& start, const h5::Dims& count) const {
        hsize_t n = 1;
        for (hsize_t c : count) {
            // Checked before allocating: counts come from extents and offsets in the file.
            if (c != 0 && n > kMaxReadBytes / sizeof(T) / c)
                fail(std::string("a read of ") + name + " would need more than " +
                     std::to_string(kMaxReadBytes >> 20) + " MiB: the file is damaged");
            n *= c;
        }
        std::vector<T> out(n);
        h5::read_slab(d(name), h5::native_type<T>(), start, count, out.data());
        return out;
    }
    template <typename T>
    T read_one(const char* name, const h5::Dims& at) const {
        h5::Dims one(at.size(), 1);
        return read<T>(name, at, one)[0];
    }
    template <typename T>
    T read_scalar(const char* name) const {
        T v{};
        h5::read_slab(d(name), h5::native_type<T>(), {}, {1}, &v);
        return v;
    }

    // Rows [begin, begin+count) of the /events columns (several ranges in one read each).
    // With layer >= 0 all rows belong to (layer, head) and those columns are not read; without
    // scores, similarity and threshold are not read (NaN).
    std::vector<EventRecord> read_events(const std::vector<hsize_t>& begins,
                                         const std::vector<hsize_t>& counts, int32_t layer = -1,
                                         int32_t head = -1, bool scores = true) const;
    std::vector<EventRecord> lh_events(int32_t layer, int32_t head, int64_t step_begin,
                                       int64_t step_end, bool scores = true) const;

    [[noreturn]] void fail(const std::string& problem) const { throw InputError(path, problem); }
    void check_layer_head(int32_t layer, int32_t head) const;
    void check_steps(int64_t begin, int64_t end) const;
};

// Runs f under the reader's lock and turns HDF5 failures into InputError naming the file.
template <typename F>
auto guarded(const TraceReader::Impl& impl, F&& f) -> decltype(f()) {
    std::lock_guard lock(impl.mu);
    h5::silence_errors();
    try {
        return f();
    } catch (const h5::Error& e) {
        throw InputError(impl.path, std::string("cannot read the trace: ") + e.what());
    }
}

}  // namespace kvscope::trace
