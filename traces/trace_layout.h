#pragma once
// Internal to traces/: the table of every dataset of schema version 1 (name, dtype, shape in
// axis letters, units, meaning, when present). The writer creates the file from it, the reader
// validates against it, and the tests check that SCHEMA.md documents each entry.
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kvscope::trace {

// Axes of trace_schema.h. Growing axes (S, T, E, V, B) are always the first axis.
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

enum class Dtype : uint8_t { kInt8, kUInt8, kInt16, kInt32, kInt64, kFloat32, kString };

enum class Presence : uint8_t {
    kAlways,
    kWithSpans,          // n_spans > 0
    kWithAttentionRows,  // record_attention_rows
    kWithMaps,           // record_maps
    kOptional,           // written by current writers; older traces lack it (readers fall back)
};

struct DatasetSpec {
    const char* name;
    Dtype dtype;
    std::vector<Axis> shape;  // empty = scalar
    const char* units;
    const char* description;
    Presence presence = Presence::kAlways;
};

const std::vector<DatasetSpec>& dataset_specs();
const DatasetSpec& dataset_spec(const std::string& name);  // throws std::out_of_range

hid_t native_hdf5_type(Dtype t);  // predefined native type (not for kString)
const char* dtype_name(Dtype t);  // "int32", "float32", "str", ...
bool is_growing(Axis a);
std::string shape_string(const std::vector<Axis>& shape);  // "[L,H,P]", "scalar"

// Concrete sizes of the fixed axes of one trace.
struct AxisSizes {
    int64_t L = 0, H = 0, P = 0, K = 0, N = 0;
    int64_t fixed(Axis a) const;  // value of a fixed axis; throws for a growing one
};

}  // namespace kvscope::trace
