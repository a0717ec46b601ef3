// kvscope — headless CLI. Subcommands live in cmd_*.cpp and register themselves (command.h).
// Exit status (cli_common.h, and the footer of every --help): 0 success, 1 runtime failure,
// 2 usage error, 130 interrupted. Before CLI11 parses, the arguments are scanned once so that an
// unknown command or flag gets a "did you mean" (CLI11 has no suggestions), `kvscope help CMD`
// becomes `kvscope CMD --help`, and `--version`/`-V` works after a subcommand too.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "core/error.h"
#include "kvscope_version.h"
#include "traces/trace_probe.h"

namespace kvscope::cli {
std::vector<CommandInfo>& command_registry() {
    static std::vector<CommandInfo> registry;
    return registry;
}
}  // namespace kvscope::cli

namespace {

using namespace kvscope::cli;

std::string version_text() {
    std::string backends = "cpu";
#ifdef KVSCOPE_HAVE_CUDA
    backends += ", cuda";
#endif
    return std::string("kvscope ") + KVSCOPE_VERSION + "\ncommit:   " + KVSCOPE_GIT_COMMIT +
           "\nbuild:    " + KVSCOPE_BUILD_TYPE + "\nbackends: " + backends;
}

const char* const kFooter =
    "Exit status: 0 success; 1 runtime failure (a missing or unreadable file, not a trace, a "
    "newer trace schema, a model that does not load, a write error); 2 usage error (unknown "
    "command or flag, bad or missing flag value, an existing output without --force, an empty or "
    "non-UTF-8 prompt, from --prompt or --prompt-file); 130 interrupted.\n"
    "`kvscope help COMMAND` shows a command's flags (the same as `kvscope COMMAND --help`).";

size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

// The candidates closest to `word` (a third of its length in edits, at least 2), or those it is
// a prefix of; empty when nothing is close.
std::vector<std::string> suggestions(const std::string& word,
                                     const std::vector<std::string>& candidates) {
    size_t best = std::max<size_t>(2, word.size() / 3) + 1;
    std::vector<std::string> out;
    for (const std::string& c : candidates) {
        size_t d = edit_distance(word, c);
        if (word.size() >= 3 && c.rfind(word, 0) == 0) d = 1;  // an abbreviation
        if (d < best) {
            best = d;
            out = {c};
        } else if (d == best && std::find(out.begin(), out.end(), c) == out.end()) {
            out.push_back(c);
        }
    }
    return out;
}

std::string did_you_mean(const std::vector<std::string>& s) {
    if (s.empty()) return "";
    std::string t = ". Did you mean ";
    for (size_t i = 0; i < s.size(); ++i)
        t += (i ? (i + 1 == s.size() ? " or " : ", ") : "") + s[i];
    return t + "?";
}

// CLI11 converts integers with strtoll/strtoull, which saturate: 99999999999999999999 would
// silently become INT64_MAX. This check runs first on every integer flag and refuses a decimal
// integer that does not fit, naming the limit.
CLI::Validator integer_fits(bool is_unsigned) {
    return CLI::Validator(
        [is_unsigned](std::string& in) -> std::string {
            std::string_view v = in;
            if (!v.empty() && v.front() == '+') v.remove_prefix(1);
            const bool neg = !v.empty() && v.front() == '-';
            const std::string_view digits = neg ? v.substr(1) : v;
            if (digits.empty() || !std::all_of(digits.begin(), digits.end(),
                                               [](char c) { return c >= '0' && c <= '9'; }))
                return "";  // not a plain decimal integer: CLI11's conversion reports it
            std::errc ec;
            if (is_unsigned && !neg) {
                uint64_t x = 0;
                ec = std::from_chars(digits.data(), digits.data() + digits.size(), x).ec;
            } else {
                int64_t x = 0;
                ec = std::from_chars(v.data(), v.data() + v.size(), x).ec;
            }
            if (ec == std::errc::result_out_of_range)
                return "Value " + in + " is out of range (at most " +
                       (is_unsigned ? std::to_string(UINT64_MAX) : std::to_string(INT64_MAX)) +
                       (is_unsigned ? "" : ", at least " + std::to_string(INT64_MIN)) + ")";
            return "";
        },
        "", "");
}

void guard_integer_options(CLI::App& app) {
    for (CLI::Option* o : app.get_options()) {
        const std::string t = o->get_type_name();
        if (o->get_type_size() == 0) continue;  // a flag
        if (t.rfind("INT", 0) == 0) o->check(integer_fits(false));
        if (t.rfind("UINT", 0) == 0) o->check(integer_fits(true));
    }
}

std::vector<std::string> option_names(CLI::App& app) {
    std::vector<std::string> names;
    for (CLI::Option* o : app.get_options())
        for (const std::string& n : o->get_lnames()) names.push_back("--" + n);
    return names;
}

CLI::App* find_command(CLI::App& app, const std::string& name) {
    for (CLI::App* s : app.get_subcommands([](CLI::App*) { return true; }))
        if (s->get_name() == name) return s;
    return nullptr;
}

int usage_error(const std::string& where, const std::string& msg, const std::string& help_cmd) {
    std::fprintf(stderr, "%s: error: %s\nRun `%s --help` for the list.\n", where.c_str(),
                 msg.c_str(), help_cmd.c_str());
    return kExitUsage;
}

// The pre-scan (see the top of the file). Returns an exit code to stop with, or -1 to go on
// parsing `args` (which a `help CMD` rewrites).
int prescan(CLI::App& app, std::vector<std::string>& args) {
    CLI::App* cur = nullptr;  // the subcommand, once seen
    std::vector<std::string> commands;
    for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; }))
        commands.push_back(s->get_name());
    bool takes_value = false;
    for (size_t i = 1; i < args.size(); ++i) {
        const std::string& t = args[i];
        if (takes_value) {
            takes_value = false;
            continue;
        }
        if (t == "--") break;
        if (t == "--version" || t == "-V") {
            std::printf("%s\n", version_text().c_str());
            return kExitOk;
        }
        if (t == "--help" || t == "-h" || t == "--help-all") continue;
        CLI::App& scope = cur ? *cur : app;
        if (t.size() > 2 && t.rfind("--", 0) == 0) {
            const std::string name = t.substr(0, t.find('='));
            const CLI::Option* o = scope.get_option_no_throw(name);
            if (!o) {
                const std::string where = cur ? "kvscope " + cur->get_name() : "kvscope";
                return usage_error(
                    where,
                    "unknown flag " + name + did_you_mean(suggestions(name, option_names(scope))),
                    where);
            }
            takes_value = t.find('=') == std::string::npos && o->get_type_size() != 0;
        } else if (t.size() == 2 && t[0] == '-' && t[1] != '-' && !(t[1] >= '0' && t[1] <= '9')) {
            const CLI::Option* o = scope.get_option_no_throw(t);
            takes_value = o && o->get_type_size() != 0;
        } else if (!cur && t[0] != '-') {
            if (t == "help") {  // help [CMD] -> [CMD] --help: the same text, by construction
                std::vector<std::string> rest(args.begin() + static_cast<long>(i) + 1, args.end());
                if (rest.size() > 1)
                    return usage_error("kvscope help", "takes at most one command", "kvscope");
                args.resize(1);
                if (!rest.empty()) {
                    if (!find_command(app, rest[0]) || rest[0] == "help")
                        return usage_error("kvscope help",
                                           "unknown command '" + rest[0] + "'" +
                                               did_you_mean(suggestions(rest[0], commands)),
                                           "kvscope");
                    args.push_back(rest[0]);
                }
                args.push_back("--help");
                return -1;
            }
            cur = find_command(app, t);
            if (!cur)
                return usage_error(
                    "kvscope",
                    "unknown command '" + t + "'" + did_you_mean(suggestions(t, commands)),
                    "kvscope");
        }
    }
    return -1;
}

}  // namespace

int main(int argc, char** argv) {
    // Traces given to any subcommand are users' files: each is opened in a child process first
    // (traces/trace_probe.h), so a file that crashes libhdf5 is an error message, not a crash.
    kvscope::trace::set_probe_untrusted_traces(true);
    CLI::App app{"KVScope: see what KV-cache compression does inside a real LLM"};
    app.set_version_flag("--version,-V", version_text(),
                         "Print the version, commit, build type "
                         "and backends, and exit");
    app.require_subcommand(1);
    // Inherited by every subcommand added below: defaults in each flag's help, exit codes.
    app.option_defaults()->always_capture_default();
    app.footer(kFooter);
    auto& registry = command_registry();
    std::sort(registry.begin(), registry.end(),
              [](const CommandInfo& a, const CommandInfo& b) { return a.name < b.name; });
    std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
    for (auto& cmd : registry) {
        CLI::App* sub = app.add_subcommand(cmd.name, cmd.help);
        runners.emplace_back(sub, cmd.setup(*sub));
        guard_integer_options(*sub);
    }
    // Listed in `kvscope --help`; handled by the pre-scan (it never runs).
    app.add_subcommand("help", "Show the help of a command: kvscope help [COMMAND]")
        ->allow_extras();

    std::vector<std::string> args(argv, argv + argc);
    if (const int rc = prescan(app, args); rc >= 0) return rc;
    try {
        std::vector<std::string> rev(args.rbegin(), args.rend() - 1);  // CLI11 wants it reversed
        app.name(args[0]);
        app.parse(rev);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? kExitOk : kExitUsage;
    }
    try {
        for (auto& [sub, run] : runners)
            if (sub->parsed()) return run();
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? kExitOk : kExitUsage;
    } catch (const UsageError& e) {
        std::fprintf(stderr, "kvscope: error: %s\n", e.what());
        return kExitUsage;
    } catch (const kvscope::InputError& e) {
        // One naming a file is about that file (missing, unreadable, not a trace, a newer
        // schema, a model that does not load): a runtime failure. One naming none is about the
        // flags (a bad value or combination, an unknown policy or parameter): a usage error.
        std::fprintf(stderr, "kvscope: error: %s\n", e.what());
        return e.file().empty() ? kExitUsage : kExitFailure;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kvscope: error: %s\n", e.what());
        return kExitFailure;
    }
    return kExitOk;
}
