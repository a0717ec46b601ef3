#include "core/scenarios/haystack.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/error.h"

namespace kvscope {

namespace fs = std::filesystem;

namespace {

bool is_ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string read_text_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw InputError(path, "cannot open the file for reading");
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw InputError(path, "read error");
    return ss.str();
}

}  // namespace

std::string normalize_whitespace(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    bool pending_space = false;
    for (char c : text) {
        if (is_ascii_space(c)) {
            pending_space = !out.empty();
            continue;
        }
        if (pending_space) out.push_back(' ');
        pending_space = false;
        out.push_back(c);
    }
    return out;
}

std::vector<std::string> split_sentences(std::string_view text) {
    const std::string t = normalize_whitespace(text);
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t i = 0; i + 1 < t.size(); ++i) {
        const char c = t[i];
        if ((c == '.' || c == '!' || c == '?') && t[i + 1] == ' ') {
            if (i + 1 > start) out.push_back(t.substr(start, i + 1 - start));
            start = i + 2;
        }
    }
    if (start < t.size()) out.push_back(t.substr(start));
    return out;
}

Haystack load_haystack(const fs::path& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        throw InputError(dir,
                         "haystack folder not found (it holds *.txt texts and needle_keys.list)");
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        if (entry.is_regular_file() && entry.path().extension() == ".txt")
            files.push_back(entry.path());
    }
    if (ec) throw InputError(dir, "cannot list the folder: " + ec.message());
    std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
        return a.filename().string() < b.filename().string();
    });
    if (files.empty()) throw InputError(dir, "no haystack texts (*.txt) in the folder");
    Haystack h;
    h.dir = dir;
    for (const fs::path& f : files) {
        std::vector<std::string> s = split_sentences(read_text_file(f));
        h.sentences.insert(h.sentences.end(), std::make_move_iterator(s.begin()),
                           std::make_move_iterator(s.end()));
    }
    if (h.sentences.empty()) throw InputError(dir, "the haystack texts (*.txt) are empty");
    const fs::path keys_file = dir / "needle_keys.list";
    std::istringstream keys(read_text_file(keys_file));
    std::string line;
    while (std::getline(keys, line)) {
        const std::string k = normalize_whitespace(line);
        if (k.empty() || k[0] == '#') continue;
        h.keys.push_back(k);
    }
    if (h.keys.size() < 8)
        throw InputError(keys_file, "needs at least 8 needle keys, one per line (found " +
                                        std::to_string(h.keys.size()) + ")");
    return h;
}

fs::path find_default_haystack_dir(const fs::path& model_path) {
    std::error_code ec;
    fs::path model_dir = fs::is_directory(model_path, ec) ? model_path : model_path.parent_path();
    model_dir = model_dir.lexically_normal();
    if (!model_dir.has_filename()) model_dir = model_dir.parent_path();  // "dir/" -> "dir"
    fs::path beside = model_dir.parent_path().parent_path() / "haystacks";
    if (!model_dir.empty() && fs::is_directory(beside, ec)) return beside;
    fs::path local = fs::path("resources") / "haystacks";
    if (fs::is_directory(local, ec)) return local;
    return {};
}

}  // namespace kvscope
