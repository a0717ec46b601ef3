#pragma once
// Loaders of the sentencepiece tokenizer.model (sentencepiece_tokenizer.cpp) and the llama2.c
// tokenizer.bin (llama2c_tokenizer.cpp); load_tokenizer() in tokenizer_loader.cpp calls them.
// Both throw InputError naming the file and what is wrong with it.
#include <filesystem>
#include <memory>

#include "core/tokenizer/tokenizer.h"

namespace kvscope {

std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::filesystem::path& file);
// `expected_vocab` > 0: the model's vocabulary size; the file must hold exactly that many tokens
// (llama2.c reads that many). Otherwise the vocabulary is every token up to the end of the file.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::filesystem::path& file,
                                                  int32_t expected_vocab = -1);

}  // namespace kvscope
