// Isolated first open of an untrusted trace (see trace_probe.h): the parent side (locating the
// helper, spawning it, the timeout, turning its fate into a message) and the walk the helper runs.
#include "traces/trace_probe.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "traces/trace_reader.h"

extern char** environ;

namespace kvscope::trace {

namespace fs = std::filesystem;

namespace {
std::atomic<bool> g_probe{false};
std::mutex g_cache_mu;
// (path, size, mtime in ns) of every file that passed, so reopening it (compare mode, the what-if
// runs, refresh of a view) costs no second child.
std::set<std::tuple<std::string, uint64_t, int64_t>> g_passed;

constexpr uint64_t kMiB = uint64_t{1} << 20;

std::string signal_text(int sig) {
    const char* name = sigabbrev_np(sig);
    return "signal " + std::to_string(sig) + (name ? std::string(", SIG") + name : std::string());
}
}  // namespace

void set_probe_untrusted_traces(bool on) {
    g_probe = on;
}
bool probe_untrusted_traces() {
    return g_probe.load();
}

ProbeLimits probe_limits(uint64_t file_size) {
    ProbeLimits l;
    // What a valid trace needs in the child: the executable and its libraries (~60 MiB mapped),
    // HDF5's metadata cache (adaptive, at most 32 MiB by default) and chunk caches (1 MiB per open
    // dataset, ~60 datasets), and the walk's blocks (16 MiB at a time, a few held together: see
    // trace_walk.cpp). 2 GiB is more than 10x that, and is what stops a length read from a damaged
    // file from allocating more (the 2.7-4.2 GB vlen-string allocations of issue 11).
    l.address_space_bytes = 2048 * kMiB;
    // A full walk inflates every chunk of the file: measured 11.6 s for a 185 MiB trace (64k
    // prompt tokens, 16 MiB/s on a loaded 2-core machine, 89 MiB peak RSS), so 10 MiB/s plus 20 s
    // of margin keeps valid files inside the limit (at most 46 s, at the 256 MiB cut-off). Larger
    // files get the metadata + sample walk, which reads a bounded amount of data whatever the
    // size (2.8 s for 352 MiB and for 904 MiB traces); its time still grows with the chunk
    // index, hence size / 100 MiB/s. Numbers: bench/RESULTS.md, Reliability.
    l.full_walk = file_size <= 256 * kMiB;
    const double mib = static_cast<double>(file_size) / static_cast<double>(kMiB);
    l.timeout_s = 20.0 + (l.full_walk ? mib / 10.0 : mib / 100.0);
    if (const char* env = std::getenv("KVSCOPE_TRACE_PROBE_TIMEOUT_S"); env && *env) {
        const double t = std::atof(env);
        if (t > 0) l.timeout_s = t;
    }
    return l;
}

fs::path probe_helper_path() {
    std::error_code ec;
    if (const char* env = std::getenv("KVSCOPE_TRACE_PROBE"); env && *env) return env;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        fs::path beside = self.parent_path() / "kvscope-trace-probe";  // returned by move
        if (fs::is_regular_file(beside, ec)) return beside;
    }
#ifdef KVSCOPE_TRACE_PROBE_BUILD_PATH
    // Programs run from the build tree (kvscope in build/app/cli, the Studio in build/app/studio,
    // tests) find the helper where this build put it.
    fs::path built = KVSCOPE_TRACE_PROBE_BUILD_PATH;  // returned by move
    if (fs::is_regular_file(built, ec)) return built;
#endif
    return {};
}

namespace {

struct ChildResult {
    bool timed_out = false;
    int status = 0;  // waitpid status
    std::string output;
};

// The child's environment: ours, with sanitizer options that make a sanitized helper (the ASan
// test build) behave like a plain one under the memory limit: no leak report for what HDF5 leaves
// behind after a failed open, and allocations above the limit fail instead of succeeding (ASan
// reserves its shadow memory up front, so the helper cannot use RLIMIT_AS there).
std::vector<std::string> child_environment(uint64_t max_memory) {
    std::vector<std::string> env;
    std::string asan = "ASAN_OPTIONS=";
    for (char** e = environ; e && *e; ++e) {
        if (std::strncmp(*e, "ASAN_OPTIONS=", 13) == 0)
            asan = std::string(*e) + ":";
        else
            env.emplace_back(*e);
    }
    asan += "detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=" +
            std::to_string(max_memory / kMiB);
    env.push_back(asan);
    return env;
}

ChildResult run_child(const fs::path& helper, const fs::path& file, const ProbeLimits& limits) {
    const fs::path& trace_path = file;
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw InputError(trace_path,
                         std::string("cannot check the file: pipe: ") + std::strerror(errno));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);

    const std::string mem = std::to_string(limits.address_space_bytes);
    const std::string secs = std::to_string(static_cast<long>(limits.timeout_s) + 1);
    std::vector<std::string> args = {helper.string(),
                                     "--max-memory",
                                     mem,
                                     "--timeout",
                                     secs,
                                     "--walk",
                                     limits.full_walk ? "full" : "sample",
                                     "--",
                                     file.string()};
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env = child_environment(limits.address_space_bytes);
    std::vector<char*> envp;
    envp.reserve(env.size() + 1);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);

    // posix_spawn, not fork: the Studio calls this from a threaded Qt process, where a forked child
    // may only call async-signal-safe functions until exec; glibc's posix_spawn does exactly that.
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, helper.c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (rc != 0) {
        ::close(fds[0]);
        throw InputError(trace_path, "cannot check the file before opening it: cannot start " +
                                         helper.string() + ": " + std::strerror(rc) +
                                         " — not opened");
    }

    ChildResult r;
    using Clock = std::chrono::steady_clock;
    const auto deadline =
        Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(limits.timeout_s * 1000));
    bool eof = false;
    bool reaped = false;
    char buf[4096];
    while (!reaped) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            ::kill(pid, SIGKILL);
            r.timed_out = true;
            break;
        }
        if (!eof) {
            pollfd p{fds[0], POLLIN, 0};
            const int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
            if (n > 0) {
                const ssize_t got = ::read(fds[0], buf, sizeof buf);
                if (got > 0 && r.output.size() < 65536)
                    r.output.append(buf, static_cast<size_t>(got));
                else if (got == 0)
                    eof = true;
            }
        } else {
            ::usleep(2000);
        }
        pid_t w;
        do {
            w = ::waitpid(pid, &r.status, WNOHANG);
        } while (w < 0 && errno == EINTR);
        if (w == pid) reaped = true;
    }
    if (!reaped) {
        while (::waitpid(pid, &r.status, 0) < 0 && errno == EINTR) {
        }
    }
    // Whatever the child wrote before exiting is still in the pipe.
    for (;;) {
        pollfd p{fds[0], POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) break;
        const ssize_t got = ::read(fds[0], buf, sizeof buf);
        if (got <= 0) break;
        if (r.output.size() < 65536) r.output.append(buf, static_cast<size_t>(got));
    }
    ::close(fds[0]);
    while (!r.output.empty() && (r.output.back() == '\n' || r.output.back() == '\r'))
        r.output.pop_back();
    return r;
}

}  // namespace

namespace {
// memchr for the first byte, then a compare: 6-7 GB/s here, ~10x glibc's memmem on trace data
// (compressed chunks, where 'G' is one byte in 256).
template <size_t N>
bool contains_signature(const char* p, size_t n, const char (&sig)[N]) {
    const char* end = p + n;
    for (const char* q = p; static_cast<size_t>(end - q) >= N; ++q) {
        q = static_cast<const char*>(
            std::memchr(q, sig[0], static_cast<size_t>(end - q) - (N - 1)));
        if (q == nullptr) return false;
        if (std::memcmp(q, sig, N) == 0) return true;
    }
    return false;
}
}  // namespace

bool has_global_heap(const fs::path& path) {
    // A global heap collection starts with the signature "GCOL" and the version byte 1 (HDF5 file
    // format spec, "Global Heap"); libhdf5 checks both before it parses anything else of a
    // collection (H5HG__cache_heap_get_final_load_size, then the deserialiser), so a file in
    // which these 5 bytes never occur cannot lead it into that parser. The version byte matters:
    // "GCOL" alone turns up by chance in compressed data about once per GB (twice in a 995 MB
    // synthetic trace), which would send such a file through the slow child. Read in 4 MiB blocks
    // (0.25 s for a 387 MB trace from the page cache on the loaded 2-core machine), carrying 3
    // bytes over each block boundary.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return true;  // let the probe (and then the reader) report what is wrong
    constexpr char kSig[] = {'G', 'C', 'O', 'L', 1};
    struct stat st {};
    const size_t file_size = ::fstat(fd, &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
    // Not zero-filled, and no bigger than the file: small files are checked at open() speed.
    const size_t kBlock = std::clamp<size_t>(file_size, 4096, size_t{4} << 20);
    const std::unique_ptr<char[]> buf(new char[kBlock + sizeof kSig]);
    size_t carried = 0;
    bool found = false;
    for (;;) {
        const ssize_t got = ::read(fd, buf.get() + carried, kBlock);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            found = true;  // unreadable: not ours to decide here
            break;
        }
        if (got == 0) break;
        const size_t have = carried + static_cast<size_t>(got);
        if (contains_signature(buf.get(), have, kSig)) {
            found = true;
            break;
        }
        carried = std::min(have, sizeof kSig - 1);
        std::memmove(buf.get(), buf.get() + have - carried, carried);
    }
    ::close(fd);
    return found;
}

void probe_trace_file(const fs::path& path, bool use_cache) {
    // Missing files, directories and empty files are reported by the reader itself, without HDF5.
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) return;
    std::error_code ec;
    fs::path abs = fs::absolute(path, ec);
    if (ec) abs = path;
    const auto key =
        std::make_tuple(abs.lexically_normal().string(), static_cast<uint64_t>(st.st_size),
                        static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec);
    {
        std::lock_guard lock(g_cache_mu);
        if (use_cache && g_passed.count(key)) return;
    }
    // Traces written since schema version 2 hold no variable-length data, hence no global heap:
    // every crash, hang and huge allocation fuzzing found in libhdf5 1.10.8 sits in that heap's
    // parser. Such files are opened in-process directly (no child, no second read of the file);
    // the rest of the format is checksummed metadata (superblock v3, object headers v2, v2
    // B-trees and chunk indexes), which libhdf5 verifies before use. Files with a global heap
    // (version 1 traces, files from elsewhere) go through the child.
    // A pass is remembered only when the caller uses the cache: the fuzz target (use_cache =
    // false) rewrites one path with a new mtime per input, and a set growing by one entry per
    // input would make libFuzzer suspect a leak on every execution (and rescan the heap).
    if (!has_global_heap(path)) {
        std::lock_guard lock(g_cache_mu);
        if (use_cache) g_passed.insert(key);
        return;
    }
    const fs::path helper = probe_helper_path();
    if (helper.empty())
        throw InputError(path,
                         "cannot check the file before opening it: the helper kvscope-trace-probe "
                         "was not found next to this program (set KVSCOPE_TRACE_PROBE to its "
                         "path) — not opened");
    const ProbeLimits limits = probe_limits(static_cast<uint64_t>(st.st_size));
    const ChildResult r = run_child(helper, path, limits);
    const std::string damaged = "the file is damaged: ";
    if (r.timed_out)
        throw InputError(path, damaged + "reading it did not finish within " +
                                   std::to_string(static_cast<long>(limits.timeout_s)) +
                                   " s (the HDF5 library hung) — not opened");
    if (WIFSIGNALED(r.status)) {
        const int sig = WTERMSIG(r.status);
        if (sig == SIGKILL || sig == SIGXCPU)
            throw InputError(path, damaged + "reading it was stopped (" + signal_text(sig) +
                                       ": out of memory or time) — not opened");
        throw InputError(path, damaged + "reading it crashed the HDF5 library (" +
                                   signal_text(sig) + ") — not opened");
    }
    const int code = WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1;
    switch (code) {
        case 0: {
            std::lock_guard lock(g_cache_mu);
            if (use_cache) g_passed.insert(key);
            return;
        }
        case 10:  // InputError: the reader's own message (the problem, without the file name)
            throw InputError(path,
                             r.output.empty() ? std::string("not a readable trace") : r.output);
        case 11:
            throw InputError(path, damaged + "reading it needs more than " +
                                       std::to_string(limits.address_space_bytes / kMiB) +
                                       " MiB of memory — not opened");
        case 12:
            throw InputError(
                path, damaged + (r.output.empty() ? "unreadable" : r.output) + " — not opened");
        default:
            throw InputError(path, damaged +
                                       "reading it made the checking process fail (exit "
                                       "status " +
                                       std::to_string(code) + ") — not opened");
    }
}

void walk_trace(const fs::path& path, bool full) {
    TraceReader reader(path);
    reader.read_all(full);
}

}  // namespace kvscope::trace
