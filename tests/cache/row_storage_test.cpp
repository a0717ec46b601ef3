// Host row storage of the KV cache (core/cache/row_storage.h): large arrays are mapped 2
// MiB-aligned (so transparent huge pages can back them), small ones come from operator new, and a
// vector growing across the threshold keeps its contents.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>

#include "core/cache/row_storage.h"

namespace kvscope {
namespace {

TEST(RowStorage, LargeArraysAreHugePageAligned) {
    RowAllocator<float> a;
    const size_t n = (size_t{5} << 20) / sizeof(float) + 3;  // 5 MiB and a bit: not a multiple
    float* p = a.allocate(n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (size_t{2} << 20), 0u);
    for (size_t i = 0; i < n; i += 1024) p[i] = static_cast<float>(i);
    p[n - 1] = 7.0f;  // the last element is inside the mapping
    EXPECT_EQ(p[n - 1], 7.0f);
    EXPECT_EQ(p[2048], 2048.0f);
    a.deallocate(p, n);
}

TEST(RowStorage, VectorGrowsAcrossTheThresholdAndKeepsItsRows) {
    RowVector v;
    const size_t small = 1000, large = (kRowStorageHugeMin / sizeof(float)) * 3;
    v.resize(small);
    std::iota(v.begin(), v.end(), 0.0f);
    v.reserve(large);  // operator new -> mapped
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data()) % (size_t{2} << 20), 0u);
    for (size_t i = 0; i < small; ++i) ASSERT_EQ(v[i], static_cast<float>(i));
    v.resize(large, 1.5f);
    EXPECT_EQ(v.back(), 1.5f);
    RowVector w = v;  // copies use the same allocator
    EXPECT_EQ(w[small - 1], static_cast<float>(small - 1));
    v.clear();
    v.shrink_to_fit();  // mapped -> freed
    EXPECT_EQ(v.capacity(), 0u);
    EXPECT_EQ(w.size(), large);
}

TEST(RowStorage, AbsurdSizesThrowInsteadOfMapping) {
    RowAllocator<float> a;
    EXPECT_THROW((void)a.allocate(static_cast<size_t>(-1) / 2), std::bad_alloc);
}

}  // namespace
}  // namespace kvscope
