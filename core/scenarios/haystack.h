#pragma once
// Haystack text for needle tests: the sentences of resources/haystacks/*.txt and the keys of the
// NIAH needles. Splitting matches tools/train_demo/scenarios.py byte for byte, so the C++ and
// Python builders draw the same haystack for the same seed.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kvscope {

struct Haystack {
    std::vector<std::string> sentences;  // in file-name order, then text order
    std::vector<std::string> keys;       // NIAH needle keys (needle_keys.list)
    std::filesystem::path dir;
};

// Runs of ASCII whitespace (space, \t, \n, \r, \f, \v) become one space; leading and trailing
// spaces are dropped.
std::string normalize_whitespace(std::string_view text);

// Whitespace-normalised text -> sentences. A sentence ends at '.', '!' or '?' followed by a space
// (the space is dropped); the rest after the last such end is one more sentence.
std::vector<std::string> split_sentences(std::string_view text);

// Loads every *.txt of `dir` (sorted by name) and `dir`/needle_keys.list (one key per line, '#'
// starts a comment line). Throws InputError naming the folder or file when it is missing, empty
// or unreadable.
Haystack load_haystack(const std::filesystem::path& dir);

// Where the bundled haystacks are when the user names none: <model>/../../haystacks (the layout
// of resources/), else ./resources/haystacks. Returns an empty path when neither exists.
std::filesystem::path find_default_haystack_dir(const std::filesystem::path& model_path);

}  // namespace kvscope
