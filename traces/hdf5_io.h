#pragma once
// The HDF5 layer of traces/ (also used by app/recorder/prefill_state_file.cpp, so not an
// *_internal.h header): RAII HDF5 ids, checked C-API calls that turn the HDF5 error stack into
// exceptions, and the few dataset operations the writer and reader share (create chunked,
// append rows, read a hyperslab). Uses the C API: it reports errors by return value, which
// keeps every failure a catchable exception instead of a printed stack.
#include <hdf5.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace kvscope::trace::h5 {

// Bounds of what one read may allocate, whatever the file says (reads of damaged files fail with
// Error instead of allocating gigabytes): one slab, one fixed-length string, one string list.
inline constexpr uint64_t kMaxReadBytes = uint64_t{1} << 30;
inline constexpr size_t kMaxStringBytes = size_t{1} << 20;
inline constexpr uint64_t kMaxStrings = uint64_t{1} << 20;

// An HDF5 failure, with the innermost messages of the HDF5 error stack.
class Error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Turns off HDF5's automatic error printing for the calling thread (stacks are per thread).
void silence_errors();
// "<what>: <HDF5 stack summary>", clearing the stack.
std::string error_message(const std::string& what);
[[noreturn]] void fail(const std::string& what);
inline hid_t check(hid_t id, const char* what) {
    if (id < 0) fail(what);
    return id;
}
inline void check_status(herr_t status, const char* what) {
    if (status < 0) fail(what);
}

// Closes an id the way Id::close does; false on failure. Use it for ids that were release()d.
bool close_id(hid_t id);

// Owns one hid_t and closes it (see close_id).
class Id {
  public:
    Id() = default;
    explicit Id(hid_t id) : id_(id) {}
    ~Id() { reset(); }
    Id(Id&& o) noexcept : id_(o.id_) { o.id_ = H5I_INVALID_HID; }
    Id& operator=(Id&& o) noexcept {
        if (this != &o) {
            reset();
            id_ = o.id_;
            o.id_ = H5I_INVALID_HID;
        }
        return *this;
    }
    Id(const Id&) = delete;
    Id& operator=(const Id&) = delete;
    hid_t get() const { return id_; }
    bool valid() const { return id_ >= 0; }
    void reset() { (void)close(); }
    // Closes the id (H5Dclose for datasets, else H5Idec_ref); false when HDF5 reports a failure,
    // e.g. a write error while flushing. The id is given up either way.
    bool close();
    hid_t release() {
        hid_t id = id_;
        id_ = H5I_INVALID_HID;
        return id;
    }

  private:
    hid_t id_ = H5I_INVALID_HID;
};

using Dims = std::vector<hsize_t>;

// Memory types used with the datasets (native byte order).
template <typename T>
hid_t native_type();

// A dataset held open with its current extent. Rows = first axis.
struct Dataset {
    Id id;
    Dims dims;
    hid_t mem_type = H5I_INVALID_HID;  // predefined type, not owned
    hsize_t row_elems() const;         // elements per row (product of dims[1..])
};

// Creates a chunked, deflate-compressed dataset; intermediate groups are created as needed.
// A zero-sized fixed axis is made unlimited so its chunk stays valid. fill: pointer to one
// element of file_type's native equivalent, or nullptr.
Dataset create_dataset(hid_t file, const std::string& name, hid_t mem_type, const Dims& dims,
                       const Dims& chunk, bool grows, int level, const void* fill);
// Creates a scalar (non-chunked) dataset holding one value.
Dataset create_scalar(hid_t file, const std::string& name, hid_t mem_type, const void* value);
// Appends n rows (n * row_elems elements) along axis 0.
void append_rows(Dataset& ds, const void* data, hsize_t n);
// Writes a hyperslab [start, start+count) from a contiguous buffer.
void write_slab(const Dataset& ds, const Dims& start, const Dims& count, const void* data);
void write_scalar(const Dataset& ds, const void* value);

// Opens an existing dataset; returns an invalid Dataset when it does not exist.
Dataset open_dataset(hid_t file, const std::string& name, hid_t mem_type);
bool link_exists(hid_t file, const std::string& name);
// Current extent (re-queried from the file).
Dims extent(hid_t dataset);
// Reads the hyperslab [start, start+count) into a contiguous buffer of mem_type.
void read_slab(hid_t dataset, hid_t mem_type, const Dims& start, const Dims& count, void* out);
// Reads sorted, non-overlapping 1-D row ranges [begin_i, begin_i+count_i), concatenated, into out
// (one enclosing slab when the ranges are close together, else one slab per range).
void read_ranges(hid_t dataset, hid_t mem_type, const std::vector<hsize_t>& begins,
                 const std::vector<hsize_t>& counts, void* out);
// H5T class of a dataset's stored type (H5T_INTEGER, H5T_FLOAT, H5T_STRING, ...).
H5T_class_t type_class(hid_t dataset);

// Attributes on the root group / an object.
void write_attr_string(hid_t obj, const std::string& name, const std::string& value);
template <typename T>
void write_attr(hid_t obj, const std::string& name, T value);
bool attr_exists(hid_t obj, const std::string& name);
std::string read_attr_string(hid_t obj, const std::string& name);
int64_t read_attr_int(hid_t obj, const std::string& name);

// UTF-8 strings (written before SWMR starts). Written as fixed-length, NUL-padded strings sized
// to the longest value, so a trace has no variable-length data: those live in HDF5's global heap
// ("GCOL" collections, no checksum), where every libhdf5 1.10.8 crash, hang and huge allocation
// found by fuzzing sits (issue 11). The readers also take the variable-length strings of version 1
// files; trace_probe.h opens files holding a global heap in a child process first.
void write_strings(hid_t file, const std::string& name, const std::vector<std::string>& v);
void write_string_scalar(hid_t file, const std::string& name, const std::string& value);
std::vector<std::string> read_strings(hid_t dataset);
std::string read_string_scalar(hid_t dataset);

}  // namespace kvscope::trace::h5
