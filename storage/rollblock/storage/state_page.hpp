#pragma once

#include "rollblock/messages/types.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rollblock::storage {

// A page of the state database: the values of up to `page_keys` keys that
// are neighbours in key order, kept as one LevelDB record (state_store.cpp).
// page_keys is a power of two from 1 to 64, fixed when the store is
// created. The keys of a page differ only in the low log2(page_keys) bits
// of their least significant byte in key order (key_order.hpp): byte 0 for
// 8-byte keys, the last byte for wider ones; those bits are the key's slot.
// The page's key is its keys' common bytes with the slot bits zero.
//
// A block of new sequential keys fills whole pages: LevelDB then stores,
// sorts and compacts one record per page_keys keys instead of one per key.
// But a checkpoint must read a page before it rewrites it (unless it
// writes all of its slots): keys far apart in key order (hashes, scrambled
// ids) have a page each, and each delete or update of such a key then
// costs a LevelDB read. Stores of those keys want page_keys 1, where a
// write never reads.
//
// Encoding of a page's value: its entries in increasing slot order, each
//
//   slot     1 byte   0..page_keys-1
//   size     varint32 (7 bits per byte, least significant first), 1..max_value_size
//   value    `size` bytes
//
// A page with no entry is never stored (its record is deleted).

/// Returns the index of the byte that holds a key's slot bits.
/// REQUIRES: width >= 8.
constexpr std::size_t slot_byte(std::size_t width) noexcept {
  return width == 8 ? 0 : width - 1;
}

/// Returns the slot of `k` in its page.
/// REQUIRES: k.size() >= 8 && valid_page_keys(page_keys).
inline std::size_t slot_of(std::string_view k, std::size_t page_keys) noexcept {
  return static_cast<unsigned char>(k[slot_byte(k.size())]) & (page_keys - 1);
}

/// Returns whether `a` and `b` (same width) are in the same page.
/// REQUIRES: a.size() == b.size() && a.size() >= 8 &&
/// valid_page_keys(page_keys).
bool same_page(std::string_view a, std::string_view b,
               std::size_t page_keys) noexcept;

/// Writes the key of the page holding `k` to `out` (replacing its contents).
/// REQUIRES: k.size() >= 8 && valid_page_keys(page_keys).
void page_key_of(std::string_view k, std::size_t page_keys, std::string& out);

/// Writes the key in `slot` of the page with key `page_key` to `out`.
/// REQUIRES: page_key.size() >= 8 && slot < max_page_keys.
void key_in_page(std::string_view page_key, std::size_t slot, std::string& out);

/// A page decoded: the value of every slot (empty: no entry). The values
/// view the bytes decode() read.
class page_image {
public:
  /// Replaces the image with the page of `page_keys` keys stored under
  /// `page_key` with value `bytes` (empty: a page with no entry). Returns
  /// why they are not such a page (a key of another size than
  /// min_key_width..max_key_width or with slot bits set, a malformed entry),
  /// or an empty string; a failed decode leaves the image empty.
  /// REQUIRES: valid_page_keys(page_keys).
  std::string decode(std::string_view page_key, std::string_view bytes,
                     std::size_t page_keys);

  /// Returns the value in `slot` (empty: none).
  std::string_view get(std::size_t slot) const noexcept {
    return values_[slot];
  }

  /// Sets the value in `slot` (empty: removes it). `v` must outlive the
  /// image's use.
  void set(std::size_t slot, std::string_view v) noexcept {
    values_[slot] = v;
  }

  /// Returns whether no slot holds a value.
  bool empty() const noexcept;

  /// Calls `f(slot, value)` for every entry in slot order.
  template <class F>
  void for_each(F&& f) const {
    for (std::size_t slot = 0; slot < max_page_keys; ++slot)
      if (!values_[slot].empty())
        f(slot, values_[slot]);
  }

  /// Appends the encoding of the page to `out`.
  void encode(std::string& out) const;

private:
  std::array<std::string_view, max_page_keys> values_{};
};

} // namespace rollblock::storage
