// config.json (+ generation_config.json) -> ModelSpec, for both the transformers-4 layout
// (rope_theta + rope_scaling{type|rope_type}, torch_dtype) and the transformers-5 layout
// (rope_parameters{rope_theta, rope_type, ...}, dtype). Defaults are HF's per-architecture
// defaults, used only when a key is absent.
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/model/json_fields.h"
#include "core/model/model_spec.h"

namespace kvscope {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct ArchInfo {
    const char* hf_class;
    const char* model_type;
    Architecture arch;
    int64_t default_max_position;  // HF config class default
    int64_t default_head_dim;      // 0 = hidden / heads; Qwen3Config defaults to 128
};

constexpr ArchInfo kArchs[] = {
    {"LlamaForCausalLM", "llama", Architecture::kLlama, 2048, 0},
    {"MistralForCausalLM", "mistral", Architecture::kMistral, 4096 * 32, 0},
    {"Qwen2ForCausalLM", "qwen2", Architecture::kQwen2, 32768, 0},
    {"Qwen3ForCausalLM", "qwen3", Architecture::kQwen3, 32768, 128},
};

std::string supported_list() {
    std::string s;
    for (const auto& a : kArchs) s += (s.empty() ? "" : ", ") + std::string(a.hf_class);
    return s;
}

const ArchInfo& find_arch(const json& cfg, const fs::path& file) {
    auto it = cfg.find("architectures");
    if (it != cfg.end() && !it->is_null()) {
        if (!it->is_array() || it->empty() || !(*it)[0].is_string())
            throw InputError(file,
                             "field 'architectures' must be a non-empty list of strings, got " +
                                 it->dump().substr(0, 80));
        const std::string name = (*it)[0].get<std::string>();
        for (const auto& a : kArchs)
            if (name == a.hf_class) return a;
        throw InputError(file,
                         "unsupported architecture '" + name + "'; supported: " + supported_list());
    }
    // Some configs carry only model_type; map it to its CausalLM class.
    if (auto mt = json_string(cfg, "model_type", file)) {
        for (const auto& a : kArchs)
            if (*mt == a.model_type) return a;
        throw InputError(file, "unsupported model_type '" + *mt +
                                   "' (no 'architectures' field); supported: " + supported_list());
    }
    throw InputError(
        file, "missing required field 'architectures' (supported: " + supported_list() + ")");
}

// The rope scaling object: transformers 5 puts type, parameters and theta in `rope_parameters`;
// transformers 4 has top-level `rope_theta` and an optional `rope_scaling` object.
void parse_rope(const json& cfg, const fs::path& file, RopeSpec& rope) {
    const json* params = nullptr;
    std::string where;
    auto rp = cfg.find("rope_parameters");
    if (rp != cfg.end() && !rp->is_null()) {
        if (!rp->is_object())
            throw InputError(
                file, "field 'rope_parameters' must be an object, got " + json_type_name(*rp));
        params = &*rp;
        where = "rope_parameters";
    }
    double theta = 10000.0;
    if (auto t = json_number(cfg, "rope_theta", file)) theta = *t;
    if (params) {
        if (auto t = json_number(*params, "rope_theta", file, where + ".rope_theta")) theta = *t;
    } else {
        auto rs = cfg.find("rope_scaling");
        if (rs != cfg.end() && !rs->is_null()) {
            if (!rs->is_object())
                throw InputError(file, "field 'rope_scaling' must be an object or null, got " +
                                           json_type_name(*rs));
            params = &*rs;
            where = "rope_scaling";
        }
    }
    rope.theta = theta;
    rope.style = RopeStyle::kHalf;
    rope.scaling = RopeScaling::kNone;
    if (!params) return;

    std::string type = "default";
    std::string type_key = where + ".rope_type";
    if (auto t = json_string(*params, "rope_type", file, type_key)) {
        type = *t;
    } else if (auto t2 = json_string(*params, "type", file, where + ".type")) {
        type = *t2;
        type_key = where + ".type";
    }
    auto need = [&](const char* key) {
        auto v = json_number(*params, key, file, where + "." + key);
        if (!v)
            throw InputError(file, "missing required field '" + where + "." + key +
                                       "' for rope type '" + type + "'");
        return *v;
    };
    if (type == "default") {
        rope.scaling = RopeScaling::kNone;
    } else if (type == "linear") {
        rope.scaling = RopeScaling::kLinear;
        rope.factor = need("factor");
    } else if (type == "llama3") {
        rope.scaling = RopeScaling::kLlama3;
        rope.factor = need("factor");
        rope.low_freq_factor = need("low_freq_factor");
        rope.high_freq_factor = need("high_freq_factor");
        auto orig = json_int(*params, "original_max_position_embeddings", file,
                             where + ".original_max_position_embeddings");
        if (!orig)
            throw InputError(file, "missing required field '" + where +
                                       ".original_max_position_embeddings' for rope type 'llama3'");
        rope.original_max_position = *orig;
    } else {
        throw InputError(file, "unsupported rope scaling type '" + type + "' in '" + type_key +
                                   "' (supported: default, linear, llama3)");
    }
}

std::vector<int64_t> parse_eos(const json& obj, const fs::path& file) {
    std::vector<int64_t> out;
    auto it = obj.find("eos_token_id");
    if (it == obj.end() || it->is_null()) return out;
    if (it->is_array()) {
        for (size_t i = 0; i < it->size(); ++i)
            out.push_back(
                json_value_int((*it)[i], file, "eos_token_id[" + std::to_string(i) + "]"));
    } else {
        out.push_back(json_value_int(*it, file, "field 'eos_token_id'"));
    }
    return out;
}

bool has_value(const json& obj, const char* key) {
    auto it = obj.find(key);
    return it != obj.end() && !it->is_null();
}

// bos/eos/pad: generation_config.json wins where it has the key (HF's generate() reads it).
void parse_special_ids(const json& cfg, const fs::path& cfg_file, ModelSpec& spec) {
    const fs::path gen_file = cfg_file.parent_path() / "generation_config.json";
    json gen = json::object();
    std::error_code ec;
    if (fs::exists(gen_file, ec)) gen = read_json_file(gen_file);
    auto pick = [&](const char* key) -> std::pair<const json*, fs::path> {
        if (has_value(gen, key)) return {&gen, gen_file};
        return {&cfg, cfg_file};
    };
    {
        auto [obj, f] = pick("bos_token_id");
        spec.bos_id = json_int(*obj, "bos_token_id", f).value_or(-1);
    }
    {
        auto [obj, f] = pick("eos_token_id");
        spec.eos_ids = parse_eos(*obj, f);
    }
    {
        auto [obj, f] = pick("pad_token_id");
        spec.pad_id = json_int(*obj, "pad_token_id", f).value_or(-1);
    }
}

}  // namespace

const char* architecture_name(Architecture a) {
    switch (a) {
        case Architecture::kLlama:
            return "llama";
        case Architecture::kMistral:
            return "mistral";
        case Architecture::kQwen2:
            return "qwen2";
        case Architecture::kQwen3:
            return "qwen3";
    }
    return "?";
}

ModelSpec parse_hf_config(const fs::path& config_json) {
    const fs::path& f = config_json;
    const json cfg = read_json_file(f);
    const ArchInfo& info = find_arch(cfg, f);

    ModelSpec s;
    s.arch = info.arch;
    s.arch_name = info.hf_class;
    s.vocab_size = json_require_int(cfg, "vocab_size", f);
    s.hidden = json_require_int(cfg, "hidden_size", f);
    s.intermediate = json_require_int(cfg, "intermediate_size", f);
    s.n_layers = json_require_int(cfg, "num_hidden_layers", f);
    s.n_heads = json_require_int(cfg, "num_attention_heads", f);
    s.n_kv_heads = json_int(cfg, "num_key_value_heads", f).value_or(s.n_heads);
    if (auto hd = json_int(cfg, "head_dim", f)) {
        s.head_dim = *hd;
    } else if (info.default_head_dim > 0 && !cfg.contains("head_dim")) {
        s.head_dim = info.default_head_dim;
    } else {
        if (s.n_heads <= 0)
            throw InputError(
                f, "num_attention_heads must be positive, got " + std::to_string(s.n_heads));
        s.head_dim = s.hidden / s.n_heads;
    }
    s.max_position =
        json_int(cfg, "max_position_embeddings", f).value_or(info.default_max_position);
    s.norm_eps = json_number(cfg, "rms_norm_eps", f).value_or(1e-6);
    parse_rope(cfg, f, s.rope);

    s.hidden_act = json_string(cfg, "hidden_act", f).value_or("silu");
    if (s.hidden_act == "swish") s.hidden_act = "silu";  // the same function in HF's ACT2FN
    if (s.hidden_act != "silu")
        throw InputError(f,
                         "unsupported hidden_act '" + s.hidden_act + "' (only silu is supported)");

    // Biases, as HF's modeling code builds the projections for each architecture.
    switch (info.arch) {
        case Architecture::kLlama:
        case Architecture::kQwen3:
            s.attention_bias = json_bool(cfg, "attention_bias", f).value_or(false);
            s.o_bias = s.attention_bias;
            break;
        case Architecture::kMistral:
            s.attention_bias = false;
            s.o_bias = false;
            break;
        case Architecture::kQwen2:
            s.attention_bias = true;  // Qwen2 q/k/v always carry a bias, o_proj never
            s.o_bias = false;
            break;
    }
    s.mlp_bias = info.arch == Architecture::kLlama && json_bool(cfg, "mlp_bias", f).value_or(false);
    s.qk_norm = info.arch == Architecture::kQwen3;
    s.tied_embeddings = json_bool(cfg, "tie_word_embeddings", f).value_or(false);

    if (info.arch == Architecture::kMistral) {
        s.sliding_window = json_int(cfg, "sliding_window", f).value_or(0);
    } else if (info.arch == Architecture::kQwen2 || info.arch == Architecture::kQwen3) {
        if (json_bool(cfg, "use_sliding_window", f).value_or(false))
            s.sliding_window = json_int(cfg, "sliding_window", f).value_or(0);
    }

    // The stored dtype is decided by the weights themselves; this is only a first guess.
    auto dt = json_string(cfg, "dtype", f);
    if (!dt) dt = json_string(cfg, "torch_dtype", f);
    if (dt) {
        if (*dt == "float32") s.weight_dtype = DType::kF32;
        if (*dt == "float16") s.weight_dtype = DType::kF16;
        if (*dt == "bfloat16") s.weight_dtype = DType::kBf16;
    }

    parse_special_ids(cfg, f, s);
    validate_spec(s, f);
    return s;
}

void validate_spec(const ModelSpec& s, const fs::path& file) {
    // Upper bounds keep every size product far from int64 overflow (vocab * hidden < 2^45).
    auto in_range = [&](const char* name, int64_t v, int64_t lo, int64_t hi) {
        if (v < lo || v > hi)
            throw InputError(file, std::string(name) + " is " + std::to_string(v) + ", expected " +
                                       std::to_string(lo) + ".." + std::to_string(hi));
    };
    in_range("vocab_size", s.vocab_size, 1, int64_t{1} << 24);
    in_range("hidden_size", s.hidden, 1, int64_t{1} << 20);
    in_range("intermediate_size", s.intermediate, 1, int64_t{1} << 22);
    in_range("num_hidden_layers", s.n_layers, 1, 4096);
    in_range("num_attention_heads", s.n_heads, 1, 4096);
    in_range("num_key_value_heads", s.n_kv_heads, 1, 4096);
    in_range("head_dim", s.head_dim, 1, 8192);
    in_range("max_position_embeddings", s.max_position, 0, int64_t{1} << 31);
    if (s.n_heads % s.n_kv_heads != 0)
        throw InputError(file, "num_attention_heads (" + std::to_string(s.n_heads) +
                                   ") is not a multiple of num_key_value_heads (" +
                                   std::to_string(s.n_kv_heads) + ")");
    if (s.head_dim % 2 != 0)
        throw InputError(file, "head_dim " + std::to_string(s.head_dim) +
                                   " is odd; RoPE rotates pairs of dimensions");
    if (!(s.norm_eps > 0.0) || !std::isfinite(s.norm_eps))
        throw InputError(file, "rms_norm_eps must be positive, got " + format_number(s.norm_eps));
    const RopeSpec& r = s.rope;
    if (!(r.theta > 0.0) || !std::isfinite(r.theta))
        throw InputError(file, "rope_theta must be positive, got " + format_number(r.theta));
    if (r.scaling != RopeScaling::kNone && (!(r.factor > 0.0) || !std::isfinite(r.factor)))
        throw InputError(file,
                         "rope scaling factor must be positive, got " + format_number(r.factor));
    if (r.scaling == RopeScaling::kLlama3) {
        if (!(r.low_freq_factor > 0.0) || !(r.high_freq_factor > r.low_freq_factor))
            throw InputError(file,
                             "llama3 rope scaling needs 0 < low_freq_factor < "
                             "high_freq_factor, got " +
                                 format_number(r.low_freq_factor) + " and " +
                                 format_number(r.high_freq_factor));
        if (r.original_max_position <= 0)
            throw InputError(file, "original_max_position_embeddings must be positive, got " +
                                       std::to_string(r.original_max_position));
    }
    if (s.hidden_act != "silu")
        throw InputError(file, "unsupported hidden_act '" + s.hidden_act + "'");
}

}  // namespace kvscope
