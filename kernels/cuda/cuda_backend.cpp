// The CUDA backend's registration (make_backend("cuda"), kernels/backend_registry.h), its device
// probe and the CUDA error helper. The class is in cuda_backend.h; its KV-mirror update is in
// cuda_backend_mirror.cpp and its attention dispatch in cuda_backend_attention.cpp.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
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

int64_t prefetch_budget() {
    const char* e = std::getenv("KVSCOPE_CUDA_PREFETCH");
    if (e == nullptr || *e == '\0') return 0;
    char* end = nullptr;
    const long long mib = std::strtoll(e, &end, 10);
    if (*end != '\0' || mib < 0 || mib > (1LL << 20))
        throw std::runtime_error(std::string("KVSCOPE_CUDA_PREFETCH: '") + e +
                                 "' is not a number of MiB (0 turns prefetching off)");
    return static_cast<int64_t>(mib) << 20;
}

// The budget is split evenly over the weights; one smaller than its share is fetched whole and
// leaves the rest to the others. A weight the GEMV reads in one wave (all rows side by side) gets
// the start of every row, so that every warp's first loads hit; a larger one its first rows,
// which the first wave reads (the later rows would be evicted before their turn).
void CudaBackend::prefetch(const Tensor* const* ws, int count) {
    count = std::min(count, kMaxPrefetchRanges);
    if (prefetch_bytes_ <= 0 || count < 1) return;
    int64_t share[kMaxPrefetchRanges] = {};
    bool done[kMaxPrefetchRanges] = {};
    int64_t left = prefetch_bytes_;
    int open = count;
    for (bool changed = true; changed && open > 0;) {
        changed = false;
        for (int i = 0; i < count; ++i) {
            const auto bytes = static_cast<int64_t>(ws[i]->bytes());
            if (done[i] || bytes > left / open) continue;
            share[i] = bytes;
            left -= bytes;
            done[i] = true;
            --open;
            changed = true;
        }
    }
    L2Range ranges[kMaxPrefetchRanges];
    int n = 0;
    for (int i = 0; i < count; ++i) {
        const Tensor& w = *ws[i];
        if (!done[i]) share[i] = left / open;
        if (w.data == nullptr || w.device != DeviceKind::kCuda || w.ndim != 2 || w.dim(0) < 1)
            continue;
        const auto bytes = static_cast<int64_t>(w.bytes());
        const int64_t rows = w.dim(0), row_bytes = bytes / rows;
        const auto d = static_cast<size_t>(w.dtype);
        if (d < 3 && wave_rows_[d] == 0)
            wave_rows_[d] = gemv_wave_rows(w.dtype, prop_.multiProcessorCount);
        if (share[i] >= bytes)
            ranges[n++] = L2Range{w.data, 1, 0, bytes};
        else if (d < 3 && rows <= wave_rows_[d])
            ranges[n++] = L2Range{w.data, rows, row_bytes, share[i] / rows};
        else
            ranges[n++] = L2Range{w.data, 1, 0, share[i]};
    }
    if (n == 0) return;
    prof::Scope ps = op_scope("prefetch");
    l2_prefetch(ranges, n, prop_.multiProcessorCount, stream_);
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
