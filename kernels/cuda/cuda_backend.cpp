// The CUDA backend's registration (make_backend("cuda"), kernels/backend_registry.h), its device
// probe, the CUDA error helper and the prefetch hints' stream. The class is in cuda_backend.h; its
// KV-mirror update is in cuda_backend_mirror.cpp and its attention dispatch in
// cuda_backend_attention.cpp.
#include <algorithm>
#include <cstdint>
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

void CudaBackend::prefetch(PrefetchWindow window, const Tensor& w, const Tensor* w2) {
    if (prefetch_level_ < (window == PrefetchWindow::kLong ? 1 : 2)) return;
    const auto l2 = static_cast<uint64_t>(prop_.l2CacheSize);
    const uint64_t cap = window == PrefetchWindow::kLong ? l2 / 4 * 3 : l2 / 5;
    auto span = [&](const Tensor* t) {
        return t && t->device == DeviceKind::kCuda && t->data ? std::min<uint64_t>(t->bytes(), cap)
                                                              : uint64_t{0};
    };
    const uint64_t bytes = span(&w), bytes2 = span(w2);
    if (bytes == 0 && bytes2 == 0) return;
    prof::Scope ps = op_scope("prefetch");
    if (!prefetch_stream_) {
        int least = 0, greatest = 0;
        KVS_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
        KVS_CUDA_CHECK(
            cudaStreamCreateWithPriority(&prefetch_stream_, cudaStreamNonBlocking, least));
        KVS_CUDA_CHECK(cudaEventCreateWithFlags(&prefetch_ready_, cudaEventDisableTiming));
    }
    KVS_CUDA_CHECK(cudaEventRecord(prefetch_ready_, stream_));
    KVS_CUDA_CHECK(cudaStreamWaitEvent(prefetch_stream_, prefetch_ready_, 0));
    cuda::prefetch_l2(w.data, bytes, w2 ? w2->data : nullptr, bytes2, prefetch_stream_);
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
