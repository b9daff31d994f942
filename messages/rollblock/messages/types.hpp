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
