#pragma once

#include <cstddef>

namespace rollblock::storage {

/// The zeroed memory of one hash table (flat_key_map), sized and aligned for
/// tables of millions of slots that every lookup reaches at random:
/// - Regions of at least `huge_page_bytes` are mapped on their own, start at
///   a huge-page boundary and ask the kernel for transparent huge pages
///   (madvise), so that random lookups in a table of hundreds of megabytes
///   miss the TLB far less often. Freeing one returns it to the kernel at
///   once: a table that doubles does not leave its old arrays in the heap.
/// - Smaller regions come from the heap: a table built and dropped per block
///   reuses memory instead of faulting in fresh pages.
/// Every region starts at a cache-line boundary (64 bytes), so that a slot
/// whose size divides 64 never straddles two lines. Move-only.
class table_memory {
public:
  static constexpr std::size_t huge_page_bytes = std::size_t{2} << 20;
  static constexpr std::size_t cache_line_bytes = 64;

  table_memory() noexcept = default;

  /// Allocates `bytes` zeroed bytes (none for 0). Throws std::bad_alloc when
  /// the system has no memory for them.
  explicit table_memory(std::size_t bytes);

  table_memory(table_memory&& other) noexcept;
  table_memory& operator=(table_memory&& other) noexcept;
  table_memory(const table_memory&) = delete;
  table_memory& operator=(const table_memory&) = delete;
  ~table_memory();

  std::byte* data() const noexcept {
    return data_;
  }

  std::size_t size() const noexcept {
    return size_;
  }

  /// Returns whether the region is mapped on its own (huge-page sized).
  bool mapped() const noexcept {
    return size_ >= huge_page_bytes;
  }

private:
  void release() noexcept;

  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  /// For a mapped region: the whole mapping (its start rounded up to a
  /// huge-page boundary is data_).
  void* mapping_ = nullptr;
  std::size_t mapping_bytes_ = 0;
};

} // namespace rollblock::storage
