// cuBLAS, loaded at run time (dlopen) the first time a CUDA backend is made. Linking libcublas
// directly made every start of kvscope load ~600 MB of cuBLAS/cuBLASLt (about 0.5 s, paid by
// `kvscope --version` and every CPU-only run); now only runs that use CUDA pay it, and a missing
// or wrong libcublas becomes a clear "needed / found" message instead of a loader error.
#include <dlfcn.h>

#include <mutex>
#include <string>

#include "kernels/cuda/cuda_common.h"

#ifndef KVSCOPE_CUBLAS_DIR
#define KVSCOPE_CUBLAS_DIR ""
#endif

namespace kvscope::cuda {
namespace {

template <class F>
bool load_sym(void* lib, const char* name, F& fn, std::string& why) {
    fn = reinterpret_cast<F>(dlsym(lib, name));
    if (!fn) why = std::string("libcublas has no symbol ") + name;
    return fn != nullptr;
}

}  // namespace

const CublasApi* cublas_api(std::string* why_not) {
    static CublasApi api;
    static std::string why;
    static std::once_flag once;
    std::call_once(once, [] {
        const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
        void* lib = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
        std::string first_error = lib ? "" : dlerror();
        if (!lib &&
            !std::string(KVSCOPE_CUBLAS_DIR).empty()) {  // the toolkit found at configure time
            const std::string p = std::string(KVSCOPE_CUBLAS_DIR) + "/" + soname;
            lib = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
        }
        if (!lib) {
            why = soname + " could not be loaded (" + first_error +
                  "); put CUDA 13's cuBLAS on LD_LIBRARY_PATH";
            return;
        }
        bool ok = load_sym(lib, "cublasCreate_v2", api.create, why) &&
                  load_sym(lib, "cublasDestroy_v2", api.destroy, why) &&
                  load_sym(lib, "cublasSetStream_v2", api.set_stream, why) &&
                  load_sym(lib, "cublasGemmEx", api.gemm_ex, why) &&
                  load_sym(lib, "cublasGetStatusString", api.status_string, why);
        api.loaded = ok;
    });
    if (!api.loaded && why_not) *why_not = why;
    return api.loaded ? &api : nullptr;
}

const char* cublas_status_string(cublasStatus_t st) {
    const CublasApi* api = cublas_api(nullptr);
    return api ? api->status_string(st) : "cuBLAS error";
}

}  // namespace kvscope::cuda
