// kvscope — headless CLI. Subcommands live in cmd_*.cpp and register themselves (command.h).
// Errors about input (InputError) print one line naming the file and problem and exit with 2;
// so do wrong flags (CLI11's own messages; --help and --version exit with 0).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>

#include "app/cli/command.h"
#include "core/model/error.h"
#include "kvscope_version.h"
#include "traces/trace_probe.h"

namespace kvscope::cli {
std::vector<CommandInfo>& command_registry() {
    static std::vector<CommandInfo> registry;
    return registry;
}
}  // namespace kvscope::cli

int main(int argc, char** argv) {
    // Traces given to any subcommand are users' files: each is opened in a child process first
    // (traces/trace_probe.h), so a file that crashes libhdf5 is an error message, not a crash.
    kvscope::trace::set_probe_untrusted_traces(true);
    using namespace kvscope::cli;
    CLI::App app{"KVScope: see what KV-cache compression does inside a real LLM"};
    app.set_version_flag("--version", std::string("kvscope ") + KVSCOPE_VERSION);
    app.require_subcommand(1);
    auto& registry = command_registry();
    std::sort(registry.begin(), registry.end(),
              [](const CommandInfo& a, const CommandInfo& b) { return a.name < b.name; });
    std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
    for (auto& cmd : registry) {
        CLI::App* sub = app.add_subcommand(cmd.name, cmd.help);
        runners.emplace_back(sub, cmd.setup(*sub));
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    try {
        for (auto& [sub, run] : runners)
            if (sub->parsed()) return run();
    } catch (const kvscope::InputError& e) {
        std::fprintf(stderr, "kvscope: error: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kvscope: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
