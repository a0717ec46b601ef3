// kvscope convert: HF model directory -> llama2.c (legacy version-0, fp32) checkpoint.
#include <cstdio>
#include <memory>
#include <string>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "core/model/model.h"

namespace kvscope::cli {
namespace {

struct ConvertArgs {
    std::string model;
    std::string to_llama2c;
    bool force = false;
};

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<ConvertArgs>();
    sub.add_option("--model", a->model, "HF model directory (config.json + safetensors)")
        ->required();
    sub.add_option("--to-llama2c", a->to_llama2c, "Output llama2.c checkpoint (.bin)")->required();
    sub.add_flag("--force", a->force, kForceHelp);
    return [a]() {
        check_output_path(a->to_llama2c, a->force);
        const auto model = load_model(a->model);
        export_llama2c(*model, a->to_llama2c);
        std::printf("wrote %s: llama2.c checkpoint, %lld layers, dim %lld, vocab %lld (%s)\n",
                    a->to_llama2c.c_str(), static_cast<long long>(model->spec.n_layers),
                    static_cast<long long>(model->spec.hidden),
                    static_cast<long long>(model->spec.vocab_size),
                    model->spec.tied_embeddings ? "shared classifier" : "separate classifier");
        std::printf("note: llama2.c reads its tokenizer from a separate tokenizer.bin\n");
        return 0;
    };
}

}  // namespace

KVSCOPE_COMMAND("convert", "Convert an HF model directory to a llama2.c checkpoint", setup);

}  // namespace kvscope::cli
