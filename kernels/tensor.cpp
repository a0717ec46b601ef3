#include "kernels/backend.h"

namespace kvscope {

Tensor make_tensor_view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                        DeviceKind dev) {
    Tensor t;
    t.dtype = dtype;
    t.data = data;
    t.device = dev;
    t.ndim = static_cast<int>(shape.size());
    size_t i = 0;
    for (int64_t s : shape) t.shape[i++] = s;
    return t;
}

}  // namespace kvscope
