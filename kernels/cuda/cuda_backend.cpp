// The CUDA backend's registration (make_backend("cuda"), kernels/backend_registry.h), its device
// probe and the CUDA error helper. The class is in cuda_backend.h; its KV-mirror update is in
// cuda_backend_mirror.cpp and its attention dispatch in cuda_backend_attention.cpp.
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>

#include "kernels/backend_registry.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.h"

namespace kvscope::cuda {

void throw_cuda_error(const char* call, const char* what, int code, const char* file, int line) {
    throw std::runtime_error(std::string("CUDA error: ") + call +
                             " failed: " + (what ? what : "?") + " (code " + std::to_string(code) +
                             ") at " + file + ":" + std::to_string(line));
}

namespace {

constexpr int kMinMajor = 9;  // the build has sm_90 code only

DeviceProbe probe_device() {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();  // clear the sticky error for later calls
        return {false, std::string("no usable NVIDIA GPU or driver (cudaGetDeviceCount: ") +
                           cudaGetErrorString(e) + ")"};
    }
    if (count <= 0) return {false, "no CUDA device (cudaGetDeviceCount returned 0)"};
    cudaDeviceProp p{};
    const cudaError_t e2 = cudaGetDeviceProperties(&p, 0);
    if (e2 != cudaSuccess) {
        (void)cudaGetLastError();
        return {false, std::string("device 0 could not be queried (cudaGetDeviceProperties: ") +
                           cudaGetErrorString(e2) + ")"};
    }
    const std::string who = std::string(p.name) + ", compute capability " +
                            std::to_string(p.major) + "." + std::to_string(p.minor);
    if (p.major < kMinMajor) return {false, who + " (below 9.0)"};
    std::string why;
    if (!cublas_api(&why)) return {false, who + ", but " + why};
    return {true, who + ", " + gib(static_cast<double>(p.totalGlobalMem))};
}

std::unique_ptr<Backend> make() {
    return std::make_unique<CudaBackend>();
}

const bool kRegistered = [] {
    register_cuda_backend(BackendHooks{&probe_device, &make});
    return true;
}();

}  // namespace
}  // namespace kvscope::cuda
