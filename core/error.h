#pragma once
// Errors about user input (model files, tokenizers, configs, traces, flags). Every message names
// the file and what is wrong with it; the CLI prints what() and exits non-zero, never crashes.
#include <filesystem>
#include <stdexcept>
#include <string>

namespace kvscope {

class InputError : public std::runtime_error {
  public:
    InputError(const std::filesystem::path& file, const std::string& problem)
        : std::runtime_error(file.string() + ": " + problem), file_(file), problem_(problem) {}
    explicit InputError(const std::string& problem)
        : std::runtime_error(problem), problem_(problem) {}
    const std::filesystem::path& file() const { return file_; }
    const std::string& problem() const { return problem_; }

  private:
    std::filesystem::path file_;
    std::string problem_;
};

}  // namespace kvscope
