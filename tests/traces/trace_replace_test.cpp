// Never lose a trace, never clobber a file (trace_output.h): a recording goes to <target>.part
// and replaces the target by one rename at end(). Re-recording over a trace a reader has open
// leaves the old one readable; a writer dropped without end() leaves the target untouched; a
// stale .part is refused unless overwriting, a live one always; a write error (file size limit)
// surfaces as an error and the process still exits cleanly through HDF5's shutdown.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "core/error.h"
#include "tests/traces/trace_test_support.h"
#include "traces/synthetic/sample_trace.h"
#include "traces/trace_output.h"
#include "traces/trace_reader.h"
#include "traces/trace_writer.h"

namespace kvscope::trace {
namespace {

using testing::ScratchDir;
namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_full(const fs::path& path, const SampleTrace& sample, int64_t steps,
                bool overwrite = false) {
    TraceWriter w(path, {.overwrite = overwrite});
    write_sample_trace(w, sample, steps, /*finish=*/true);
}

// Expects `fn` to throw an InputError naming `file` whose message contains `needle`.
template <typename F>
void expect_input_error(F&& fn, const fs::path& file, const std::string& needle) {
    try {
        fn();
        FAIL() << "no error; expected one about " << file;
    } catch (const InputError& e) {
        EXPECT_EQ(e.file(), file) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

TEST(TraceReplace, RecordingPathIsTheTargetPlusPart) {
    EXPECT_EQ(recording_path_for("d/run.kvtrace.h5"), fs::path("d/run.kvtrace.h5.part"));
    EXPECT_EQ(target_of_recording("d/run.kvtrace.h5.part"), fs::path("d/run.kvtrace.h5"));
    EXPECT_TRUE(target_of_recording("d/run.kvtrace.h5").empty());
    EXPECT_TRUE(target_of_recording(".part").empty());
}

TEST(TraceReplace, OpenOldTraceStaysReadableUntilTheNewOneIsComplete) {
    ScratchDir dir;
    const auto path = dir / "run.kvtrace.h5";
    const SampleTrace sample = make_sample_trace();
    write_full(path, sample, 25);
    const std::string old_bytes = slurp(path);

    TraceReader old_reader(path);  // the Studio (or any reader) has the old trace open
    ASSERT_EQ(old_reader.info().n_steps, 25);

    // Without overwriting, the existing trace is refused before anything is created.
    {
        TraceWriter w(path);
        expect_input_error([&] { w.begin(sample.meta); }, path, "already exists");
    }
    EXPECT_FALSE(fs::exists(recording_path_for(path)));
    EXPECT_EQ(slurp(path), old_bytes);

    TraceWriter w(path, {.overwrite = true});
    EXPECT_EQ(w.path(), path);
    EXPECT_EQ(w.recording_path(), recording_path_for(path));
    write_sample_trace(w, sample, 7, /*finish=*/false);
    w.sync();
    // Mid-run: the target is the old file byte for byte; the new steps are in the .part.
    EXPECT_EQ(slurp(path), old_bytes);
    EXPECT_TRUE(recording_in_progress(w.recording_path()));
    EXPECT_EQ(old_reader.info().n_steps, 25);
    EXPECT_EQ(old_reader.steps(0, 25).size(), 25u);

    w.end(sample.end);
    EXPECT_FALSE(fs::exists(recording_path_for(path)));
    EXPECT_NE(slurp(path), old_bytes);
    // The old reader still holds the old file (its inode), whole.
    EXPECT_EQ(old_reader.info().n_steps, 25);
    EXPECT_EQ(old_reader.steps(0, 25).back().token_id, sample.steps[24].record.token_id);
    EXPECT_TRUE(old_reader.validate().empty());
    // A fresh reader sees the new, complete trace.
    TraceReader fresh(path);
    EXPECT_EQ(fresh.info().n_steps, 7);
    EXPECT_EQ(fresh.info().state, RunState::kComplete);
    EXPECT_TRUE(fresh.validate().empty());
}

TEST(TraceReplace, DroppedWriterLeavesTargetUntouchedAndStalePartIsRefused) {
    ScratchDir dir;
    const auto path = dir / "run.kvtrace.h5";
    const auto part = recording_path_for(path);
    const SampleTrace sample = make_sample_trace();
    write_full(path, sample, 25);
    const std::string old_bytes = slurp(path);
    {
        TraceWriter w(path, {.overwrite = true});
        write_sample_trace(w, sample, 9, /*finish=*/false);
        w.sync();
    }  // destroyed without end(), as a crashed caller would
    EXPECT_EQ(slurp(path), old_bytes);
    ASSERT_TRUE(fs::exists(part));
    EXPECT_FALSE(recording_in_progress(part));
    {
        TraceReader r(part);
        EXPECT_EQ(r.info().n_steps, 9);
        EXPECT_EQ(r.info().state, RunState::kRunning);
    }
    const std::string part_bytes = slurp(part);

    // Without overwriting, the existing target is refused first; once it is moved away, the
    // stale .part is refused in turn: it is never reused silently...
    {
        TraceWriter w(path);
        expect_input_error([&] { w.begin(sample.meta); }, path, "already exists");
    }
    fs::rename(path, dir / "moved_away.kvtrace.h5");
    {
        TraceWriter w(path);
        expect_input_error([&] { w.begin(sample.meta); }, part, "did not finish");
    }
    EXPECT_EQ(slurp(part), part_bytes);
    // ...and discarded only when overwriting is allowed.
    write_full(path, sample, 3, /*overwrite=*/true);
    EXPECT_FALSE(fs::exists(part));
    EXPECT_EQ(TraceReader(path).info().n_steps, 3);
}

TEST(TraceReplace, LiveRecordingIsNeverTakenOver) {
    ScratchDir dir;
    const auto path = dir / "live.kvtrace.h5";
    const SampleTrace sample = make_sample_trace();
    TraceWriter first(path);
    write_sample_trace(first, sample, 4, /*finish=*/false);
    first.sync();
    ASSERT_TRUE(recording_in_progress(first.recording_path()));
    {
        TraceWriter second(path, {.overwrite = true});  // even when overwriting
        expect_input_error([&] { second.begin(sample.meta); }, first.recording_path(),
                           "in progress");
    }
    for (int64_t s = 4; s < 25; ++s) first.write_step(sample.steps[static_cast<size_t>(s)]);
    first.end(sample.end);
    EXPECT_FALSE(recording_in_progress(first.recording_path()));
    EXPECT_EQ(TraceReader(path).info().n_steps, 25);
}

TEST(TraceReplace, FreshOutputPathSkipsTakenNames) {
    ScratchDir dir;
    EXPECT_EQ(fresh_output_path(dir.path(), "whatif"), dir / "whatif-001.kvtrace.h5");
    std::ofstream(dir / "whatif-001.kvtrace.h5") << "x";
    std::ofstream(dir / "whatif-002.kvtrace.h5.part") << "x";  // a recording in progress or stale
    EXPECT_EQ(fresh_output_path(dir.path(), "whatif"), dir / "whatif-003.kvtrace.h5");
    EXPECT_EQ(fresh_output_path(dir.path(), "x", ".csv"), dir / "x-001.csv");
}

TEST(TraceReplace, MoveIntoPlaceWithoutReplaceKeepsAnExistingFile) {
    ScratchDir dir;
    std::ofstream(dir / "a") << "new";
    std::ofstream(dir / "b") << "old";
    expect_input_error([&] { move_into_place(dir / "a", dir / "b", false); }, dir / "a",
                       "appeared meanwhile");
    EXPECT_EQ(slurp(dir / "b"), "old");
    EXPECT_EQ(slurp(dir / "a"), "new");
    move_into_place(dir / "a", dir / "b", true);
    EXPECT_EQ(slurp(dir / "b"), "new");
    EXPECT_FALSE(fs::exists(dir / "a"));
}

// Disk full while recording, simulated with a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored so
// write(2) fails with EFBIG instead of killing the process). The writer reports the error, and
// the child then leaves through exit() so that HDF5's atexit shutdown runs: it used to crash
// there (H5D_close) when dataset ids outlived a failed close. Runs in a child process because
// the limit is per process and HDF5's shutdown happens once per process. The child is this test
// binary again (WriteErrorChild below), started with LeakSanitizer off: after a failed close
// HDF5's objects are deliberately left alive (closing them at shutdown is what crashed), which a
// sanitized build would otherwise report as the child's leaks. Every other ASan check stays on.
constexpr const char* kChildEnv = "KVSCOPE_DISKFULL_CHILD";

TEST(TraceReplace, WriteErrorChild) {
    const char* target = std::getenv(kChildEnv);
    if (!target) GTEST_SKIP() << "runs only as the child of WriteErrorIsReportedAndExitIsClean";
    const fs::path path = target;
    SampleTraceSpec spec;
    spec.n_steps = 200;
    spec.attention_rows = true;  // a few hundred KiB: well past the limit below
    const SampleTrace sample = make_sample_trace(spec);
    std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim {};
    lim.rlim_cur = lim.rlim_max = 96 * 1024;
    setrlimit(RLIMIT_FSIZE, &lim);
    std::string what = "no error";
    int code = 0;
    try {
        TraceWriter w(path, {.record_attention_rows = true});
        write_sample_trace(w, sample);
    } catch (const std::exception& e) {
        what = e.what();
        code = 10;  // the expected outcome
    }
    // The message goes to stdout (a pipe to the parent): the limit forbids growing files.
    std::fwrite(what.data(), 1, what.size(), stdout);
    std::fflush(stdout);
    std::exit(code);  // not _exit: run HDF5's atexit shutdown
}

TEST(TraceReplace, WriteErrorIsReportedAndExitIsClean) {
    ScratchDir dir;
    const auto path = dir / "full.kvtrace.h5";
    int msg[2];
    ASSERT_EQ(pipe(msg), 0);
    const pid_t pid = fork();
    if (pid == 0) {
        close(msg[0]);
        dup2(msg[1], STDOUT_FILENO);
        close(msg[1]);
        setenv(kChildEnv, path.c_str(), 1);
        const char* asan = std::getenv("ASAN_OPTIONS");
        const std::string opts =
            std::string(asan ? asan : "") + (asan ? ":" : "") + "detect_leaks=0";
        setenv("ASAN_OPTIONS", opts.c_str(), 1);
        execl("/proc/self/exe", "test_traces", "--gtest_filter=TraceReplace.WriteErrorChild",
              "--gtest_brief=1", static_cast<char*>(nullptr));
        std::_Exit(12);  // exec failed
    }
    close(msg[1]);
    std::string what;
    char buf[512];
    ssize_t n;
    while ((n = read(msg[0], buf, sizeof buf)) > 0) what.append(buf, static_cast<size_t>(n));
    close(msg[0]);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status))
        << "child died of signal " << WTERMSIG(status) << "; output was '" << what << "'";
    EXPECT_EQ(WEXITSTATUS(status), 10) << what;
    EXPECT_NE(what.find("writing the trace failed"), std::string::npos) << what;
    EXPECT_NE(what.find(recording_path_for(path).string()), std::string::npos) << what;
    EXPECT_NE(what.find("was not changed"), std::string::npos) << what;
    // The target was never created; the .part is what the run left.
    EXPECT_FALSE(fs::exists(path));
    EXPECT_TRUE(fs::exists(recording_path_for(path)));
}

}  // namespace
}  // namespace kvscope::trace
