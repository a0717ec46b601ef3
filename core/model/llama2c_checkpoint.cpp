#include "core/model/llama2c_checkpoint.h"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "core/model/json_fields.h"
#include "core/model/weight_layout.h"

namespace kvscope {

namespace fs = std::filesystem;

namespace {

// "ak42" read as a little-endian uint32: the magic of llama2.c's version >= 1 exports.
constexpr uint32_t kLlama2cMagic = 0x616b3432;

std::string header_str(const Llama2cHeader& h) {
    return "dim=" + std::to_string(h.dim) + " hidden_dim=" + std::to_string(h.hidden_dim) +
           " n_layers=" + std::to_string(h.n_layers) + " n_heads=" + std::to_string(h.n_heads) +
           " n_kv_heads=" + std::to_string(h.n_kv_heads) +
           " vocab_size=" + std::to_string(h.vocab_size) + " seq_len=" + std::to_string(h.seq_len);
}

}  // namespace

std::string llama2c_header_problem(const Llama2cHeader& h) {
    auto range = [](const char* name, int64_t v, int64_t lo, int64_t hi) -> std::string {
        if (v < lo || v > hi)
            return std::string(name) + " " + std::to_string(v) + " is outside " +
                   std::to_string(lo) + ".." + std::to_string(hi);
        return "";
    };
    std::string p;
    if (!(p = range("dim", h.dim, 1, 1 << 20)).empty()) return p;
    if (!(p = range("hidden_dim", h.hidden_dim, 1, 1 << 22)).empty()) return p;
    if (!(p = range("n_layers", h.n_layers, 1, 4096)).empty()) return p;
    if (!(p = range("n_heads", h.n_heads, 1, 4096)).empty()) return p;
    if (!(p = range("n_kv_heads", h.n_kv_heads, 1, 4096)).empty()) return p;
    if (!(p = range("seq_len", h.seq_len, 1, 1 << 22)).empty()) return p;
    const int64_t v = std::abs(static_cast<int64_t>(h.vocab_size));
    if (!(p = range("|vocab_size|", v, 1, 1 << 24)).empty()) return p;
    if (h.dim % h.n_heads != 0)
        return "n_heads " + std::to_string(h.n_heads) + " does not divide dim " +
               std::to_string(h.dim);
    if (h.n_heads % h.n_kv_heads != 0)
        return "n_kv_heads " + std::to_string(h.n_kv_heads) + " does not divide n_heads " +
               std::to_string(h.n_heads);
    if ((h.dim / h.n_heads) % 2 != 0)
        return "head size " + std::to_string(h.dim / h.n_heads) + " is odd";
    return "";
}

int64_t llama2c_file_size(const Llama2cHeader& h) {
    const int64_t D = h.dim, F = h.hidden_dim, L = h.n_layers;
    const int64_t V = std::abs(static_cast<int64_t>(h.vocab_size));
    const int64_t hs = D / h.n_heads, KV = static_cast<int64_t>(h.n_kv_heads) * hs;
    int64_t floats = V * D;                          // token_embedding
    floats += L * D;                                 // rms_att
    floats += L * D * D + 2 * L * KV * D;            // wq, wk, wv
    floats += L * D * D;                             // wo
    floats += L * D;                                 // rms_ffn
    floats += 3 * L * F * D;                         // w1, w2, w3
    floats += D;                                     // rms_final
    floats += static_cast<int64_t>(h.seq_len) * hs;  // freq_cis_real + freq_cis_imag
    if (h.vocab_size < 0) floats += V * D;           // wcls
    return static_cast<int64_t>(kLlama2cHeaderBytes) + 4 * floats;
}

std::unique_ptr<Model> load_llama2c(const fs::path& file) {
    auto mapped = std::make_shared<MappedFile>(file);
    const size_t size = mapped->size();
    if (size == 0) throw InputError(file, "file is empty (0 bytes)");
    if (size < kLlama2cHeaderBytes)
        throw InputError(file, "too short for a llama2.c checkpoint (" + std::to_string(size) +
                                   " bytes; the header alone takes 28)");
    int32_t raw[7];
    std::memcpy(raw, mapped->data(), sizeof raw);
    uint32_t magic;
    std::memcpy(&magic, mapped->data(), 4);
    if (magic == kLlama2cMagic)
        throw InputError(file, "llama2.c version-" + std::to_string(raw[1]) +
                                   " checkpoint (magic \"ak42\"); only the legacy version-0 "
                                   "format is supported (llama2.c export.py --version 0)");
    const Llama2cHeader h{raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6]};
    const std::string problem = llama2c_header_problem(h);
    if (!problem.empty())
        throw InputError(file, "not a llama2.c checkpoint: header (" + header_str(h) +
                                   ") is implausible: " + problem);
    const int64_t expect = llama2c_file_size(h);
    if (static_cast<int64_t>(size) != expect) {
        Llama2cHeader other = h;
        other.vocab_size = -h.vocab_size;
        std::string hint;
        if (llama2c_file_size(other) == static_cast<int64_t>(size))
            hint = h.vocab_size > 0 ? " (the size fits a separate classifier, i.e. vocab_size < 0)"
                                    : " (the size fits a shared classifier, i.e. vocab_size > 0)";
        throw InputError(file, "size is " + std::to_string(size) + " bytes but a llama2.c " +
                                   "checkpoint with header " + header_str(h) + " (" +
                                   (h.vocab_size > 0 ? "shared" : "separate") +
                                   " classifier) must be " + std::to_string(expect) + " bytes" +
                                   hint);
    }

    auto model = std::make_unique<Model>();
    model->format = ModelFormat::kLlama2c;
    model->path = file;
    ModelSpec& s = model->spec;
    s.arch = Architecture::kLlama;
    s.arch_name = "llama2.c";
    s.vocab_size = std::abs(static_cast<int64_t>(h.vocab_size));
    s.hidden = h.dim;
    s.intermediate = h.hidden_dim;
    s.n_layers = h.n_layers;
    s.n_heads = h.n_heads;
    s.n_kv_heads = h.n_kv_heads;
    s.head_dim = h.dim / h.n_heads;
    s.max_position = h.seq_len;
    s.norm_eps = 1e-5;  // hard-coded in llama2.c's rmsnorm
    s.rope = RopeSpec{};
    s.rope.theta = 10000.0;
    s.rope.style = RopeStyle::kInterleaved;
    s.tied_embeddings = h.vocab_size > 0;
    s.weight_dtype = DType::kF32;
    s.bos_id = 1;  // llama2.c's (and Llama 2's sentencepiece) convention
    s.eos_ids = {2};
    validate_spec(s, file);

    const int64_t D = s.hidden, F = s.intermediate, L = s.n_layers, V = s.vocab_size;
    const int64_t KV = s.kv_dim();
    // The header is 28 bytes, so every float below is 4-byte aligned in the page-aligned mapping.
    const auto* base = reinterpret_cast<const float*>(mapped->data() + kLlama2cHeaderBytes);
    const float* p = base;
    WeightStore& ws = model->weights;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, const float* data) {
        WeightTensor t;
        t.name = name;
        t.dtype = DType::kF32;
        t.shape = std::move(shape);
        t.data = data;
        t.file = file;
        ws.add(std::move(t));
    };
    auto layer = [](int64_t l, const char* rest) {
        return "model.layers." + std::to_string(l) + "." + rest;
    };
    add("model.embed_tokens.weight", {V, D}, p);
    p += V * D;
    for (int64_t l = 0; l < L; ++l) add(layer(l, "input_layernorm.weight"), {D}, p + l * D);
    p += L * D;
    for (int64_t l = 0; l < L; ++l) add(layer(l, "self_attn.q_proj.weight"), {D, D}, p + l * D * D);
    p += L * D * D;
    for (int64_t l = 0; l < L; ++l)
        add(layer(l, "self_attn.k_proj.weight"), {KV, D}, p + l * KV * D);
    p += L * KV * D;
    for (int64_t l = 0; l < L; ++l)
        add(layer(l, "self_attn.v_proj.weight"), {KV, D}, p + l * KV * D);
    p += L * KV * D;
    for (int64_t l = 0; l < L; ++l) add(layer(l, "self_attn.o_proj.weight"), {D, D}, p + l * D * D);
    p += L * D * D;
    for (int64_t l = 0; l < L; ++l)
        add(layer(l, "post_attention_layernorm.weight"), {D}, p + l * D);
    p += L * D;
    for (int64_t l = 0; l < L; ++l) add(layer(l, "mlp.gate_proj.weight"), {F, D}, p + l * F * D);
    p += L * F * D;
    for (int64_t l = 0; l < L; ++l) add(layer(l, "mlp.down_proj.weight"), {D, F}, p + l * D * F);
    p += L * D * F;
    for (int64_t l = 0; l < L; ++l) add(layer(l, "mlp.up_proj.weight"), {F, D}, p + l * F * D);
    p += L * F * D;
    add("model.norm.weight", {D}, p);
    p += D;
    p += static_cast<int64_t>(h.seq_len) * s.head_dim;  // freq_cis_real + freq_cis_imag
    if (!s.tied_embeddings) add("lm_head.weight", {V, D}, p);
    ws.keep_alive(std::move(mapped));
    check_weights(s, ws, file);
    return model;
}

namespace {

// Writes float rows to `out`, throwing InputError naming `path` on failure.
class F32Writer {
  public:
    explicit F32Writer(const fs::path& path)
        : path_(path), out_(path, std::ios::binary | std::ios::trunc) {
        if (!out_) throw InputError(path, std::string("cannot create: ") + std::strerror(errno));
    }
    void write(const void* data, size_t bytes) {
        out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
        if (!out_) fail();
    }
    void write_f32(const std::vector<float>& v) { write(v.data(), v.size() * sizeof(float)); }
    void close() {
        out_.close();
        if (!out_) fail();
    }

  private:
    [[noreturn]] void fail() {
        const std::string why = std::strerror(errno);
        out_.close();
        std::error_code ec;
        fs::remove(path_, ec);
        throw InputError(path_, "write failed: " + why);
    }
    fs::path path_;
    std::ofstream out_;
};

std::vector<float> as_f32(const WeightTensor& t) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    copy_as_f32(t, 0, t.numel(), v.data());
    return v;
}

// HF stores each head's q/k rows in half-rotation order: row j < hs/2 pairs with row j + hs/2.
// llama2.c pairs rows 2i and 2i+1, so interleaved row 2i = HF row i, 2i+1 = HF row hs/2 + i.
std::vector<float> half_to_interleaved(const std::vector<float>& w, int64_t n_heads, int64_t hs,
                                       int64_t cols) {
    std::vector<float> out(w.size());
    for (int64_t h = 0; h < n_heads; ++h)
        for (int64_t r = 0; r < hs; ++r) {
            const int64_t src = h * hs + (r % 2 == 0 ? r / 2 : hs / 2 + r / 2);
            std::memcpy(&out[static_cast<size_t>((h * hs + r) * cols)],
                        &w[static_cast<size_t>(src * cols)], static_cast<size_t>(cols) * 4);
        }
    return out;
}

}  // namespace

void export_llama2c(const Model& model, const fs::path& out_bin) {
    const ModelSpec& s = model.spec;
    std::vector<std::string> why;
    if (s.attention_bias || s.o_bias) why.push_back("attention biases");
    if (s.mlp_bias) why.push_back("MLP biases");
    if (s.qk_norm) why.push_back("q/k RMSNorm");
    if (s.head_dim * s.n_heads != s.hidden)
        why.push_back("head_dim " + std::to_string(s.head_dim) + " != hidden_size / heads (" +
                      std::to_string(s.hidden) + " / " + std::to_string(s.n_heads) + ")");
    if (s.rope.scaling != RopeScaling::kNone) why.push_back("RoPE scaling");
    if (s.rope.theta != 10000.0)
        why.push_back("rope_theta " + format_number(s.rope.theta) + " (llama2.c uses 10000)");
    if (std::fabs(s.norm_eps - 1e-5) > 1e-12)
        why.push_back("rms_norm_eps " + format_number(s.norm_eps) + " (llama2.c uses 1e-5)");
    if (s.max_position <= 0 || s.max_position > (1 << 22))
        why.push_back("max_position_embeddings " + std::to_string(s.max_position) +
                      " (the header's seq_len must be 1..4194304)");
    if (!why.empty()) {
        std::string list;
        for (const auto& w : why) list += (list.empty() ? "" : ", ") + w;
        throw InputError(model.path,
                         "cannot export to llama2.c: the format cannot express " + list);
    }

    // Truncating a file that is mapped under the weights would crash the reads below (SIGBUS).
    std::error_code ec;
    if (fs::exists(out_bin, ec))
        for (const auto& [name, t] : model.weights.all())
            if (fs::equivalent(out_bin, t.file, ec))
                throw InputError(out_bin, "is the model's own weight file; choose another output");

    const int64_t D = s.hidden, L = s.n_layers, hs = s.head_dim;
    const Llama2cHeader h{static_cast<int32_t>(D),
                          static_cast<int32_t>(s.intermediate),
                          static_cast<int32_t>(L),
                          static_cast<int32_t>(s.n_heads),
                          static_cast<int32_t>(s.n_kv_heads),
                          static_cast<int32_t>(s.tied_embeddings ? s.vocab_size : -s.vocab_size),
                          static_cast<int32_t>(s.max_position)};
    const bool permute = s.rope.style == RopeStyle::kHalf;
    const WeightStore& ws = model.weights;
    auto layer = [](int64_t l, const char* rest) {
        return "model.layers." + std::to_string(l) + "." + rest;
    };

    F32Writer w(out_bin);
    const int32_t raw[7] = {h.dim,        h.hidden_dim, h.n_layers, h.n_heads,
                            h.n_kv_heads, h.vocab_size, h.seq_len};
    w.write(raw, sizeof raw);
    w.write_f32(as_f32(ws.at("model.embed_tokens.weight")));
    for (int64_t l = 0; l < L; ++l) w.write_f32(as_f32(ws.at(layer(l, "input_layernorm.weight"))));
    for (int64_t l = 0; l < L; ++l) {
        auto q = as_f32(ws.at(layer(l, "self_attn.q_proj.weight")));
        w.write_f32(permute ? half_to_interleaved(q, s.n_heads, hs, D) : q);
    }
    for (int64_t l = 0; l < L; ++l) {
        auto k = as_f32(ws.at(layer(l, "self_attn.k_proj.weight")));
        w.write_f32(permute ? half_to_interleaved(k, s.n_kv_heads, hs, D) : k);
    }
    for (const char* name :
         {"self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
          "mlp.gate_proj.weight", "mlp.down_proj.weight", "mlp.up_proj.weight"})
        for (int64_t l = 0; l < L; ++l) w.write_f32(as_f32(ws.at(layer(l, name))));
    w.write_f32(as_f32(ws.at("model.norm.weight")));
    // Legacy RoPE tables, cos then sin of pos * theta^(-2i/hs): [seq_len, hs/2] each.
    const int64_t half = hs / 2;
    std::vector<float> cos_t(static_cast<size_t>(s.max_position * half)), sin_t(cos_t.size());
    for (int64_t pos = 0; pos < s.max_position; ++pos)
        for (int64_t i = 0; i < half; ++i) {
            const double freq =
                std::pow(10000.0, -2.0 * static_cast<double>(i) / static_cast<double>(hs));
            const double a = static_cast<double>(pos) * freq;
            cos_t[static_cast<size_t>(pos * half + i)] = static_cast<float>(std::cos(a));
            sin_t[static_cast<size_t>(pos * half + i)] = static_cast<float>(std::sin(a));
        }
    w.write_f32(cos_t);
    w.write_f32(sin_t);
    if (!s.tied_embeddings) w.write_f32(as_f32(ws.at("lm_head.weight")));
    w.close();
}

}  // namespace kvscope
