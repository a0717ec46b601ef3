#pragma once
// A BLAS sgemm loaded at run time (dlopen), the way the CUDA backend loads cuBLAS: the CPU binary
// is also carried to machines without OpenBLAS, so a missing library means "use the built-in
// loops", never a loader error. Only OpenBLAS is tried: the generic libblas.so.3 / libcblas.so.3
// may be the unblocked reference BLAS; it has not been benchmarked against our loops yet (add it
// here only with a bench/bench_cpu_kernels row that shows it faster).
#include <string>

namespace kvscope::cpu {

enum BlasOrder { kRowMajor = 101 };
enum BlasTrans { kNoTrans = 111, kTrans = 112 };

struct BlasApi {
    // cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
    void (*sgemm)(int, int, int, int, int, int, float, const float*, int, const float*, int, float,
                  float*, int) = nullptr;
    std::string name;  // "OpenBLAS 0.3.21"
};

// The loaded BLAS, or nullptr when none is usable here or KVSCOPE_CPU_BLAS=0 / =off. Loaded once;
// its own threading is set to 1 thread: the CPU backend's pool splits the work (two pools
// fighting over 2 cores was slower than one).
const BlasApi* blas_api();

}  // namespace kvscope::cpu
