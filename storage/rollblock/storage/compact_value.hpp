#pragma once

#include "rollblock/messages/types.hpp"

#include <cstdint>
#include <cstring>
#include <string_view>

namespace rollblock::storage {

/// A value (0..max_value_size bytes) in 12 bytes: up to `inline_capacity`
/// bytes are kept in the object itself, longer values in one heap block of
/// exactly their size. The store's common values (8-byte amounts, 10-byte
/// counters) never allocate. std::string needs 32 bytes and allocates above
/// 15. With a 2-byte stamp an entry is 14 bytes, so that a table slot with
/// an 8-byte key is 22.
///
/// Layout: bytes 0..9 hold an inline value, or bytes 0..7 the heap pointer
/// (unaligned: read and written with memcpy); bytes 10..11 hold the size
/// (max_value_size fits 16 bits).
class compact_value {
public:
  static constexpr std::size_t inline_capacity = 10;

  compact_value() noexcept {
    std::memset(bytes_, 0, sizeof(bytes_));
  }

  /// REQUIRES: v.size() <= max_value_size.
  explicit compact_value(std::string_view v) : compact_value() {
    assign(v);
  }

  compact_value(const compact_value& other) : compact_value() {
    assign(other.view());
  }

  compact_value(compact_value&& other) noexcept {
    std::memcpy(bytes_, other.bytes_, sizeof(bytes_));
    std::memset(other.bytes_, 0, sizeof(other.bytes_));
  }

  compact_value& operator=(const compact_value& other) {
    if (this != &other)
      assign(other.view());
    return *this;
  }

  compact_value& operator=(compact_value&& other) noexcept {
    if (this != &other) {
      release();
      std::memcpy(bytes_, other.bytes_, sizeof(bytes_));
      std::memset(other.bytes_, 0, sizeof(other.bytes_));
    }
    return *this;
  }

  ~compact_value() {
    release();
  }

  /// Replaces the value.
  /// REQUIRES: v.size() <= max_value_size; v does not view this value.
  void assign(std::string_view v) {
    // Inline in the header: a short value replacing a short value (every
    // change the store installs in the common case) needs no call.
    if (v.size() <= inline_capacity && size() <= inline_capacity) {
      std::memset(bytes_, 0, sizeof(bytes_));
      std::memcpy(bytes_, v.data(), v.size());
      set_size(v.size());
      return;
    }
    assign_with_heap(v);
  }

  /// Sets the value of an empty one without reading it first (a fresh
  /// table slot: its cache line need not be loaded before the write).
  /// REQUIRES: empty(); v.size() <= max_value_size.
  void assign_to_empty(std::string_view v) {
    if (v.size() <= inline_capacity) {
      std::memset(bytes_, 0, sizeof(bytes_));
      std::memcpy(bytes_, v.data(), v.size());
    } else {
      auto* p = new char[v.size()];
      std::memcpy(p, v.data(), v.size());
      std::memcpy(bytes_, &p, sizeof(p));
    }
    set_size(v.size());
  }

  /// Returns the bytes; valid until the next change of this value.
  std::string_view view() const noexcept {
    auto n = size();
    return {n <= inline_capacity ? bytes_ : heap(), n};
  }

  std::size_t size() const noexcept {
    std::uint16_t n;
    std::memcpy(&n, bytes_ + inline_capacity, sizeof(n));
    return n;
  }

  bool empty() const noexcept {
    return size() == 0;
  }

  /// Returns the heap bytes this value owns (0 when inline).
  std::size_t heap_bytes() const noexcept {
    auto n = size();
    return n <= inline_capacity ? 0 : n;
  }

  /// Returns a std::string copy.
  value str() const {
    return value{view()};
  }

  friend bool operator==(const compact_value& x, const compact_value& y) {
    return x.view() == y.view();
  }

private:
  char* heap() const noexcept {
    char* p;
    std::memcpy(&p, bytes_, sizeof(p));
    return p;
  }

  /// assign() when the old or the new value lives on the heap.
  void assign_with_heap(std::string_view v);

  void set_size(std::size_t n) noexcept {
    auto size = static_cast<std::uint16_t>(n);
    std::memcpy(bytes_ + inline_capacity, &size, sizeof(size));
  }

  void release() noexcept;

  char bytes_[12];
};

static_assert(sizeof(compact_value) == 12);
static_assert(max_value_size <= UINT16_MAX);

} // namespace rollblock::storage
