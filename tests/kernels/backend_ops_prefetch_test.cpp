// Backend::prefetch is a hint (kernels/cuda/cuda_prefetch.cu): the GEMVs after it must give the
// same bits as without it. A budget of 1 MiB (KVSCOPE_CUDA_PREFETCH=1) makes the CUDA backend
// take each of its three ways on these weights: a small weight fetched whole, a weight read in
// one GEMV wave fetched as the start of every row, a weight of more rows than a wave fetched as
// its first rows; plus a view that is not 16-byte aligned (skipped) and an empty list.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "tests/kernels/backend_ops_harness.h"

namespace kvscope::ops_test {
namespace {

struct Shape {
    DType dt;
    int64_t m, k;
};

// One-row GEMVs of every weight, then (second pass) the same after a prefetch of all of them.
std::vector<std::vector<float>> run_gemvs(Backend& be, bool with_prefetch) {
    const std::vector<Shape> shapes = {{DType::kF32, 24, 128},
                                       {DType::kBf16, 4096, 512},
                                       {DType::kF16, 40000, 64},
                                       {DType::kBf16, 8, 1024}};
    // The host copies outlive the scope: the CPU backend reads f32 weights where they are.
    std::vector<std::vector<float>> host(shapes.size());
    std::vector<std::vector<uint16_t>> stored(shapes.size());
    Scope s(be);
    std::vector<Tensor> W, X, O;
    for (size_t i = 0; i < shapes.size(); ++i) {
        const Shape& sh = shapes[i];
        const auto seed = static_cast<uint32_t>(4242 + 3 * i);
        host[i] = randn(seed, static_cast<size_t>(sh.m * sh.k), 0.05f);
        stored[i] = store_as(sh.dt, host[i]);
        W.push_back(s.weight(sh.dt == DType::kF32 ? static_cast<const void*>(host[i].data())
                                                  : static_cast<const void*>(stored[i].data()),
                             sh.dt, {sh.m, sh.k}));
        X.push_back(s.act(randn(seed + 1, static_cast<size_t>(sh.k)), {1, sh.k}));
        O.push_back(s.act({}, {1, sh.m}));
    }
    if (with_prefetch) {
        be.prefetch(nullptr, 0);
        const Tensor* three[3] = {&W[0], &W[1], &W[2]};
        be.prefetch(three, 3);
        // A view 2 bytes into the last weight: not 16-byte aligned, so nothing is asked for.
        Tensor odd = make_tensor_view(static_cast<char*>(W[3].data) + 2, DType::kBf16, {7, 1024},
                                      W[3].device);
        const Tensor* one[1] = {&odd};
        be.prefetch(one, 1);
    }
    std::vector<std::vector<float>> out;
    for (size_t i = 0; i < shapes.size(); ++i) {
        be.matmul(X[i], W[i], nullptr, O[i]);
        out.push_back(s.get(O[i]));
    }
    return out;
}

TEST(BackendOpsCuda, PrefetchChangesNoBits) {
    const DeviceProbe p = probe_cuda();
    if (!p.available) GTEST_SKIP() << "CUDA cases skipped: " << p.detail;
    const char* old = std::getenv("KVSCOPE_CUDA_PREFETCH");
    const std::string saved = old ? old : "";
    setenv("KVSCOPE_CUDA_PREFETCH", "1", 1);  // read when the backend is made
    auto dev = make_backend("cuda");
    if (old)
        setenv("KVSCOPE_CUDA_PREFETCH", saved.c_str(), 1);
    else
        unsetenv("KVSCOPE_CUDA_PREFETCH");
    const auto plain = run_gemvs(*dev, false);
    const auto fetched = run_gemvs(*dev, true);
    ASSERT_EQ(plain.size(), fetched.size());
    for (size_t i = 0; i < plain.size(); ++i) {
        SCOPED_TRACE("weight " + std::to_string(i));
        ASSERT_EQ(plain[i].size(), fetched[i].size());
        EXPECT_EQ(std::memcmp(plain[i].data(), fetched[i].data(), plain[i].size() * sizeof(float)),
                  0);
        for (float v : plain[i]) ASSERT_TRUE(std::isfinite(v));
    }
    EXPECT_EQ(dev->memory().in_use, 0);
}

// The CPU backend takes the hint and does nothing with it (Backend's default).
TEST(BackendOpsPrefetch, CpuBackendIgnoresTheHint) {
    auto cpu = make_cpu_backend(2);
    const auto plain = run_gemvs(*cpu, false);
    const auto fetched = run_gemvs(*cpu, true);
    EXPECT_EQ(plain, fetched);
}

// A budget that is not a number of MiB is refused when the backend is made, naming the variable.
TEST(BackendOpsCuda, PrefetchBudgetMustBeANumber) {
    const DeviceProbe p = probe_cuda();
    if (!p.available) GTEST_SKIP() << "CUDA cases skipped: " << p.detail;
    setenv("KVSCOPE_CUDA_PREFETCH", "lots", 1);
    try {
        auto dev = make_backend("cuda");
        ADD_FAILURE() << "a backend was made with KVSCOPE_CUDA_PREFETCH=lots";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("KVSCOPE_CUDA_PREFETCH"), std::string::npos)
            << e.what();
    }
    unsetenv("KVSCOPE_CUDA_PREFETCH");
}

}  // namespace
}  // namespace kvscope::ops_test
