#include "rollblock/storage/table_memory.hpp"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace rollblock::storage {

table_memory::table_memory(std::size_t bytes) : size_(bytes) {
  if (bytes == 0)
    return;
  if (!mapped()) {
    // calloc aligns to 16 bytes only: a 32-byte slot could then straddle two
    // cache lines. aligned_alloc wants a multiple of the alignment.
    auto rounded = (bytes + cache_line_bytes - 1) & ~(cache_line_bytes - 1);
    data_ = static_cast<std::byte*>(
      std::aligned_alloc(cache_line_bytes, rounded));
    if (data_ == nullptr)
      throw std::bad_alloc{};
    std::memset(data_, 0, bytes);
    return;
  }
  // Map one huge page more than asked and start at the first huge-page
  // boundary inside; the kernel can back only aligned 2 MiB ranges with
  // huge pages. The mapping is not trimmed: pages never touched cost
  // nothing, and the unaligned head is at most one huge page of address
  // space.
  mapping_bytes_ = bytes + huge_page_bytes;
  mapping_ = ::mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping_ == MAP_FAILED) {
    mapping_ = nullptr;
    throw std::bad_alloc{};
  }
  auto start = reinterpret_cast<std::uintptr_t>(mapping_);
  auto aligned = (start + huge_page_bytes - 1) & ~(huge_page_bytes - 1);
  data_ = reinterpret_cast<std::byte*>(aligned);
  // Advice only: without transparent huge pages the region works the same.
  ::madvise(data_, bytes, MADV_HUGEPAGE);
}

table_memory::table_memory(table_memory&& other) noexcept
  : data_(std::exchange(other.data_, nullptr)),
    size_(std::exchange(other.size_, 0)),
    mapping_(std::exchange(other.mapping_, nullptr)),
    mapping_bytes_(std::exchange(other.mapping_bytes_, 0)) {
}

table_memory& table_memory::operator=(table_memory&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_bytes_ = std::exchange(other.mapping_bytes_, 0);
  }
  return *this;
}

table_memory::~table_memory() {
  release();
}

void table_memory::release() noexcept {
  if (mapping_ != nullptr)
    ::munmap(mapping_, mapping_bytes_);
  else
    std::free(data_);
  data_ = nullptr;
  size_ = 0;
  mapping_ = nullptr;
  mapping_bytes_ = 0;
}

} // namespace rollblock::storage
