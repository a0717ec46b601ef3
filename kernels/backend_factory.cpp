// make_backend(): picks the CPU or CUDA backend from a device name and checks, before any long
// work, that the device asked for can really be used.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>

#include "kernels/backend_registry.h"

namespace kvscope {
namespace {

BackendHooks& cuda_hooks() {
    static BackendHooks hooks;
    return hooks;
}

}  // namespace

void register_cuda_backend(const BackendHooks& hooks) {
    cuda_hooks() = hooks;
}

DeviceProbe probe_cuda() {
    const BackendHooks& h = cuda_hooks();
    if (!h.probe || !h.make)
        return {false,
                "this kvscope was built without the CUDA backend (it needs nvcc and the CUDA "
                "toolkit at configure time and -DKVSCOPE_BUILD_CUDA=ON)"};
    return h.probe();
}

std::unique_ptr<Backend> make_backend(const std::string& device, int threads) {
    if (device == "cpu") return make_cpu_backend(threads);
    if (device == "cuda" || device == "auto") {
        const DeviceProbe p = probe_cuda();
        if (p.available) return cuda_hooks().make();
        if (device == "auto") return make_cpu_backend(threads);
        throw std::runtime_error(
            "--device cuda needs the CUDA backend and an NVIDIA GPU of compute capability 9.0 or "
            "newer (this build has sm_90 code); found: " +
            p.detail + ". Use --device cpu (or auto) to run on the CPU");
    }
    throw std::invalid_argument("unknown device '" + device + "' (expected auto, cpu or cuda)");
}

std::string describe_device(const std::string& backend_name) {
    if (backend_name == "cuda") return "cuda: " + probe_cuda().detail;
    if (backend_name == "cpu")
        return "cpu: " + std::to_string(std::max(1u, std::thread::hardware_concurrency())) +
               " hardware threads";
    return backend_name;
}

}  // namespace kvscope
