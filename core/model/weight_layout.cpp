#include "core/model/weight_layout.h"

#include <map>
#include <set>

#include "core/error.h"

namespace kvscope {

std::vector<ExpectedTensor> expected_tensors(const ModelSpec& s) {
    const int64_t H = s.hidden, I = s.intermediate, V = s.vocab_size;
    const int64_t Q = s.q_dim(), KV = s.kv_dim();
    std::vector<ExpectedTensor> out;
    out.push_back({"model.embed_tokens.weight", {V, H}});
    for (int64_t l = 0; l < s.n_layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        out.push_back({p + "input_layernorm.weight", {H}});
        out.push_back({p + "self_attn.q_proj.weight", {Q, H}});
        out.push_back({p + "self_attn.k_proj.weight", {KV, H}});
        out.push_back({p + "self_attn.v_proj.weight", {KV, H}});
        if (s.attention_bias) {
            out.push_back({p + "self_attn.q_proj.bias", {Q}});
            out.push_back({p + "self_attn.k_proj.bias", {KV}});
            out.push_back({p + "self_attn.v_proj.bias", {KV}});
        }
        if (s.qk_norm) {
            out.push_back({p + "self_attn.q_norm.weight", {s.head_dim}});
            out.push_back({p + "self_attn.k_norm.weight", {s.head_dim}});
        }
        out.push_back({p + "self_attn.o_proj.weight", {H, Q}});
        if (s.o_bias) out.push_back({p + "self_attn.o_proj.bias", {H}});
        out.push_back({p + "post_attention_layernorm.weight", {H}});
        out.push_back({p + "mlp.gate_proj.weight", {I, H}});
        out.push_back({p + "mlp.up_proj.weight", {I, H}});
        out.push_back({p + "mlp.down_proj.weight", {H, I}});
        if (s.mlp_bias) {
            out.push_back({p + "mlp.gate_proj.bias", {I}});
            out.push_back({p + "mlp.up_proj.bias", {I}});
            out.push_back({p + "mlp.down_proj.bias", {H}});
        }
    }
    out.push_back({"model.norm.weight", {H}});
    if (!s.tied_embeddings) out.push_back({"lm_head.weight", {V, H}});
    return out;
}

namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
}

}  // namespace

void check_weights(const ModelSpec& spec, const WeightStore& store,
                   const std::filesystem::path& file) {
    std::vector<std::string> missing, misshapen, bad_dtype, unexpected;
    std::set<std::string> expected_names;
    for (const auto& e : expected_tensors(spec)) {
        expected_names.insert(e.name);
        const WeightTensor* t = store.find(e.name);
        if (!t) {
            missing.push_back(e.name);
            continue;
        }
        if (t->shape != e.shape)
            misshapen.push_back(e.name + " is " + shape_str(t->shape) + " in " +
                                t->file.filename().string() + ", config.json implies " +
                                shape_str(e.shape));
    }
    for (const auto& [name, t] : store.all()) {
        if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBf16)
            bad_dtype.push_back(name + " (" + dtype_name(t.dtype) + ")");
        if (expected_names.count(name) || ends_with(name, "rotary_emb.inv_freq")) continue;
        if (spec.tied_embeddings && name == "lm_head.weight") continue;
        unexpected.push_back(name);
    }
    if (missing.empty() && misshapen.empty() && bad_dtype.empty() && unexpected.empty()) return;

    std::string msg = "weights do not match config.json (" + spec.arch_name + ")";
    if (!missing.empty()) {
        msg += "; missing " + std::to_string(missing.size()) + " tensor(s): " + join(missing);
        for (const auto& m : missing)
            if (m == "lm_head.weight")
                msg += " (tie_word_embeddings is false, so an lm_head.weight is required)";
    }
    if (!misshapen.empty())
        msg += "; wrong shape for " + std::to_string(misshapen.size()) +
               " tensor(s): " + join(misshapen);
    if (!bad_dtype.empty())
        msg += "; unsupported dtype (need F32, F16 or BF16): " + join(bad_dtype);
    if (!unexpected.empty())
        msg += "; " + std::to_string(unexpected.size()) +
               " unexpected tensor(s) (not used by this architecture): " + join(unexpected);
    throw InputError(file, msg);
}

DType dominant_dtype(const WeightStore& store) {
    std::map<DType, int64_t> count;
    for (const auto& [name, t] : store.all()) count[t.dtype] += t.numel();
    DType best = DType::kF32;
    int64_t best_n = -1;
    for (const auto& [dt, n] : count)
        if (n > best_n) {
            best = dt;
            best_n = n;
        }
    return best;
}

}  // namespace kvscope
