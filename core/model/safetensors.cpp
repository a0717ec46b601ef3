#include "core/model/safetensors.h"

#include <memory>

#include "core/error.h"
#include "core/model/json_fields.h"

namespace kvscope {

namespace fs = std::filesystem;
using nlohmann::json;

std::optional<DType> safetensors_dtype(std::string_view name) {
    if (name == "F32") return DType::kF32;
    if (name == "F16") return DType::kF16;
    if (name == "BF16") return DType::kBf16;
    return std::nullopt;
}

namespace {

// Per-dimension cap: 2^40 elements in one dimension and the product checked below keep all byte
// counts representable in int64 (any real tensor is far below).
constexpr int64_t kMaxDim = int64_t{1} << 40;

WeightTensor parse_entry(const std::string& name, const json& e, const uint8_t* data,
                         uint64_t data_size, const fs::path& file) {
    const std::string what = "tensor '" + name + "'";
    if (!e.is_object())
        throw InputError(file, what + ": header entry must be an object, got " + json_type_name(e));
    WeightTensor t;
    t.name = name;
    t.file = file;

    auto dt_it = e.find("dtype");
    if (dt_it == e.end() || !dt_it->is_string())
        throw InputError(file, what + ": missing or non-string 'dtype'");
    const std::string dt = dt_it->get<std::string>();
    auto dtype = safetensors_dtype(dt);
    if (!dtype)
        throw InputError(file, what + " has unsupported dtype " + dt +
                                   " (only F32, F16 and BF16 weights are supported)");
    t.dtype = *dtype;

    auto sh_it = e.find("shape");
    if (sh_it == e.end() || !sh_it->is_array())
        throw InputError(file, what + ": missing or non-array 'shape'");
    if (sh_it->size() > 8) throw InputError(file, what + ": shape has more than 8 dimensions");
    int64_t numel = 1;
    for (size_t i = 0; i < sh_it->size(); ++i) {
        const int64_t d =
            json_value_int((*sh_it)[i], file, what + " shape[" + std::to_string(i) + "]");
        if (d < 0) throw InputError(file, what + " has a negative dimension " + std::to_string(d));
        if (d > kMaxDim)
            throw InputError(file, what + " has an absurd dimension " + std::to_string(d));
        if (d != 0 && numel > (int64_t{1} << 56) / d)
            throw InputError(file, what + ": element count overflows");
        numel *= d;
        t.shape.push_back(d);
    }

    auto off_it = e.find("data_offsets");
    if (off_it == e.end() || !off_it->is_array() || off_it->size() != 2)
        throw InputError(file, what + ": 'data_offsets' must be a list [begin, end]");
    const int64_t begin = json_value_int((*off_it)[0], file, what + " data_offsets[0]");
    const int64_t end = json_value_int((*off_it)[1], file, what + " data_offsets[1]");
    if (begin < 0 || end < 0) throw InputError(file, what + " has negative data_offsets");
    if (end < begin)
        throw InputError(file, what + " has data_offsets end " + std::to_string(end) + " < begin " +
                                   std::to_string(begin));
    if (static_cast<uint64_t>(end) > data_size)
        throw InputError(file, what + " has data_offsets [" + std::to_string(begin) + ", " +
                                   std::to_string(end) + "] beyond the end of the data (" +
                                   std::to_string(data_size) + " bytes; file truncated?)");
    const int64_t expect = numel * static_cast<int64_t>(dtype_size(t.dtype));
    if (end - begin != expect)
        throw InputError(file, what + ": data_offsets span " + std::to_string(end - begin) +
                                   " bytes but shape and dtype " + dt + " need " +
                                   std::to_string(expect));
    t.data = data + begin;
    return t;
}

}  // namespace

std::vector<WeightTensor> parse_safetensors(const uint8_t* bytes, size_t size,
                                            const fs::path& file) {
    if (size < 8)
        throw InputError(file, "too short for a safetensors file (" + std::to_string(size) +
                                   " bytes; the header length alone takes 8)");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
    if (n > size - 8)
        throw InputError(file, "header length " + std::to_string(n) + " exceeds the file size (" +
                                   std::to_string(size) + " bytes; truncated or not safetensors?)");
    if (n > kMaxSafetensorsHeader)
        throw InputError(file, "absurd header length " + std::to_string(n) + " (limit " +
                                   std::to_string(kMaxSafetensorsHeader) + " bytes)");
    const char* hb = reinterpret_cast<const char*>(bytes + 8);
    json header = parse_json_text(hb, hb + n, file);
    if (!header.is_object())
        throw InputError(file, "header must be a JSON object, got " + json_type_name(header));

    const uint8_t* data = bytes + 8 + n;
    const uint64_t data_size = size - 8 - n;
    std::vector<WeightTensor> out;
    out.reserve(header.size());
    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__") {
            if (!it->is_object() && !it->is_null())
                throw InputError(file, "'__metadata__' must be an object");
            continue;
        }
        out.push_back(parse_entry(it.key(), it.value(), data, data_size, file));
    }
    return out;
}

std::vector<std::string> load_safetensors_into(const fs::path& file, WeightStore& store) {
    auto mapped = std::make_shared<MappedFile>(file);
    std::vector<WeightTensor> tensors = parse_safetensors(mapped->data(), mapped->size(), file);
    std::vector<std::string> names;
    names.reserve(tensors.size());
    for (auto& t : tensors) {
        if (const WeightTensor* prev = store.find(t.name))
            throw InputError(file, "tensor '" + t.name + "' is also in " + prev->file.string());
        const size_t align = dtype_size(t.dtype);
        if (reinterpret_cast<uintptr_t>(t.data) % align != 0) {
            const auto* p = static_cast<const uint8_t*>(t.data);
            t.data = store.own(
                std::vector<uint8_t>(p, p + static_cast<size_t>(t.numel()) * dtype_size(t.dtype)));
        }
        names.push_back(t.name);
        store.add(std::move(t));
    }
    store.keep_alive(std::move(mapped));
    return names;
}

}  // namespace kvscope
