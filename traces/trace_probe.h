#pragma once
// Isolated first open of an untrusted trace. libhdf5 1.10.8 crashes, hangs or allocates gigabytes
// on some malformed files (segfaults in H5C_protect / H5HG_read while reading variable-length
// strings or opening datasets) — no check of ours can rule that out before the library parses
// the file. So before a program opens a trace in-process, a child process (the small
// kvscope-trace-probe executable) opens it with the same reader code and reads everything the
// reader will read, under a memory limit and a wall-clock timeout. A crash, hang or out-of-memory
// in the child becomes an InputError in the parent, naming the file and what happened.
//
// Every such crash, hang and huge allocation found so far sits in the parser of HDF5's global heap
// (where variable-length strings live; it has no checksum). Traces written since schema version 2
// store no variable-length data, so a file in which no global heap collection occurs (see
// has_global_heap) is opened in-process without a child; the others (version 1 traces, files
// from elsewhere) are probed.
//
// Programs that open files from users (kvscope, kvscope-studio) turn the check on once in main()
// with set_probe_untrusted_traces(true); TraceReader's constructor then checks every file before
// opening it. A passed check is cached per (path, size, mtime) for the life of the process.
#include <cstdint>
#include <filesystem>
#include <string>

namespace kvscope::trace {

// On: every TraceReader probes its file first (see above). Off by default, so the test suite and
// the probe itself open files directly.
void set_probe_untrusted_traces(bool on);
bool probe_untrusted_traces();

struct ProbeLimits {
    uint64_t address_space_bytes = 0;  // RLIMIT_AS of the child
    double timeout_s = 0;              // wall clock
    bool full_walk = true;             // read every element (else metadata + a sample of each)
};
// Limits for a file of this size (see trace_probe.cpp for the figures and why).
// $KVSCOPE_TRACE_PROBE_TIMEOUT_S, when set, replaces the timeout (tests and fuzzing use less).
ProbeLimits probe_limits(uint64_t file_size);

// The helper executable: $KVSCOPE_TRACE_PROBE when set, else kvscope-trace-probe next to the
// running executable (/proc/self/exe), else the one in this build tree. Empty when none exists.
std::filesystem::path probe_helper_path();

// True when the file contains the start of a global heap collection ("GCOL", version 1) anywhere,
// or cannot be read. Reads the whole file once.
bool has_global_heap(const std::filesystem::path& path);

// Probes `path` in a child (cached) when it holds a global heap; else only caches the pass. Throws
// InputError naming the file when the child crashed, hung, ran out of memory or found the file
// invalid (its message), or when the helper is missing. use_cache = false probes even a file that
// passed before and does not remember the pass (the fuzz target rewrites one path).
void probe_trace_file(const std::filesystem::path& path, bool use_cache = true);

// What the child runs: opens the trace with TraceReader (probing off) and reads every dataset,
// attribute and string the reader reads, in bounded blocks. Throws InputError for invalid files.
void walk_trace(const std::filesystem::path& path, bool full);

}  // namespace kvscope::trace
