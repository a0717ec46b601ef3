// A writer killed with SIGKILL mid-run leaves a trace whose committed steps all read back, and a
// reader can follow a run live (SWMR). Writers run in a forked child process: HDF5 cannot open
// the same file twice in one process, and SIGKILL must hit a real writer.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include "tests/traces/trace_test_support.h"
#include "traces/synthetic/sample_trace.h"
#include "traces/trace_output.h"
#include "traces/trace_reader.h"
#include "traces/trace_writer.h"

namespace kvscope::trace {
namespace {

using testing::expect_same_events;
using testing::expect_same_floats;
using testing::ScratchDir;
using testing::stored_order;

// Runs body in a child process; the child never returns into the test framework.
template <typename F>
pid_t fork_child(F&& body) {
    pid_t pid = fork();
    if (pid == 0) {
        int code = 0;
        try {
            body();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "child failed: %s\n", e.what());
            code = 3;
        }
        _exit(code);
    }
    return pid;
}

// Compares the first n_steps steps of a reader with the sample.
void expect_steps_match(const TraceReader& r, const SampleTrace& sample, int64_t n_steps) {
    auto steps = r.steps(0, n_steps);
    std::vector<EventRecord> all;
    for (int64_t s = 0; s < n_steps; ++s) {
        const auto& want = sample.steps[static_cast<size_t>(s)];
        EXPECT_EQ(steps[static_cast<size_t>(s)].token_id, want.record.token_id);
        EXPECT_EQ(steps[static_cast<size_t>(s)].bytes_held, want.record.bytes_held);
        EXPECT_EQ(r.budgets(s), want.budgets);
        expect_same_floats(
            r.needle_survival(0, s, s + 1),
            std::vector<float>(want.needle_survival.begin(), want.needle_survival.begin() + 6),
            "needle_survival");
        auto sorted = stored_order(want.events);
        all.insert(all.end(), sorted.begin(), sorted.end());
    }
    expect_same_events(r.events(0, n_steps), all, "events");
    auto toks = r.tokens(0, r.info().n_tokens);
    ASSERT_EQ(toks.size(), static_cast<size_t>(40 + n_steps));
    for (int64_t s = 0; s < n_steps; ++s)
        EXPECT_EQ(toks[static_cast<size_t>(40 + s)].piece,
                  sample.steps[static_cast<size_t>(s)].record.piece);
}

TEST(TraceKill, FlushedStepsReadBackAfterSigkill) {
    ScratchDir dir;
    const auto path = dir / "killed.kvtrace.h5";
    const SampleTrace sample = make_sample_trace();
    constexpr int64_t kSteps = 17;
    pid_t pid = fork_child([&] {
        TraceWriter w(path);
        write_sample_trace(w, sample, kSteps, /*finish=*/false);
        w.sync();  // every queued step is committed and flushed
        raise(SIGKILL);
    });
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exit status " << status;
    ASSERT_EQ(WTERMSIG(status), SIGKILL);

    // A killed run never reaches the rename: the target is absent, the .part holds the steps.
    EXPECT_FALSE(std::filesystem::exists(path));
    TraceReader r(recording_path_for(path));
    TraceInfo info = r.info();
    EXPECT_EQ(info.state, RunState::kRunning);
    EXPECT_TRUE(info.swmr);
    EXPECT_EQ(info.n_steps, kSteps);
    EXPECT_EQ(info.n_tokens, 40 + kSteps);
    EXPECT_EQ(info.n_prefill_layers_done, 3);
    EXPECT_NE(info.notice.find("incomplete trace"), std::string::npos) << info.notice;
    EXPECT_NE(info.notice.find("17 steps"), std::string::npos) << info.notice;
    EXPECT_FALSE(r.run_end().has_value());
    expect_steps_match(r, sample, kSteps);
    auto st = r.token_states(1, 1, kSteps - 1);
    EXPECT_EQ(st.size(), static_cast<size_t>(40 + kSteps - 1));
    auto problems = r.validate();
    EXPECT_TRUE(problems.empty()) << problems.front();
}

// Killed with steps still queued: whatever was committed reads back, nothing else is claimed.
TEST(TraceKill, KillWithoutSyncLeavesAConsistentPrefix) {
    ScratchDir dir;
    const SampleTrace sample = make_sample_trace();
    for (int trial = 0; trial < 3; ++trial) {
        const auto path = dir / ("killed" + std::to_string(trial) + ".kvtrace.h5");
        pid_t pid = fork_child([&] {
            TraceWriter w(path, {.queue_capacity = 4});
            write_sample_trace(w, sample, -1, /*finish=*/false);
            raise(SIGKILL);
        });
        int status = 0;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFSIGNALED(status));
        TraceReader r(recording_path_for(path));
        const int64_t n = r.info().n_steps;
        EXPECT_GE(n, 0);
        EXPECT_LE(n, 25);
        // At the last push at most 4 steps were queued, 1 in hand and 16 written but not yet
        // committed (group commit), so at least 25 - 21 steps were committed.
        EXPECT_GE(n, 4);
        expect_steps_match(r, sample, n);
        auto problems = r.validate();
        EXPECT_TRUE(problems.empty()) << problems.front();
    }
}

TEST(TraceKill, ReaderFollowsARunLive) {
    ScratchDir dir;
    const auto path = dir / "live.kvtrace.h5";
    const SampleTrace sample = make_sample_trace();
    int to_parent[2], to_child[2];
    ASSERT_EQ(pipe(to_parent), 0);
    ASSERT_EQ(pipe(to_child), 0);
    auto signal = [](int fd, char c) { ASSERT_EQ(write(fd, &c, 1), 1); };
    auto await = [](int fd, char want) {
        char c = 0;
        ASSERT_EQ(read(fd, &c, 1), 1);
        ASSERT_EQ(c, want);
    };
    pid_t pid = fork_child([&] {
        TraceWriter w(path);
        w.begin(sample.meta);
        w.write_tokens(sample.prompt);
        for (const auto& p : sample.prefill) w.write_prefill(p);
        for (int s = 0; s < 4; ++s) w.write_step(sample.steps[static_cast<size_t>(s)]);
        w.sync();
        char c = 'a';
        if (write(to_parent[1], &c, 1) != 1 || read(to_child[0], &c, 1) != 1) _exit(4);
        for (int s = 4; s < 10; ++s) w.write_step(sample.steps[static_cast<size_t>(s)]);
        w.sync();
        c = 'c';
        if (write(to_parent[1], &c, 1) != 1 || read(to_child[0], &c, 1) != 1) _exit(4);
        w.end(sample.end);
    });
    await(to_parent[0], 'a');
    // A live reader follows the .part; end() renames it to the target under the reader.
    EXPECT_FALSE(std::filesystem::exists(path));
    TraceReader r(recording_path_for(path));
    EXPECT_TRUE(r.info().swmr);
    EXPECT_EQ(r.info().n_steps, 4);
    EXPECT_EQ(r.info().state, RunState::kRunning);
    expect_steps_match(r, sample, 4);
    auto early = r.token_states(0, 1, 3);  // caches (0, 1) up to step 3
    EXPECT_EQ(early.size(), 43u);

    signal(to_child[1], 'b');
    await(to_parent[0], 'c');
    EXPECT_TRUE(r.refresh());
    EXPECT_EQ(r.info().n_steps, 10);
    expect_steps_match(r, sample, 10);
    // The cached (0, 1) events are extended with the new steps.
    std::vector<EventRecord> lh;
    for (int s = 0; s < 10; ++s)
        for (const auto& e : sample.steps[static_cast<size_t>(s)].events)
            if (e.layer == 0 && e.head == 1) lh.push_back(e);
    std::vector<TokenState> want(49);
    apply_events(lh, 9, want);
    auto got = r.token_states(0, 1, 9);
    ASSERT_EQ(got.size(), want.size());
    for (size_t p = 0; p < got.size(); ++p) EXPECT_EQ(got[p].state, want[p].state) << p;

    signal(to_child[1], 'd');
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    r.refresh();
    EXPECT_EQ(r.info().state, RunState::kComplete);
    EXPECT_FALSE(std::filesystem::exists(recording_path_for(path)));
    // A fresh reader sees a normal, complete file.
    TraceReader again(path);
    EXPECT_FALSE(again.info().swmr);
    EXPECT_EQ(again.info().state, RunState::kComplete);
    EXPECT_EQ(again.info().n_steps, 10);
    close(to_parent[0]);
    close(to_parent[1]);
    close(to_child[0]);
    close(to_child[1]);
}

}  // namespace
}  // namespace kvscope::trace
