// load_model: format detection (HF directory, single safetensors file, llama2.c .bin), refusal of
// PyTorch pickles, sharded safetensors, and validation of the weights against config.json.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "core/error.h"
#include "core/model/json_fields.h"
#include "core/model/llama2c_checkpoint.h"
#include "core/model/model.h"
#include "core/model/safetensors.h"
#include "core/model/weight_layout.h"

namespace kvscope {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

[[noreturn]] void refuse_pickle(const fs::path& file) {
    throw InputError(
        file,
        "is a PyTorch pickle checkpoint, which KVScope does not load: unpickling can execute "
        "arbitrary code from the file. Convert it to safetensors first, e.g. in Python "
        "AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(OUT, safe_serialization=True), "
        "or with the safetensors project's convert script (convert.py)");
}

bool is_pickle_name(const fs::path& p) {
    const std::string ext = lower(p.extension().string());
    const std::string name = lower(p.filename().string());
    return ext == ".pt" || ext == ".pth" || ext == ".ckpt" ||
           (name.rfind("pytorch_model", 0) == 0 && ext == ".bin");
}

// First bytes of a file: pickle (protocol 2+ opcode 0x80) or torch's zip container ("PK\3\4").
bool starts_like_pickle(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    unsigned char b[4] = {0, 0, 0, 0};
    in.read(reinterpret_cast<char*>(b), 4);
    const auto n = in.gcount();
    if (n >= 1 && b[0] == 0x80) return true;
    return n == 4 && b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4;
}

// Shard names come from the index; they must name files beside it, nothing else.
fs::path shard_path(const fs::path& dir, const std::string& name, const fs::path& index) {
    const fs::path p(name);
    if (name.empty() || p.is_absolute() || p.has_parent_path() || name == "." || name == "..")
        throw InputError(index,
                         "shard name '" + name + "' must be a plain file name in " + dir.string());
    return dir / p;
}

// Loads model.safetensors.index.json: {"weight_map": {tensor: shard file}}; each shard once.
void load_sharded(const fs::path& dir, const fs::path& index, WeightStore& store) {
    const json j = read_json_file(index);
    auto wm = j.find("weight_map");
    if (wm == j.end() || wm->is_null())
        throw InputError(index, "missing required field 'weight_map'");
    if (!wm->is_object())
        throw InputError(index, "field 'weight_map' must be an object, got " + json_type_name(*wm));
    if (wm->empty()) throw InputError(index, "'weight_map' lists no tensors");
    std::map<std::string, std::vector<std::string>> by_shard;  // shard -> tensors listed in it
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (!it->is_string())
            throw InputError(index, "weight_map entry for '" + it.key() +
                                        "' must be a file name, got " + json_type_name(*it));
        by_shard[it->get<std::string>()].push_back(it.key());
    }
    for (const auto& [shard, listed] : by_shard) {
        const fs::path file = shard_path(dir, shard, index);
        std::error_code ec;
        if (!fs::is_regular_file(file, ec))
            throw InputError(index, "shard '" + shard + "' (listed for tensor '" + listed.front() +
                                        "') does not exist: " + file.string());
        const auto names = load_safetensors_into(file, store);
        const std::set<std::string> have(names.begin(), names.end());
        std::string absent;
        for (const auto& t : listed)
            if (!have.count(t)) absent += (absent.empty() ? "" : ", ") + t;
        if (!absent.empty())
            throw InputError(file, "tensor(s) listed for this shard in " +
                                       index.filename().string() +
                                       " are missing from it: " + absent);
    }
}

std::unique_ptr<Model> load_hf(const fs::path& dir, const fs::path& single_file) {
    const fs::path config = dir / "config.json";
    fs::path weights_file = single_file;
    fs::path index;
    std::error_code ec;
    if (weights_file.empty()) {
        if (fs::is_regular_file(dir / "model.safetensors", ec)) {
            weights_file = dir / "model.safetensors";
        } else if (fs::is_regular_file(dir / "model.safetensors.index.json", ec)) {
            index = dir / "model.safetensors.index.json";
        } else {
            // No safetensors: name a pickle if there is one, so the user learns what to convert.
            std::vector<fs::path> pickles;
            for (const auto& e : fs::directory_iterator(dir, ec))
                if (e.is_regular_file(ec) &&
                    (is_pickle_name(e.path()) ||
                     lower(e.path().filename().string()) == "pytorch_model.bin.index.json"))
                    pickles.push_back(e.path());
            std::sort(pickles.begin(), pickles.end());
            if (!pickles.empty()) refuse_pickle(pickles.front());
            throw InputError(dir,
                             "no model weights found: expected model.safetensors or "
                             "model.safetensors.index.json (HF format) in this directory, or "
                             "pass a llama2.c .bin file");
        }
    }
    std::error_code ec2;
    if (!fs::exists(config, ec2))
        throw InputError(config, "file not found (an HF model directory needs config.json)");

    auto model = std::make_unique<Model>();
    model->format = ModelFormat::kHfSafetensors;
    model->path = dir;
    model->spec = parse_hf_config(config);
    if (!index.empty()) {
        load_sharded(dir, index, model->weights);
        check_weights(model->spec, model->weights, index);
    } else {
        load_safetensors_into(weights_file, model->weights);
        check_weights(model->spec, model->weights, weights_file);
    }
    model->spec.weight_dtype = dominant_dtype(model->weights);
    return model;
}

}  // namespace

std::unique_ptr<Model> load_model(const fs::path& path) {
    std::error_code ec;
    const auto st = fs::status(path, ec);
    if (ec || !fs::exists(st)) throw InputError(path, "no such file or directory");
    if (fs::is_directory(st)) return load_hf(path, {});
    if (!fs::is_regular_file(st)) throw InputError(path, "not a regular file or directory");

    const fs::path parent = path.has_parent_path() ? path.parent_path() : fs::path(".");
    const std::string ext = lower(path.extension().string());
    if (ext == ".safetensors") return load_hf(parent, path);
    if (path.filename() == "config.json") return load_hf(parent, {});
    if (fs::file_size(path, ec) == 0 && !ec) throw InputError(path, "file is empty (0 bytes)");
    if (is_pickle_name(path) || starts_like_pickle(path)) refuse_pickle(path);
    if (ext == ".bin") return load_llama2c(path);
    try {
        return load_llama2c(path);
    } catch (const InputError& e) {
        throw InputError(path, e.problem() +
                                   " (a model is an HF directory, a .safetensors file inside one, "
                                   "or a llama2.c .bin)");
    }
}

}  // namespace kvscope
