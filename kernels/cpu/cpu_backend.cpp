// The CPU backend: host memory, synchronous execution, fp32 activations. Weights are borrowed
// (zero copy) from the mmapped checkpoint; with the fast kernels (the default), 2-D bf16 / f16
// weights are converted to f32 once at upload while the converted total stays under a cap
// (KVSCOPE_CPU_WEIGHT_CACHE_MB, default 2048: the demo model needs 68 MB; an 8B model would need
// 32 GB, so past the cap weights stay borrowed and matmul converts them in cache-sized blocks).
// KVSCOPE_CPU_KERNELS=reference: the reference loops only, weights converted on every call.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kernels/cpu/cpu_blas.h"
#include "kernels/cpu/cpu_ops.h"

namespace kvscope {
namespace {

class CpuBackend final : public Backend {
  public:
    explicit CpuBackend(int threads)
        : pool_(threads > 0 ? threads
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))) {
        const char* k = std::getenv("KVSCOPE_CPU_KERNELS");
        fast_ = !(k && std::string(k) == "reference");
        const char* cap = std::getenv("KVSCOPE_CPU_WEIGHT_CACHE_MB");
        if (cap && *cap) convert_cap_ = std::atoll(cap) * (int64_t{1} << 20);
        blas_ = fast_ ? cpu::blas_api() : nullptr;
    }
    ~CpuBackend() override {
        for (auto& [ptr, w] : converted_) std::free(w.f32);
    }

    std::string name() const override { return "cpu"; }
    std::string describe() const override {
        const std::string mm = !fast_  ? "reference kernels"
                               : blas_ ? blas_->name
                                       : "built-in loops";
        return "cpu (fp32, " + std::to_string(pool_.size()) + " threads, " + mm + ")";
    }
    DeviceKind device() const override { return DeviceKind::kCpu; }

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
        Tensor t = make_tensor_view(const_cast<void*>(host), dtype, shape);
        if (!fast_ || t.ndim != 2 || dtype == DType::kF32 || !host) return t;
        if (dtype != DType::kBf16 && dtype != DType::kF16) return t;
        std::lock_guard<std::mutex> lock(mu_);
        // The same bytes uploaded twice (a tied embedding / lm_head) share one copy.
        for (auto& [ptr, w] : converted_)
            if (w.host == host && w.numel == t.numel() && w.dtype == dtype) {
                ++w.refs;
                t.data = ptr;
                t.dtype = DType::kF32;
                return t;
            }
        const int64_t bytes = t.numel() * 4;
        if (converted_bytes_ + bytes > convert_cap_) return t;
        auto* f = static_cast<float*>(std::malloc(static_cast<size_t>(bytes)));
        if (!f) return t;
        const int64_t numel = t.numel();
        pool_.parallel_for(numel / 4096 + 1, [&](int64_t b0, int64_t b1) {
            const int64_t i0 = b0 * 4096, i1 = std::min(numel, b1 * 4096);
            if (i0 < i1)
                cpu::load_row_f32(static_cast<const uint8_t*>(host) + i0 * 2, dtype, i1 - i0,
                                  f + i0);
        });
        converted_[f] = Converted{host, dtype, numel, f, bytes, 1};
        converted_bytes_ += bytes;
        in_use_ += bytes;
        peak_ = std::max(peak_, in_use_);
        t.data = f;
        t.dtype = DType::kF32;
        return t;
    }
    void release_weight(Tensor& t) override {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = converted_.find(t.data);
        if (it != converted_.end() && --it->second.refs == 0) {
            converted_bytes_ -= it->second.bytes;
            in_use_ -= it->second.bytes;
            std::free(it->second.f32);
            converted_.erase(it);
        }
        t.data = nullptr;
    }
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
        const void* b = bias ? bias->data : nullptr;
        const DType bdt = bias ? bias->dtype : DType::kF32;
        if (fast_)
            cpu::matmul_fast(pool_, x.as<float>(), n, k, w.data, w.dtype, m, b, bdt,
                             out.as<float>());
        else
            cpu::matmul(pool_, x.as<float>(), n, k, w.data, w.dtype, m, b, bdt, out.as<float>());
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
        auto* fn = fast_ ? &cpu::attention_blocked : &cpu::attention;
        fn(pool_, a.q->as<float>(), a.q->dim(0), a.q->dim(1), a.q->dim(2), a.q_pos, a.kv,
           a.n_kv_heads, a.scale, a.out->as<float>(), a.stats);
    }

  private:
    struct Converted {
        const void* host;
        DType dtype;
        int64_t numel;
        float* f32;
        int64_t bytes;
        int refs;
    };
    cpu::ThreadPool pool_;
    bool fast_ = true;
    const cpu::BlasApi* blas_ = nullptr;
    int64_t convert_cap_ = int64_t{2048} << 20;
    int64_t converted_bytes_ = 0;
    std::unordered_map<void*, Converted> converted_;
    mutable std::mutex mu_;
    std::unordered_map<void*, size_t> sizes_;
    int64_t in_use_ = 0, peak_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
    return std::make_unique<CpuBackend>(threads);
}

}  // namespace kvscope
