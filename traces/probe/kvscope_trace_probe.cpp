// kvscope-trace-probe: the child of the isolated first open of an untrusted trace
// (traces/trace_probe.h). Opens FILE with the trace reader and reads all of it, under the memory
// and CPU limits given by the parent, and reports by exit status: 0 readable, 10 not a readable
// trace (the reader's message on stdout), 11 out of memory, 12 other error (message on stdout).
// A crash of libhdf5 kills this process with a signal, which the parent reports.
//   usage: kvscope-trace-probe --max-memory BYTES --timeout SECONDS --walk full|sample -- FILE
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "core/error.h"
#include "traces/trace_probe.h"

#if defined(__SANITIZE_ADDRESS__)
#define KVSCOPE_PROBE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KVSCOPE_PROBE_ASAN 1
#endif
#endif

namespace {
int usage() {
    std::fprintf(stderr,
                 "usage: kvscope-trace-probe --max-memory BYTES --timeout SECONDS "
                 "--walk full|sample -- FILE\n(run by kvscope and kvscope-studio before they "
                 "open a trace)\n");
    return 64;
}

void report(const std::string& msg) {
    std::fwrite(msg.data(), 1, msg.size(), stdout);
    std::fflush(stdout);
}

void limit(int resource, rlim_t value) {
    rlimit r{value, value};
    setrlimit(resource, &r);
}
}  // namespace

int main(int argc, char** argv) {
    unsigned long long max_memory = 0, timeout = 0;
    bool full = true;
    const char* file = nullptr;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--" && i + 1 < argc) {
            file = argv[++i];
        } else if (a == "--max-memory" && i + 1 < argc) {
            max_memory = std::strtoull(argv[++i], nullptr, 10);
        } else if (a == "--timeout" && i + 1 < argc) {
            timeout = std::strtoull(argv[++i], nullptr, 10);
        } else if (a == "--walk" && i + 1 < argc) {
            full = std::strcmp(argv[++i], "sample") != 0;
        } else {
            return usage();
        }
    }
    if (!file) return usage();
    // No core files for the crashes this process exists to absorb.
    limit(RLIMIT_CORE, 0);
#ifndef KVSCOPE_PROBE_ASAN
    // ASan reserves terabytes of shadow address space at start, so the sanitized test build
    // limits allocations through ASAN_OPTIONS (set by the parent) instead.
    if (max_memory > 0) limit(RLIMIT_AS, static_cast<rlim_t>(max_memory));
#else
    (void)max_memory;
#endif
    // The parent kills this process at its wall-clock deadline; the CPU limit also ends it if
    // the parent is gone.
    if (timeout > 0) limit(RLIMIT_CPU, static_cast<rlim_t>(timeout + 5));
    try {
        kvscope::trace::walk_trace(file, full);
        return 0;
    } catch (const kvscope::InputError& e) {
        report(e.problem());
        return 10;
    } catch (const std::bad_alloc&) {
        return 11;
    } catch (const std::exception& e) {
        report(e.what());
        return 12;
    }
}
