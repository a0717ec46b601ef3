#pragma once
// Loaders of the sentencepiece tokenizer.model and the llama2.c tokenizer.bin (owned by the
// helper writing sentencepiece_tokenizer.cpp and llama2c_tokenizer.cpp; load_tokenizer() in
// tokenizer_loader.cpp calls them).
#include <filesystem>
#include <memory>

#include "core/tokenizer/tokenizer.h"

namespace kvscope {

std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::filesystem::path& file);
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::filesystem::path& file);

}  // namespace kvscope
