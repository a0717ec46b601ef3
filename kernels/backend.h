#pragma once
// Backend: the compute interface the engine drives. Two implementations: kernels/cpu (fp32, the
// oracle) and kernels/cuda (bf16/fp16, later). Every op of a device backend has a CPU twin here and
// a case in the differential test (tests/kernels).
//
// Execution model: ops are enqueued in order and may run asynchronously on a device; results are
// visible on the host only after to_host() (which synchronises). Tensors live where their backend
// keeps them; weights are "uploaded" once (the CPU backend borrows the mmapped bytes, zero copy).
//
// Shapes are row-major and contiguous. Activations are f32 on the CPU backend; weights may be
// f32, f16 or bf16 and are converted on the fly inside matmul / embedding / rmsnorm.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace kvscope {

enum class DeviceKind { kCpu, kCuda };

struct Tensor {
    DType dtype = DType::kF32;
    std::array<int64_t, 4> shape{0, 0, 0, 0};
    int ndim = 0;
    void* data = nullptr;
    DeviceKind device = DeviceKind::kCpu;

    int64_t numel() const {
        int64_t n = ndim > 0 ? 1 : 0;
        for (int i = 0; i < ndim; ++i) n *= shape[static_cast<size_t>(i)];
        return n;
    }
    int64_t dim(int i) const { return shape[static_cast<size_t>(i)]; }
    size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
    template <class T>
    T* as() const {
        return static_cast<T*>(data);
    }
};

Tensor make_tensor_view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                        DeviceKind dev = DeviceKind::kCpu);

class KVJournal;

// The keys and values one KV head holds, as the attention op reads them.
// k, v: [len, head_dim] f32 (dequantised where the cache holds quantised slots: attention over
// quantised slots is dequantise-then-attend by construction). pos: original token positions [len],
// used for the causal mask (slot j is visible to a query at position p iff pos[j] <= p). Host
// memory.
//
// A view from a KVCache also names the head and carries its edit journal (kernels/kv_journal.h),
// so that a device backend can keep a copy of the head and update it incrementally; cache_uid is
// unique per KVCache object for the life of the process (never a reused address). The CPU backend
// reads k, v, pos only. journal == nullptr: a plain view (the backend copies what it needs).
struct KVHeadView {
    const float* k = nullptr;
    const float* v = nullptr;
    const int64_t* pos = nullptr;
    int64_t len = 0;
    uint64_t cache_uid = 0;
    int64_t layer = -1;
    int64_t head = -1;
    uint64_t version = 0;  // journal->version() when the view was made
    const KVJournal* journal = nullptr;
};

// What the attention op should report besides its output, per query head h (KV head h / group).
// All buffers are host memory owned by the caller, sized by the KV head's len (n_keys).
struct AttentionStats {
    // colsum[h]: [n_keys] += sum over this call's query rows of softmax probabilities.
    std::vector<float*> colsum;
    // rows[h]: [n_rows_tail, n_keys] softmax rows of the last n_rows_tail queries of this call.
    std::vector<float*> rows;
    int64_t n_rows_tail = 0;
    // lse[h]: [n_queries] row log-sum-exp of the scaled logits (for two-pass statistics on
    // devices).
    std::vector<float*> lse;
    // The caller reads the statistics only after the backend's next synchronisation
    // (synchronize(), to_host(), deliver_copies()), and the buffers stay valid until then: a
    // device backend may then return before they are copied back instead of waiting for the
    // kernels (decode steps: every layer's rows at the step's end; a prompt layer's statistics
    // once its MLP is queued).
    bool deferred = false;
};

struct AttentionArgs {
    const Tensor* q = nullptr;       // [n, H, head_dim] f32, RoPE applied
    const int64_t* q_pos = nullptr;  // [n] positions of the queries
    const KVHeadView* kv = nullptr;  // [H_kv]
    int64_t n_kv_heads = 0;
    float scale = 1.0f;               // usually 1/sqrt(head_dim)
    Tensor* out = nullptr;            // [n, H, head_dim] f32
    AttentionStats* stats = nullptr;  // optional
    // Optional: this call's new keys and values, [n_new, H_kv, head_dim] f32 in this backend's
    // memory (post-RoPE, as appended). Set only when the last n_new slots of every head in kv
    // were appended from exactly these rows (the engine: the prompt, and decode without a
    // policy). A device backend then copies them within the device instead of uploading them
    // again from the host cache; the CPU backend ignores them.
    const Tensor* new_k = nullptr;
    const Tensor* new_v = nullptr;
};

// RoPE: rotates each head's vector by angle pos * inv_freq[i]. inv_freq has head_dim/2 entries
// (already scaled for llama3 / linear). half: pairs (i, i + d/2); interleaved: pairs (2i, 2i+1).
enum class RopePairs { kHalf, kInterleaved };

class Backend {
  public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;
    virtual DeviceKind device() const = 0;

    // One line for logs and traces: "cpu (fp32, 2 threads)", "cuda: NVIDIA H200, sm_90, 140 GiB".
    virtual std::string describe() const { return name(); }

    // ---- memory ------------------------------------------------------------------------------
    // What this backend holds now and at most so far (bytes of alloc() + uploaded copies; the CPU
    // backend's borrowed weights are not counted), and the device's total/free (-1: unknown).
    struct MemoryInfo {
        int64_t in_use = 0;
        int64_t peak = 0;
        int64_t device_total = -1;
        int64_t device_free = -1;
    };
    virtual MemoryInfo memory() const { return {}; }
    // The bandwidth floor measured on this device: a copy of `bytes` within its memory, median of
    // `reps`, as GB/s of bytes read + written (device-to-device memcpy on CUDA, memcpy on CPU).
    virtual double measure_copy_gbs(size_t bytes, int reps) = 0;
    virtual Tensor alloc(DType dtype, std::initializer_list<int64_t> shape) = 0;
    virtual void release(Tensor& t) = 0;
    // Makes weights usable by ops. CPU: a view of the host bytes (which must outlive it).
    virtual Tensor upload_weight(const void* host, DType dtype,
                                 std::initializer_list<int64_t> shape) = 0;
    // Gives back what upload_weight() made (CPU: nothing to free, the bytes are borrowed). A
    // backend also frees every weight still uploaded when it is destroyed.
    virtual void release_weight(Tensor& t) = 0;
    virtual void to_host(const Tensor& src, float* dst) = 0;  // src f32; synchronises
    // The same copy without waiting: dst (which must stay valid) holds src's values after the
    // next synchronisation (synchronize(), to_host()), in call order. A decode step copies a
    // layer's new keys this way and its values with to_host(): one wait instead of two. The
    // default copies at once.
    virtual void to_host_later(const Tensor& src, float* dst) { to_host(src, dst); }
    // True when attention() reads the slots named by AttentionArgs::new_k / new_v (every head's
    // last new_k->dim(0) slots) from those device rows, never from the host cache, whatever
    // the cache's edits since the backend's last call. The engine then appends the slots at
    // once and their host rows later (KVCache::append_layer_slots): a decode step's at the
    // step's end, a prompt's on a host thread behind the device, so no layer waits for its own
    // keys and values. The CPU backend reads the host cache: false.
    virtual bool new_rows_stay_on_device() const { return false; }
    virtual void from_host(Tensor& dst, const float* src) = 0;  // dst f32
    virtual void synchronize() = 0;
    // Delivers what to_host_later() and deferred statistics have queued so far, waiting only for
    // the device work queued before them: work queued after them may still be running when this
    // returns. Why: the engine calls it once a prompt layer's MLP is queued, so the device runs
    // that MLP while the host unpacks the layer's keys, values and statistics (it synchronised
    // before, and the device idled through every layer's unpacks). The default synchronises.
    virtual void deliver_copies() { synchronize(); }

    // ---- ops ---------------------------------------------------------------------------------
    // out[i, :] = table[ids[i], :] (converted to f32). table [vocab, d], out [n, d].
    virtual void embedding(const Tensor& table, const int32_t* ids, int64_t n, Tensor& out) = 0;
    // out = x / rms(x) * w, row-wise over the last dim of x viewed as [rows, d]; w [d] any dtype.
    virtual void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) = 0;
    // out[n, m] = x[n, k] @ w[m, k]^T (+ bias[m]); w any dtype, bias may be null.
    virtual void matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) = 0;
    // In place on x viewed as [n, heads, head_dim]; positions [n]; inv_freq [head_dim/2].
    virtual void rope(Tensor& x, const int64_t* positions, const float* inv_freq,
                      RopePairs pairs) = 0;
    // out = silu(gate) * up, elementwise.
    virtual void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
    // x += y, elementwise.
    virtual void add_inplace(Tensor& x, const Tensor& y) = 0;

    // Fused forms of the ops above, for a decode step's launch count (issue 9: the 8B decode at
    // 1k ran ~20 device ops per layer). Each default below is the composition it replaces, which
    // is also its CPU twin; the CUDA backend overrides them (cuda_gemv.cu, cuda_rope.cu).
    // outs[i] = x @ ws[i]^T (+ biases[i]) for i < count (at most 3, the same x): q/k/v.
    virtual void matmul_parts(const Tensor& x, int count, const Tensor* const* ws,
                              const Tensor* const* biases, Tensor* const* outs) {
        for (int i = 0; i < count; ++i) matmul(x, *ws[i], biases[i], *outs[i]);
    }
    // gate = x @ w_gate^T, up = x @ w_up^T, out = silu(gate) * up (SwiGLU's first half).
    virtual void swiglu(const Tensor& x, const Tensor& w_gate, const Tensor& w_up, Tensor& gate,
                        Tensor& up, Tensor& out) {
        matmul(x, w_gate, nullptr, gate);
        matmul(x, w_up, nullptr, up);
        silu_mul(gate, up, out);
    }
    // x += y, then out = rmsnorm(x) with w (the residual add and the next layer's norm).
    virtual void add_rmsnorm(Tensor& x, const Tensor& y, const Tensor& w, float eps, Tensor& out) {
        add_inplace(x, y);
        rmsnorm(x, w, eps, out);
    }
    // rope() on q and on k with the same positions.
    virtual void rope_qk(Tensor& q, Tensor& k, const int64_t* positions, const float* inv_freq,
                         RopePairs pairs) {
        rope(q, positions, inv_freq, pairs);
        rope(k, positions, inv_freq, pairs);
    }
    // Causal (by position) softmax attention with GQA; see AttentionArgs.
    virtual void attention(const AttentionArgs& args) = 0;

    // ---- KV cache copies -----------------------------------------------------------------------
    // Drops whatever this backend keeps for the KV cache `cache_uid` (KVHeadView::cache_uid):
    // device copies of its heads. The cache's owner calls it when the cache is cleared or
    // destroyed. The CPU backend keeps nothing.
    virtual void forget_kv(uint64_t cache_uid) { (void)cache_uid; }
};

// The fp32 CPU reference backend. threads = 0: one per hardware core.
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

// Whether this binary can run the CUDA backend here. `detail` names the device when available
// ("NVIDIA H200, compute capability 9.0, 140.4 GiB") and otherwise what is missing, as a sentence.
struct DeviceProbe {
    bool available = false;
    std::string detail;
};
DeviceProbe probe_cuda();

// device: "cpu" | "cuda" | "auto" (CUDA when this binary has the CUDA backend and a supported GPU
// is present, else CPU). threads: CPU threads (CPU backend only). Throws std::runtime_error naming
// what was needed and what was found when "cuda" cannot be used (no CUDA build, no driver, no GPU,
// compute capability below 9.0), std::invalid_argument for an unknown name.
std::unique_ptr<Backend> make_backend(const std::string& device, int threads = 0);

// The device behind a backend name, for trace metadata: "cuda: NVIDIA H200, compute capability
// 9.0, 139.8 GiB" or "cpu: 16 hardware threads".
std::string describe_device(const std::string& backend_name);

}  // namespace kvscope
