#pragma once
// Internal to traces/: the table of every dataset of the trace schema (name, stored type, shape in
// axis letters, units, meaning, when present), defined once in trace_layout.cpp. It is the single
// source of a dataset's description: the writer creates the file from it (and stores units,
// description and shape as attributes of each dataset), the reader and the validator check a file
// against it, and traces/SCHEMA.md's dataset tables are its rows as schema_doc_row() writes them
// (trace_schema_doc_test fails, printing the expected row, when they differ).
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kvscope::trace {

// Axes of trace_schema.h. Growing axes (S, T, E, V, B) are always the first axis. The values are
// the schema's axis letters (SCHEMA.md, the "shape" attribute), not kCamelCase names.
// NOLINTBEGIN(readability-identifier-naming)
enum class Axis : char {
    L = 'L',
    H = 'H',
    P = 'P',
    K = 'K',
    N = 'N',
    S = 'S',
    T = 'T',
    E = 'E',
    V = 'V',
    B = 'B'
};
// NOLINTEND(readability-identifier-naming)

// Element type of a stored dataset. Not kvscope::DType (kernels/dtype.h): that one is the element
// type of weights and tensors (f16, bf16, no int16 / int64 / strings), in a library the trace
// format does not depend on; this one is the HDF5 element type a trace file holds.
enum class StoredType : uint8_t { kInt8, kUInt8, kInt16, kInt32, kInt64, kFloat32, kString };

enum class Presence : uint8_t {
    kAlways,
    kWithSpans,          // n_spans > 0
    kWithAttentionRows,  // record_attention_rows
    kWithMaps,           // record_maps
    kOptional,           // written by current writers; older traces lack it (readers fall back)
};

struct DatasetSpec {
    const char* name;
    StoredType dtype;
    std::vector<Axis> shape;  // empty = scalar
    const char* units;
    const char* description;
    Presence presence = Presence::kAlways;
};

const std::vector<DatasetSpec>& dataset_specs();
const DatasetSpec& dataset_spec(const std::string& name);  // throws std::out_of_range

hid_t native_hdf5_type(StoredType t);        // predefined native type (not for kString)
const char* stored_type_name(StoredType t);  // "int32", "float32", "str", ...
bool is_growing(Axis a);
std::string shape_string(const std::vector<Axis>& shape);  // "[L,H,P]", "scalar"

// Concrete sizes of the fixed axes of one trace.
struct AxisSizes {
    int64_t L = 0, H = 0, P = 0, K = 0, N = 0;
    int64_t fixed(Axis a) const;  // value of a fixed axis; throws for a growing one
};

// Whether a file with these axes and recording options holds the dataset (writer: creates it;
// reader: requires it). kOptional datasets count as present; a reader skips them when absent.
bool dataset_present(Presence p, const AxisSizes& sizes, bool attention_rows, bool maps);

// SCHEMA.md's table row of a dataset: "| `name` | dtype | shape | units | description |", the
// description followed by when the dataset exists (e.g. "(only when `record_maps` = 1)").
std::string schema_doc_row(const DatasetSpec& spec);

}  // namespace kvscope::trace
