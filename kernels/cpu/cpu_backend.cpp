// The CPU backend: host memory, synchronous execution, fp32 activations. Weights are borrowed
// (zero copy) from the mmapped checkpoint.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace kvscope {
namespace {

class CpuBackend final : public Backend {
  public:
    explicit CpuBackend(int threads)
        : pool_(threads > 0 ? threads
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))) {
    }

    std::string name() const override { return "cpu"; }
    std::string describe() const override {
        return "cpu (fp32, " + std::to_string(pool_.size()) + " threads)";
    }
    DeviceKind device() const override { return DeviceKind::cpu; }

    MemoryInfo memory() const override {
        std::lock_guard<std::mutex> lock(mu_);
        MemoryInfo m;
        m.in_use = in_use_;
        m.peak = peak_;
        return m;
    }
    double measure_copy_gbs(size_t bytes, int reps) override {
        std::vector<char> a(bytes, 1), b(bytes, 0);
        std::vector<double> secs;
        for (int r = 0; r < std::max(1, reps); ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            std::memcpy(b.data(), a.data(), bytes);
            secs.push_back(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            a[static_cast<size_t>(r) % bytes] = b[(static_cast<size_t>(r) * 7) % bytes];
        }
        std::sort(secs.begin(), secs.end());
        const double s = secs[secs.size() / 2];
        return s > 0 ? 2.0 * static_cast<double>(bytes) / s / 1e9 : 0.0;
    }

    Tensor alloc(DType dtype, std::initializer_list<int64_t> shape) override {
        Tensor t = make_tensor_view(nullptr, dtype, shape);
        const size_t bytes = t.bytes();
        t.data = bytes ? std::calloc(bytes, 1) : nullptr;
        if (bytes && !t.data) throw std::bad_alloc();
        if (t.data) {
            std::lock_guard<std::mutex> lock(mu_);
            sizes_[t.data] = bytes;
            in_use_ += static_cast<int64_t>(bytes);
            peak_ = std::max(peak_, in_use_);
        }
        return t;
    }
    void release(Tensor& t) override {
        if (t.data) {
            std::lock_guard<std::mutex> lock(mu_);
            auto it = sizes_.find(t.data);
            if (it != sizes_.end()) {
                in_use_ -= static_cast<int64_t>(it->second);
                sizes_.erase(it);
            }
        }
        std::free(t.data);
        t.data = nullptr;
    }
    Tensor upload_weight(const void* host, DType dtype,
                         std::initializer_list<int64_t> shape) override {
        return make_tensor_view(const_cast<void*>(host), dtype, shape);
    }
    void release_weight(Tensor& t) override { t.data = nullptr; }
    void to_host(const Tensor& src, float* dst) override {
        std::memcpy(dst, src.data, src.bytes());
    }
    void from_host(Tensor& dst, const float* src) override {
        std::memcpy(dst.data, src, dst.bytes());
    }
    void synchronize() override {}

    void embedding(const Tensor& table, const int32_t* ids, int64_t n, Tensor& out) override {
        cpu::embedding(table.data, table.dtype, table.dim(0), table.dim(1), ids, n,
                       out.as<float>());
    }
    void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
        const int64_t d = w.numel();
        cpu::rmsnorm(pool_, x.as<float>(), x.numel() / d, d, w.data, w.dtype, eps, out.as<float>());
    }
    void matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override {
        const int64_t k = w.dim(1), m = w.dim(0);
        const int64_t n = x.numel() / k;
        cpu::matmul(pool_, x.as<float>(), n, k, w.data, w.dtype, m, bias ? bias->data : nullptr,
                    bias ? bias->dtype : DType::f32, out.as<float>());
    }
    void rope(Tensor& x, const int64_t* positions, const float* inv_freq,
              RopePairs pairs) override {
        cpu::rope(pool_, x.as<float>(), x.dim(0), x.dim(1), x.dim(2), positions, inv_freq, pairs);
    }
    void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override {
        cpu::silu_mul(gate.as<float>(), up.as<float>(), gate.numel(), out.as<float>());
    }
    void add_inplace(Tensor& x, const Tensor& y) override {
        cpu::add_inplace(x.as<float>(), y.as<float>(), x.numel());
    }
    void attention(const AttentionArgs& a) override {
        cpu::attention(pool_, a.q->as<float>(), a.q->dim(0), a.q->dim(1), a.q->dim(2), a.q_pos,
                       a.kv, a.n_kv_heads, a.scale, a.out->as<float>(), a.stats);
    }

  private:
    cpu::ThreadPool pool_;
    mutable std::mutex mu_;
    std::unordered_map<void*, size_t> sizes_;
    int64_t in_use_ = 0, peak_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
    return std::make_unique<CpuBackend>(threads);
}

}  // namespace kvscope
