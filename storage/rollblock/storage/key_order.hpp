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

/// Returns the first 8 bytes of a key as a big-endian number: keys in the
/// order of their prefixes are in bytewise (LevelDB's) order, up to keys
/// that share their first 8 bytes.
/// REQUIRES: k.size() >= 8 (every key width is).
inline std::uint64_t key_prefix(std::string_view k) noexcept {
  std::uint64_t prefix;
  std::memcpy(&prefix, k.data(), sizeof prefix);
  if constexpr (std::endian::native == std::endian::little)
    prefix = __builtin_bswap64(prefix);
  return prefix;
}

/// Sorts `items` (each with a `std::uint64_t prefix` member, its key's
/// key_prefix) into bytewise key order, stably: items with equal keys keep
/// their order. `key(item)` returns the item's whole key.
///
/// A least-significant-digit radix sort on the prefixes (8-bit digits; a
/// digit every item shares costs no pass), then a stable comparison sort of
/// each run of equal prefixes whose keys are wider than 8 bytes. A
/// checkpoint sorts about a million keys: the radix passes take a fraction
/// of std::sort's comparisons and branch mispredictions.
template <class T, class Key>
void sort_in_key_order(std::vector<T>& items, Key key) {
  constexpr int digits = 8;
  auto n = items.size();
  if (n < 2)
    return;
  std::array<std::array<std::size_t, 256>, digits> counts{};
  for (auto& item : items)
    for (int d = 0; d < digits; ++d)
      ++counts[d][(item.prefix >> (8 * d)) & 0xff];
  std::vector<T> scratch(n);
  auto* from = &items;
  auto* to = &scratch;
  for (int d = 0; d < digits; ++d) {
    auto& count = counts[d];
    if (count[(items.front().prefix >> (8 * d)) & 0xff] == n)
      continue; // every item has this digit
    std::size_t sum = 0;
    for (auto& c : count) {
      auto here = c;
      c = sum;
      sum += here;
    }
    for (auto& item : *from)
      (*to)[count[(item.prefix >> (8 * d)) & 0xff]++] = item;
    std::swap(from, to);
  }
  if (from != &items)
    items.swap(scratch);
  // Ties on the prefix: only keys wider than 8 bytes can differ there.
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
