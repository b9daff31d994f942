#include "rollblock/storage/compact_value.hpp"

#include <new>

namespace rollblock::storage {

void compact_value::assign_with_heap(std::string_view v) {
  if (v.size() <= inline_capacity) {
    release();
    std::memcpy(bytes_, v.data(), v.size());
  } else if (size() == v.size()) {
    // Same size on the heap: reuse the block.
    std::memcpy(heap(), v.data(), v.size());
  } else {
    auto* p = new char[v.size()];
    std::memcpy(p, v.data(), v.size());
    release();
    std::memcpy(bytes_, &p, sizeof(p));
  }
  set_size(v.size());
}

void compact_value::release() noexcept {
  if (size() > inline_capacity)
    delete[] heap();
  std::memset(bytes_, 0, sizeof(bytes_));
}

} // namespace rollblock::storage
