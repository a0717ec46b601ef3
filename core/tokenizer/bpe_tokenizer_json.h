#pragma once
// tokenizer.json with a BPE model (byte-level or SentencePiece-style); load_tokenizer() in
// tokenizer_loader.cpp calls it for .json files and model directories that hold one.
#include <filesystem>
#include <memory>

#include "core/tokenizer/tokenizer.h"

namespace kvscope {

// Throws InputError naming the file and the JSON location of the problem.
std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::filesystem::path& file);

}  // namespace kvscope
