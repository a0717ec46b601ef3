#pragma once
// The CUDA backend class (internal to kernels/cuda/): device memory, cuBLAS handle, dispatch to
// the kernel files (one family per file: cuda_embedding.cu, cuda_rmsnorm.cu, cuda_rope.cu,
// cuda_elementwise.cu, cuda_matmul.cu, cuda_gemv.cu, cuda_attention.cu, cuda_kv_mirror.cu).
// Its longer members live in cuda_backend_mirror.cpp (update_mirror) and
// cuda_backend_attention.cpp (attention); cuda_backend.cpp registers it with make_backend()
// (kernels/backend_registry.h).
//
// Issue 9, part 1 (the engine never touches device memory):
// - Weights are uploaded once and freed in the destructor. They keep their dtype (bf16/fp16/
//   fp32); KVSCOPE_CUDA_MATH=fp32 converts them to fp32 at upload (the "fp32 mode" the
//   golden-logit check at 1e-4 uses).
// - Activations (alloc()) are plain device memory. Ops only enqueue on one stream; to_host()
//   synchronises (the host reads the result), and so do attention() calls that return
//   statistics or read plain host views, release() and synchronize(). Nothing else waits.
// - Host data an op is given (ids, positions, inv_freq, query positions, from_host() sources,
//   KV rows) is copied at call time into a pinned staging ring and from there to the device
//   (the caller may change its buffer as soon as the call returns). The ring starts over after
//   each synchronisation; when full, it synchronises first. Device buffers that must grow while
//   queued work may still read them are retired and freed at the next synchronisation.
// - KV mirrors: the KV cache lives on the host (core/cache). For KVHeadViews that carry an edit
//   journal (kernels/kv_journal.h), the backend keeps a device copy of every (cache, layer) as
//   one slab: per KV head `cap` rows of K and V (f32, what the attention kernels read) and
//   positions, head g at rows [g*cap, g*cap + len), so AttentionDev's offsets/lengths address it
//   as before. Each attention call replays the heads' journals since the version the mirror
//   holds: appended and rewritten rows are uploaded, survivors of an eviction are gathered on
//   the device (through scratch: rows move towards the front, and a parallel in-place gather
//   would overwrite rows before they are read), and a head the log no longer reaches back for is
//   uploaded whole. The slab grows (by a quarter, at least 256 rows) when a head outgrows it.
//   forget_kv() frees a cache's slabs; memory() counts slabs and their scratch.
//   Mirrors are on by default since they passed the op tests on an H100 (bench/RESULTS.md, GPU,
//   second run); KVSCOPE_CUDA_KV_MIRROR=0 turns them off, and then every call copies every head
//   (the first version's path); plain views (no journal) always take that path.
// - Statistics (column sums, window/decode rows, LSE) are computed on the device and copied to
//   the caller's host buffers.
// - On by default since their op cases, golden models and policy parity passed on an H100
//   (2026-12-06, bench/RESULTS.md); =0 turns each off (switched_on()):
//   KVSCOPE_CUDA_NEW_ROWS: a call's new K/V rows (AttentionArgs::new_k / new_v) go into the
//   mirror within the device instead of through the host cache and the ring;
//   KVSCOPE_CUDA_DEFER: to_host_later() and deferred statistics (AttentionStats::deferred)
//   land in pinned memory and reach the caller at the next sync() or deliver_copies()
//   (cuda_host_copies.h).
// - KVSCOPE_CUDA_SIDE_COPIES (default on; =0 off): copies to the host of >= 8 MB go through a
//   device snapshot and a copy stream of their own, overlapping the next kernels (HostCopies).
// - KVSCOPE_CUDA_FUSED (default on; =0 off): a decode step's q/k/v projections in one GEMV launch,
//   gate/up/silu in one, RoPE of q and k in one, the residual add with the next norm
//   (Backend::matmul_parts, swiglu, rope_qk, add_rmsnorm).
// - KVSCOPE_CUDA_NORM_REGS (default on; =0 off): a norm's row kept in registers
//   (cuda_rmsnorm.cu); KVSCOPE_CUDA_DECODE_FUSED (opt-in, =1): decode attention in one launch
//   per layer, K/V rows read once per KV head (cuda_attention_decode.cu; slower so far);
//   KVSCOPE_CUDA_PDL (default on; =0 off): the decode path's kernels, the decode attention's
//   included since session 18, launched as programmatic dependents (cuda_device.cuh);
//   KVSCOPE_CUDA_INLINE_JOBS (default on; =0 off): a mirror update that stages nothing but a few
//   positions passes its row moves with the kernel (flush_inline()).
// - KVSCOPE_CUDA_FWD_WGMMA, KVSCOPE_CUDA_PROBS_WGMMA (default on; =0 off): the prefill
//   attention's forward and statistics pass on Hopper's wgmma (cuda_attention_wgmma.cu) where
//   they fit (head_dim 128, compute capability 9.0); FWD =2 / =3 select the forward's other
//   shapes. KVSCOPE_CUDA_WGMMA_VSWAP=1: a diagnostic of the V descriptor (wrong results).
// Next (issue 9): faster prefill attention kernels; bf16 K/V; CUDA graphs for small models.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kernels/backend_registry.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_host_copies.h"
#include "kernels/kv_journal.h"
#include "kernels/op_profile.h"

namespace kvscope::cuda {

inline std::string gib(double bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
    return buf;
}

// A device scratch buffer that only grows. A grown-out buffer may still be read by queued work:
// it is retired (freed at the backend's next synchronisation), never freed at once.
struct DevBuf {
    std::vector<void*>* retired = nullptr;
    void* p = nullptr;
    size_t cap = 0;
    void* ensure(size_t bytes) {
        if (bytes <= cap) return p;
        if (p) retired->push_back(p);
        p = nullptr;
        cap = 0;
        // Half again: buffers sized by the keys held grow by a row per decode step, and a
        // cudaMalloc per step (and the cudaFree at the next sync) would stall every step.
        const size_t want = std::max<size_t>(bytes + bytes / 2, 256);
        KVS_CUDA_CHECK(cudaMalloc(&p, want));
        cap = want;
        return p;
    }
    // ensure(), and when that made a new buffer, its first `zero` bytes set to 0 on `stream`:
    // counters the kernels leave at zero (the decode attention's tickets).
    void* ensure_zeroed(size_t bytes, size_t zero, cudaStream_t stream) {
        const size_t had = cap;
        void* q = ensure(bytes);
        if (cap != had) KVS_CUDA_CHECK(cudaMemsetAsync(q, 0, zero, stream));
        return q;
    }
    void free_now() noexcept {
        if (p) (void)cudaFree(p);
        p = nullptr;
        cap = 0;
    }
};

// Pinned host memory with a device twin of the same size: bytes written at host(off) reach
// dev(off) with to_device(). Reservations only move forward; reset() (only when the stream is
// idle: every earlier copy and kernel that used the ring has finished) starts over.
class StagingRing {
  public:
    static constexpr size_t kAlign = 256;
    static constexpr size_t kMinBytes = size_t{16} << 20;

    StagingRing() = default;
    StagingRing(const StagingRing&) = delete;
    StagingRing& operator=(const StagingRing&) = delete;
    ~StagingRing() { free_now(); }
    bool fits(size_t bytes) const { return round_up(off_) + bytes <= cap_; }
    size_t mark() const { return round_up(off_); }
    // The caller checked fits(bytes).
    size_t reserve(size_t bytes) {
        const size_t at = round_up(off_);
        off_ = at + bytes;
        return at;
    }
    unsigned char* host(size_t off) const { return host_ + off; }
    unsigned char* dev(size_t off) const { return dev_ + off; }
    // Whether p is in the device twin, and the host bytes staged for it.
    bool holds(const void* p) const {
        const auto* b = static_cast<const unsigned char*>(p);
        return b && dev_ && b >= dev_ && b < dev_ + cap_;
    }
    const unsigned char* staged(const void* p) const {
        return host_ + (static_cast<const unsigned char*>(p) - dev_);
    }
    void to_device(size_t begin, size_t end, cudaStream_t stream) const {
        if (end > begin)
            KVS_CUDA_CHECK(cudaMemcpyAsync(dev_ + begin, host_ + begin, end - begin,
                                           cudaMemcpyHostToDevice, stream));
    }
    void reset() { off_ = 0; }
    // Only when the stream is idle.
    void grow(size_t bytes) {
        const size_t want = std::max({bytes + kAlign, kMinBytes, 2 * cap_});
        free_now();
        KVS_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host_), want, cudaHostAllocDefault));
        KVS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&dev_), want));
        cap_ = want;
    }
    void free_now() noexcept {
        if (host_) (void)cudaFreeHost(host_);
        if (dev_) (void)cudaFree(dev_);
        host_ = dev_ = nullptr;
        cap_ = off_ = 0;
    }

  private:
    static size_t round_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }
    unsigned char* host_ = nullptr;
    unsigned char* dev_ = nullptr;
    size_t cap_ = 0, off_ = 0;
};

// The device copy of one layer of one KV cache (see the file comment).
struct LayerMirror {
    int64_t G = 0, d = 0, cap = 0;  // cap: rows per head
    float* k = nullptr;             // [G * cap, d]
    float* v = nullptr;             // [G * cap, d]
    int64_t* pos = nullptr;         // [G * cap]
    std::vector<uint64_t> version;  // [G] journal version copied
    std::vector<int64_t> len;       // [G] rows held
    std::vector<char> valid;        // [G] 0: never copied
    size_t bytes() const {
        return static_cast<size_t>(G * cap) * static_cast<size_t>(2 * d * 4 + 8);
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
        // KVSCOPE_CUDA_KV_MIRROR=0: the per-call copy of every head, kept to compare against (and
        // as a way around a suspected mirror problem).
        mirrors_on_ = switched_on("KVSCOPE_CUDA_KV_MIRROR");
        gemv_on_ = switched_on("KVSCOPE_CUDA_GEMV");  // 0: decode matmuls through cuBLAS
        new_rows_on_ = switched_on("KVSCOPE_CUDA_NEW_ROWS");
        defer_on_ = switched_on("KVSCOPE_CUDA_DEFER");
        fused_on_ = switched_on("KVSCOPE_CUDA_FUSED");
        inline_jobs_on_ = switched_on("KVSCOPE_CUDA_INLINE_JOBS");
        later_.set_side_copies(switched_on("KVSCOPE_CUDA_SIDE_COPIES"));
        later_.set_device_counter([this](int64_t delta) { count(delta); });
    }
    ~CudaBackend() override {
        // Never throws: report and go on freeing.
        (void)cudaStreamSynchronize(stream_);
        for (auto& [ptr, bytes] : owned_) (void)cudaFree(ptr);
        owned_.clear();
        for (auto& [key, m] : mirrors_) free_mirror(m);
        mirrors_.clear();
        for (DevBuf* b : all_bufs()) b->free_now();
        for (void* p : retired_) (void)cudaFree(p);
        retired_.clear();
        ring_.free_now();
        if (blas_) (void)api_->destroy(blas_);
        if (stream_) (void)cudaStreamDestroy(stream_);
    }

    std::string name() const override { return "cuda"; }
    // KVSCOPE_PROFILE=1 (kernels/op_profile.h): the stream is waited for around each op.
    static void fence(void* self) {
        KVS_CUDA_CHECK(cudaStreamSynchronize(static_cast<CudaBackend*>(self)->stream_));
    }
    prof::Scope op_scope(const char* bucket) { return prof::Scope(bucket, &fence, this); }
    std::string describe() const override {
        return "cuda: " + std::string(prop_.name) + ", compute capability " +
               std::to_string(prop_.major) + "." + std::to_string(prop_.minor) + ", " +
               gib(static_cast<double>(prop_.totalGlobalMem)) +
               (fp32_weights_ ? ", fp32 weights" : ", weights in their stored dtype") +
               (mirrors_on_ ? "" : ", KV mirrors off") +
               (gemv_on_ ? "" : ", decode matmuls through cuBLAS") +
               (new_rows_on_ ? ", new K/V rows within the device" : "") +
               (defer_on_ ? ", deferred host copies" : "");
    }
    DeviceKind device() const override { return DeviceKind::kCuda; }

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
        Tensor t = make_tensor_view(nullptr, dtype, shape, DeviceKind::kCuda);
        const size_t bytes = t.bytes();
        if (bytes == 0) return t;
        void* p = nullptr;
        check_alloc(cudaMalloc(&p, bytes), bytes, "activations");
        try {
            KVS_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
        } catch (...) {
            (void)cudaFree(p);
            throw;
        }
        track(p, bytes);
        t.data = p;
        return t;
    }
    void release(Tensor& t) override {
        if (!t.data) return;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (owned_.find(t.data) == owned_.end())
                throw std::runtime_error("cuda backend: release() of memory it does not own");
        }
        sync();  // queued work may still use it
        untrack(t.data);
        KVS_CUDA_CHECK(cudaFree(t.data));
        t.data = nullptr;
    }
    Tensor upload_weight(const void* host, DType dtype,
                         std::initializer_list<int64_t> shape) override {
        Tensor t = make_tensor_view(nullptr, dtype, shape, DeviceKind::kCuda);
        const size_t bytes = t.bytes();
        if (bytes == 0) return t;
        void* raw = nullptr;
        check_alloc(cudaMalloc(&raw, bytes), bytes, "weights");
        try {
            // On the backend's stream (ordered before the ops that read it), then wait: the host
            // bytes are the caller's, and a copy from pageable memory may return before it read
            // them.
            KVS_CUDA_CHECK(cudaMemcpyAsync(raw, host, bytes, cudaMemcpyHostToDevice, stream_));
            sync();
        } catch (...) {
            (void)cudaFree(raw);
            throw;
        }
        if (!fp32_weights_ || dtype == DType::kF32 ||
            (dtype != DType::kF16 && dtype != DType::kBf16)) {
            track(raw, bytes);
            t.data = raw;
            return t;
        }
        Tensor f = make_tensor_view(nullptr, DType::kF32, shape, DeviceKind::kCuda);
        void* conv = nullptr;
        try {
            check_alloc(cudaMalloc(&conv, f.bytes()), f.bytes(), "fp32 weights");
            convert_to_f32(raw, dtype, t.numel(), static_cast<float*>(conv), stream_);
            sync();
        } catch (...) {
            (void)cudaFree(raw);
            if (conv) (void)cudaFree(conv);
            throw;
        }
        KVS_CUDA_CHECK(cudaFree(raw));
        track(conv, f.bytes());
        f.data = conv;
        return f;
    }
    void release_weight(Tensor& t) override { release(t); }
    void to_host(const Tensor& src, float* dst) override {
        if (prof::enabled()) prof::Scope empty("sync (empty)", &fence, this);
        prof::Scope ps = op_scope("to_host");
        const size_t bytes = src.bytes();
        if (defer_on_ && bytes >= kPinnedCopyMin) {
            // Large (a prompt layer's values): DMA into pinned memory, then the pool's memcpy.
            later_.enqueue(src.data, bytes, stream_, [this, dst, bytes](const void* h) {
                copy_on(copy_pool(), dst, h, bytes);
            });
        } else if (bytes > 0) {
            KVS_CUDA_CHECK(cudaMemcpyAsync(dst, src.data, bytes, cudaMemcpyDeviceToHost, stream_));
        }
        sync();
    }
    void to_host_later(const Tensor& src, float* dst) override {
        if (!defer_on_) return to_host(src, dst);
        prof::Scope ps = op_scope("to_host_later");
        const size_t bytes = src.bytes();
        later_.enqueue(src.data, bytes, stream_, [this, dst, bytes](const void* h) {
            copy_on(bytes >= kPinnedCopyMin ? copy_pool() : nullptr, dst, h, bytes);
        });
    }
    // Every mirror plan takes the last new_k->dim(0) rows of every head from new_k / new_v
    // (cuda_backend_mirror.cpp); without mirrors every call uploads every head from the host.
    bool new_rows_stay_on_device() const override { return mirrors_on_ && new_rows_on_; }
    void from_host(Tensor& dst, const float* src) override {
        prof::Scope ps = op_scope("from_host");
        // Through the staging ring, in pieces of at most its smallest size: `src` may change as
        // soon as this returns.
        const size_t bytes = dst.bytes();
        const auto* from = reinterpret_cast<const unsigned char*>(src);
        auto* to = static_cast<unsigned char*>(dst.data);
        for (size_t done = 0; done < bytes;) {
            const size_t piece = std::min(bytes - done, StagingRing::kMinBytes);
            make_room(piece);
            const size_t off = ring_.reserve(piece);
            std::memcpy(ring_.host(off), from + done, piece);
            KVS_CUDA_CHECK(cudaMemcpyAsync(to + done, ring_.host(off), piece,
                                           cudaMemcpyHostToDevice, stream_));
            done += piece;
        }
    }
    void synchronize() override { sync(); }
    // Waits for the queued copies only (their event), then unpacks them: the kernels queued
    // after them keep the device busy meanwhile. The staging ring and retired buffers wait for
    // the next sync().
    void deliver_copies() override {
        if (!later_.pending()) return;
        cudaError_t waited;
        {
            prof::Scope wait("sync.copies");
            waited = later_.wait_copied();
        }
        if (waited != cudaSuccess) later_.drop();
        KVS_CUDA_CHECK(waited);
        later_.deliver();
    }

    // ---- ops ---------------------------------------------------------------------------------
    void embedding(const Tensor& table, const int32_t* ids, int64_t n, Tensor& out) override {
        prof::Scope ps = op_scope("embedding");
        const int32_t* dids = stage(ids, static_cast<size_t>(n));
        cuda::embedding(table.data, table.dtype, table.dim(0), table.dim(1), dids, n,
                        out.as<float>(), stream_);
    }
    void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
        prof::Scope ps = op_scope("rmsnorm");
        const int64_t d = w.numel();
        cuda::rmsnorm(x.as<float>(), x.numel() / d, d, w.data, w.dtype, eps, out.as<float>(),
                      stream_);
    }
    void matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override {
        const int64_t k = w.dim(1), m = w.dim(0);
        const int64_t n = x.numel() / k;
        prof::Scope ps(prof::enabled() ? "matmul " + std::to_string(m) + "x" + std::to_string(k)
                                       : std::string(),
                       &fence, this);
        if (gemv_on_ && gemv_fits(x.as<float>(), n, k, w.data, w.dtype, m))
            return gemv(x.as<float>(), n, k, w.data, w.dtype, m, bias ? bias->data : nullptr,
                        bias ? bias->dtype : DType::kF32, out.as<float>(), stream_);
        void* xc = w.dtype == DType::kF32 ? nullptr : xcast_.ensure(static_cast<size_t>(n * k) * 2);
        cuda::matmul(blas_, x.as<float>(), n, k, w.data, w.dtype, m, bias ? bias->data : nullptr,
                     bias ? bias->dtype : DType::kF32, out.as<float>(), xc, stream_);
    }
    void rope(Tensor& x, const int64_t* positions, const float* inv_freq,
              RopePairs pairs) override {
        prof::Scope ps = op_scope("rope");
        const int64_t n = x.dim(0), hd = x.dim(2);
        const int64_t* dpos = stage_same(positions, static_cast<size_t>(n));
        const float* dinv = stage_same(inv_freq, static_cast<size_t>(hd / 2));
        cuda::rope(x.as<float>(), n, x.dim(1), hd, dpos, dinv, pairs, stream_);
    }
    // Fused decode forms (Backend::matmul_parts, swiglu, rope_qk). KVSCOPE_CUDA_FUSED=0 takes
    // the unfused ops instead (the defaults of Backend); so do shapes the GEMV does not take.
    void matmul_parts(const Tensor& x, int count, const Tensor* const* ws,
                      const Tensor* const* biases, Tensor* const* outs) override {
        const int64_t k = ws[0]->dim(1);
        const int64_t n = x.numel() / k;
        bool fits = fused_on_ && gemv_on_ && count >= 1 && count <= kMaxGemvParts;
        int64_t rows = 0;
        for (int i = 0; fits && i < count; ++i) {
            const Tensor& w = *ws[i];
            fits = w.dim(1) == k && w.dtype == ws[0]->dtype &&
                   gemv_fits(x.as<float>(), n, k, w.data, w.dtype, w.dim(0));
            rows += w.dim(0);
        }
        if (!fits || rows > 65535LL * 8) return Backend::matmul_parts(x, count, ws, biases, outs);
        prof::Scope ps = op_scope("matmul_parts");
        GemvPart parts[kMaxGemvParts];
        for (int i = 0; i < count; ++i)
            parts[i] = GemvPart{ws[i]->data, ws[i]->dim(0), biases[i] ? biases[i]->data : nullptr,
                                biases[i] ? biases[i]->dtype : DType::kF32, outs[i]->as<float>()};
        gemv_parts(x.as<float>(), n, k, ws[0]->dtype, parts, count, stream_);
    }
    void swiglu(const Tensor& x, const Tensor& w_gate, const Tensor& w_up, Tensor& gate, Tensor& up,
                Tensor& out) override {
        const int64_t k = w_gate.dim(1), m = w_gate.dim(0);
        const int64_t n = x.numel() / k;
        const bool fits = fused_on_ && gemv_on_ && w_up.dim(0) == m && w_up.dim(1) == k &&
                          w_up.dtype == w_gate.dtype &&
                          gemv_fits(x.as<float>(), n, k, w_gate.data, w_gate.dtype, m) &&
                          gemv_fits(x.as<float>(), n, k, w_up.data, w_up.dtype, m);
        if (!fits) return Backend::swiglu(x, w_gate, w_up, gate, up, out);
        prof::Scope ps = op_scope("swiglu");
        gemv_swiglu(x.as<float>(), n, k, w_gate.data, w_up.data, w_gate.dtype, m, gate.as<float>(),
                    up.as<float>(), out.as<float>(), stream_);
    }
    void add_rmsnorm(Tensor& x, const Tensor& y, const Tensor& w, float eps, Tensor& out) override {
        if (!fused_on_ || out.data == x.data || x.numel() != y.numel())
            return Backend::add_rmsnorm(x, y, w, eps, out);
        prof::Scope ps = op_scope("add_rmsnorm");
        const int64_t d = w.numel();
        cuda::add_rmsnorm(x.as<float>(), y.as<float>(), x.numel() / d, d, w.data, w.dtype, eps,
                          out.as<float>(), stream_);
    }
    void rope_qk(Tensor& q, Tensor& k, const int64_t* positions, const float* inv_freq,
                 RopePairs pairs) override {
        if (!fused_on_ || q.dim(0) != k.dim(0) || q.dim(2) != k.dim(2))
            return Backend::rope_qk(q, k, positions, inv_freq, pairs);
        prof::Scope ps = op_scope("rope_qk");
        const int64_t n = q.dim(0), hd = q.dim(2);
        const int64_t* dpos = stage_same(positions, static_cast<size_t>(n));
        const float* dinv = stage_same(inv_freq, static_cast<size_t>(hd / 2));
        cuda::rope_qk(q.as<float>(), q.dim(1), k.as<float>(), k.dim(1), n, hd, dpos, dinv, pairs,
                      stream_);
    }
    void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override {
        prof::Scope ps = op_scope("silu_mul");
        cuda::silu_mul(gate.as<float>(), up.as<float>(), gate.numel(), out.as<float>(), stream_);
    }
    void add_inplace(Tensor& x, const Tensor& y) override {
        prof::Scope ps = op_scope("add");
        cuda::add_inplace(x.as<float>(), y.as<float>(), x.numel(), stream_);
    }
    void attention(const AttentionArgs& args) override;

    // ---- KV mirrors --------------------------------------------------------------------------
    void forget_kv(uint64_t cache_uid) override {
        bool any = false;
        for (const auto& [key, m] : mirrors_) any = any || key.first == cache_uid;
        if (!any) return;
        sync();  // queued attention may still read them
        for (auto it = mirrors_.begin(); it != mirrors_.end();) {
            if (it->first.first == cache_uid) {
                free_mirror(it->second);
                it = mirrors_.erase(it);
            } else {
                ++it;
            }
        }
        if (mirrors_.empty() && mirror_scratch_.p) {
            count(-static_cast<int64_t>(mirror_scratch_.cap));
            mirror_scratch_.free_now();
        }
    }

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
    void track(void* p, size_t bytes) {
        std::lock_guard<std::mutex> lock(mu_);
        owned_[p] = bytes;
        in_use_ += static_cast<int64_t>(bytes);
        peak_ = std::max(peak_, in_use_);
    }
    void untrack(void* p) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = owned_.find(p);
        if (it == owned_.end()) return;
        in_use_ -= static_cast<int64_t>(it->second);
        owned_.erase(it);
    }
    // Mirror bytes (slabs and their scratch), counted in memory() like alloc()'s.
    void count(int64_t delta) {
        std::lock_guard<std::mutex> lock(mu_);
        in_use_ += delta;
        peak_ = std::max(peak_, in_use_);
    }
    std::vector<DevBuf*> all_bufs() {
        return {&xcast_,  &kv_k_, &kv_v_,   &kv_pos_,        &lse_,
                &colsum_, &rows_, &decode_, &mirror_scratch_};
    }

    // Copies to the host of at least this many bytes go through pinned memory (HostCopies) and
    // are unpacked on copy_pool(): a pageable cudaMemcpy of a 32k prompt layer's values ran at
    // ~8 GB/s on the H100 host, and one thread's unpack at ~10 GB/s (bench/RESULTS.md, fifth run).
    static constexpr size_t kPinnedCopyMin = size_t{8} << 20;
    // Host threads for those unpacks, made on first need; only the thread that calls sync()
    // (the engine's) uses it.
    cpu::ThreadPool* copy_pool() {
        if (!copy_pool_) {
            const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
            copy_pool_ = std::make_unique<cpu::ThreadPool>(static_cast<int>(std::min(hw, 16u)));
        }
        return copy_pool_.get();
    }

    // Waits for the stream; after it nothing queued uses retired buffers or the staging ring.
    void sync() {
        cudaError_t waited;
        {
            prof::Scope wait("sync.wait");  // KVSCOPE_PROFILE=host: the device's share
            waited = cudaStreamSynchronize(stream_);
            if (waited == cudaSuccess) waited = later_.wait_copied();  // the copy stream's too
        }
        if (waited != cudaSuccess) later_.drop();  // nothing more will arrive
        KVS_CUDA_CHECK(waited);
        for (void* p : retired_) KVS_CUDA_CHECK(cudaFree(p));
        retired_.clear();
        ring_.reset();
        staged_.clear();
        if (later_.pending()) later_.deliver();  // to_host_later(), deferred statistics
    }
    // Room for `bytes` in the staging ring: waits for the stream (which frees the whole ring)
    // when the rest is too small, grows it when even an empty ring is. Reservations not yet
    // copied or launched must have been flushed before (RowBatch).
    void make_room(size_t bytes) {
        if (ring_.fits(bytes)) return;
        sync();
        if (!ring_.fits(bytes)) ring_.grow(bytes);
    }
    // Host array -> device memory valid until the next synchronisation (stream-ordered).
    template <class T>
    const T* stage(const T* host, size_t count) {
        const size_t bytes = count * sizeof(T);
        make_room(bytes);
        const size_t off = ring_.reserve(bytes);
        if (bytes) {
            std::memcpy(ring_.host(off), host, bytes);
            ring_.to_device(off, off + bytes, stream_);
        }
        return reinterpret_cast<const T*>(ring_.dev(off));
    }
    // stage() for small arrays that repeat within a step: a decode step's positions, the RoPE
    // frequencies, the query positions and often the heads' offsets are the same for every layer,
    // so they are copied once per step instead of once per layer (an 8B decode step made ~130
    // such copies, each a few us on the stream). Entries live until the ring is reused (sync()).
    template <class T>
    const T* stage_same(const T* host, size_t count) {
        const size_t bytes = count * sizeof(T);
        if (bytes == 0 || bytes > kStageSameMaxBytes) return stage(host, count);
        for (const StagedCopy& e : staged_)
            if (e.bytes.size() == bytes && std::memcmp(e.bytes.data(), host, bytes) == 0)
                return static_cast<const T*>(e.dev);
        const T* dev = stage(host, count);  // may sync (make_room), which empties staged_
        if (staged_.size() >= kStagedCopies) staged_.erase(staged_.begin());
        const auto* from = reinterpret_cast<const unsigned char*>(host);
        staged_.push_back(StagedCopy{std::vector<unsigned char>(from, from + bytes), dev});
        return dev;
    }
    static constexpr size_t kStageSameMaxBytes = size_t{64} << 10;
    static constexpr size_t kStagedCopies = 8;
    struct StagedCopy {
        std::vector<unsigned char> bytes;  // what was staged
        const void* dev;                   // where, in the ring
    };
    std::vector<StagedCopy> staged_;  // stage_same(); emptied with the ring in sync()

    // ---- KV mirrors (see the file comment) ---------------------------------------------------
    void free_mirror(LayerMirror& m) noexcept {
        if (m.k) {
            (void)cudaFree(m.k);
            (void)cudaFree(m.v);
            (void)cudaFree(m.pos);
            count(-static_cast<int64_t>(m.bytes()));
        }
        m.k = m.v = nullptr;
        m.pos = nullptr;
        m.cap = 0;
    }
    // Every view of the call comes from one cache and layer, heads 0..G-1 in order.
    static bool mirrorable(const AttentionArgs& a) {
        for (int64_t g = 0; g < a.n_kv_heads; ++g) {
            const KVHeadView& v = a.kv[g];
            if (!v.journal || v.cache_uid != a.kv[0].cache_uid || v.layer != a.kv[0].layer ||
                v.head != g)
                return false;
        }
        return a.n_kv_heads > 0;
    }
    const LayerMirror& update_mirror(const AttentionArgs& args, int64_t d);

    // Row jobs whose data (packed rows, maps, indices) is staged in the ring from `begin` on;
    // flush() stages the job tables after them, copies the whole range once and launches.
    struct RowBatch {
        size_t begin = 0;
        std::vector<KVRowJob> a, b;  // b runs after a (scratch -> slab copies)
        int64_t max_a = 0, max_b = 0;
        int64_t scratch_rows = 0;  // rows of mirror_scratch_ taken by this batch
    };
    static size_t table_bytes(const RowBatch& rb, size_t more_jobs) {
        return (rb.a.size() + rb.b.size() + more_jobs) * sizeof(KVRowJob) + 2 * StagingRing::kAlign;
    }
    // rb's jobs as the kernel's parameters, when they read nothing staged but a few positions
    // (a decode step's appends): no copy to the device before them. False: flush() copies.
    bool flush_inline(const RowBatch& rb, int64_t d) {
        if (!inline_jobs_on_ || !rb.b.empty() || rb.a.size() > static_cast<size_t>(kInlineJobs))
            return false;
        KVRowJobsInline p{};
        int64_t used = 0;
        for (size_t i = 0; i < rb.a.size(); ++i) {
            const KVRowJob& jb = rb.a[i];
            if (jb.pk || jb.pv || jb.ppos || jb.map || jb.dst_index || ring_.holds(jb.sk) ||
                ring_.holds(jb.sv))
                return false;
            p.jobs[i] = jb;
            p.spos_at[i] = -1;
            if (ring_.holds(jb.spos)) {
                if (used + jb.n > kInlinePositions) return false;
                std::memcpy(p.pos + used, ring_.staged(jb.spos),
                            static_cast<size_t>(jb.n) * sizeof(int64_t));
                p.spos_at[i] = used;
                used += jb.n;
            }
        }
        p.n_jobs = static_cast<int64_t>(rb.a.size());
        kv_rows_inline(p, rb.max_a, d, stream_);
        return true;
    }
    void flush(RowBatch& rb, int64_t d) {
        if ((!rb.a.empty() || !rb.b.empty()) && !flush_inline(rb, d)) {
            const size_t na = rb.a.size() * sizeof(KVRowJob);
            const size_t nb = rb.b.size() * sizeof(KVRowJob);
            const size_t oa = ring_.reserve(na);  // room kept by the checks when jobs were added
            if (na) std::memcpy(ring_.host(oa), rb.a.data(), na);
            const size_t ob = ring_.reserve(nb);
            if (nb) std::memcpy(ring_.host(ob), rb.b.data(), nb);
            ring_.to_device(rb.begin, ob + nb, stream_);
            kv_rows(reinterpret_cast<const KVRowJob*>(ring_.dev(oa)),
                    static_cast<int64_t>(rb.a.size()), rb.max_a, d, stream_);
            kv_rows(reinterpret_cast<const KVRowJob*>(ring_.dev(ob)),
                    static_cast<int64_t>(rb.b.size()), rb.max_b, d, stream_);
        }
        rb.a.clear();
        rb.b.clear();
        rb.max_a = rb.max_b = 0;
        rb.scratch_rows = 0;
        rb.begin = ring_.mark();
    }

    cudaDeviceProp prop_{};
    cudaStream_t stream_ = nullptr;
    const CublasApi* api_ = nullptr;
    cublasHandle_t blas_ = nullptr;
    bool fp32_weights_ = false;
    bool mirrors_on_ = true;
    bool gemv_on_ = true;  // decode rows (n <= kGemvMaxRows) through cuda_gemv.cu
    bool new_rows_on_ = true, defer_on_ = true;  // switched_on() above
    bool fused_on_ = true;        // KVSCOPE_CUDA_FUSED: matmul_parts, swiglu, rope_qk
    bool inline_jobs_on_ = true;  // KVSCOPE_CUDA_INLINE_JOBS: flush_inline()
    HostCopies later_;
    std::unique_ptr<cpu::ThreadPool> copy_pool_;  // copy_pool()
    mutable std::mutex mu_;
    std::unordered_map<void*, size_t> owned_;  // alloc() and upload_weight(): bytes
    int64_t in_use_ = 0, peak_ = 0;
    std::vector<void*> retired_;  // device buffers to free at the next sync()
    StagingRing ring_;
    DevBuf xcast_{&retired_}, kv_k_{&retired_}, kv_v_{&retired_}, kv_pos_{&retired_},
        lse_{&retired_}, colsum_{&retired_}, rows_{&retired_}, decode_{&retired_},
        mirror_scratch_{&retired_};
    std::map<std::pair<uint64_t, int64_t>, LayerMirror> mirrors_;  // (cache uid, layer)
    std::vector<KVReplayPlan> plans_;                              // [G], reused
    std::vector<int64_t> meta_;                                    // kv_off, kv_len: [2G]
    std::vector<float> h_col_, h_rows_, h_lse_;  // statistics without KVSCOPE_CUDA_DEFER, reused
};

}  // namespace kvscope::cuda
