// TraceReader::read_all: what the isolated probe of an untrusted file reads (trace_probe.h).
// Every dataset is read whole in blocks of at most kBlockBytes, so a file that makes HDF5 crash
// or hang anywhere the reader could later look does so in the probe's child, not in the program.
#include <algorithm>
#include <optional>

#include "traces/trace_reader_internal.h"

namespace kvscope::trace {

namespace {
constexpr hsize_t kBlockBytes = hsize_t{16} << 20;

// Reads the dataset in slabs: axes before `split` one index at a time, `split` in runs that keep
// a slab within kBlockBytes, the axes after it whole. sample: only the first and last slab.
void walk_dataset(const std::string& name, const h5::Dataset& dset, bool sample) {
    const DatasetSpec& spec = dataset_spec(name);
    if (spec.dtype == StoredType::kString) return;  // read (all of it) by open()
    const hid_t type = native_hdf5_type(spec.dtype);
    const hsize_t elem = H5Tget_size(type);
    const h5::Dims& dims = dset.dims;
    std::vector<unsigned char> buf;
    if (dims.empty()) {
        buf.resize(elem);
        h5::read_slab(dset.id.get(), type, {}, {1}, buf.data());
        return;
    }
    for (hsize_t d : dims)
        if (d == 0) return;
    const size_t rank = dims.size();
    // inner[i] = elements of one index of axis i (product of the axes after it).
    std::vector<hsize_t> inner(rank, 1);
    for (size_t i = rank - 1; i > 0; --i) inner[i - 1] = inner[i] * dims[i];
    size_t split = 0;
    while (split + 1 < rank && inner[split] * elem > kBlockBytes) ++split;
    const hsize_t run = std::max<hsize_t>(1, kBlockBytes / (inner[split] * elem));
    auto read = [&](const h5::Dims& s, const h5::Dims& c) {
        hsize_t total = 1;
        for (hsize_t x : c) total *= x;
        buf.resize(static_cast<size_t>(total * elem));
        h5::read_slab(dset.id.get(), type, s, c, buf.data());
    };
    // Odometer over axes [0, split], stepping axis `split` by `run`.
    h5::Dims start(rank, 0), count(dims);
    for (size_t i = 0; i < split; ++i) count[i] = 1;
    std::optional<std::pair<h5::Dims, h5::Dims>> first, last;
    for (bool more = true; more;) {
        count[split] = std::min(run, dims[split] - start[split]);
        if (!sample)
            read(start, count);
        else if (!first)
            first.emplace(start, count);
        else
            last.emplace(start, count);
        size_t i = split;
        start[i] += count[i];
        while (more && start[i] >= dims[i]) {
            if (i == 0) {
                more = false;
            } else {
                start[i] = 0;
                start[--i] += 1;
            }
        }
    }
    if (first) read(first->first, first->second);
    if (last) read(last->first, last->second);
}
}  // namespace

void TraceReader::read_all(bool full) const {
    const TraceInfo i = info();
    (void)run_end();
    guarded(*impl_, [&] {
        for (const auto& [name, dset] : impl_->ds) walk_dataset(name, dset, !full);
    });
    if (!full) return;
    // The accessors' own reads, on top of the raw blocks: the token text (offsets into
    // /tokens/text_bytes), the step records, the events, and the deep checks.
    constexpr int64_t kTokens = 1 << 16, kSteps = 1 << 12, kRows = 1 << 18;
    for (int64_t t = 0; t < i.n_tokens; t += kTokens)
        (void)tokens(t, std::min(i.n_tokens, t + kTokens));
    for (int64_t s = 0; s < i.n_steps; s += kSteps) (void)steps(s, std::min(i.n_steps, s + kSteps));
    for (int64_t e = 0; e < i.n_events; e += kRows)
        (void)event_rows(e, std::min(i.n_events, e + kRows));
    (void)validate();
}

}  // namespace kvscope::trace
