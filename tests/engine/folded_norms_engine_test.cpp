// The engine's folded sequence (Backend::folds_norms): each RMSNorm in the projection after it
// (rmsnorm_matmul_parts, rmsnorm_swiglu, the final norm with the LM head) and each residual add in
// the projection before it (matmul_add), as the CUDA backend takes it for a decode step. Driven
// through the CPU backend behind a wrapper that answers folds_norms(1) = true and runs the
// Backend defaults of the folded ops, which are the very ops of the unfolded sequence in the same
// order: every decode step's logits must equal the CPU backend's own bit for bit. A step that
// dropped a residual add or took the wrong layer's norm gives other logits.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/engine/sampler.h"
#include "core/model/model.h"
#include "core/policies/registry.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;

class FoldingBackend final : public Backend {
  public:
    explicit FoldingBackend(std::unique_ptr<Backend> inner) : in_(std::move(inner)) {}
    int64_t folded_parts = 0, folded_swiglu = 0, matmul_adds = 0, add_rmsnorms = 0;

    bool folds_norms(int64_t rows) const override { return rows == 1; }
    void rmsnorm_matmul_parts(const Tensor& x, const Tensor& norm_w, float eps, Tensor& h,
                              int count, const Tensor* const* ws, const Tensor* const* biases,
                              Tensor* const* outs) override {
        ++folded_parts;
        Backend::rmsnorm_matmul_parts(x, norm_w, eps, h, count, ws, biases, outs);
    }
    void rmsnorm_swiglu(const Tensor& x, const Tensor& norm_w, float eps, Tensor& h,
                        const Tensor& w_gate, const Tensor& w_up, Tensor& gate, Tensor& up,
                        Tensor& out) override {
        ++folded_swiglu;
        Backend::rmsnorm_swiglu(x, norm_w, eps, h, w_gate, w_up, gate, up, out);
    }
    void matmul_add(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& tmp,
                    Tensor& out) override {
        ++matmul_adds;
        Backend::matmul_add(x, w, bias, tmp, out);
    }
    void add_rmsnorm(Tensor& x, const Tensor& y, const Tensor& w, float eps, Tensor& out) override {
        ++add_rmsnorms;
        Backend::add_rmsnorm(x, y, w, eps, out);
    }

    std::string name() const override { return "folding(" + in_->name() + ")"; }
    DeviceKind device() const override { return in_->device(); }
    double measure_copy_gbs(size_t bytes, int reps) override {
        return in_->measure_copy_gbs(bytes, reps);
    }
    Tensor alloc(DType dtype, std::initializer_list<int64_t> shape) override {
        return in_->alloc(dtype, shape);
    }
    void release(Tensor& t) override { in_->release(t); }
    Tensor upload_weight(const void* host, DType dtype,
                         std::initializer_list<int64_t> shape) override {
        return in_->upload_weight(host, dtype, shape);
    }
    void release_weight(Tensor& t) override { in_->release_weight(t); }
    void to_host(const Tensor& src, float* dst) override { in_->to_host(src, dst); }
    void from_host(Tensor& dst, const float* src) override { in_->from_host(dst, src); }
    void synchronize() override { in_->synchronize(); }
    void embedding(const Tensor& t, const int32_t* ids, int64_t n, Tensor& out) override {
        in_->embedding(t, ids, n, out);
    }
    void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
        in_->rmsnorm(x, w, eps, out);
    }
    void matmul(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& out) override {
        in_->matmul(x, w, b, out);
    }
    void rope(Tensor& x, const int64_t* p, const float* f, RopePairs pairs) override {
        in_->rope(x, p, f, pairs);
    }
    void silu_mul(const Tensor& g, const Tensor& u, Tensor& out) override {
        in_->silu_mul(g, u, out);
    }
    void add_inplace(Tensor& x, const Tensor& y) override { in_->add_inplace(x, y); }
    void attention(const AttentionArgs& args) override { in_->attention(args); }

  private:
    std::unique_ptr<Backend> in_;
};

// A prompt (unfolded: 29 rows), then decode steps (folded), with and without an evicting policy
// (H2O at 20 tokens: it edits the cache every step). Models: qwen2_bias (q/k/v biases, which the
// folded parts carry), qwen3_qknorm (q/k norms between the folded q/k/v and RoPE), llama3_tied
// (the LM head is the embedding).
void expect_folded_equals_cpu(const std::string& model_dir, const std::string& policy_name) {
    SCOPED_TRACE(model_dir + " " + policy_name);
    auto model =
        load_model(fs::path(KVSCOPE_SOURCE_DIR) / "tests" / "golden" / "models" / model_dir);
    const ModelSpec& sp = model->spec;
    std::vector<int32_t> ids;
    for (int i = 0; i < 29; ++i)
        ids.push_back(3 + (i * 37 + 11) % static_cast<int>(sp.vocab_size - 3));
    auto cpu = make_cpu_backend(2);
    FoldingBackend fold(make_cpu_backend(2));
    Engine a(*model, *cpu), b(*model, fold);
    std::unique_ptr<Policy> pa, pb;
    if (!policy_name.empty()) {
        pa = make_policy(policy_name, Budget{.tokens = 20}, {});
        pb = make_policy(policy_name, Budget{.tokens = 20}, {});
        a.set_policy(pa.get());
        b.set_policy(pb.get());
    }
    auto la = a.prefill(ids), lb = b.prefill(ids);
    ASSERT_EQ(la, lb);
    EXPECT_EQ(fold.folded_parts, 0);  // 29 rows: the unfolded sequence
    EXPECT_EQ(fold.add_rmsnorms, 2 * sp.n_layers - 1);
    Sampler greedy({});
    const int steps = 5;
    for (int s = 0; s < steps; ++s) {
        const int32_t next = greedy.sample(la.data(), sp.vocab_size);
        la = a.decode(next);
        lb = b.decode(next);
        ASSERT_EQ(la, lb) << "step " << s;  // the same ops in the same order: bit-identical
    }
    // Per step: q/k/v of every layer and the LM head; gate/up of every layer; o and down.
    EXPECT_EQ(fold.folded_parts, steps * (sp.n_layers + 1));
    EXPECT_EQ(fold.folded_swiglu, steps * sp.n_layers);
    EXPECT_EQ(fold.matmul_adds, steps * 2 * sp.n_layers);
    EXPECT_EQ(fold.add_rmsnorms, 2 * sp.n_layers - 1);  // none in the decode steps
}

TEST(FoldedNormsEngine, DecodeStepsEqualTheCpuBackendBitForBit) {
    for (const char* m : {"qwen2_bias", "qwen3_qknorm", "llama3_tied"})
        expect_folded_equals_cpu(m, "");
    expect_folded_equals_cpu("qwen2_bias", "h2o");
}

}  // namespace
}  // namespace kvscope
