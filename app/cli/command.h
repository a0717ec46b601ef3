#pragma once
// The kvscope CLI's subcommand registry. Each cmd_<name>.cpp defines one subcommand and registers
// it with a static KVSCOPE_COMMAND(...) object; main.cpp builds the CLI11 app from the registry.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace kvscope::cli {

// `setup` adds the subcommand's options to `sub` and returns the function that runs it (called
// after parsing; returns the process exit code).
using CommandSetup = std::function<std::function<int()>(CLI::App& sub)>;

struct CommandInfo {
    std::string name;
    std::string help;
    CommandSetup setup;
};

std::vector<CommandInfo>& command_registry();

struct CommandRegistrar {
    CommandRegistrar(std::string name, std::string help, CommandSetup setup) {
        command_registry().push_back({std::move(name), std::move(help), std::move(setup)});
    }
};

}  // namespace kvscope::cli

#define KVSCOPE_CLI_CONCAT2(a, b) a##b
#define KVSCOPE_CLI_CONCAT(a, b) KVSCOPE_CLI_CONCAT2(a, b)
// Usage (at namespace scope in a cmd_*.cpp):
//   KVSCOPE_COMMAND("tokenize", "Encode text or decode ids", [](CLI::App& sub) { ...; return run;
//   });
#define KVSCOPE_COMMAND(name, help, setup)                                                    \
    static const ::kvscope::cli::CommandRegistrar KVSCOPE_CLI_CONCAT(kvscope_cmd_, __LINE__)( \
        name, help, setup)
