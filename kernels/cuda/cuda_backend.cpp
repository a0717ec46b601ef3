// The CUDA backend: device memory, cuBLAS handle, dispatch to the kernel files (one family per
// file: cuda_embedding.cu, cuda_rmsnorm.cu, cuda_rope.cu, cuda_elementwise.cu, cuda_matmul.cu,
// cuda_attention.cu). Registers itself with make_backend() (kernels/backend_registry.h).
//
// Step one of issue 9 (what this file does today, and what comes next):
// - Weights are uploaded once (cudaMalloc + cudaMemcpy) and freed in the destructor. They keep
//   their dtype (bf16/fp16/fp32); KVSCOPE_CUDA_MATH=fp32 converts them to fp32 at upload (the
//   "fp32 mode" the golden-logit check at 1e-4 uses).
// - Activations (alloc()) must be readable on the host, and every op synchronises before it
//   returns, because the engine still reads and writes some of them there (it appends the new K/V
//   to the host KV cache, the DMC control neurons). By default they are pinned host memory mapped
//   into the device's address space (cudaHostAlloc, zero-copy: kernels reach them over PCIe --
//   safe everywhere, slow for long prefills); KVSCOPE_CUDA_ACTIVATIONS=managed takes managed
//   memory instead (pages migrate; never more than the device has free, which is checked: the
//   GPU machines' notes warn that oversubscribed managed memory can hang the GPU). Next step:
//   backend-owned K/V slot arrays per (layer, KV head) so the engine never touches device
//   memory; then ops stay asynchronous and activations move to plain cudaMalloc.
// - The KV cache is host memory (KVHeadView): attention() copies each KV head's K, V and
//   positions into device scratch on every call (O(cache) PCIe traffic per layer and step). The
//   backend-owned slot arrays above remove this copy.
// - Statistics (column sums, window/decode rows, LSE) are computed on the device and copied to
//   the caller's host buffers.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/backend_registry.h"
#include "kernels/cuda/cuda_common.h"

namespace kvscope::cuda {

void throw_cuda_error(const char* call, const char* what, int code, const char* file, int line) {
    throw std::runtime_error(std::string("CUDA error: ") + call +
                             " failed: " + (what ? what : "?") + " (code " + std::to_string(code) +
                             ") at " + file + ":" + std::to_string(line));
}

namespace {

constexpr int kMinMajor = 9;  // the build has sm_90 code only

std::string gib(double bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
    return buf;
}

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

// A device scratch buffer that only grows.
struct DevBuf {
    void* p = nullptr;
    size_t cap = 0;
    void* ensure(size_t bytes) {
        if (bytes <= cap) return p;
        if (p) KVS_CUDA_CHECK(cudaFree(p));
        p = nullptr;
        cap = 0;
        const size_t want = std::max<size_t>(bytes, 256);
        KVS_CUDA_CHECK(cudaMalloc(&p, want));
        cap = want;
        return p;
    }
    void free_now() noexcept {
        if (p) (void)cudaFree(p);
        p = nullptr;
        cap = 0;
    }
};

class CudaBackend final : public Backend {
  public:
    CudaBackend() {
        KVS_CUDA_CHECK(cudaSetDevice(0));
        KVS_CUDA_CHECK(cudaGetDeviceProperties(&prop_, 0));
        KVS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        std::string why;
        api_ = cublas_api(&why);
        if (!api_) throw std::runtime_error("the CUDA backend needs cuBLAS: " + why);
        KVS_CUBLAS_CHECK(api_->create(&blas_));
        KVS_CUBLAS_CHECK(api_->set_stream(blas_, stream_));
        const char* math = std::getenv("KVSCOPE_CUDA_MATH");
        fp32_weights_ = math && std::string(math) == "fp32";
        const char* act = std::getenv("KVSCOPE_CUDA_ACTIVATIONS");
        managed_activations_ = act && std::string(act) == "managed";
    }
    ~CudaBackend() override {
        // Never throws: report and go on freeing.
        (void)cudaStreamSynchronize(stream_);
        for (auto& [ptr, a] : owned_) free_alloc(ptr, a.kind);
        owned_.clear();
        for (DevBuf* b : {&ids_, &pos_, &invf_, &xcast_, &kv_k_, &kv_v_, &kv_pos_, &kv_meta_,
                          &qpos_, &lse_, &colsum_, &rows_, &decode_})
            b->free_now();
        if (blas_) (void)api_->destroy(blas_);
        if (stream_) (void)cudaStreamDestroy(stream_);
    }

    std::string name() const override { return "cuda"; }
    std::string describe() const override {
        return "cuda: " + std::string(prop_.name) + ", compute capability " +
               std::to_string(prop_.major) + "." + std::to_string(prop_.minor) + ", " +
               gib(static_cast<double>(prop_.totalGlobalMem)) +
               (fp32_weights_ ? ", fp32 weights" : ", weights in their stored dtype") +
               (managed_activations_ ? ", managed activations" : ", pinned host activations");
    }
    DeviceKind device() const override { return DeviceKind::cuda; }

    MemoryInfo memory() const override {
        MemoryInfo m;
        {
            std::lock_guard<std::mutex> lock(mu_);
            m.in_use = in_use_;
            m.peak = peak_;
        }
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
            m.device_free = static_cast<int64_t>(free_b);
            m.device_total = static_cast<int64_t>(total_b);
        } else {
            (void)cudaGetLastError();
        }
        return m;
    }

    double measure_copy_gbs(size_t bytes, int reps) override {
        void *a = nullptr, *b = nullptr;
        KVS_CUDA_CHECK(cudaMalloc(&a, bytes));
        try {
            KVS_CUDA_CHECK(cudaMalloc(&b, bytes));
            KVS_CUDA_CHECK(cudaMemsetAsync(a, 1, bytes, stream_));
            cudaEvent_t e0, e1;
            KVS_CUDA_CHECK(cudaEventCreate(&e0));
            KVS_CUDA_CHECK(cudaEventCreate(&e1));
            std::vector<float> ms;
            for (int r = -1; r < std::max(1, reps); ++r) {  // r = -1: warm-up
                KVS_CUDA_CHECK(cudaEventRecord(e0, stream_));
                KVS_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream_));
                KVS_CUDA_CHECK(cudaEventRecord(e1, stream_));
                KVS_CUDA_CHECK(cudaEventSynchronize(e1));
                float t = 0;
                KVS_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
                if (r >= 0) ms.push_back(t);
            }
            (void)cudaEventDestroy(e0);
            (void)cudaEventDestroy(e1);
            KVS_CUDA_CHECK(cudaFree(b));
            KVS_CUDA_CHECK(cudaFree(a));
            std::sort(ms.begin(), ms.end());
            const double s = ms[ms.size() / 2] / 1e3;
            return s > 0 ? 2.0 * static_cast<double>(bytes) / s / 1e9 : 0.0;
        } catch (...) {
            (void)cudaFree(b);
            (void)cudaFree(a);
            throw;
        }
    }

    // ---- memory ------------------------------------------------------------------------------
    Tensor alloc(DType dtype, std::initializer_list<int64_t> shape) override {
        Tensor t = make_tensor_view(nullptr, dtype, shape, DeviceKind::cuda);
        const size_t bytes = t.bytes();
        if (bytes == 0) return t;
        void* p = nullptr;
        if (managed_activations_) {
            size_t free_b = 0, total_b = 0;
            KVS_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
            if (bytes + (size_t{1} << 30) > free_b)  // keep 1 GiB: never oversubscribe managed
                check_alloc(cudaErrorMemoryAllocation, bytes, "activations (managed)");
            check_alloc(cudaMallocManaged(&p, bytes), bytes, "activations (managed)");
            track(p, bytes, Kind::managed);
            KVS_CUDA_CHECK(cudaMemset(p, 0, bytes));
        } else {
            check_alloc(cudaHostAlloc(&p, bytes, cudaHostAllocMapped | cudaHostAllocPortable),
                        bytes, "activations (pinned host)");
            track(p, bytes, Kind::pinned);
            std::memset(p, 0, bytes);
        }
        t.data = p;
        return t;
    }
    void release(Tensor& t) override {
        if (!t.data) return;
        Alloc a;
        {
            std::lock_guard<std::mutex> lock(mu_);
            auto it = owned_.find(t.data);
            if (it == owned_.end())
                throw std::runtime_error("cuda backend: release() of memory it does not own");
            a = it->second;
            owned_.erase(it);
            in_use_ -= static_cast<int64_t>(a.bytes);
        }
        KVS_CUDA_CHECK(cudaStreamSynchronize(stream_));
        if (a.kind == Kind::pinned)
            KVS_CUDA_CHECK(cudaFreeHost(t.data));
        else
            KVS_CUDA_CHECK(cudaFree(t.data));
        t.data = nullptr;
    }
    Tensor upload_weight(const void* host, DType dtype,
                         std::initializer_list<int64_t> shape) override {
        Tensor t = make_tensor_view(nullptr, dtype, shape, DeviceKind::cuda);
        const size_t bytes = t.bytes();
        if (bytes == 0) return t;
        void* raw = nullptr;
        check_alloc(cudaMalloc(&raw, bytes), bytes, "weights");
        try {
            KVS_CUDA_CHECK(cudaMemcpy(raw, host, bytes, cudaMemcpyHostToDevice));
        } catch (...) {
            (void)cudaFree(raw);
            throw;
        }
        if (!fp32_weights_ || dtype == DType::f32 ||
            (dtype != DType::f16 && dtype != DType::bf16)) {
            track(raw, bytes, Kind::device);
            t.data = raw;
            return t;
        }
        Tensor f = make_tensor_view(nullptr, DType::f32, shape, DeviceKind::cuda);
        void* conv = nullptr;
        try {
            check_alloc(cudaMalloc(&conv, f.bytes()), f.bytes(), "fp32 weights");
            convert_to_f32(raw, dtype, t.numel(), static_cast<float*>(conv), stream_);
            KVS_CUDA_CHECK(cudaStreamSynchronize(stream_));
        } catch (...) {
            (void)cudaFree(raw);
            if (conv) (void)cudaFree(conv);
            throw;
        }
        KVS_CUDA_CHECK(cudaFree(raw));
        track(conv, f.bytes(), Kind::device);
        f.data = conv;
        return f;
    }
    void release_weight(Tensor& t) override { release(t); }
    void to_host(const Tensor& src, float* dst) override {
        KVS_CUDA_CHECK(cudaStreamSynchronize(stream_));
        KVS_CUDA_CHECK(cudaMemcpy(dst, src.data, src.bytes(), cudaMemcpyDefault));
    }
    void from_host(Tensor& dst, const float* src) override {
        KVS_CUDA_CHECK(cudaStreamSynchronize(stream_));
        KVS_CUDA_CHECK(cudaMemcpy(dst.data, src, dst.bytes(), cudaMemcpyDefault));
    }
    void synchronize() override { KVS_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

    // ---- ops ---------------------------------------------------------------------------------
    void embedding(const Tensor& table, const int32_t* ids, int64_t n, Tensor& out) override {
        const int32_t* dids = stage(ids_, ids, static_cast<size_t>(n));
        cuda::embedding(table.data, table.dtype, table.dim(0), table.dim(1), dids, n,
                        out.as<float>(), stream_);
        done();
    }
    void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
        const int64_t d = w.numel();
        cuda::rmsnorm(x.as<float>(), x.numel() / d, d, w.data, w.dtype, eps, out.as<float>(),
                      stream_);
        done();
    }
    void matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override {
        const int64_t k = w.dim(1), m = w.dim(0);
        const int64_t n = x.numel() / k;
        void* xc = w.dtype == DType::f32 ? nullptr : xcast_.ensure(static_cast<size_t>(n * k) * 2);
        cuda::matmul(blas_, x.as<float>(), n, k, w.data, w.dtype, m, bias ? bias->data : nullptr,
                     bias ? bias->dtype : DType::f32, out.as<float>(), xc, stream_);
        done();
    }
    void rope(Tensor& x, const int64_t* positions, const float* inv_freq,
              RopePairs pairs) override {
        const int64_t n = x.dim(0), hd = x.dim(2);
        const int64_t* dpos = stage(pos_, positions, static_cast<size_t>(n));
        const float* dinv = stage(invf_, inv_freq, static_cast<size_t>(hd / 2));
        cuda::rope(x.as<float>(), n, x.dim(1), hd, dpos, dinv, pairs, stream_);
        done();
    }
    void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override {
        cuda::silu_mul(gate.as<float>(), up.as<float>(), gate.numel(), out.as<float>(), stream_);
        done();
    }
    void add_inplace(Tensor& x, const Tensor& y) override {
        cuda::add_inplace(x.as<float>(), y.as<float>(), x.numel(), stream_);
        done();
    }
    void attention(const AttentionArgs& args) override;

  private:
    void check_alloc(cudaError_t e, size_t bytes, const char* what) {
        if (e == cudaSuccess) return;
        (void)cudaGetLastError();
        if (e == cudaErrorMemoryAllocation) {
            const MemoryInfo m = memory();
            throw std::runtime_error(std::string("the model does not fit in device memory: ") +
                                     what + " need " + gib(static_cast<double>(bytes)) + " more; " +
                                     prop_.name + " has " +
                                     gib(static_cast<double>(m.device_free)) + " free of " +
                                     gib(static_cast<double>(m.device_total)) + " (kvscope holds " +
                                     gib(static_cast<double>(m.in_use)) + ")");
        }
        throw_cuda_error("cudaMalloc", cudaGetErrorString(e), static_cast<int>(e), __FILE__,
                         __LINE__);
    }
    enum class Kind { device, managed, pinned };
    struct Alloc {
        size_t bytes = 0;
        Kind kind = Kind::device;
    };
    static void free_alloc(void* p, Kind k) noexcept {
        if (k == Kind::pinned)
            (void)cudaFreeHost(p);
        else
            (void)cudaFree(p);
    }
    void track(void* p, size_t bytes, Kind kind) {
        std::lock_guard<std::mutex> lock(mu_);
        owned_[p] = Alloc{bytes, kind};
        in_use_ += static_cast<int64_t>(bytes);
        peak_ = std::max(peak_, in_use_);
    }
    // Host array -> device scratch (synchronous from pageable memory).
    template <class T>
    const T* stage(DevBuf& buf, const T* host, size_t count) {
        T* d = static_cast<T*>(buf.ensure(count * sizeof(T)));
        if (count)
            KVS_CUDA_CHECK(cudaMemcpyAsync(d, host, count * sizeof(T), cudaMemcpyDefault, stream_));
        return d;
    }
    // Step one: the engine reads activations on the host between ops (see the file comment).
    void done() { KVS_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

    cudaDeviceProp prop_{};
    cudaStream_t stream_ = nullptr;
    const CublasApi* api_ = nullptr;
    cublasHandle_t blas_ = nullptr;
    bool fp32_weights_ = false;
    bool managed_activations_ = false;
    mutable std::mutex mu_;
    std::unordered_map<void*, Alloc> owned_;
    int64_t in_use_ = 0, peak_ = 0;
    DevBuf ids_, pos_, invf_, xcast_, kv_k_, kv_v_, kv_pos_, kv_meta_, qpos_, lse_, colsum_, rows_,
        decode_;
};

void CudaBackend::attention(const AttentionArgs& args) {
    const int64_t n = args.q->dim(0), H = args.q->dim(1), d = args.q->dim(2);
    const int64_t G = args.n_kv_heads;
    // 1. Pack the KV heads' K, V and positions one after another in device scratch.
    std::vector<int64_t> meta(static_cast<size_t>(2 * G));  // offsets, then lengths
    int64_t total = 0, max_len = 0;
    for (int64_t g = 0; g < G; ++g) {
        meta[static_cast<size_t>(g)] = total;
        meta[static_cast<size_t>(G + g)] = args.kv[g].len;
        total += args.kv[g].len;
        max_len = std::max(max_len, args.kv[g].len);
    }
    const size_t kv_bytes = static_cast<size_t>(std::max<int64_t>(total, 1) * d) * sizeof(float);
    auto* dk = static_cast<float*>(kv_k_.ensure(kv_bytes));
    auto* dv = static_cast<float*>(kv_v_.ensure(kv_bytes));
    auto* dpos = static_cast<int64_t*>(
        kv_pos_.ensure(static_cast<size_t>(std::max<int64_t>(total, 1)) * sizeof(int64_t)));
    for (int64_t g = 0; g < G; ++g) {
        const KVHeadView& kv = args.kv[g];
        if (kv.len == 0) continue;
        const int64_t off = meta[static_cast<size_t>(g)];
        const size_t b = static_cast<size_t>(kv.len * d) * sizeof(float);
        KVS_CUDA_CHECK(cudaMemcpyAsync(dk + off * d, kv.k, b, cudaMemcpyDefault, stream_));
        KVS_CUDA_CHECK(cudaMemcpyAsync(dv + off * d, kv.v, b, cudaMemcpyDefault, stream_));
        KVS_CUDA_CHECK(cudaMemcpyAsync(dpos + off, kv.pos,
                                       static_cast<size_t>(kv.len) * sizeof(int64_t),
                                       cudaMemcpyDefault, stream_));
    }
    const int64_t* dmeta = stage(kv_meta_, meta.data(), meta.size());

    AttentionDev a;
    a.q = args.q->as<float>();
    a.q_pos = stage(qpos_, args.q_pos, static_cast<size_t>(n));
    a.k = dk;
    a.v = dv;
    a.kpos = dpos;
    a.kv_off = dmeta;
    a.kv_len = dmeta + G;
    a.n = n;
    a.H = H;
    a.G = G;
    a.d = d;
    a.max_len = max_len;
    a.scale = args.scale;
    a.out = args.out->as<float>();
    a.lse = static_cast<float*>(lse_.ensure(static_cast<size_t>(H * n) * sizeof(float)));

    // 2. What the caller asked for.
    const AttentionStats* st = args.stats;
    auto any = [](const std::vector<float*>& v) {
        return std::any_of(v.begin(), v.end(), [](float* p) { return p != nullptr; });
    };
    const bool want_colsum = st && any(st->colsum);
    const int64_t n_tail = st ? std::min(st->n_rows_tail, n) : 0;
    const bool want_rows = st && n_tail > 0 && any(st->rows);
    const bool want_lse = st && any(st->lse);
    const int64_t ld = std::max<int64_t>(max_len, 1);
    float* dcol =
        want_colsum
            ? static_cast<float*>(colsum_.ensure(static_cast<size_t>(H * ld) * sizeof(float)))
            : nullptr;
    float* drows = want_rows ? static_cast<float*>(rows_.ensure(
                                   static_cast<size_t>(H * n_tail * ld) * sizeof(float)))
                             : nullptr;

    // Rows of keys a whole query tile cannot see are skipped by the kernels: they stay 0.
    if (want_rows)
        KVS_CUDA_CHECK(cudaMemsetAsync(
            drows, 0, static_cast<size_t>(H * n_tail * ld) * sizeof(float), stream_));

    // 3. Kernels.
    if (n <= kDecodeMaxRows) {
        void* scratch = decode_.ensure(attention_decode_scratch_bytes(a));
        attention_decode(a, scratch, dcol, drows, n_tail, stream_);
    } else {
        attention_prefill(a, stream_);
        if (want_colsum)
            attention_probs(a, 0, dcol, drows, n_tail, stream_);
        else if (want_rows)
            attention_probs(a, n - n_tail, nullptr, drows, n_tail, stream_);
    }
    done();

    // 4. Statistics back to the caller's host buffers (colsum accumulates, as on the CPU).
    const int64_t group = H / G;
    if (want_colsum) {
        std::vector<float> h_col(static_cast<size_t>(H * ld));
        KVS_CUDA_CHECK(
            cudaMemcpy(h_col.data(), dcol, h_col.size() * sizeof(float), cudaMemcpyDeviceToHost));
        for (int64_t h = 0; h < H; ++h) {
            float* dst = st->colsum[static_cast<size_t>(h)];
            if (!dst) continue;
            const int64_t len = args.kv[h / group].len;
            for (int64_t j = 0; j < len; ++j) dst[j] += h_col[static_cast<size_t>(h * ld + j)];
        }
    }
    if (want_rows) {
        std::vector<float> h_rows(static_cast<size_t>(H * n_tail * ld));
        KVS_CUDA_CHECK(cudaMemcpy(h_rows.data(), drows, h_rows.size() * sizeof(float),
                                  cudaMemcpyDeviceToHost));
        for (int64_t h = 0; h < H; ++h) {
            float* dst = st->rows[static_cast<size_t>(h)];
            if (!dst) continue;
            const int64_t len = args.kv[h / group].len;
            for (int64_t r = 0; r < n_tail; ++r)
                std::memcpy(dst + r * len, h_rows.data() + (h * n_tail + r) * ld,
                            static_cast<size_t>(len) * sizeof(float));
        }
    }
    if (want_lse) {
        std::vector<float> h_lse(static_cast<size_t>(H * n));
        KVS_CUDA_CHECK(
            cudaMemcpy(h_lse.data(), a.lse, h_lse.size() * sizeof(float), cudaMemcpyDeviceToHost));
        for (int64_t h = 0; h < H; ++h)
            if (float* dst = st->lse[static_cast<size_t>(h)])
                std::memcpy(dst, h_lse.data() + h * n, static_cast<size_t>(n) * sizeof(float));
    }
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
