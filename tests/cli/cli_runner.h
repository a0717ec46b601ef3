#pragma once
// Runs the built kvscope binary for the CLI tests (one helper for every tests/cli/*.cpp).
// The binary's stdout and stderr are pipes here, never a terminal: what a log file or a CI job
// gets.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace kvscope::test {

// The source tree, and the model most CLI tests run (the golden llama_sp fixture: small, with a
// SentencePiece tokenizer).
inline const std::filesystem::path kSourceDir = KVSCOPE_SOURCE_DIR;
inline const std::string kModel =
    (kSourceDir / "tests" / "golden" / "models" / "llama_sp").string();

inline std::filesystem::path kvscope_binary() {
    return std::filesystem::path(KVSCOPE_BINARY_DIR) / "app" / "cli" / "kvscope";
}

struct CliResult {
    int code = -1;    // exit status; 128 + signal when killed
    std::string out;  // stdout + stderr (run_kvscope), or stdout alone (run_kvscope_split)
    std::string err;  // stderr, run_kvscope_split only
};

namespace detail {
inline CliResult run_shell(const std::string& cmd) {
    CliResult r;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    const int st = pclose(p);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}
}  // namespace detail

// `kvscope ARGS` through /bin/sh (ARGS may quote), stdout and stderr together.
inline CliResult run_kvscope(const std::string& args) {
    return detail::run_shell(kvscope_binary().string() + " " + args + " 2>&1");
}

// The same with stdout and stderr apart (e.g. to parse --json output, which is alone on stdout).
inline CliResult run_kvscope_split(const std::string& args) {
    const std::filesystem::path err_file =
        std::filesystem::temp_directory_path() /
        ("kvscope_cli_stderr_" + std::to_string(::getpid()) + ".txt");
    CliResult r =
        detail::run_shell(kvscope_binary().string() + " " + args + " 2>" + err_file.string());
    std::ifstream f(err_file, std::ios::binary);
    r.err.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    std::filesystem::remove(err_file);
    return r;
}

// A file in this test process's scratch folder (`kvscope_clitest_<pid>` in the temp folder),
// emptied on first use: the commands refuse to overwrite files, and a folder left by an earlier
// process with the same pid would hold them.
inline std::filesystem::path scratch_file(const std::string& name) {
    static const std::filesystem::path d = [] {
        std::filesystem::path p = std::filesystem::temp_directory_path() /
                                  ("kvscope_clitest_" + std::to_string(::getpid()));
        std::filesystem::remove_all(p);
        std::filesystem::create_directories(p);
        return p;
    }();
    return d / name;
}

// The bytes of a file ("" when it cannot be read).
inline std::string file_bytes(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace kvscope::test
