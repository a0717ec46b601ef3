// Output naming and overwrite policy (see trace_output.h).
#include "traces/trace_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "core/error.h"

namespace kvscope::trace {

namespace fs = std::filesystem;

namespace {

std::string errno_text(int err) {
    return std::generic_category().message(err);
}

bool exists_no_follow(const fs::path& p) {
    std::error_code ec;
    return fs::exists(fs::symlink_status(p, ec));
}

#ifdef F_OFD_SETLK
// Whole-file write lock: l_start = l_len = 0 covers every byte, present and future.
struct flock whole_file_lock(short type) {
    struct flock l {};
    l.l_type = type;
    l.l_whence = SEEK_SET;
    l.l_start = 0;
    l.l_len = 0;
    l.l_pid = 0;  // must be 0 for OFD locks
    return l;
}
#endif

}  // namespace

fs::path recording_path_for(const fs::path& target) {
    fs::path p = target;
    p += kRecordingSuffix;
    return p;
}

fs::path target_of_recording(const fs::path& path) {
    const std::string s = path.string();
    const std::string suffix = kRecordingSuffix;
    if (s.size() <= suffix.size() ||
        s.compare(s.size() - suffix.size(), suffix.size(), suffix) != 0)
        return {};
    return fs::path(s.substr(0, s.size() - suffix.size()));
}

bool recording_in_progress(const fs::path& part) {
#ifdef F_OFD_GETLK
    const int fd = ::open(part.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    struct flock l = whole_file_lock(F_WRLCK);
    const bool locked = ::fcntl(fd, F_OFD_GETLK, &l) == 0 && l.l_type != F_UNLCK;
    ::close(fd);
    return locked;
#else
    (void)part;
    return false;
#endif
}

void refuse_existing_output(const fs::path& path, bool overwrite,
                            const std::string& how_to_replace) {
    if (overwrite || !exists_no_follow(path)) return;
    std::error_code ec;
    const bool dir = fs::is_directory(path, ec);
    throw InputError(path, std::string(dir ? "is an existing folder" : "already exists") +
                               "; not overwritten (" + how_to_replace + ")");
}

fs::path fresh_output_path(const fs::path& dir, const std::string& stem, const std::string& ext) {
    for (int i = 1; i <= 999; ++i) {
        char num[16];  // room for any int: GCC checks the whole range at -O1
        std::snprintf(num, sizeof num, "-%03d", i);
        fs::path p = dir / (stem + num + ext);
        if (!exists_no_follow(p) && !exists_no_follow(recording_path_for(p))) return p;
    }
    throw InputError(dir, "no free name " + stem + "-NNN" + ext + " left (001 to 999 are taken)");
}

void move_into_place(const fs::path& from, const fs::path& to, bool replace) {
    auto fail = [&](int err) {
        throw InputError(from, "cannot move the finished recording to " + to.string() + ": " +
                                   (err == EEXIST ? std::string("that file appeared meanwhile "
                                                                "and is not overwritten")
                                                  : errno_text(err)) +
                                   "; the recording stays in " + from.string());
    };
    if (replace) {
        if (::rename(from.c_str(), to.c_str()) != 0) fail(errno);
        return;
    }
#ifdef RENAME_NOREPLACE
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return;
    if (errno != EINVAL && errno != ENOSYS) fail(errno);
#endif
    // No RENAME_NOREPLACE here: link() fails on an existing name, which is just as atomic.
    if (::link(from.c_str(), to.c_str()) != 0) fail(errno);
    ::unlink(from.c_str());
}

RecordingLock::RecordingLock(const fs::path& part) {
    fd_ = ::open(part.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0) {
        const int err = errno;
        throw InputError(part, err == EEXIST
                                   ? std::string("exists already (another recording "
                                                 "into the same trace?)")
                                   : "cannot create the recording file: " + errno_text(err));
    }
#ifdef F_OFD_SETLK
    // Best effort: without the lock a live recording looks stale to recording_in_progress.
    struct flock l = whole_file_lock(F_WRLCK);
    (void)::fcntl(fd_, F_OFD_SETLK, &l);
#endif
}

RecordingLock::~RecordingLock() {
    release();
}

RecordingLock& RecordingLock::operator=(RecordingLock&& o) noexcept {
    if (this != &o) {
        release();
        fd_ = o.fd_;
        o.fd_ = -1;
    }
    return *this;
}

void RecordingLock::release() {
    if (fd_ >= 0) ::close(fd_);  // closing the description drops its OFD lock
    fd_ = -1;
}

}  // namespace kvscope::trace
