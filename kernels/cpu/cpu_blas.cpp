// Run-time loading of OpenBLAS's cblas_sgemm (see cpu_blas.h for why dlopen).
#include "kernels/cpu/cpu_blas.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace kvscope::cpu {

const BlasApi* blas_api() {
    static BlasApi api;
    static bool ok = false;
    static std::once_flag once;
    std::call_once(once, [] {
        const char* env = std::getenv("KVSCOPE_CPU_BLAS");
        if (env && (std::string(env) == "0" || std::string(env) == "off")) return;
        // libopenblas.so.0: Debian's libopenblas0-pthread (or -openmp / -serial) via alternatives.
        void* lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
        if (!lib) return;
        api.sgemm = reinterpret_cast<decltype(api.sgemm)>(dlsym(lib, "cblas_sgemm"));
        if (!api.sgemm) return;
        using SetThreads = void (*)(int);
        if (auto set = reinterpret_cast<SetThreads>(dlsym(lib, "openblas_set_num_threads"))) set(1);
        api.name = "OpenBLAS";
        using GetConfig = const char* (*)();
        if (auto cfg = reinterpret_cast<GetConfig>(dlsym(lib, "openblas_get_config"))) {
            // "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64": keep name + version.
            const std::string s = cfg();
            const size_t sp = s.find(' ', s.find(' ') + 1);
            api.name = s.substr(0, sp);
        }
        ok = true;
    });
    return ok ? &api : nullptr;
}

}  // namespace kvscope::cpu
