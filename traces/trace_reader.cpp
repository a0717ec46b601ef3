// TraceReader: opening (with clear errors for files that are not valid traces), counts, live
// refresh, and the token / prefill / step accessors. Events and token states are in
// trace_reader_events.cpp, deep validation in trace_validate.cpp.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <system_error>

#include "traces/trace_probe.h"
#include "traces/trace_reader_internal.h"

namespace kvscope::trace {

namespace {
bool contains(const std::string& s, const char* what) {
    return s.find(what) != std::string::npos;
}

bool class_matches(H5T_class_t c, StoredType t) {
    switch (t) {
        case StoredType::kFloat32:
            return c == H5T_FLOAT;
        case StoredType::kString:
            return c == H5T_STRING;
        default:
            return c == H5T_INTEGER;
    }
}
}  // namespace

hid_t TraceReader::Impl::d(const char* name) const {
    auto it = ds.find(name);
    if (it == ds.end()) throw InputError(path, std::string("the trace has no dataset ") + name);
    return it->second.id.get();
}

void TraceReader::Impl::open() {
    h5::silence_errors();
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) fail("no such file");
    if (!std::filesystem::is_regular_file(path, ec)) fail("not a regular file");
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) fail("cannot read the file size: " + ec.message());
    if (size == 0) fail("empty file (0 bytes), not a KVScope trace");
    if (H5Fis_hdf5(path.c_str()) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        fail("not an HDF5 file (a KVScope trace, .kvtrace.h5, is expected)");
    }
    file = h5::Id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    if (!file.valid()) {
        std::string msg = h5::error_message("cannot open the HDF5 file");
        if (contains(msg, "already open for write")) {
            // A writer is still running, or was killed: SWMR read sees every flushed step.
            file = h5::Id(H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT));
            if (!file.valid()) fail(h5::error_message("cannot open the trace in SWMR-read mode"));
            swmr = true;
            haddr_t eoa = 0;
            if (H5Fget_eoa(file.get(), &eoa) >= 0 && size < eoa)
                fail("the file is truncated (" + std::to_string(size) +
                     " bytes, the HDF5 "
                     "superblock expects " +
                     std::to_string(eoa) + ")");
        } else if (contains(msg, "truncated")) {
            fail("the file is truncated: " + msg);
        } else {
            fail(msg);
        }
    }
    hid_t f = file.get();
    auto attr_or_fail = [&](const char* name) {
        if (!h5::attr_exists(f, name))
            fail(std::string("not a KVScope trace: the root attribute '") + name + "' is missing");
    };
    attr_or_fail("format");
    std::string format = h5::read_attr_string(f, "format");
    if (format != kFormatName) fail("not a KVScope trace (format is '" + format + "')");
    attr_or_fail("schema_version");
    schema_version = static_cast<int32_t>(h5::read_attr_int(f, "schema_version"));
    if (schema_version > kSchemaVersion)
        fail("schema_version " + std::to_string(schema_version) +
             " is newer than this KVScope reads (" + std::to_string(kSchemaVersion) +
             "); update KVScope");
    if (schema_version < kOldestSchemaVersion)
        fail("unsupported schema_version " + std::to_string(schema_version));
    for (const char* a : {"n_layers", "n_heads", "n_prompt_tokens", "top_k", "n_spans"})
        attr_or_fail(a);
    sizes.L = h5::read_attr_int(f, "n_layers");
    sizes.H = h5::read_attr_int(f, "n_heads");
    sizes.P = h5::read_attr_int(f, "n_prompt_tokens");
    sizes.K = h5::read_attr_int(f, "top_k");
    sizes.N = h5::read_attr_int(f, "n_spans");
    if (sizes.L <= 0 || sizes.H <= 0 || sizes.P <= 0 || sizes.K < 0 || sizes.N < 0)
        fail("invalid trace axes (n_layers " + std::to_string(sizes.L) + ", n_heads " +
             std::to_string(sizes.H) + ", n_prompt_tokens " + std::to_string(sizes.P) + ")");
    // The axes size every read; a damaged file must not make them allocate without bound.
    if (sizes.L > kMaxLayers || sizes.H > kMaxHeads || sizes.P > kMaxPromptTokens ||
        sizes.K > kMaxTopK || sizes.N > kMaxSpans)
        fail("implausible trace axes (n_layers " + std::to_string(sizes.L) + ", n_heads " +
             std::to_string(sizes.H) + ", n_prompt_tokens " + std::to_string(sizes.P) + ", top_k " +
             std::to_string(sizes.K) + ", n_spans " + std::to_string(sizes.N) +
             "): the file is damaged");
    has_rows = h5::attr_exists(f, "record_attention_rows") &&
               h5::read_attr_int(f, "record_attention_rows") != 0;
    has_maps = h5::attr_exists(f, "record_maps") && h5::read_attr_int(f, "record_maps") != 0;

    for (const auto& spec : dataset_specs()) {
        if (!dataset_present(spec.presence, sizes, has_rows, has_maps)) continue;
        h5::Dataset dset = h5::open_dataset(f, spec.name, H5I_INVALID_HID);
        if (!dset.id.valid() && spec.presence == Presence::kOptional) continue;
        if (!dset.id.valid())
            fail(std::string("missing dataset ") + spec.name + " (required by schema version " +
                 std::to_string(schema_version) + ")");
        if (!class_matches(h5::type_class(dset.id.get()), spec.dtype))
            fail(std::string("dataset ") + spec.name + " does not hold " +
                 stored_type_name(spec.dtype));
        if (dset.dims.size() != spec.shape.size())
            fail(std::string("dataset ") + spec.name + " has rank " +
                 std::to_string(dset.dims.size()) + ", expected " + shape_string(spec.shape));
        for (size_t i = 0; i < spec.shape.size(); ++i) {
            if (is_growing(spec.shape[i])) continue;
            auto want = static_cast<hsize_t>(sizes.fixed(spec.shape[i]));
            if (dset.dims[i] != want)
                fail(std::string("dataset ") + spec.name + " has extent " +
                     std::to_string(dset.dims[i]) + " on axis " + static_cast<char>(spec.shape[i]) +
                     ", expected " + std::to_string(want));
        }
        ds[spec.name] = std::move(dset);
    }
    try {
        meta =
            run_metadata_from_json(nlohmann::json::parse(h5::read_string_scalar(d(ds::kRunJson))));
    } catch (const nlohmann::json::exception& e) {
        fail(std::string("/meta/run_json is not valid run metadata: ") + e.what());
    }
    // The typed attributes are authoritative for the axes.
    meta.n_layers = static_cast<int32_t>(sizes.L);
    meta.n_heads = static_cast<int32_t>(sizes.H);
    meta.n_prompt_tokens = sizes.P;
    meta.top_k = static_cast<int32_t>(sizes.K);
    auto begins = read<int64_t>(ds::kSpanBegin, {0}, {static_cast<hsize_t>(sizes.N)});
    auto ends = read<int64_t>(ds::kSpanEnd, {0}, {static_cast<hsize_t>(sizes.N)});
    auto labels = h5::read_strings(d(ds::kSpanLabel));
    auto expected = h5::read_strings(d(ds::kSpanExpected));
    if (labels.size() != static_cast<size_t>(sizes.N) ||
        expected.size() != static_cast<size_t>(sizes.N))
        fail("/spans datasets do not hold n_spans entries");
    spans.clear();
    for (size_t i = 0; i < static_cast<size_t>(sizes.N); ++i)
        spans.push_back({begins[i], ends[i], labels[i], expected[i]});
    meta.spans = spans;
    // Version 1 kept it in run_json only (trace_schema.h).
    prefill_appends = h5::attr_exists(f, "prefill_appends")
                          ? h5::read_attr_int(f, "prefill_appends") != 0
                          : prefill_appends_recorded(meta);
    has_summary = has(ds::kSumAppended) && has(ds::kSumHeld) && has(ds::kSumHeldBits) &&
                  has(ds::kSumMerged) && has(ds::kSumEvicted);
    read_counts();
}

void TraceReader::Impl::read_counts() {
    if (swmr) {
        for (auto& [name, dset] : ds)
            if (H5Drefresh(dset.id.get()) < 0) h5::fail("H5Drefresh " + name);
    }
    for (auto& [name, dset] : ds) dset.dims = h5::extent(dset.id.get());
    auto rows = [&](const char* name) -> int64_t {
        const auto& dims = ds.at(name).dims;
        return dims.empty() ? 0 : static_cast<int64_t>(dims[0]);
    };
    state = static_cast<RunState>(std::min<int>(read_scalar<uint8_t>(ds::kComplete), 2));
    int64_t committed = read_scalar<int64_t>(ds::kStepsCommitted);
    int64_t s_ext = committed;
    int64_t t_ext = -1;
    for (const auto& spec : dataset_specs()) {
        if (spec.shape.empty() || !has(spec.name)) continue;
        if (spec.shape[0] == Axis::S) s_ext = std::min(s_ext, rows(spec.name));
        if (spec.shape[0] == Axis::T)
            t_ext = t_ext < 0 ? rows(spec.name) : std::min(t_ext, rows(spec.name));
    }
    n_steps = std::max<int64_t>(0, s_ext);
    n_tokens = std::min(std::max<int64_t>(t_ext, 0), sizes.P + n_steps);
    n_text_bytes = rows(ds::kTokenTextBytes);
    n_events = 0;
    if (n_steps > 0) {
        auto b = read_one<int64_t>(ds::kStepEventBegin, {static_cast<hsize_t>(n_steps - 1)});
        auto c = read_one<int64_t>(ds::kStepEventCount, {static_cast<hsize_t>(n_steps - 1)});
        n_events = std::clamp<int64_t>(b + c, 0, rows(ds::kEvStep));
    }
    auto done = read<uint8_t>(ds::kLayerDone, {0}, {static_cast<hsize_t>(sizes.L)});
    n_layers_done = static_cast<int32_t>(std::count(done.begin(), done.end(), uint8_t{1}));
    end.reset();
    int64_t end_bytes = rows(ds::kEndJson);
    if (state != RunState::kRunning && end_bytes > 0) {
        auto bytes = read<uint8_t>(ds::kEndJson, {0}, {static_cast<hsize_t>(end_bytes)});
        try {
            end = run_end_from_json(nlohmann::json::parse(bytes.begin(), bytes.end()));
        } catch (const nlohmann::json::exception& e) {
            fail(std::string("/meta/end_json is not valid JSON: ") + e.what());
        }
    }
}

void TraceReader::Impl::check_layer_head(int32_t layer, int32_t head) const {
    if (layer < 0 || layer >= sizes.L || head < 0 || head >= sizes.H)
        throw std::out_of_range("trace (layer " + std::to_string(layer) + ", head " +
                                std::to_string(head) + ") out of range");
}

void TraceReader::Impl::check_steps(int64_t begin, int64_t end_) const {
    if (begin < 0 || end_ < begin || end_ > n_steps)
        throw std::out_of_range("trace steps [" + std::to_string(begin) + ", " +
                                std::to_string(end_) + ") out of range (" +
                                std::to_string(n_steps) + " steps)");
}

TraceReader::TraceReader(const std::filesystem::path& path) : impl_(std::make_unique<Impl>()) {
    impl_->path = path;
    // Programs that open users' files check each in a child process first (trace_probe.h):
    // libhdf5 can crash on a damaged file before any check of ours could see it.
    if (probe_untrusted_traces()) probe_trace_file(path);
    guarded(*impl_, [&] { impl_->open(); });
}

TraceReader::~TraceReader() = default;
TraceReader::TraceReader(TraceReader&&) noexcept = default;
TraceReader& TraceReader::operator=(TraceReader&&) noexcept = default;

const std::filesystem::path& TraceReader::path() const {
    return impl_->path;
}
const RunMetadata& TraceReader::metadata() const {
    return impl_->meta;
}
const std::vector<MarkedSpan>& TraceReader::spans() const {
    return impl_->spans;
}

TraceInfo TraceReader::info() const {
    return guarded(*impl_, [&] {
        const Impl& m = *impl_;
        TraceInfo i;
        i.schema_version = m.schema_version;
        i.state = m.state;
        i.swmr = m.swmr;
        i.n_layers = static_cast<int32_t>(m.sizes.L);
        i.n_heads = static_cast<int32_t>(m.sizes.H);
        i.top_k = static_cast<int32_t>(m.sizes.K);
        i.n_spans = static_cast<int32_t>(m.sizes.N);
        i.n_prompt_tokens = m.sizes.P;
        i.n_tokens = m.n_tokens;
        i.n_steps = m.n_steps;
        i.n_events = m.n_events;
        i.n_prefill_layers_done = m.n_layers_done;
        i.has_attention_rows = m.has_rows;
        i.has_maps = m.has_maps;
        i.prefill_appends = m.prefill_appends;
        if (m.state == RunState::kRunning) {
            i.notice =
                "incomplete trace: the run did not end cleanly (killed, or still "
                "running); readable: " +
                std::to_string(m.n_steps) + " steps, " + std::to_string(m.n_tokens) +
                " tokens, prefill statistics of " + std::to_string(m.n_layers_done) + " of " +
                std::to_string(m.sizes.L) + " layers";
        } else if (m.state == RunState::kAborted) {
            i.notice = "the run stopped early (" + (m.end ? m.end->reason : std::string("?")) +
                       "); " + std::to_string(m.n_steps) + " steps recorded";
        }
        return i;
    });
}

std::optional<RunEnd> TraceReader::run_end() const {
    return guarded(*impl_, [&] { return impl_->end; });
}

bool TraceReader::refresh() {
    return guarded(*impl_, [&] {
        Impl& m = *impl_;
        auto before = std::make_tuple(m.n_steps, m.n_tokens, m.state, m.n_layers_done);
        m.read_counts();
        return before != std::make_tuple(m.n_steps, m.n_tokens, m.state, m.n_layers_done);
    });
}

// ---- Tokens -------------------------------------------------------------------------------

namespace {
void check_token_range(const TraceReader::Impl& m, int64_t begin, int64_t end) {
    if (begin < 0 || end < begin || end > m.n_tokens)
        throw std::out_of_range("trace tokens [" + std::to_string(begin) + ", " +
                                std::to_string(end) + ") out of range (" +
                                std::to_string(m.n_tokens) + " tokens)");
}
}  // namespace

std::vector<TokenRecord> TraceReader::tokens(int64_t begin, int64_t end) const {
    return guarded(*impl_, [&] {
        const Impl& m = *impl_;
        check_token_range(m, begin, end);
        std::vector<TokenRecord> out;
        if (end == begin) return out;
        h5::Dims start{static_cast<hsize_t>(begin)}, count{static_cast<hsize_t>(end - begin)};
        auto ids = m.read<int32_t>(ds::kTokenIds, start, count);
        auto roles = m.read<uint8_t>(ds::kTokenRole, start, count);
        auto offsets = m.read<int64_t>(ds::kTokenTextOffset, start, count);
        auto lengths = m.read<int32_t>(ds::kTokenTextLength, start, count);
        // Pieces are stored in token order, so the range is one contiguous byte read.
        int64_t first = offsets.front();
        int64_t last = offsets.back() + lengths.back();
        if (first < 0 || last < first || last > m.n_text_bytes)
            m.fail("/tokens/text_offset points outside /tokens/text_bytes");
        auto bytes = m.read<uint8_t>(ds::kTokenTextBytes, {static_cast<hsize_t>(first)},
                                     {static_cast<hsize_t>(last - first)});
        out.resize(ids.size());
        for (size_t i = 0; i < ids.size(); ++i) {
            out[i].id = ids[i];
            out[i].role = roles[i] == 1 ? TokenRole::kGenerated : TokenRole::kPrompt;
            out[i].text_offset = offsets[i];
            int64_t a = offsets[i] - first;
            if (a < 0 || lengths[i] < 0 || a + lengths[i] > last - first)
                m.fail("/tokens/text_offset of token " + std::to_string(begin + i) +
                       " is out of order");
            out[i].piece.assign(reinterpret_cast<const char*>(bytes.data()) + a,
                                static_cast<size_t>(lengths[i]));
        }
        return out;
    });
}

std::vector<int32_t> TraceReader::token_ids(int64_t begin, int64_t end) const {
    return guarded(*impl_, [&] {
        check_token_range(*impl_, begin, end);
        return impl_->read<int32_t>(ds::kTokenIds, {static_cast<hsize_t>(begin)},
                                    {static_cast<hsize_t>(end - begin)});
    });
}

std::vector<TokenRole> TraceReader::token_roles(int64_t begin, int64_t end) const {
    return guarded(*impl_, [&] {
        check_token_range(*impl_, begin, end);
        auto raw = impl_->read<uint8_t>(ds::kTokenRole, {static_cast<hsize_t>(begin)},
                                        {static_cast<hsize_t>(end - begin)});
        std::vector<TokenRole> out(raw.size());
        for (size_t i = 0; i < raw.size(); ++i)
            out[i] = raw[i] == 1 ? TokenRole::kGenerated : TokenRole::kPrompt;
        return out;
    });
}

std::vector<int8_t> TraceReader::answer_found() const {
    return guarded(*impl_, [&] {
        return impl_->read<int8_t>(ds::kSpanAnswerFound, {0},
                                   {static_cast<hsize_t>(impl_->sizes.N)});
    });
}

// ---- Prefill ------------------------------------------------------------------------------

bool TraceReader::prefill_layer_done(int32_t layer) const {
    return guarded(*impl_, [&] {
        impl_->check_layer_head(layer, 0);
        return impl_->read_one<uint8_t>(ds::kLayerDone, {static_cast<hsize_t>(layer)}) == 1;
    });
}

namespace {
std::vector<float> per_token(const TraceReader::Impl& m, const char* name, int32_t layer,
                             int32_t head) {
    m.check_layer_head(layer, head);
    return m.read<float>(name, {static_cast<hsize_t>(layer), static_cast<hsize_t>(head), 0},
                         {1, 1, static_cast<hsize_t>(m.sizes.P)});
}
std::vector<float> per_head(const TraceReader::Impl& m, const char* name) {
    return m.read<float>(name, {0, 0},
                         {static_cast<hsize_t>(m.sizes.L), static_cast<hsize_t>(m.sizes.H)});
}
}  // namespace

std::vector<float> TraceReader::key_norm(int32_t layer, int32_t head) const {
    return guarded(*impl_, [&] { return per_token(*impl_, ds::kKeyNorm, layer, head); });
}
std::vector<float> TraceReader::attn_received(int32_t layer, int32_t head) const {
    return guarded(*impl_, [&] { return per_token(*impl_, ds::kAttnReceived, layer, head); });
}
std::vector<float> TraceReader::window_scores(int32_t layer, int32_t head) const {
    return guarded(*impl_, [&] { return per_token(*impl_, ds::kWindowScores, layer, head); });
}
std::vector<float> TraceReader::density() const {
    return guarded(*impl_, [&] { return per_head(*impl_, ds::kDensity); });
}
std::vector<float> TraceReader::spearman() const {
    return guarded(*impl_, [&] { return per_head(*impl_, ds::kSpearman); });
}
std::vector<float> TraceReader::norm_attn_area() const {
    return guarded(*impl_, [&] { return per_head(*impl_, ds::kNormAttnArea); });
}
std::vector<float> TraceReader::density_layer() const {
    return guarded(*impl_, [&] {
        return impl_->read<float>(ds::kDensityLayer, {0}, {static_cast<hsize_t>(impl_->sizes.L)});
    });
}
std::vector<int64_t> TraceReader::window_rows() const {
    return guarded(*impl_, [&] {
        return impl_->read<int64_t>(ds::kWindowRows, {0}, {static_cast<hsize_t>(impl_->sizes.L)});
    });
}

std::vector<float> TraceReader::prefill_map(int32_t layer, int32_t head) const {
    return guarded(*impl_, [&] {
        const Impl& m = *impl_;
        m.check_layer_head(layer, head);
        if (!m.has_maps) throw std::out_of_range("the trace has no prefill maps");
        auto P = static_cast<hsize_t>(m.sizes.P);
        return m.read<float>(ds::kMaps,
                             {static_cast<hsize_t>(layer), static_cast<hsize_t>(head), 0, 0},
                             {1, 1, P, P});
    });
}

// ---- Steps --------------------------------------------------------------------------------

std::vector<StepRecord> TraceReader::steps(int64_t begin, int64_t end) const {
    return guarded(*impl_, [&] {
        const Impl& m = *impl_;
        m.check_steps(begin, end);
        std::vector<StepRecord> out;
        if (end == begin) return out;
        const hsize_t n = static_cast<hsize_t>(end - begin);
        const hsize_t K = static_cast<hsize_t>(m.sizes.K), L = static_cast<hsize_t>(m.sizes.L);
        h5::Dims s{static_cast<hsize_t>(begin)}, c{n};
        auto ids = m.read<int32_t>(ds::kStepTokenId, s, c);
        auto entropy = m.read<float>(ds::kStepEntropy, s, c);
        auto time = m.read<float>(ds::kStepTimeMs, s, c);
        auto ev_begin = m.read<int64_t>(ds::kStepEventBegin, s, c);
        auto ev_count = m.read<int64_t>(ds::kStepEventCount, s, c);
        auto topk_ids = m.read<int32_t>(ds::kStepTopkIds, {s[0], 0}, {n, K});
        auto topk_lp = m.read<float>(ds::kStepTopkLogprobs, {s[0], 0}, {n, K});
        auto bytes = m.read<int64_t>(ds::kStepBytesHeld, {s[0], 0}, {n, L});
        out.resize(n);
        for (size_t i = 0; i < n; ++i) {
            StepRecord& r = out[i];
            r.step = begin + static_cast<int64_t>(i);
            r.token_id = ids[i];
            r.entropy = entropy[i];
            r.time_ms = time[i];
            r.event_begin = ev_begin[i];
            r.event_count = ev_count[i];
            for (size_t k = 0; k < K; ++k) {
                if (topk_ids[i * K + k] < 0) break;
                r.topk_ids.push_back(topk_ids[i * K + k]);
                r.topk_logprobs.push_back(topk_lp[i * K + k]);
            }
            r.bytes_held.assign(bytes.begin() + static_cast<std::ptrdiff_t>(i * L),
                                bytes.begin() + static_cast<std::ptrdiff_t>((i + 1) * L));
        }
        return out;
    });
}

// Pieces come from /tokens: generated token s is token P + s.
StepRecord TraceReader::step(int64_t s) const {
    auto v = steps(s, s + 1);
    StepRecord r = std::move(v.at(0));
    int64_t t = impl_->sizes.P + s;
    if (t < info().n_tokens) r.piece = tokens(t, t + 1).at(0).piece;
    return r;
}

std::vector<float> TraceReader::entropy(int64_t begin, int64_t end) const {
    return guarded(*impl_, [&] {
        impl_->check_steps(begin, end);
        return impl_->read<float>(ds::kStepEntropy, {static_cast<hsize_t>(begin)},
                                  {static_cast<hsize_t>(end - begin)});
    });
}

std::vector<int64_t> TraceReader::bytes_held(int64_t begin, int64_t end) const {
    return guarded(*impl_, [&] {
        impl_->check_steps(begin, end);
        return impl_->read<int64_t>(
            ds::kStepBytesHeld, {static_cast<hsize_t>(begin), 0},
            {static_cast<hsize_t>(end - begin), static_cast<hsize_t>(impl_->sizes.L)});
    });
}

std::vector<int32_t> TraceReader::budgets(int64_t step) const {
    return guarded(*impl_, [&] {
        impl_->check_steps(step, step + 1);
        return impl_->read<int32_t>(
            ds::kStepBudget, {static_cast<hsize_t>(step), 0, 0},
            {1, static_cast<hsize_t>(impl_->sizes.L), static_cast<hsize_t>(impl_->sizes.H)});
    });
}

std::vector<int32_t> TraceReader::budget_series(int32_t layer, int32_t head, int64_t begin,
                                                int64_t end) const {
    return guarded(*impl_, [&] {
        impl_->check_layer_head(layer, head);
        impl_->check_steps(begin, end);
        return impl_->read<int32_t>(
            ds::kStepBudget,
            {static_cast<hsize_t>(begin), static_cast<hsize_t>(layer), static_cast<hsize_t>(head)},
            {static_cast<hsize_t>(end - begin), 1, 1});
    });
}

std::vector<float> TraceReader::needle_survival(int32_t span, int64_t begin, int64_t end) const {
    return guarded(*impl_, [&] {
        const Impl& m = *impl_;
        if (span < 0 || span >= m.sizes.N)
            throw std::out_of_range("trace span " + std::to_string(span) + " out of range");
        m.check_steps(begin, end);
        return m.read<float>(ds::kStepNeedleSurvival,
                             {static_cast<hsize_t>(begin), static_cast<hsize_t>(span), 0, 0},
                             {static_cast<hsize_t>(end - begin), 1, static_cast<hsize_t>(m.sizes.L),
                              static_cast<hsize_t>(m.sizes.H)});
    });
}

bool TraceReader::has_head_counts() const {
    return impl_->has_summary;
}

bool TraceReader::has_prompt_states() const {
    std::lock_guard lock(impl_->mu);
    return impl_->has(ds::kSumPromptState) && impl_->n_steps >= 1;
}

std::vector<uint8_t> TraceReader::prompt_states(int32_t layer, int32_t head) const {
    return guarded(*impl_, [&] {
        const Impl& m = *impl_;
        if (!m.has(ds::kSumPromptState) || m.n_steps < 1)
            throw std::out_of_range("the trace has no /summary/prompt_state");
        m.check_layer_head(layer, head);
        return m.read<uint8_t>(ds::kSumPromptState,
                               {static_cast<hsize_t>(layer), static_cast<hsize_t>(head), 0},
                               {1, 1, static_cast<hsize_t>(m.sizes.P)});
    });
}

void TraceReader::prompt_states(int32_t layer, int32_t head, std::span<uint8_t> out) const {
    guarded(*impl_, [&] {
        const Impl& m = *impl_;
        if (!m.has(ds::kSumPromptState) || m.n_steps < 1)
            throw std::out_of_range("the trace has no /summary/prompt_state");
        m.check_layer_head(layer, head);
        if (std::ssize(out) != m.sizes.P)
            throw std::invalid_argument(
                "prompt_states: the buffer must hold n_prompt_tokens codes");
        h5::read_slab(m.d(ds::kSumPromptState), H5T_NATIVE_UINT8,
                      {static_cast<hsize_t>(layer), static_cast<hsize_t>(head), 0},
                      {1, 1, static_cast<hsize_t>(m.sizes.P)}, out.data());
    });
}

HeadCountRow TraceReader::head_counts(int64_t step) const {
    return guarded(*impl_, [&] {
        const Impl& m = *impl_;
        if (!m.has_summary) throw std::out_of_range("the trace has no /summary counts");
        m.check_steps(step, step + 1);
        const h5::Dims at{static_cast<hsize_t>(step), 0, 0};
        const h5::Dims count{1, static_cast<hsize_t>(m.sizes.L), static_cast<hsize_t>(m.sizes.H)};
        HeadCountRow row;
        row.appended = m.read<int32_t>(ds::kSumAppended, at, count);
        row.held = m.read<int32_t>(ds::kSumHeld, at, count);
        row.held_bits = m.read<int64_t>(ds::kSumHeldBits, at, count);
        row.merged = m.read<int32_t>(ds::kSumMerged, at, count);
        row.evicted = m.read<int32_t>(ds::kSumEvicted, at, count);
        return row;
    });
}

AttentionRow TraceReader::attention_row(int64_t step, int32_t layer, int32_t head) const {
    return guarded(*impl_, [&] {
        const Impl& m = *impl_;
        if (!m.has_rows) throw std::out_of_range("the trace has no attention rows");
        m.check_layer_head(layer, head);
        m.check_steps(step, step + 1);
        h5::Dims at{static_cast<hsize_t>(step), static_cast<hsize_t>(layer),
                    static_cast<hsize_t>(head)};
        auto begin = m.read_one<int64_t>(ds::kRowBegin, at);
        auto count = m.read_one<int32_t>(ds::kRowCount, at);
        const auto& vdims = m.ds.at(ds::kRowValue).dims;
        const auto& pdims = m.ds.at(ds::kRowPosition).dims;
        int64_t avail = static_cast<int64_t>(std::min(vdims[0], pdims[0]));
        if (begin < 0 || count < 0 || begin + count > avail)
            m.fail("/attention_rows/begin points outside /attention_rows/value");
        AttentionRow row;
        row.layer = layer;
        row.head = head;
        row.positions = m.read<int32_t>(ds::kRowPosition, {static_cast<hsize_t>(begin)},
                                        {static_cast<hsize_t>(count)});
        row.values = m.read<float>(ds::kRowValue, {static_cast<hsize_t>(begin)},
                                   {static_cast<hsize_t>(count)});
        return row;
    });
}

}  // namespace kvscope::trace
