#pragma once
// How an optional backend plugs into make_backend() without every program linking its libraries:
// the CUDA backend is an object library (kernels/cuda) whose cuda_backend.cpp registers itself at
// static-initialisation time. Programs that link it (the kvscope CLI, test_kernels) can make a
// CUDA backend; the rest (Studio, most tests) stay free of cuBLAS and see "not built with CUDA".
#include <memory>

#include "kernels/backend.h"

namespace kvscope {

struct BackendHooks {
    DeviceProbe (*probe)() = nullptr;
    std::unique_ptr<Backend> (*make)() = nullptr;
};

// Called once by the CUDA backend's registrar.
void register_cuda_backend(const BackendHooks& hooks);

}  // namespace kvscope
