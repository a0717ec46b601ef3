// Bad trace files give an InputError naming the file and the problem, never a crash: missing,
// empty, random bytes, HDF5 signature + garbage, truncated (clean and killed runs), another
// schema version, not a trace, a missing or misshapen dataset, invalid metadata JSON, and
// inconsistent contents (found by validate() and by the accessors).
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <random>
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

// Expects opening `path` to throw an InputError whose message names the file and contains
// `needle`.
void expect_open_error(const std::filesystem::path& path, const std::string& needle) {
    try {
        TraceReader r(path);
        FAIL() << "opened " << path << " without error";
    } catch (const InputError& e) {
        const std::string msg = e.what();
        EXPECT_EQ(e.file(), path);
        EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
        EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
    }
}

std::filesystem::path write_sample(const ScratchDir& dir, const std::string& name) {
    auto path = dir / name;
    TraceWriter w(path);
    write_sample_trace(w, make_sample_trace());
    return path;
}

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
}

std::string random_bytes(size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
    return s;
}

// Opens a finished trace read-write to damage it (plain HDF5 calls, as any user could).
class Edit {
  public:
    explicit Edit(const std::filesystem::path& path) {
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
        file_ = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
        EXPECT_GE(file_, 0);
    }
    ~Edit() { H5Fclose(file_); }
    hid_t file() const { return file_; }

  private:
    hid_t file_;
};

TEST(TraceErrors, MissingAndEmptyFiles) {
    ScratchDir dir;
    expect_open_error(dir / "nope.kvtrace.h5", "no such file");
    write_bytes(dir / "empty.kvtrace.h5", "");
    expect_open_error(dir / "empty.kvtrace.h5", "empty file");
    expect_open_error(dir.path(), "not a regular file");
}

TEST(TraceErrors, RandomBytes) {
    ScratchDir dir;
    for (unsigned seed = 0; seed < 5; ++seed) {
        auto p = dir / ("random" + std::to_string(seed) + ".kvtrace.h5");
        write_bytes(p, random_bytes(4096 + seed * 1000, seed));
        expect_open_error(p, "not an HDF5 file");
    }
    // A valid signature followed by garbage reaches HDF5's superblock parser.
    for (unsigned seed = 0; seed < 5; ++seed) {
        auto p = dir / ("sig" + std::to_string(seed) + ".kvtrace.h5");
        write_bytes(p, std::string("\x89HDF\r\n\x1a\n", 8) + random_bytes(8192, 100 + seed));
        expect_open_error(p, "");
    }
    write_bytes(dir / "text.kvtrace.h5", "step,layer\n1,2\n");
    expect_open_error(dir / "text.kvtrace.h5", "not an HDF5 file");
}

TEST(TraceErrors, TruncatedCompleteTrace) {
    ScratchDir dir;
    auto good = write_sample(dir, "good.kvtrace.h5");
    const auto size = std::filesystem::file_size(good);
    for (double frac : {0.05, 0.5, 0.9, 0.999}) {
        auto p = dir / ("cut" + std::to_string(static_cast<int>(frac * 1000)) + ".kvtrace.h5");
        std::filesystem::copy_file(good, p);
        std::filesystem::resize_file(p, static_cast<uintmax_t>(static_cast<double>(size) * frac));
        expect_open_error(p, "truncated");
    }
}

TEST(TraceErrors, TruncatedKilledTrace) {
    ScratchDir dir;
    auto path = dir / "killed.kvtrace.h5";
    pid_t pid = fork();
    if (pid == 0) {
        try {
            TraceWriter w(path);
            write_sample_trace(w, make_sample_trace(), 10, false);
            w.sync();
        } catch (...) {
            _exit(3);
        }
        raise(SIGKILL);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status));
    path = recording_path_for(path);  // killed before end(): the run is in the .part
    std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
    expect_open_error(path, "truncated");
}

TEST(TraceErrors, NewerSchemaVersion) {
    ScratchDir dir;
    auto path = write_sample(dir, "v99.kvtrace.h5");
    {
        Edit e(path);
        hid_t a = H5Aopen(e.file(), "schema_version", H5P_DEFAULT);
        int32_t v = 99;
        ASSERT_GE(H5Awrite(a, H5T_NATIVE_INT32, &v), 0);
        H5Aclose(a);
    }
    expect_open_error(path, "schema_version 99 is newer");
}

TEST(TraceErrors, HdfFileThatIsNoTrace) {
    ScratchDir dir;
    auto path = dir / "other.h5";
    hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t n = 4;
    hid_t space = H5Screate_simple(1, &n, nullptr);
    hid_t d = H5Dcreate2(f, "data", H5T_NATIVE_INT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
    expect_open_error(path, "not a KVScope trace");
}

TEST(TraceErrors, MissingDataset) {
    ScratchDir dir;
    int i = 0;
    for (const char* name : {"/steps/entropy", "/events/op", "/prefill/key_norm", "/meta/run_json",
                             "/steps/needle_survival"}) {
        auto path = write_sample(dir, "missing" + std::to_string(i++) + ".kvtrace.h5");
        {
            Edit e(path);
            ASSERT_GE(H5Ldelete(e.file(), name, H5P_DEFAULT), 0);
        }
        expect_open_error(path, std::string("missing dataset ") + name);
    }
}

TEST(TraceErrors, MisshapenDataset) {
    ScratchDir dir;
    auto path = write_sample(dir, "shape.kvtrace.h5");
    {
        Edit e(path);
        ASSERT_GE(H5Ldelete(e.file(), "/prefill/density", H5P_DEFAULT), 0);
        hsize_t dims[2] = {3, 5};  // H is 2
        hid_t space = H5Screate_simple(2, dims, nullptr);
        hid_t d = H5Dcreate2(e.file(), "/prefill/density", H5T_NATIVE_FLOAT, space, H5P_DEFAULT,
                             H5P_DEFAULT, H5P_DEFAULT);
        H5Dclose(d);
        H5Sclose(space);
    }
    expect_open_error(path, "/prefill/density has extent 5 on axis H, expected 2");
}

TEST(TraceErrors, InvalidMetadataJson) {
    ScratchDir dir;
    auto path = write_sample(dir, "json.kvtrace.h5");
    {
        Edit e(path);
        hid_t d = H5Dopen2(e.file(), "/meta/run_json", H5P_DEFAULT);
        hid_t t = H5Dget_type(d);
        // A fixed-length string since schema version 2: the buffer has the type's size, the bad
        // JSON at its start, NUL padding after it.
        const std::string bad = "{\"n_layers\": 3, oops";
        std::string buf(H5Tget_size(t), '\0');
        ASSERT_GT(buf.size(), bad.size());
        buf.replace(0, bad.size(), bad);
        ASSERT_GE(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), 0);
        H5Tclose(t);
        H5Dclose(d);
    }
    expect_open_error(path, "/meta/run_json is not valid run metadata");
}

TEST(TraceErrors, InconsistentContentsAreReported) {
    ScratchDir dir;
    auto path = write_sample(dir, "ops.kvtrace.h5");
    {
        Edit e(path);
        // Event row 3 gets an op that does not exist, row 5 a layer out of range.
        hid_t d = H5Dopen2(e.file(), "/events/op", H5P_DEFAULT);
        hid_t fs = H5Dget_space(d);
        hsize_t at = 3, one = 1;
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, &at, nullptr, &one, nullptr);
        hid_t ms = H5Screate_simple(1, &one, nullptr);
        uint8_t op = 9;
        ASSERT_GE(H5Dwrite(d, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, &op), 0);
        H5Sclose(fs);
        H5Dclose(d);
        d = H5Dopen2(e.file(), "/events/layer", H5P_DEFAULT);
        fs = H5Dget_space(d);
        at = 5;
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, &at, nullptr, &one, nullptr);
        int16_t layer = 7;
        ASSERT_GE(H5Dwrite(d, H5T_NATIVE_INT16, ms, fs, H5P_DEFAULT, &layer), 0);
        H5Sclose(ms);
        H5Sclose(fs);
        H5Dclose(d);
    }
    TraceReader r(path);
    auto problems = r.validate();
    auto reported = [&](const std::string& what) {
        return std::any_of(problems.begin(), problems.end(),
                           [&](const std::string& p) { return p.find(what) != std::string::npos; });
    };
    EXPECT_TRUE(reported("/events row 3: op 9 unknown"));
    EXPECT_TRUE(reported("/events row 5: (layer 7, head 0) out of range"));
    EXPECT_TRUE(reported("/events row 6: not sorted by (layer, head)"));
    EXPECT_EQ(problems.size(), 3u);
    try {
        r.events(0, 1);
        FAIL() << "no error for an unknown op";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("/events/op holds 9"), std::string::npos);
        EXPECT_EQ(e.file(), path);
    }
}

}  // namespace
}  // namespace kvscope::trace
