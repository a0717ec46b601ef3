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
// uninstrumented. Cost per execution, mutants of the 88 KB version 2 seed: ~16 ms of CPU (~60
// executions/s on a free core) without libFuzzer's per-input leak checks, about twice that with
// them; libhdf5's allocations under ASan (free lists off, below) take about half of it. Inputs with
// a global heap add a child each (5 s when libhdf5 hangs in it); version 1 traces read in-process
// take ~1 s. Long runs: tools/fuzz_trace_reader_long.sh; figures: bench/RESULTS.md.
//   seed corpus: tests/fuzz/seeds/trace_reader/ (small traces recorded with `kvscope run` on
//   resources/models/kvscope-demo: needle = schema version 1, d2o-v2 = version 2)
//   run: KVSCOPE_TRACE_PROBE_TIMEOUT_S=5 ./fuzz_trace_reader -timeout=10
//   tests/fuzz/seeds/trace_reader
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
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
    // The input goes to a file, since programs open traces by path (libhdf5's file driver, the
    // global heap scan and the probe's child all read that file). /dev/shm (tmpfs) when there is
    // one: writing 88 KB to the disk-backed temp dir cost ~5 ms an input.
    static const fs::path file = [] {
        std::error_code ec;
        const fs::path shm = "/dev/shm";
        fs::path d = (fs::is_directory(shm, ec) && ::access(shm.c_str(), W_OK) == 0)
                         ? shm
                         : fs::temp_directory_path();
        // A run that libFuzzer ends on a timeout, a crash or Ctrl-C exits without the atexit
        // below; its folder is removed by the next run once its process is gone.
        const std::string prefix = "kvscope_fuzz_trace_reader_";
        for (const auto& e : fs::directory_iterator(d, ec)) {
            const std::string name = e.path().filename().string();
            if (name.rfind(prefix, 0) != 0) continue;
            const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
            if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
                fs::remove_all(e.path(), ec);
        }
        d /= prefix + std::to_string(getpid());
        fs::create_directories(d);
        static const fs::path made = d;  // removed at exit: /dev/shm is memory
        std::atexit([] {
            std::error_code ignored;
            fs::remove_all(made, ignored);
        });
        // libhdf5 keeps freed blocks on its own free lists (H5FL) and reuses them; with no limit
        // the heap grows between inputs, libFuzzer's per-input leak check then re-runs the input
        // and scans the whole heap every time; and a use of a block after libhdf5 freed it
        // stays invisible to ASan. Limits of 0 hand every freed block back to malloc at once.
        H5set_free_list_limits(0, 0, 0, 0, 0, 0);
        return d / "input.kvtrace.h5";
    }();
    {
        const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) std::abort();  // the harness cannot work without its file
        for (size_t done = 0; done < size;) {
            const ssize_t n = ::write(fd, data + done, size - done);
            if (n <= 0) std::abort();
            done += static_cast<size_t>(n);
        }
        ::close(fd);
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
