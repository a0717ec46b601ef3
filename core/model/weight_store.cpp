#include <cstring>

#include "core/error.h"
#include "core/model/weights.h"

namespace kvscope {

const WeightTensor* WeightStore::find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

const WeightTensor& WeightStore::at(const std::string& name) const {
    const WeightTensor* t = find(name);
    if (!t) throw InputError("model has no tensor '" + name + "'");
    return *t;
}

void* WeightStore::own(std::vector<uint8_t> bytes) {
    owned_.push_back(std::make_unique<std::vector<uint8_t>>(std::move(bytes)));
    return owned_.back()->data();
}

void copy_as_f32(const WeightTensor& t, int64_t first, int64_t count, float* out) {
    if (first < 0 || count < 0 || first + count > t.numel())
        throw InputError(t.file, "tensor '" + t.name + "': elements [" + std::to_string(first) +
                                     ", " + std::to_string(first + count) + ") out of range");
    const auto* base = static_cast<const uint8_t*>(t.data);
    switch (t.dtype) {
        case DType::kF32:
            if (count > 0) std::memcpy(out, base + first * 4, static_cast<size_t>(count) * 4);
            return;
        case DType::kF16:
        case DType::kBf16:
            for (int64_t i = 0; i < count; ++i) {
                uint16_t h;
                std::memcpy(&h, base + (first + i) * 2, 2);
                out[i] = t.dtype == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h);
            }
            return;
        default:
            throw InputError(t.file, "tensor '" + t.name + "' has dtype " + dtype_name(t.dtype) +
                                         ", expected F32, F16 or BF16");
    }
}

}  // namespace kvscope
