// HDF5 side of the trace writer: creates the layout, starts SWMR, appends per item.
#include "traces/trace_file_writer_internal.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <exception>
#include <limits>

#include "core/error.h"
#include "traces/token_state_code.h"

namespace kvscope::trace {

namespace {

// Rows per chunk along a growing axis. Every flush rewrites (and recompresses) the last, partly
// filled chunk of each dataset, so per-step datasets use small chunks.
hsize_t growing_chunk_rows(Axis axis, hsize_t row_elems) {
    hsize_t target = 4096;  // elements
    hsize_t max_rows = 1 << 16;
    switch (axis) {
        case Axis::S:
            max_rows = 256;
            break;
        case Axis::T:
            target = 1024;
            break;
        case Axis::E:
            target = 4096;
            break;
        case Axis::V:
            target = 16384;
            break;
        case Axis::B:
            target = 4096;
            break;
        default:
            break;
    }
    return std::clamp<hsize_t>(target / std::max<hsize_t>(row_elems, 1), 1, max_rows);
}

// Chunks of fixed datasets follow their read pattern: one (layer, head) vector at a time.
h5::Dims fixed_chunk(const std::vector<Axis>& shape, const h5::Dims& dims) {
    h5::Dims chunk = dims;
    if (shape.size() == 3 && shape[2] == Axis::P) {
        chunk = {1, 1, std::min<hsize_t>(dims[2], 32768)};
    } else if (shape.size() == 4) {  // maps [L,H,P,P]
        hsize_t p = std::max<hsize_t>(dims[3], 1);
        chunk = {1, 1, std::clamp<hsize_t>(16384 / p, 1, p), p};
    } else if (shape.size() == 1 && shape[0] == Axis::N) {
        chunk = {64};
    }
    return chunk;
}

std::string utc_now() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// Event rows converted and appended per block. A whole-step column (28 M events at the prefill of
// 32 x 8 x 128k: 13 fresh arrays of up to 113 MB) spent more time in page faults and zero-fill
// than in conversion (perf, bench_trace_writer); one reused block stays in cache. A multiple of
// the event chunk rows, and blocks end on absolute multiples of it, so each chunk is written once.
constexpr hsize_t kEventBlockRows = hsize_t{1} << 18;

}  // namespace

TraceFileWriter::TraceFileWriter(const std::filesystem::path& target, const RunMetadata& meta,
                                 Config config)
    : path_(target), part_(recording_path_for(target)), meta_(meta), config_(config) {
    h5::silence_errors();
    refuse_existing_output(path_, config.overwrite, "allow overwriting to replace it");
    std::error_code ec;
    if (std::filesystem::exists(std::filesystem::symlink_status(part_, ec))) {
        // Never reuse a .part silently: it is either a live recording or the only copy of a
        // killed run's steps.
        if (recording_in_progress(part_))
            throw InputError(part_, "another recording into " + path_.string() +
                                        " is in progress (its writer holds this file); not "
                                        "touched: wait for it or record to another path");
        if (!config.overwrite)
            throw InputError(part_,
                             "left over from a recording that did not finish (killed?); its "
                             "committed steps are readable (kvscope inspect, the Studio). Move "
                             "it away, or allow overwriting to discard it");
        if (!std::filesystem::remove(part_, ec) && ec)
            throw InputError(part_, "cannot remove the stale recording: " + ec.message());
    }
    try {
        lock_ = RecordingLock(part_);
    } catch (const InputError& e) {
        throw InputError(path_, "cannot create the trace file (recording into " +
                                    part_.filename().string() + "): " + e.problem());
    }
    sizes_.L = meta.n_layers;
    sizes_.H = meta.n_heads;
    sizes_.P = meta.n_prompt_tokens;
    sizes_.K = meta.top_k;
    sizes_.N = static_cast<int64_t>(meta.spans.size());
    head_counts_ = HeadCounter(meta.n_layers, meta.n_heads, meta.n_prompt_tokens);
    if (meta_.created_utc.empty()) meta_.created_utc = utc_now();

    h5::Id fapl(h5::check(H5Pcreate(H5P_FILE_ACCESS), "H5Pcreate(file access)"));
    h5::check_status(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST),
                     "H5Pset_libver_bounds");
    // TRUNC on the empty file RecordingLock just created exclusively: nothing else is truncated.
    file_ = h5::Id(H5Fcreate(part_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
    if (!file_.valid()) {
        const std::string why = h5::error_message("cannot create the trace file");
        lock_.release();
        std::filesystem::remove(part_, ec);  // empty, ours
        throw InputError(path_, why + " (recording into " + part_.filename().string() + ")");
    }
    // A layout that fails half-way leaves no .part behind: it holds no step, and a stale .part
    // would block the next recording.
    try {
        hid_t f = file_.get();

        h5::write_attr_string(f, "format", kFormatName);
        h5::write_attr<int32_t>(f, "schema_version", kSchemaVersion);
        h5::write_attr_string(f, "software_version", meta_.software_version);
        h5::write_attr_string(f, "created_utc", meta_.created_utc);
        h5::write_attr<int32_t>(f, "n_layers", meta.n_layers);
        h5::write_attr<int32_t>(f, "n_heads", meta.n_heads);
        h5::write_attr<int64_t>(f, "n_prompt_tokens", meta.n_prompt_tokens);
        h5::write_attr<int32_t>(f, "top_k", meta.top_k);
        h5::write_attr<int32_t>(f, "n_spans", static_cast<int32_t>(sizes_.N));
        h5::write_attr<uint8_t>(f, "record_attention_rows", config.record_attention_rows ? 1 : 0);
        h5::write_attr<uint8_t>(f, "record_maps", config.record_maps ? 1 : 0);
        h5::write_attr<uint8_t>(f, "prefill_appends", prefill_appends_recorded(meta) ? 1 : 0);

        const float nan = std::numeric_limits<float>::quiet_NaN();
        for (const auto& spec : dataset_specs()) {
            if (!dataset_present(spec.presence, sizes_, config.record_attention_rows,
                                 config.record_maps))
                continue;
            std::string name = spec.name;
            if (name == ds::kRunJson) {
                h5::write_string_scalar(f, name, to_json(meta_).dump());
            } else if (name == ds::kSpanLabel || name == ds::kSpanExpected) {
                std::vector<std::string> v;
                for (const auto& s : meta.spans)
                    v.push_back(name == ds::kSpanLabel ? s.label : s.expected_answer);
                h5::write_strings(f, name, v);
            } else if (spec.shape.empty()) {
                int64_t zero = 0;
                ds_[name] = h5::create_scalar(f, name, native_hdf5_type(spec.dtype), &zero);
            } else {
                hid_t type = native_hdf5_type(spec.dtype);
                bool grows = is_growing(spec.shape[0]);
                h5::Dims dims, chunk;
                hsize_t row_elems = 1;
                for (size_t i = 0; i < spec.shape.size(); ++i) {
                    hsize_t n =
                        (i == 0 && grows) ? 0 : static_cast<hsize_t>(sizes_.fixed(spec.shape[i]));
                    dims.push_back(n);
                    if (i > 0) row_elems *= n;
                }
                if (grows) {
                    chunk = dims;
                    chunk[0] = growing_chunk_rows(spec.shape[0], row_elems);
                } else {
                    chunk = fixed_chunk(spec.shape, dims);
                }
                const void* fill = spec.dtype == StoredType::kFloat32 ? &nan : nullptr;
                ds_[name] = h5::create_dataset(f, name, type, dims, chunk, grows,
                                               config.compression_level, fill);
            }
            if (h5::link_exists(f, name)) {
                h5::Id obj(h5::check(H5Oopen(f, name.c_str(), H5P_DEFAULT), "H5Oopen"));
                h5::write_attr_string(obj.get(), "units", spec.units);
                h5::write_attr_string(obj.get(), "description", spec.description);
                h5::write_attr_string(obj.get(), "shape", shape_string(spec.shape));
            }
        }
        // Span bounds and "unknown" answers are known now.
        std::vector<int64_t> begins, ends;
        std::vector<int8_t> unknown(meta.spans.size(), -1);
        for (const auto& s : meta.spans) {
            begins.push_back(s.begin);
            ends.push_back(s.end);
        }
        if (!meta.spans.empty()) {
            h5::write_slab(d(ds::kSpanBegin), {0}, {begins.size()}, begins.data());
            h5::write_slab(d(ds::kSpanEnd), {0}, {ends.size()}, ends.data());
            h5::write_slab(d(ds::kSpanAnswerFound), {0}, {unknown.size()}, unknown.data());
        }
        h5::check_status(H5Fstart_swmr_write(f), "H5Fstart_swmr_write");
    } catch (...) {
        ds_.clear();
        file_.reset();
        lock_.release();
        std::filesystem::remove(part_, ec);
        throw;
    }
}

TraceFileWriter::~TraceFileWriter() {
    try {
        close();
    } catch (...) {
        // Best effort, as for a writer dropped without end(): the committed steps stay readable.
    }
}

h5::Dataset& TraceFileWriter::d(const char* name) {
    auto it = ds_.find(name);
    if (it == ds_.end()) throw std::logic_error(std::string("trace dataset not created: ") + name);
    return it->second;
}

template <typename T>
void TraceFileWriter::append(const char* name, const std::vector<T>& v, hsize_t rows) {
    h5::Dataset& ds = d(name);
    if (v.size() != rows * ds.row_elems())
        throw std::logic_error(std::string("row size mismatch for ") + name);
    h5::append_rows(ds, v.data(), rows);
}

template <typename T>
void TraceFileWriter::append_column(const char* name, const std::vector<EventRecord>& ev,
                                    T (*get)(const EventRecord&)) {
    h5::Dataset& ds = d(name);
    std::vector<T> block;
    block.reserve(std::min<size_t>(ev.size(), kEventBlockRows));
    size_t i = 0;
    while (i < ev.size()) {
        const hsize_t row = ds.dims[0];
        const size_t n = std::min<size_t>(ev.size() - i, kEventBlockRows - row % kEventBlockRows);
        block.clear();
        for (size_t k = i; k < i + n; ++k) block.push_back(get(ev[k]));
        h5::append_rows(ds, block.data(), n);
        i += n;
    }
}

void TraceFileWriter::append_text(const std::string& piece, int32_t id, TokenRole role) {
    append(ds::kTokenIds, std::vector<int32_t>{id}, 1);
    append(ds::kTokenRole, std::vector<uint8_t>{static_cast<uint8_t>(role)}, 1);
    append(ds::kTokenTextOffset, std::vector<int64_t>{text_bytes_}, 1);
    append(ds::kTokenTextLength, std::vector<int32_t>{static_cast<int32_t>(piece.size())}, 1);
    std::vector<uint8_t> bytes(piece.begin(), piece.end());
    append(ds::kTokenTextBytes, bytes, bytes.size());
    text_bytes_ += static_cast<int64_t>(piece.size());
    ++tokens_;
}

void TraceFileWriter::write_tokens(const std::vector<TokenRecord>& tokens) {
    std::vector<int32_t> ids, lengths;
    std::vector<uint8_t> roles, bytes;
    std::vector<int64_t> offsets;
    for (const auto& t : tokens) {
        ids.push_back(t.id);
        roles.push_back(static_cast<uint8_t>(t.role));
        offsets.push_back(text_bytes_ + static_cast<int64_t>(bytes.size()));
        lengths.push_back(static_cast<int32_t>(t.piece.size()));
        bytes.insert(bytes.end(), t.piece.begin(), t.piece.end());
        if (t.role == TokenRole::kGenerated) generated_text_ += t.piece;
    }
    hsize_t n = tokens.size();
    append(ds::kTokenIds, ids, n);
    append(ds::kTokenRole, roles, n);
    append(ds::kTokenTextOffset, offsets, n);
    append(ds::kTokenTextLength, lengths, n);
    append(ds::kTokenTextBytes, bytes, bytes.size());
    text_bytes_ += static_cast<int64_t>(bytes.size());
    tokens_ += static_cast<int64_t>(n);
    flush();
}

void TraceFileWriter::write_prefill(const PrefillLayerStats& s) {
    const hsize_t l = static_cast<hsize_t>(s.layer);
    const hsize_t H = static_cast<hsize_t>(sizes_.H), P = static_cast<hsize_t>(sizes_.P);
    auto put3 = [&](const char* name, const std::vector<float>& v) {
        if (!v.empty()) h5::write_slab(d(name), {l, 0, 0}, {1, H, P}, v.data());
    };
    put3(ds::kKeyNorm, s.key_norm);
    put3(ds::kAttnReceived, s.attn_received);
    put3(ds::kWindowScores, s.window_scores);
    auto put2 = [&](const char* name, const std::vector<float>& v) {
        if (!v.empty()) h5::write_slab(d(name), {l, 0}, {1, H}, v.data());
    };
    put2(ds::kDensity, s.density);
    put2(ds::kSpearman, s.spearman);
    put2(ds::kNormAttnArea, s.norm_attn_area);
    h5::write_slab(d(ds::kDensityLayer), {l}, {1}, &s.density_layer);
    int64_t rows = s.window_scores.empty() ? 0 : s.window_rows;
    h5::write_slab(d(ds::kWindowRows), {l}, {1}, &rows);
    flush();
    uint8_t one = 1;
    h5::write_slab(d(ds::kLayerDone), {l}, {1}, &one);
    flush();
}

void TraceFileWriter::write_map(int32_t layer, const std::vector<float>& attention) {
    if (!config_.record_maps) return;
    const hsize_t H = static_cast<hsize_t>(sizes_.H), P = static_cast<hsize_t>(sizes_.P);
    h5::write_slab(d(ds::kMaps), {static_cast<hsize_t>(layer), 0, 0, 0}, {1, H, P, P},
                   attention.data());
    flush();
}

void TraceFileWriter::add_events(const std::vector<EventRecord>& events) {
    pending_.insert(pending_.end(), events.begin(), events.end());
}

void TraceFileWriter::write_step(StepData& data) {
    const StepRecord& r = data.record;
    if (r.step != steps_)
        throw std::logic_error("trace step " + std::to_string(r.step) + " written after " +
                               std::to_string(steps_) + " steps");
    if (tokens_ != sizes_.P + steps_)
        throw std::logic_error("trace step " + std::to_string(r.step) + " written with " +
                               std::to_string(tokens_) + " tokens recorded (expected " +
                               std::to_string(sizes_.P + steps_) + ": all prompt tokens first)");
    const size_t LH = static_cast<size_t>(sizes_.L * sizes_.H);

    // Events: stamp, group by (layer, head) keeping the order within a group.
    std::vector<EventRecord> ev = std::move(pending_);
    pending_.clear();
    if (ev.empty())
        ev = std::move(data.events);  // no copy of the step (1.5 GB at the 128k x 32 x 8 prefill)
    else
        ev.insert(ev.end(), data.events.begin(), data.events.end());
    for (auto& e : ev) e.step = static_cast<int32_t>(r.step);
    const auto lh_order = [](const EventRecord& a, const EventRecord& b) {
        return a.layer != b.layer ? a.layer < b.layer : a.head < b.head;
    };
    // The prefill step arrives in (layer, head) order already, and stable_sort would still copy
    // every event through a buffer as large as the step (67 M events at 32 x 8 x 128k). A decode
    // step arrives as all layers' appends, then each layer's plan (Engine::after_decode_layers):
    // a few hundred events, sorted here.
    if (!std::is_sorted(ev.begin(), ev.end(), lh_order))
        std::stable_sort(ev.begin(), ev.end(), lh_order);
    std::vector<int64_t> lh_begin(LH, events_);
    std::vector<int32_t> lh_count(LH, 0);
    for (size_t i = 0; i < ev.size(); ++i) {
        size_t k = static_cast<size_t>(ev[i].layer * sizes_.H + ev[i].head);
        if (lh_count[k] == 0) lh_begin[k] = events_ + static_cast<int64_t>(i);
        ++lh_count[k];
    }
    // Empty groups point at the next group's start so begin is monotone.
    int64_t next = events_ + static_cast<int64_t>(ev.size());
    for (size_t k = LH; k-- > 0;) {
        if (lh_count[k] == 0) lh_begin[k] = next;
        next = lh_begin[k];
    }
    hsize_t ne = ev.size();
    append_column<int32_t>(ds::kEvStep, ev, [](const EventRecord& e) { return e.step; });
    append_column<int16_t>(ds::kEvLayer, ev,
                           [](const EventRecord& e) { return static_cast<int16_t>(e.layer); });
    append_column<int16_t>(ds::kEvHead, ev,
                           [](const EventRecord& e) { return static_cast<int16_t>(e.head); });
    append_column<uint8_t>(ds::kEvOp, ev,
                           [](const EventRecord& e) { return static_cast<uint8_t>(e.op); });
    append_column<int32_t>(ds::kEvPosition, ev, [](const EventRecord& e) { return e.position; });
    append_column<int32_t>(ds::kEvDestination, ev,
                           [](const EventRecord& e) { return e.destination; });
    append_column<float>(ds::kEvWeight, ev, [](const EventRecord& e) { return e.weight; });
    append_column<float>(ds::kEvSimilarity, ev, [](const EventRecord& e) { return e.similarity; });
    append_column<float>(ds::kEvThreshold, ev, [](const EventRecord& e) { return e.threshold; });
    append_column<int8_t>(ds::kEvBits, ev, [](const EventRecord& e) { return e.bits; });
    append_column<int32_t>(ds::kEvSlot, ev, [](const EventRecord& e) { return e.slot; });
    append_column<int32_t>(ds::kEvDstPosition, ev,
                           [](const EventRecord& e) { return e.dst_position; });
    append_column<uint8_t>(ds::kEvPart, ev, [](const EventRecord& e) { return e.part; });
    append(ds::kEvLhBegin, lh_begin, 1);
    append(ds::kEvLhCount, lh_count, 1);
    // Per-head counts after the step (/summary, head_counts.h).
    head_counts_.apply_step(ev);
    const HeadCountRow& counts = head_counts_.row();
    append(ds::kSumAppended, counts.appended, 1);
    append(ds::kSumHeld, counts.held, 1);
    append(ds::kSumHeldBits, counts.held_bits, 1);
    append(ds::kSumMerged, counts.merged, 1);
    append(ds::kSumEvicted, counts.evicted, 1);
    if (r.step == 0) {
        // Every prompt token's state after the prefill (/summary/prompt_state), so the precision
        // view reads it instead of replaying ~P events per head (token_state_code.h).
        const std::vector<TokenStateCode> codes =
            prompt_state_codes(ev, meta_.n_layers, meta_.n_heads, sizes_.P);
        h5::write_slab(d(ds::kSumPromptState), {0, 0, 0},
                       {static_cast<hsize_t>(sizes_.L), static_cast<hsize_t>(sizes_.H),
                        static_cast<hsize_t>(sizes_.P)},
                       codes.data());
    }

    // The step row.
    const size_t K = static_cast<size_t>(sizes_.K);
    std::vector<int32_t> topk_ids(K, -1);
    std::vector<float> topk_lp(K, std::numeric_limits<float>::quiet_NaN());
    std::copy(r.topk_ids.begin(), r.topk_ids.end(), topk_ids.begin());
    std::copy(r.topk_logprobs.begin(), r.topk_logprobs.end(), topk_lp.begin());
    append(ds::kStepTokenId, std::vector<int32_t>{r.token_id}, 1);
    append(ds::kStepTopkIds, topk_ids, 1);
    append(ds::kStepTopkLogprobs, topk_lp, 1);
    append(ds::kStepEntropy, std::vector<float>{r.entropy}, 1);
    append(ds::kStepBytesHeld, r.bytes_held, 1);
    append(ds::kStepTimeMs, std::vector<float>{r.time_ms}, 1);
    append(ds::kStepEventBegin, std::vector<int64_t>{events_}, 1);
    append(ds::kStepEventCount, std::vector<int64_t>{static_cast<int64_t>(ne)}, 1);
    append(ds::kStepBudget, data.budgets.empty() ? std::vector<int32_t>(LH, -1) : data.budgets, 1);
    if (sizes_.N > 0) {
        append(ds::kStepNeedleSurvival,
               data.needle_survival.empty()
                   ? std::vector<float>(LH * static_cast<size_t>(sizes_.N),
                                        std::numeric_limits<float>::quiet_NaN())
                   : data.needle_survival,
               1);
    }
    if (config_.record_attention_rows) {
        std::vector<int64_t> begin(LH, row_entries_);
        std::vector<int32_t> count(LH, 0);
        std::vector<int32_t> positions;
        std::vector<float> values;
        // Rows are stored in (layer, head) order whatever order they came in.
        std::vector<const AttentionRow*> by_lh(LH, nullptr);
        for (const auto& row : data.attention)
            by_lh[static_cast<size_t>(row.layer * sizes_.H + row.head)] = &row;
        for (size_t k = 0; k < LH; ++k) {
            begin[k] = row_entries_ + static_cast<int64_t>(positions.size());
            if (!by_lh[k]) continue;
            count[k] = static_cast<int32_t>(by_lh[k]->positions.size());
            positions.insert(positions.end(), by_lh[k]->positions.begin(),
                             by_lh[k]->positions.end());
            values.insert(values.end(), by_lh[k]->values.begin(), by_lh[k]->values.end());
        }
        append(ds::kRowPosition, positions, positions.size());
        append(ds::kRowValue, values, values.size());
        append(ds::kRowBegin, begin, 1);
        append(ds::kRowCount, count, 1);
        row_entries_ += static_cast<int64_t>(positions.size());
    }
    append_text(r.piece, r.token_id, TokenRole::kGenerated);
    generated_text_ += r.piece;
    events_ += static_cast<int64_t>(ne);

    ++steps_;
}

void TraceFileWriter::commit() {
    if (!file_.valid() || committed_ == steps_) return;
    // Data first, then the commit counter: a reader (or a killed run) never sees a committed
    // step whose rows are not on disk.
    flush();
    h5::write_scalar(d(ds::kStepsCommitted), &steps_);
    flush();
    committed_ = steps_;
}

void TraceFileWriter::flush() {
    if (file_.valid()) h5::check_status(H5Fflush(file_.get(), H5F_SCOPE_LOCAL), "H5Fflush");
}

void TraceFileWriter::end(const RunEnd& end) {
    try {
        commit();
        std::vector<int8_t> found;
        for (const auto& s : meta_.spans) {
            if (s.expected_answer.empty())
                found.push_back(-1);
            else
                found.push_back(generated_text_.find(s.expected_answer) != std::string::npos ? 1
                                                                                             : 0);
        }
        if (!found.empty())
            h5::write_slab(d(ds::kSpanAnswerFound), {0}, {found.size()}, found.data());
        std::string json = to_json(end).dump();
        std::vector<uint8_t> bytes(json.begin(), json.end());
        append(ds::kEndJson, bytes, bytes.size());
        flush();
        uint8_t state =
            static_cast<uint8_t>(end.complete ? RunState::kComplete : RunState::kAborted);
        h5::write_scalar(d(ds::kComplete), &state);
        flush();
    } catch (...) {
        // Close all the same (datasets first, see close()); the .part keeps the committed steps
        // and the target is not touched.
        try {
            close();
        } catch (...) {
        }
        throw;
    }
    close();
    // Only a complete, closed file replaces the target, in one rename: a reader of the old
    // target keeps its file, and nobody ever sees a half-written target.
    move_into_place(part_, path_, config_.overwrite);
    lock_.release();
}

void TraceFileWriter::close() {
    if (!file_.valid()) return;
    // commit() can fail (disk full, file size limit). The datasets and the file are closed all
    // the same, datasets first, so nothing stays open for HDF5's shutdown to close twice (see
    // close_id in hdf5_io.cpp).
    std::exception_ptr failure;
    try {
        commit();
    } catch (...) {
        failure = std::current_exception();
    }
    ds_.clear();
    const bool closed = file_.close();
    if (failure) std::rethrow_exception(failure);
    if (!closed) h5::fail("H5Fclose");
}

}  // namespace kvscope::trace
