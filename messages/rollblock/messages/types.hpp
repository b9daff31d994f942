#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rollblock {

/// A block height. Blocks are applied at strictly increasing heights; gaps are
/// allowed and height 0 is accepted once, as genesis, on a fresh store.
using block_id = std::uint64_t;

/// A key: exactly `key_width` bytes, where the width is chosen per store when
/// it is created (see `min_key_width`, `max_key_width`).
using key = std::string;

/// A value: 0..max_value_size bytes of binary data. The empty value means
/// "absent": writing it deletes the key, and reading an absent key yields it.
using value = std::string;

constexpr std::size_t min_key_width = 8;
constexpr std::size_t max_key_width = 64;
constexpr std::size_t default_key_width = 8;
constexpr std::size_t max_value_size = 65535;

/// The most keys a state page holds (storage/state_page.hpp; the store
/// option page_keys).
constexpr std::size_t max_page_keys = 64;

/// Returns whether `n` is a page size: a power of two from 1 to 64.
constexpr bool valid_page_keys(std::size_t n) noexcept {
  return n >= 1 && n <= max_page_keys && (n & (n - 1)) == 0;
}

/// Returns the page size of a new store of `width`-byte keys unless its
/// options name one: 64 for 8-byte keys (the original's u64 keys, mostly
/// counted up), 1 for wider ones (mostly hashes).
constexpr std::size_t default_page_keys(std::size_t width) noexcept {
  return width == 8 ? max_page_keys : 1;
}

/// Returns `x` as a key of `width` bytes: 8 little-endian bytes, zero-padded.
/// REQUIRES: min_key_width <= width <= max_key_width.
key key_from_u64(std::uint64_t x, std::size_t width = default_key_width);

/// Returns `prefix` zero-padded on the right to `width` bytes.
/// REQUIRES: prefix.size() <= width.
key key_from_prefix(std::string_view prefix, std::size_t width);

/// Returns `x` as 8 little-endian bytes.
value value_from_u64(std::uint64_t x);

/// Returns `bytes` in lower-case hex (keys and values in messages).
std::string to_hex(std::string_view bytes);

/// Decodes 8 little-endian bytes. REQUIRES: x.size() >= 8.
std::uint64_t u64_from_bytes(std::string_view x);

} // namespace rollblock
