#include "core/cache/row_storage.h"

#include <sys/mman.h>

#include <cstdint>

namespace kvscope {
namespace {

constexpr size_t kHuge = size_t{2} << 20;
constexpr size_t kPage = 4096;

size_t mapped_bytes(size_t bytes) {
    return (bytes + kPage - 1) / kPage * kPage;
}

}  // namespace

void* huge_rows_alloc(size_t bytes) {
    const size_t len = mapped_bytes(bytes);
    // Over-map by one huge page, then unmap the unaligned head and the tail, so that the region
    // starts on a 2 MiB boundary (the kernel backs only aligned 2 MiB ranges with huge pages).
    void* raw =
        ::mmap(nullptr, len + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    char* const base = static_cast<char*>(raw);
    const size_t head = (kHuge - reinterpret_cast<uintptr_t>(raw) % kHuge) % kHuge;
    char* const start = base + head;
    if (head > 0) ::munmap(base, head);
    const size_t tail = kHuge - head;  // bytes mapped after start + len
    if (tail > 0) ::munmap(start + len, tail);
    // A hint: where transparent huge pages are off it fails, and the pages stay 4 KiB.
    (void)::madvise(start, len, MADV_HUGEPAGE);
    return start;
}

void huge_rows_free(void* p, size_t bytes) noexcept {
    if (p) ::munmap(p, mapped_bytes(bytes));
}

}  // namespace kvscope
