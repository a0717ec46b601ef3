#pragma once
// Never lose a trace, never clobber a file: the naming and overwrite policy shared by the trace
// writer, the CLI commands that write files and the Studio.
//
// A TraceWriter for TARGET records into TARGET.part (recording_path_for) in the same folder and
// renames it over TARGET in one rename(2) when the run ends. So TARGET is never truncated: a
// reader that has the old trace open keeps reading the old file (its inode), a killed run leaves
// TARGET untouched and TARGET.part readable (SWMR, every committed step), and a live reader
// follows TARGET.part, which becomes TARGET at the end without the reader noticing.
//
// While a writer records, it holds an open-file-description lock (fcntl F_OFD_SETLK, Linux) on
// TARGET.part; HDF5's own locks are flock() locks, which are independent of it, so readers are
// not disturbed. That tells a live recording (recording_in_progress) from a stale .part left by a
// killed run.
#include <filesystem>
#include <string>

namespace kvscope::trace {

// Suffix of the file a recording is written to until it is complete.
inline constexpr const char* kRecordingSuffix = ".part";

// "dir/run.kvtrace.h5" -> "dir/run.kvtrace.h5.part".
std::filesystem::path recording_path_for(const std::filesystem::path& target);
// "dir/run.kvtrace.h5.part" -> "dir/run.kvtrace.h5"; empty when `path` has no .part suffix.
std::filesystem::path target_of_recording(const std::filesystem::path& path);

// True when a TraceWriter is recording into `part` right now (it holds the lock described above).
// False for a missing file, a stale .part and on systems without OFD locks.
bool recording_in_progress(const std::filesystem::path& part);

// Throws InputError naming `path` when something already exists there and `overwrite` is false.
// `how_to_replace` finishes the message (for the CLI: "pass --force to replace it").
void refuse_existing_output(const std::filesystem::path& path, bool overwrite,
                            const std::string& how_to_replace = "pass --force to replace it");

// The first of dir/stem-001<ext>, dir/stem-002<ext>, ... that exists neither as a file nor as a
// recording (.part). Throws InputError when all 999 are taken. Another process may take the name
// before it is used; a TraceWriter without `overwrite` then refuses it instead of replacing it.
std::filesystem::path fresh_output_path(const std::filesystem::path& dir, const std::string& stem,
                                        const std::string& ext = ".kvtrace.h5");

// Moves `from` over `to` in one rename(2) (same folder). With replace=false the rename fails
// when `to` exists (RENAME_NOREPLACE, or link + unlink where the file system lacks it), so a
// file that appeared meanwhile is kept. Throws InputError naming both paths.
void move_into_place(const std::filesystem::path& from, const std::filesystem::path& to,
                     bool replace);

// Creates `part` exclusively (O_EXCL) and holds the lock that marks it as being recorded until
// destroyed. The caller handles a stale .part first (it is never silently reused).
class RecordingLock {
  public:
    RecordingLock() = default;
    // Throws InputError naming `part` when it exists or cannot be created.
    explicit RecordingLock(const std::filesystem::path& part);
    ~RecordingLock();
    RecordingLock(RecordingLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    RecordingLock& operator=(RecordingLock&& o) noexcept;
    RecordingLock(const RecordingLock&) = delete;
    RecordingLock& operator=(const RecordingLock&) = delete;
    void release();

  private:
    int fd_ = -1;
};

}  // namespace kvscope::trace
