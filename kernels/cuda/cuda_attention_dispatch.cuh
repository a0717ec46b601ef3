#pragma once
// Host-side dispatch shared by the attention kernel files (cuda_attention.cu,
// cuda_attention_decode.cu): the head_dim instantiation a call takes and the shape checks every
// launcher makes first.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/cuda_common.h"

namespace kvscope::cuda {

// Calls f(std::integral_constant<int, DMAX>) for the smallest instantiated DMAX >= d.
template <class F>
void with_dmax(int64_t d, F&& f) {
    if (d <= 64)
        f(std::integral_constant<int, 64>{});
    else if (d <= 128)
        f(std::integral_constant<int, 128>{});
    else if (d <= kMaxHeadDim)
        f(std::integral_constant<int, 256>{});
    else
        throw std::runtime_error("cuda attention: head_dim " + std::to_string(d) +
                                 " is above the supported " + std::to_string(kMaxHeadDim));
}

inline void check_attention_shape(const AttentionDev& a) {
    if (a.G <= 0 || a.H % a.G != 0)
        throw std::runtime_error("cuda attention: query heads must be a multiple of KV heads");
    if (a.H > 65535 || a.n > 65535LL * 65535LL)
        throw std::runtime_error("cuda attention: too many heads or rows for the grid");
}

}  // namespace kvscope::cuda
