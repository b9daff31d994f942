#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace rollblock::storage {

// rollblock's key order, in which the state database (state_store) keeps
// its keys and checkpoint batches come: a key's first 8 bytes read as one
// little-endian number, then its remaining bytes bytewise.
//
// Why not bytewise: numbers counted up and stored little endian (the
// original's examples and published workload, Rust's u64::to_le_bytes)
// are neighbours in this order, so a block of new sequential keys is one
// run at the end of LevelDB's key space instead of being spread over all
// of it; compactions then merge few overlapping tables. Random keys
// (hashes) are as random in either order; numbers stored big endian are
// spread here as little-endian ones are in bytewise order.

/// Returns the first 8 bytes of a key as a little-endian number: keys in
/// the order of their prefixes are in key order, up to keys that share
/// their first 8 bytes.
/// REQUIRES: k.size() >= 8 (every key width is).
inline std::uint64_t key_prefix(std::string_view k) noexcept {
  std::uint64_t prefix;
  std::memcpy(&prefix, k.data(), sizeof prefix);
  if constexpr (std::endian::native == std::endian::big)
    prefix = __builtin_bswap64(prefix);
  return prefix;
}

/// Compares two keys in key order: negative, zero or positive as `a` comes
/// before, is equal to or comes after `b`.
/// REQUIRES: a.size() >= 8 and b.size() >= 8.
inline int compare_keys(std::string_view a, std::string_view b) noexcept {
  auto x = key_prefix(a);
  auto y = key_prefix(b);
  if (x != y)
    return x < y ? -1 : 1;
  return a.substr(8).compare(b.substr(8));
}

/// Key order as a "less" function object (std::map, std::sort, ...).
struct key_order_less {
  bool operator()(std::string_view a, std::string_view b) const noexcept {
    return compare_keys(a, b) < 0;
  }
};

/// Sorts `items` stably by the number `number(item)` returns (a
/// std::uint64_t), smallest first: a least-significant-digit radix sort in
/// 8-bit digits. A digit every item shares with the first is neither
/// counted nor sorted on: numbers counted up vary in their low digits only.
template <class T, class Number>
void radix_sort(std::vector<T>& items, Number number) {
  constexpr int digits = 8;
  auto n = items.size();
  if (n < 2)
    return;
  std::uint64_t varying = 0;
  auto first = number(items.front());
  for (auto& item : items)
    varying |= number(item) ^ first;
  std::array<int, digits> sorted_digits{};
  int sorted_count = 0;
  for (int d = 0; d < digits; ++d)
    if (((varying >> (8 * d)) & 0xff) != 0)
      sorted_digits[sorted_count++] = d;
  if (sorted_count == 0)
    return;
  std::array<std::array<std::size_t, 256>, digits> counts{};
  for (auto& item : items) {
    auto x = number(item);
    for (int j = 0; j < sorted_count; ++j) {
      auto d = sorted_digits[j];
      ++counts[d][(x >> (8 * d)) & 0xff];
    }
  }
  std::vector<T> scratch(n);
  auto* from = &items;
  auto* to = &scratch;
  for (int j = 0; j < sorted_count; ++j) {
    auto d = sorted_digits[j];
    auto& count = counts[d];
    std::size_t sum = 0;
    for (auto& c : count) {
      auto here = c;
      c = sum;
      sum += here;
    }
    for (auto& item : *from)
      (*to)[count[(number(item) >> (8 * d)) & 0xff]++] = item;
    std::swap(from, to);
  }
  if (from != &items)
    items.swap(scratch);
}

/// Sorts `items` (each with a `std::uint64_t prefix` member, its key's
/// key_prefix) into key order, stably: items with equal keys keep
/// their order. `key(item)` returns the item's whole key.
///
/// A radix sort on the prefixes (radix_sort), then a stable comparison sort
/// of each run of equal prefixes whose keys are wider than 8 bytes. A
/// checkpoint sorts about a million keys: the radix passes take a fraction
/// of std::sort's comparisons and branch mispredictions.
template <class T, class Key>
void sort_in_key_order(std::vector<T>& items, Key key) {
  radix_sort(items, [](const T& item) { return item.prefix; });
  // Ties on the prefix: only keys wider than 8 bytes can differ there.
  auto n = items.size();
  for (std::size_t i = 0; i < n;) {
    auto j = i + 1;
    while (j < n && items[j].prefix == items[i].prefix)
      ++j;
    if (j - i > 1 && key(items[i]).size() > sizeof(std::uint64_t))
      std::stable_sort(items.begin() + static_cast<std::ptrdiff_t>(i),
                       items.begin() + static_cast<std::ptrdiff_t>(j),
                       [&](const T& a, const T& b) {
                         return key(a) < key(b);
                       });
    i = j;
  }
}

} // namespace rollblock::storage
