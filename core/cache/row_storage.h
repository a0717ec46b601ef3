#pragma once
// Host storage for the KV cache's rows (K, V, pre-RoPE K of one head).
//
// Why not plain std::vector: a GPU prefill appends a whole prompt's rows to fresh host memory
// (the 8B shape at 8k tokens: 2 GB), and with 4 KiB pages every first touch is a page fault; on
// an H100 host that was 826 ms of a 2.5 s prefill (bench/RESULTS.md, "Third run"). Arrays of
// 2 MiB and more are therefore mapped 2 MiB-aligned with MADV_HUGEPAGE (transparent huge pages:
// 512x fewer faults where the kernel allows them, "madvise" or "always" in
// /sys/kernel/mm/transparent_hugepage/enabled; elsewhere they behave as ordinary pages).
// Smaller arrays use operator new as before.
#include <cstddef>
#include <memory>
#include <new>
#include <utility>
#include <vector>

namespace kvscope {

inline constexpr size_t kRowStorageHugeMin = size_t{2} << 20;  // bytes

// Maps `bytes` (>= kRowStorageHugeMin) 2 MiB-aligned with the huge-page hint; std::bad_alloc when
// the system refuses. huge_rows_free() takes the same byte count.
void* huge_rows_alloc(size_t bytes);
void huge_rows_free(void* p, size_t bytes) noexcept;

template <class T>
struct RowAllocator {
    using value_type = T;
    RowAllocator() = default;
    template <class U>
    RowAllocator(const RowAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)
    T* allocate(size_t n) {
        if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
        const size_t bytes = n * sizeof(T);
        if (bytes >= kRowStorageHugeMin) return static_cast<T*>(huge_rows_alloc(bytes));
        return std::allocator<T>{}.allocate(n);
    }
    void deallocate(T* p, size_t n) noexcept {
        if (n * sizeof(T) >= kRowStorageHugeMin)
            huge_rows_free(p, n * sizeof(T));
        else
            std::allocator<T>{}.deallocate(p, n);
    }
    // Default-initialised elements: resize() grows without writing (for floats, no zero fill),
    // so slots whose rows arrive later (KVCache::append_layer_slots) touch no page until then.
    template <class U>
    void construct(U* p) noexcept {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... A>
    void construct(U* p, A&&... a) {
        ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
    }
    template <class U>
    bool operator==(const RowAllocator<U>&) const noexcept {
        return true;  // stateless: any instance frees what another allocated
    }
};

using RowVector = std::vector<float, RowAllocator<float>>;

}  // namespace kvscope
