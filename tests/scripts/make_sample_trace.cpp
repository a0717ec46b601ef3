// Test-only writer for tests/scripts: the synthetic sample trace (traces/synthetic/sample_trace.h).
//   make_sample_trace OUT.kvtrace.h5 [--rows] [--maps] [--kill-after N]
// --kill-after N writes N steps, waits until they are flushed, then SIGKILLs itself (a killed run).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "traces/synthetic/sample_trace.h"
#include "traces/trace_writer.h"

int main(int argc, char** argv) {
    using namespace kvscope::trace;
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s OUT.kvtrace.h5 [--rows] [--maps] [--kill-after N]\n",
                     argv[0]);
        return 2;
    }
    SampleTraceSpec spec;
    long kill_after = -1;
    for (int i = 2; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--rows")) {
            spec.attention_rows = true;
        } else if (!std::strcmp(argv[i], "--maps")) {
            spec.maps = true;
        } else if (!std::strcmp(argv[i], "--kill-after") && i + 1 < argc) {
            kill_after = std::strtol(argv[++i], nullptr, 10);
        } else {
            std::fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    try {
        const SampleTrace sample = make_sample_trace(spec);
        // A test-only writer that regenerates its own files: replace an earlier run's.
        TraceWriter::Options wo;
        wo.record_attention_rows = spec.attention_rows;
        wo.record_maps = spec.maps;
        wo.overwrite = true;
        TraceWriter writer(argv[1], wo);
        if (kill_after >= 0) {
            write_sample_trace(writer, sample, kill_after, /*finish=*/false);
            writer.sync();
            std::raise(SIGKILL);
        }
        write_sample_trace(writer, sample);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_sample_trace: %s\n", e.what());
        return 1;
    }
    return 0;
}
