#include "tests/model/model_test_util.h"

#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "kernels/dtype.h"

namespace kvscope::test {

fs::path golden_model(const std::string& variant) {
    return fs::path(KVSCOPE_SOURCE_DIR) / "tests" / "golden" / "models" / variant;
}

TempDir::TempDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "_" + info->name() : "x";
    for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    path_ = fs::temp_directory_path() / ("kvscope_model_" + std::to_string(::getpid()) + "_" +
                                         std::to_string(counter++) + "_" + name);
    fs::remove_all(path_);
    fs::create_directories(path_);
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
}

std::string read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw std::runtime_error("test: cannot read " + p.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_bytes(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("test: cannot write " + p.string());
}

json read_json(const fs::path& p) {
    return json::parse(read_bytes(p));
}

void write_json(const fs::path& p, const json& j) {
    write_bytes(p, j.dump(2));
}

void copy_dir_files(const fs::path& src, const fs::path& dst) {
    fs::create_directories(dst);
    for (const auto& e : fs::directory_iterator(src))
        if (e.is_regular_file())
            fs::copy_file(e.path(), dst / e.path().filename(),
                          fs::copy_options::overwrite_existing);
}

RawSafetensors read_safetensors_raw(const fs::path& p) {
    const std::string bytes = read_bytes(p);
    if (bytes.size() < 8) throw std::runtime_error("test: short safetensors " + p.string());
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
    RawSafetensors st;
    st.header = json::parse(bytes.substr(8, n));
    st.data = bytes.substr(8 + n);
    return st;
}

void write_safetensors_raw(const fs::path& p, const RawSafetensors& st) {
    std::string h = st.header.dump();
    while (h.size() % 8 != 0) h += ' ';
    std::string out(8, '\0');
    uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    write_bytes(p, out + h + st.data);
}

void rewrite_safetensors_header(const fs::path& src, const fs::path& dst,
                                const std::function<void(json&)>& edit) {
    RawSafetensors st = read_safetensors_raw(src);
    edit(st.header);
    write_safetensors_raw(dst, st);
}

void write_tiny_model(const fs::path& dir) {
    fs::create_directories(dir);
    const int64_t V = 16, H = 8, I = 12, Q = 8, KV = 4;
    json cfg = {{"architectures", {"LlamaForCausalLM"}},
                {"vocab_size", V},
                {"hidden_size", H},
                {"intermediate_size", I},
                {"num_hidden_layers", 1},
                {"num_attention_heads", 2},
                {"num_key_value_heads", 1},
                {"head_dim", 4},
                {"max_position_embeddings", 64},
                {"rms_norm_eps", 1e-5},
                {"hidden_act", "silu"},
                {"rope_theta", 10000.0},
                {"rope_scaling", nullptr},
                {"tie_word_embeddings", false},
                {"bos_token_id", 1},
                {"eos_token_id", 2},
                {"torch_dtype", "bfloat16"}};
    write_json(dir / "config.json", cfg);
    const std::vector<std::pair<std::string, std::vector<int64_t>>> tensors = {
        {"model.embed_tokens.weight", {V, H}},
        {"model.layers.0.input_layernorm.weight", {H}},
        {"model.layers.0.self_attn.q_proj.weight", {Q, H}},
        {"model.layers.0.self_attn.k_proj.weight", {KV, H}},
        {"model.layers.0.self_attn.v_proj.weight", {KV, H}},
        {"model.layers.0.self_attn.o_proj.weight", {H, Q}},
        {"model.layers.0.post_attention_layernorm.weight", {H}},
        {"model.layers.0.mlp.gate_proj.weight", {I, H}},
        {"model.layers.0.mlp.up_proj.weight", {I, H}},
        {"model.layers.0.mlp.down_proj.weight", {H, I}},
        {"model.norm.weight", {H}},
        {"lm_head.weight", {V, H}},
    };
    const char* dtypes[3] = {"BF16", "F32", "F16"};
    std::mt19937 rng(42);
    std::normal_distribution<float> nd(0.0f, 0.5f);
    RawSafetensors st;
    st.header = json::object();
    st.header["__metadata__"] = {{"format", "pt"}};
    for (size_t k = 0; k < tensors.size(); ++k) {
        const auto& [name, shape] = tensors[k];
        int64_t n = 1;
        for (auto d : shape) n *= d;
        const std::string dt = dtypes[k % 3];
        const size_t begin = st.data.size();
        for (int64_t i = 0; i < n; ++i) {
            const float v = nd(rng);
            if (dt == "F32") {
                char b[4];
                std::memcpy(b, &v, 4);
                st.data.append(b, 4);
            } else {
                const uint16_t h = dt == "BF16" ? f32_to_bf16(v) : f32_to_f16(v);
                st.data.push_back(static_cast<char>(h & 0xff));
                st.data.push_back(static_cast<char>(h >> 8));
            }
        }
        st.header[name] = {
            {"dtype", dt}, {"shape", shape}, {"data_offsets", {begin, st.data.size()}}};
    }
    write_safetensors_raw(dir / "model.safetensors", st);
}

std::string input_error_message(const std::function<void()>& f) {
    try {
        f();
    } catch (const InputError& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("<not an InputError: ") + e.what() + ">";
    }
    return "<no exception>";
}

void expect_same_spec(const ModelSpec& a, const ModelSpec& b) {
    EXPECT_EQ(a.arch, b.arch);
    EXPECT_EQ(a.arch_name, b.arch_name);
    EXPECT_EQ(a.vocab_size, b.vocab_size);
    EXPECT_EQ(a.hidden, b.hidden);
    EXPECT_EQ(a.intermediate, b.intermediate);
    EXPECT_EQ(a.n_layers, b.n_layers);
    EXPECT_EQ(a.n_heads, b.n_heads);
    EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
    EXPECT_EQ(a.head_dim, b.head_dim);
    EXPECT_EQ(a.max_position, b.max_position);
    EXPECT_EQ(a.norm_eps, b.norm_eps);
    EXPECT_EQ(a.rope.theta, b.rope.theta);
    EXPECT_EQ(a.rope.style, b.rope.style);
    EXPECT_EQ(a.rope.scaling, b.rope.scaling);
    EXPECT_EQ(a.rope.factor, b.rope.factor);
    EXPECT_EQ(a.rope.low_freq_factor, b.rope.low_freq_factor);
    EXPECT_EQ(a.rope.high_freq_factor, b.rope.high_freq_factor);
    EXPECT_EQ(a.rope.original_max_position, b.rope.original_max_position);
    EXPECT_EQ(a.attention_bias, b.attention_bias);
    EXPECT_EQ(a.o_bias, b.o_bias);
    EXPECT_EQ(a.mlp_bias, b.mlp_bias);
    EXPECT_EQ(a.qk_norm, b.qk_norm);
    EXPECT_EQ(a.tied_embeddings, b.tied_embeddings);
    EXPECT_EQ(a.hidden_act, b.hidden_act);
    EXPECT_EQ(a.weight_dtype, b.weight_dtype);
    EXPECT_EQ(a.bos_id, b.bos_id);
    EXPECT_EQ(a.eos_ids, b.eos_ids);
    EXPECT_EQ(a.pad_id, b.pad_id);
    EXPECT_EQ(a.sliding_window, b.sliding_window);
}

}  // namespace kvscope::test
