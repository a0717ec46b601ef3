// HDF5 helpers shared by the trace writer and reader (see hdf5_io.h).
#include "traces/hdf5_io.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>

namespace kvscope::trace::h5 {

void silence_errors() {
    thread_local bool done = false;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
        done = true;
    }
}

namespace {
herr_t collect_error(unsigned /*n*/, const H5E_error2_t* err, void* data) {
    auto* out = static_cast<std::vector<std::string>*>(data);
    if (err->desc && *err->desc) out->emplace_back(err->desc);
    return 0;
}
}  // namespace

std::string error_message(const std::string& what) {
    std::vector<std::string> descs;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &descs);
    H5Eclear2(H5E_DEFAULT);
    std::string msg = what;
    if (!descs.empty()) {
        // Outermost and innermost messages carry the meaning; the middle ones are plumbing.
        msg += " (" + descs.front();
        if (descs.size() > 1) msg += ": " + descs.back();
        msg += ")";
    }
    return msg;
}

void fail(const std::string& what) {
    throw Error(error_message(what));
}

namespace {

// HDF5 1.10 frees a file or dataset whose close fails half-way (a write error while flushing,
// e.g. disk full) but, except through H5Dclose, leaves its id registered. The library's atexit
// shutdown (H5_term_library) then closes that id a second time and crashes: the "run reports the
// write error, then segfaults at exit inside H5D_close" bug. So the shutdown is registered here
// instead of by HDF5 (H5dont_atexit, before the library initialises), and skipped once a close
// has failed: the process is exiting, and the OS releases what HDF5 could not.
std::atomic<bool> g_close_failed{false};

void shutdown_hdf5() {
    if (!g_close_failed.load()) H5close();
}

// Static initialisation runs before main(), so before any HDF5 call of this program. Where HDF5
// was initialised earlier (another library's static initialiser), H5dont_atexit fails and HDF5's
// own shutdown stays in place.
const bool g_shutdown_registered = H5dont_atexit() >= 0 && std::atexit(shutdown_hdf5) == 0;

}  // namespace

bool close_id(hid_t id) {
    if (id < 0 || H5Iis_valid(id) <= 0) return true;
    // Datasets go through H5Dclose, which drops the id even when closing fails; H5Idec_ref would
    // keep it pointing at the freed dataset.
    const bool dataset = H5Iget_type(id) == H5I_DATASET;
    const bool ok = (dataset ? H5Dclose(id) : H5Idec_ref(id)) >= 0;
    if (!ok && !dataset) g_close_failed = true;
    (void)g_shutdown_registered;
    return ok;
}

bool Id::close() {
    const hid_t id = id_;
    id_ = H5I_INVALID_HID;
    return close_id(id);
}

template <>
hid_t native_type<int8_t>() {
    return H5T_NATIVE_INT8;
}
template <>
hid_t native_type<uint8_t>() {
    return H5T_NATIVE_UINT8;
}
template <>
hid_t native_type<int16_t>() {
    return H5T_NATIVE_INT16;
}
template <>
hid_t native_type<int32_t>() {
    return H5T_NATIVE_INT32;
}
template <>
hid_t native_type<int64_t>() {
    return H5T_NATIVE_INT64;
}
template <>
hid_t native_type<uint64_t>() {
    return H5T_NATIVE_UINT64;
}
template <>
hid_t native_type<float>() {
    return H5T_NATIVE_FLOAT;
}
template <>
hid_t native_type<double>() {
    return H5T_NATIVE_DOUBLE;
}

hsize_t Dataset::row_elems() const {
    hsize_t n = 1;
    for (size_t i = 1; i < dims.size(); ++i) n *= dims[i];
    return n;
}

namespace {
Id intermediate_lcpl() {
    Id lcpl(check(H5Pcreate(H5P_LINK_CREATE), "H5Pcreate(link)"));
    check_status(H5Pset_create_intermediate_group(lcpl.get(), 1), "intermediate groups");
    return lcpl;
}

Id make_space(const Dims& dims, const Dims& maxdims) {
    return Id(check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), maxdims.data()),
                    "H5Screate_simple"));
}
}  // namespace

Dataset create_dataset(hid_t file, const std::string& name, hid_t mem_type, const Dims& dims,
                       const Dims& chunk, bool grows, int level, const void* fill) {
    Dims maxdims = dims;
    Dims ch = chunk;
    for (size_t i = 0; i < dims.size(); ++i) {
        if ((i == 0 && grows) || dims[i] == 0) maxdims[i] = H5S_UNLIMITED;
        ch[i] = std::max<hsize_t>(1, ch[i]);
        if (maxdims[i] != H5S_UNLIMITED) ch[i] = std::min(ch[i], dims[i]);
    }
    Id space = make_space(dims, maxdims);
    Id dcpl(check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate(dataset)"));
    check_status(H5Pset_chunk(dcpl.get(), static_cast<int>(ch.size()), ch.data()), "H5Pset_chunk");
    if (level > 0) {
        check_status(H5Pset_shuffle(dcpl.get()), "H5Pset_shuffle");
        check_status(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(level)), "H5Pset_deflate");
    }
    if (fill) check_status(H5Pset_fill_value(dcpl.get(), mem_type, fill), "H5Pset_fill_value");
    // Allocate on write so fixed-size datasets that are never written cost nothing.
    check_status(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_INCR), "H5Pset_alloc_time");
    Id lcpl = intermediate_lcpl();
    Dataset ds;
    ds.id = Id(
        H5Dcreate2(file, name.c_str(), mem_type, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT));
    if (!ds.id.valid()) fail("cannot create dataset " + name);
    ds.dims = dims;
    ds.mem_type = mem_type;
    return ds;
}

Dataset create_scalar(hid_t file, const std::string& name, hid_t mem_type, const void* value) {
    Id space(check(H5Screate(H5S_SCALAR), "H5Screate"));
    Id lcpl = intermediate_lcpl();
    Dataset ds;
    ds.id = Id(H5Dcreate2(file, name.c_str(), mem_type, space.get(), lcpl.get(), H5P_DEFAULT,
                          H5P_DEFAULT));
    if (!ds.id.valid()) fail("cannot create dataset " + name);
    ds.mem_type = mem_type;
    write_scalar(ds, value);
    return ds;
}

void write_scalar(const Dataset& ds, const void* value) {
    check_status(H5Dwrite(ds.id.get(), ds.mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, value),
                 "write scalar");
}

void write_slab(const Dataset& ds, const Dims& start, const Dims& count, const void* data) {
    hsize_t total = 1;
    for (hsize_t c : count) total *= c;
    if (total == 0) return;
    Id fspace(check(H5Dget_space(ds.id.get()), "H5Dget_space"));
    check_status(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr,
                                     count.data(), nullptr),
                 "select hyperslab");
    // The memory space has the slab's own shape: with a flat one, HDF5 maps a multi-chunk slab
    // element by element (H5S_select_iterate was ~25% of a --record-maps run's CPU, perf).
    Id mspace(check(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr),
                    "H5Screate_simple"));
    check_status(H5Dwrite(ds.id.get(), ds.mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, data),
                 "H5Dwrite");
}

void append_rows(Dataset& ds, const void* data, hsize_t n) {
    if (n == 0) return;
    Dims start(ds.dims.size(), 0);
    start[0] = ds.dims[0];
    Dims count = ds.dims;
    count[0] = n;
    Dims new_dims = ds.dims;
    new_dims[0] += n;
    check_status(H5Dset_extent(ds.id.get(), new_dims.data()), "H5Dset_extent");
    ds.dims = new_dims;
    write_slab(ds, start, count, data);
}

bool link_exists(hid_t file, const std::string& name) {
    // Walk the path so a missing parent group is "absent", not an error.
    size_t pos = 0;
    while ((pos = name.find('/', pos + 1)) != std::string::npos) {
        if (H5Lexists(file, name.substr(0, pos).c_str(), H5P_DEFAULT) <= 0) return false;
    }
    return H5Lexists(file, name.c_str(), H5P_DEFAULT) > 0;
}

Dataset open_dataset(hid_t file, const std::string& name, hid_t mem_type) {
    Dataset ds;
    if (!link_exists(file, name)) return ds;
    ds.id = Id(H5Dopen2(file, name.c_str(), H5P_DEFAULT));
    if (!ds.id.valid()) fail("cannot open dataset " + name);
    ds.mem_type = mem_type;
    ds.dims = extent(ds.id.get());
    return ds;
}

Dims extent(hid_t dataset) {
    Id space(check(H5Dget_space(dataset), "H5Dget_space"));
    int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0) fail("H5Sget_simple_extent_ndims");
    Dims dims(static_cast<size_t>(rank));
    if (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0)
        fail("H5Sget_simple_extent_dims");
    return dims;
}

void read_slab(hid_t dataset, hid_t mem_type, const Dims& start, const Dims& count, void* out) {
    hsize_t total = 1;
    for (hsize_t c : count) total *= c;
    if (total == 0) return;
    Id fspace(check(H5Dget_space(dataset), "H5Dget_space"));
    if (!start.empty()) {
        check_status(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr,
                                         count.data(), nullptr),
                     "select hyperslab");
    }
    Id mspace(check(H5Screate_simple(1, &total, nullptr), "H5Screate_simple"));
    check_status(H5Dread(dataset, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, out),
                 "H5Dread");
}

void read_ranges(hid_t dataset, hid_t mem_type, const std::vector<hsize_t>& begins,
                 const std::vector<hsize_t>& counts, void* out) {
    const hsize_t total = std::accumulate(counts.begin(), counts.end(), hsize_t{0});
    if (total == 0) return;
    const size_t elem = H5Tget_size(mem_type);
    if (elem == 0) fail("H5Tget_size");
    hsize_t lo = std::numeric_limits<hsize_t>::max(), hi = 0;
    for (size_t i = 0; i < begins.size(); ++i) {
        if (counts[i] == 0) continue;
        lo = std::min(lo, begins[i]);
        hi = std::max(hi, begins[i] + counts[i]);
    }
    auto* dst = static_cast<unsigned char*>(out);
    // Point selections and OR-ed hyperslabs cost HDF5 time per element or per block pair; plain
    // slabs do not. When the ranges sit close together (the events of one (layer, head) over a
    // few steps), read the enclosing slab once and copy the ranges out; otherwise read range by
    // range, one contiguous slab each.
    if (total > kMaxReadBytes / elem) throw Error("read of more than 1 GiB requested");
    if (hi - lo <= 4 * total + (hsize_t{1} << 16) && (hi - lo) <= kMaxReadBytes / elem) {
        std::vector<unsigned char> slab(static_cast<size_t>(hi - lo) * elem);
        read_slab(dataset, mem_type, {lo}, {hi - lo}, slab.data());
        for (size_t i = 0; i < begins.size(); ++i) {
            if (counts[i] == 0) continue;
            std::memcpy(dst, slab.data() + static_cast<size_t>(begins[i] - lo) * elem,
                        static_cast<size_t>(counts[i]) * elem);
            dst += static_cast<size_t>(counts[i]) * elem;
        }
        return;
    }
    for (size_t i = 0; i < begins.size(); ++i) {
        if (counts[i] == 0) continue;
        read_slab(dataset, mem_type, {begins[i]}, {counts[i]}, dst);
        dst += static_cast<size_t>(counts[i]) * elem;
    }
}

H5T_class_t type_class(hid_t dataset) {
    Id type(check(H5Dget_type(dataset), "H5Dget_type"));
    return H5Tget_class(type.get());
}

namespace {
// Variable-length strings: only read, from version 1 files (see hdf5_io.h).
Id utf8_vlen_type() {
    Id t(check(H5Tcopy(H5T_C_S1), "H5Tcopy"));
    check_status(H5Tset_size(t.get(), H5T_VARIABLE), "H5Tset_size");
    check_status(H5Tset_cset(t.get(), H5T_CSET_UTF8), "H5Tset_cset");
    return t;
}

// Fixed-length UTF-8 of `bytes` bytes (at least 1: HDF5 has no 0-byte type), NUL-padded.
Id utf8_fixed_type(size_t bytes) {
    Id t(check(H5Tcopy(H5T_C_S1), "H5Tcopy"));
    check_status(H5Tset_size(t.get(), std::max<size_t>(bytes, 1)), "H5Tset_size");
    check_status(H5Tset_strpad(t.get(), H5T_STR_NULLPAD), "H5Tset_strpad");
    check_status(H5Tset_cset(t.get(), H5T_CSET_UTF8), "H5Tset_cset");
    return t;
}

// `n` fixed-length strings of `width` bytes each, back to back -> strings without the padding
// (a NUL ends a string: NULLPAD pads with NULs, NULLTERM ends with one).
std::vector<std::string> split_fixed(const std::vector<char>& raw, size_t n, size_t width) {
    std::vector<std::string> out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        const char* p = raw.data() + i * width;
        out.emplace_back(p, strnlen(p, width));
    }
    return out;
}
}  // namespace

void write_attr_string(hid_t obj, const std::string& name, const std::string& value) {
    Id type = utf8_fixed_type(value.size());
    Id space(check(H5Screate(H5S_SCALAR), "H5Screate"));
    Id attr(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
    if (!attr.valid()) fail("cannot create attribute " + name);
    std::string padded = value;
    padded.resize(std::max<size_t>(value.size(), 1), '\0');
    check_status(H5Awrite(attr.get(), type.get(), padded.data()), "H5Awrite");
}

template <typename T>
void write_attr(hid_t obj, const std::string& name, T value) {
    Id space(check(H5Screate(H5S_SCALAR), "H5Screate"));
    Id attr(H5Acreate2(obj, name.c_str(), native_type<T>(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
    if (!attr.valid()) fail("cannot create attribute " + name);
    check_status(H5Awrite(attr.get(), native_type<T>(), &value), "H5Awrite");
}
template void write_attr<int8_t>(hid_t, const std::string&, int8_t);
template void write_attr<uint8_t>(hid_t, const std::string&, uint8_t);
template void write_attr<int32_t>(hid_t, const std::string&, int32_t);
template void write_attr<int64_t>(hid_t, const std::string&, int64_t);
template void write_attr<double>(hid_t, const std::string&, double);

bool attr_exists(hid_t obj, const std::string& name) {
    return H5Aexists(obj, name.c_str()) > 0;
}

std::string read_attr_string(hid_t obj, const std::string& name) {
    Id attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
    if (!attr.valid()) fail("cannot open attribute " + name);
    Id ftype(check(H5Aget_type(attr.get()), "H5Aget_type"));
    if (H5Tget_class(ftype.get()) != H5T_STRING) throw Error("attribute " + name + " is no string");
    Id space(check(H5Aget_space(attr.get()), "H5Aget_space"));
    if (H5Sget_simple_extent_npoints(space.get()) != 1)
        throw Error("attribute " + name + " is not a single string");
    if (H5Tis_variable_str(ftype.get()) > 0) {
        Id type = utf8_vlen_type();
        char* p = nullptr;
        check_status(H5Aread(attr.get(), type.get(), &p), "H5Aread");
        std::string s = p ? p : "";
        H5free_memory(p);
        return s;
    }
    // Fixed-length: the size is the file's word; attributes of a trace are short.
    size_t n = H5Tget_size(ftype.get());
    if (n == 0 || n > kMaxStringBytes)
        throw Error("attribute " + name + " has an implausible string size " + std::to_string(n));
    std::vector<char> raw(n);
    check_status(H5Aread(attr.get(), ftype.get(), raw.data()), "H5Aread");
    return split_fixed(raw, 1, n)[0];
}

int64_t read_attr_int(hid_t obj, const std::string& name) {
    Id attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
    if (!attr.valid()) fail("cannot open attribute " + name);
    Id ftype(check(H5Aget_type(attr.get()), "H5Aget_type"));
    if (H5Tget_class(ftype.get()) != H5T_INTEGER)
        throw Error("attribute " + name + " is not an integer");
    Id space(check(H5Aget_space(attr.get()), "H5Aget_space"));
    if (H5Sget_simple_extent_npoints(space.get()) != 1)
        throw Error("attribute " + name + " is not a single integer");
    int64_t v = 0;
    check_status(H5Aread(attr.get(), H5T_NATIVE_INT64, &v), "H5Aread");
    return v;
}

void write_strings(hid_t file, const std::string& name, const std::vector<std::string>& v) {
    size_t width = 1;
    for (const auto& x : v) width = std::max(width, x.size());
    Id type = utf8_fixed_type(width);
    hsize_t n = v.size();
    hsize_t maxn = H5S_UNLIMITED;
    Id space(check(H5Screate_simple(1, &n, &maxn), "H5Screate_simple"));
    Id dcpl(check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate"));
    hsize_t chunk = 64;
    check_status(H5Pset_chunk(dcpl.get(), 1, &chunk), "H5Pset_chunk");
    Id lcpl = intermediate_lcpl();
    Id ds(H5Dcreate2(file, name.c_str(), type.get(), space.get(), lcpl.get(), dcpl.get(),
                     H5P_DEFAULT));
    if (!ds.valid()) fail("cannot create dataset " + name);
    if (n == 0) return;
    std::vector<char> raw(v.size() * width, '\0');
    for (size_t i = 0; i < v.size(); ++i)
        std::memcpy(raw.data() + i * width, v[i].data(), v[i].size());
    check_status(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()),
                 "H5Dwrite");
}

void write_string_scalar(hid_t file, const std::string& name, const std::string& value) {
    Id type = utf8_fixed_type(value.size());
    Id space(check(H5Screate(H5S_SCALAR), "H5Screate"));
    Id lcpl = intermediate_lcpl();
    Id ds(H5Dcreate2(file, name.c_str(), type.get(), space.get(), lcpl.get(), H5P_DEFAULT,
                     H5P_DEFAULT));
    if (!ds.valid()) fail("cannot create dataset " + name);
    std::string padded = value;
    padded.resize(std::max<size_t>(value.size(), 1), '\0');
    check_status(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, padded.data()),
                 "H5Dwrite");
}

std::vector<std::string> read_strings(hid_t dataset) {
    if (type_class(dataset) != H5T_STRING) throw Error("dataset does not hold strings");
    Id ftype(check(H5Dget_type(dataset), "H5Dget_type"));
    Id space(check(H5Dget_space(dataset), "H5Dget_space"));
    hssize_t n = H5Sget_simple_extent_npoints(space.get());
    if (n < 0) fail("H5Sget_simple_extent_npoints");
    if (static_cast<uint64_t>(n) > kMaxStrings)
        throw Error("dataset holds an implausible number of strings (" + std::to_string(n) + ")");
    std::vector<std::string> out;
    if (n == 0) return out;
    const auto count = static_cast<size_t>(n);
    if (H5Tis_variable_str(ftype.get()) > 0) {
        // Version 1 traces. The strings live in HDF5's global heap, the structure libhdf5 1.10
        // crashes on when damaged; such files are opened only after trace_probe.h's check.
        std::vector<char*> ptrs(count, nullptr);
        Id type = utf8_vlen_type();
        check_status(H5Dread(dataset, type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()),
                     "H5Dread");
        out.reserve(count);
        for (char* p : ptrs) out.emplace_back(p ? p : "");
        H5Dvlen_reclaim(type.get(), space.get(), H5P_DEFAULT, ptrs.data());
        return out;
    }
    const size_t width = H5Tget_size(ftype.get());
    if (width == 0 || width > kMaxStringBytes || count * width > kMaxReadBytes)
        throw Error("dataset has an implausible string size " + std::to_string(width));
    std::vector<char> raw(count * width);
    Id mtype(check(H5Tcopy(ftype.get()), "H5Tcopy"));
    check_status(H5Dread(dataset, mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()),
                 "H5Dread");
    return split_fixed(raw, count, width);
}

std::string read_string_scalar(hid_t dataset) {
    auto v = read_strings(dataset);
    if (v.size() != 1) throw Error("dataset is not a single string");
    return v[0];
}

}  // namespace kvscope::trace::h5
