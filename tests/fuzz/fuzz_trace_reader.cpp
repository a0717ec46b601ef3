// libFuzzer target for the trace reader, through the same path programs take (traces/
// trace_probe.h). Each input is written as a trace file and checked: a file holding an HDF5
// global heap ("GCOL": the variable-length strings of version 1 traces — libhdf5 1.10.8 crashes,
// hangs or allocates gigabytes in its parser) is probed in a child process (kvscope-trace-probe,
// the real helper, built without the fuzzer) and a crash of the child must become an InputError;
// a file without one (every version 2 trace) is opened in-process directly, as the programs do.
// Either way, when the check passes, this process opens the file and reads all of it
// (TraceReader::read_all, the probe's own walk, with the bounded-read checks) under ASan/UBSan.
// A crash or sanitizer report here is a file the check let through that still breaks the reader
// (libhdf5 or our code). Coverage feedback comes from this process; the child runs
// uninstrumented. Inputs without a global heap run at in-process speed; those with one cost a
// child each (~20-50 executions/s).
//   seed corpus: tests/fuzz/seeds/trace_reader/ (small traces recorded with `kvscope run` on
//   resources/models/kvscope-demo: needle = schema version 1, d2o-v2 = version 2)
//   run: KVSCOPE_TRACE_PROBE_TIMEOUT_S=5 ./fuzz_trace_reader -timeout=10
//   tests/fuzz/seeds/trace_reader
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "traces/trace_probe.h"
#include "traces/trace_reader.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const fs::path dir = [] {
        fs::path d =
            fs::temp_directory_path() / ("kvscope_fuzz_trace_reader_" + std::to_string(getpid()));
        fs::create_directories(d);
        return d;
    }();
    const fs::path file = dir / "input.kvtrace.h5";
    {
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        kvscope::trace::probe_trace_file(file, /*use_cache=*/false);
    } catch (const kvscope::InputError& e) {
        // Rejected, crashed or hung in the child: contained and reported. With
        // KVSCOPE_FUZZ_KEEP_DAMAGED=DIR, inputs that crashed or hung the child are kept there
        // (the regression inputs of tests/traces/damaged/ were collected this way).
        static const char* keep = std::getenv("KVSCOPE_FUZZ_KEEP_DAMAGED");
        if (keep && *keep &&
            std::string(e.what()).find("the file is damaged: reading it") != std::string::npos) {
            static int n = 0;
            std::ofstream(fs::path(keep) / ("damaged-" + std::to_string(getpid()) + "-" +
                                            std::to_string(n++) + ".kvtrace.h5"),
                          std::ios::binary)
                .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
        }
        return 0;
    }
    try {
        kvscope::trace::TraceReader reader(file);
        reader.read_all(true);
        const auto info = reader.info();
        if (info.n_layers > 0 && info.n_heads > 0 && info.n_steps > 0) {
            (void)reader.token_states(0, 0, info.n_steps - 1);
            (void)reader.step(info.n_steps - 1);
        }
    } catch (const kvscope::InputError&) {
    }
    return 0;
}
