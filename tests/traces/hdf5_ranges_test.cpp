// h5::read_ranges: row ranges of a 1-D dataset, read through an enclosing slab (close ranges) or
// slab by slab (far apart), must come back concatenated and exact in both cases.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <numeric>
#include <vector>

#include "traces/hdf5_io.h"

namespace kvscope::trace {
namespace {

TEST(Hdf5Ranges, CloseAndFarRangesReadExactly) {
    namespace fs = std::filesystem;
    const fs::path path =
        fs::temp_directory_path() / ("kvscope_ranges_" + std::to_string(::getpid()) + ".h5");
    constexpr hsize_t kRows = 600000;  // > 4x any close selection below, so both paths run
    {
        h5::Id file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
        ASSERT_TRUE(file.valid());
        std::vector<int32_t> values(kRows);
        std::iota(values.begin(), values.end(), 0);
        h5::Dataset ds = h5::create_dataset(file.get(), "/v", h5::native_type<int32_t>(), {kRows},
                                            {4096}, false, 1, nullptr);
        h5::write_slab(ds, {0}, {kRows}, values.data());
    }
    h5::Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    ASSERT_TRUE(file.valid());
    h5::Dataset ds = h5::open_dataset(file.get(), "/v", h5::native_type<int32_t>());
    auto check = [&](const std::vector<hsize_t>& begins, const std::vector<hsize_t>& counts) {
        std::vector<int32_t> expect;
        for (size_t i = 0; i < begins.size(); ++i)
            for (hsize_t k = 0; k < counts[i]; ++k)
                expect.push_back(static_cast<int32_t>(begins[i] + k));
        std::vector<int32_t> got(expect.size(), -7);
        h5::read_ranges(ds.id.get(), h5::native_type<int32_t>(), begins, counts, got.data());
        EXPECT_EQ(got, expect);
    };
    check({10, 20, 4090, 4100}, {5, 0, 8, 1});  // close: one enclosing slab
    check({0, 300000, 599990}, {3, 7, 10});     // far apart: slab by slab
    check({5}, {1});                            // a single row
    check({100, 200}, {0, 0});                  // nothing
    std::error_code ec;
    fs::remove(path, ec);
}

}  // namespace
}  // namespace kvscope::trace
