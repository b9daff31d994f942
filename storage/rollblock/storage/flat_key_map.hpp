#pragma once

#define XXH_INLINE_ALL
#include <xxhash.h>
#undef XXH_INLINE_ALL

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

namespace rollblock::storage {

/// Returns the 64-bit hash (XXH3) of a key. flat_key_map uses its low bits
/// for the slot and bits 57..63 for the tag; callers may use bits in
/// between (memory_state picks shards from bits 40..). Inline (xxHash's
/// header-only mode): every lookup, and every entry a deletion moves back,
/// hashes a key, so the call into the shared library showed in profiles.
inline std::uint64_t key_hash(std::string_view k) noexcept {
  return XXH3_64bits(k.data(), k.size());
}

/// An open-addressing hash table from fixed-width byte-string keys to T,
/// for the store's millions of small entries: no node per entry, the keys
/// inline in one array, one tag byte per slot so that a probe rarely
/// compares a key that does not match.
///
/// Layout: capacity (a power of two) slots in three arrays: tags (0 =
/// empty, otherwise 0x80 | the hash's top 7 bits), keys (key_width bytes
/// per slot) and values (T per slot, default-constructed in empty slots).
/// Linear probing; erase shifts the following entries back (no tombstones),
/// so lookups never slow down after many deletes. The table grows by 2x when
/// more than 7/8 full.
///
/// Every call that takes a hash expects key_hash(k).
/// REQUIRES for every key argument: k.size() == key_width().
/// Pointers to values are invalidated by any insertion or erasure.
template <class T>
class flat_key_map {
public:
  explicit flat_key_map(std::size_t key_width) : key_width_(key_width) {
  }

  flat_key_map(flat_key_map&&) noexcept = default;
  flat_key_map& operator=(flat_key_map&&) noexcept = default;

  std::size_t key_width() const noexcept {
    return key_width_;
  }

  std::size_t size() const noexcept {
    return size_;
  }

  bool empty() const noexcept {
    return size_ == 0;
  }

  std::size_t capacity() const noexcept {
    return tags_.size();
  }

  /// Returns the value of `k`, or nullptr.
  T* find(std::string_view k, std::uint64_t hash) noexcept {
    auto slot = locate(k, hash);
    return slot == npos ? nullptr : &values_[slot];
  }

  const T* find(std::string_view k, std::uint64_t hash) const noexcept {
    auto slot = locate(k, hash);
    return slot == npos ? nullptr : &values_[slot];
  }

  T* find(std::string_view k) noexcept {
    return find(k, key_hash(k));
  }

  const T* find(std::string_view k) const noexcept {
    return find(k, key_hash(k));
  }

  /// Starts loading the home slot of a key with this hash (its tag, key and
  /// value: three arrays) into the cache, so that a find a few keys later
  /// does not wait for memory. Changes nothing; any hash is fine.
  void prefetch(std::uint64_t hash) const noexcept {
    if (tags_.empty())
      return;
    auto slot = hash & (capacity() - 1);
    __builtin_prefetch(tags_.data() + slot);
    __builtin_prefetch(keys_.get() + slot * key_width_);
    __builtin_prefetch(values_.data() + slot);
  }

  /// Returns the value of `k`, inserting a default T first when absent, and
  /// whether it inserted. Only an insertion grows the table.
  std::pair<T*, bool> try_emplace(std::string_view k, std::uint64_t hash) {
    assert(k.size() == key_width_);
    if (capacity() == 0)
      grow();
    auto mask = capacity() - 1;
    auto tag = tag_of(hash);
    for (auto slot = hash & mask;; slot = (slot + 1) & mask) {
      if (tags_[slot] == 0) {
        if ((size_ + 1) * 8 > capacity() * 7) {
          grow(); // the slot moved: probe the bigger table
          return try_emplace(k, hash);
        }
        tags_[slot] = tag;
        std::memcpy(key_at(slot), k.data(), key_width_);
        ++size_;
        return {&values_[slot], true};
      }
      if (tags_[slot] == tag && key_equals(slot, k.data()))
        return {&values_[slot], false};
    }
  }

  std::pair<T*, bool> try_emplace(std::string_view k) {
    return try_emplace(k, key_hash(k));
  }

  /// Removes `k`; returns whether it was there.
  bool erase(std::string_view k, std::uint64_t hash) {
    auto slot = locate(k, hash);
    if (slot == npos)
      return false;
    erase_slot(slot);
    return true;
  }

  bool erase(std::string_view k) {
    return erase(k, key_hash(k));
  }

  /// Removes the entry whose value `found` points to (as find returned it,
  /// with no insertion or erasure since), without looking the key up again.
  void erase_found(const T* found) {
    erase_slot(static_cast<std::size_t>(found - values_.data()));
  }

  /// Removes every entry whose value satisfies `pred(key, value)`; returns
  /// how many. REQUIRES: pred does not change the table.
  template <class Pred>
  std::size_t erase_if(Pred pred) {
    std::size_t removed = 0;
    // Erasing shifts later entries back into `slot`: look at it again.
    // Start after an empty slot so that no entry wraps around past us.
    auto cap = capacity();
    if (size_ == 0)
      return 0;
    std::size_t start = 0;
    while (tags_[start] != 0)
      ++start;
    for (std::size_t i = 0; i < cap;) {
      auto slot = (start + i) & (cap - 1);
      if (tags_[slot] != 0 && pred(key_view(slot), values_[slot])) {
        erase_slot(slot);
        ++removed;
        continue;
      }
      ++i;
    }
    return removed;
  }

  /// Calls f(key, value) for every entry, in no particular order.
  template <class F>
  void for_each(F f) const {
    for (std::size_t slot = 0; slot < capacity(); ++slot)
      if (tags_[slot] != 0)
        f(key_view(slot), values_[slot]);
  }

  /// Removes the entries in the `count` slots from slot `from` on (wrapping
  /// around) for which pred(key, value) is true; returns how many. The
  /// entries between the first removed one and the next empty slot after
  /// the window are placed again once each (one key_hash apiece), where
  /// erasing one by one would shift and hash the rest of the cluster per
  /// removal. For sweeps that evict many neighbouring entries.
  /// REQUIRES: pred does not insert or erase (it may change the value).
  template <class Pred>
  std::size_t erase_in(std::size_t from, std::size_t count, Pred pred) {
    auto cap = capacity();
    if (cap == 0 || size_ == 0)
      return 0;
    auto mask = cap - 1;
    count = std::min(count, cap);
    std::size_t removed = 0;
    std::size_t first = npos; // the first removed slot's index in the window
    for (std::size_t i = 0; i < count; ++i) {
      auto slot = (from + i) & mask;
      if (tags_[slot] != 0 && pred(key_view(slot), values_[slot])) {
        tags_[slot] = 0;
        values_[slot] = T{};
        ++removed;
        if (first == npos)
          first = i;
      }
    }
    if (removed == 0)
      return 0;
    size_ -= removed;
    if (size_ == 0)
      return removed;
    // Lift the entries from the first hole to the first empty slot at or
    // after the window's end (an empty slot no probe crosses; a window of
    // the whole table has none, so all its entries are lifted) ...
    bool whole = count == cap;
    std::vector<std::uint8_t> lifted_tags;
    std::vector<char> lifted_keys;
    std::vector<T> lifted_values;
    for (auto i = whole ? 0 : first; i < cap; ++i) {
      auto slot = (from + i) & mask;
      if (tags_[slot] == 0) {
        if (!whole && i >= count)
          break;
        continue;
      }
      lifted_tags.push_back(tags_[slot]);
      lifted_keys.insert(lifted_keys.end(), key_at(slot),
                         key_at(slot) + key_width_);
      lifted_values.push_back(std::move(values_[slot]));
      tags_[slot] = 0;
      values_[slot] = T{};
    }
    // ... and place them again in their order: each lands at or before its
    // old slot, the first free one from its home.
    for (std::size_t j = 0; j < lifted_tags.size(); ++j) {
      std::string_view k{lifted_keys.data() + j * key_width_, key_width_};
      auto to = key_hash(k) & mask;
      while (tags_[to] != 0)
        to = (to + 1) & mask;
      tags_[to] = lifted_tags[j];
      std::memcpy(key_at(to), k.data(), key_width_);
      values_[to] = std::move(lifted_values[j]);
    }
    return removed;
  }

  /// Removes every entry and keeps the capacity.
  void clear() {
    std::fill(tags_.begin(), tags_.end(), std::uint8_t{0});
    std::fill(values_.begin(), values_.end(), T{});
    size_ = 0;
  }

  /// Removes every entry and releases the memory.
  void release() {
    tags_ = {};
    keys_ = {};
    values_ = {};
    size_ = 0;
  }

  /// Makes room for `n` entries without growing.
  void reserve(std::size_t n) {
    std::size_t cap = std::max<std::size_t>(16, capacity());
    while (n * 8 > cap * 7)
      cap *= 2;
    if (cap != capacity())
      rehash(cap);
  }

  /// Returns the bytes of the table's arrays (not what values own).
  std::size_t memory_bytes() const noexcept {
    return capacity() * (1 + key_width_ + sizeof(T));
  }

private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  static std::uint8_t tag_of(std::uint64_t hash) noexcept {
    return static_cast<std::uint8_t>(0x80 | (hash >> 57));
  }

  char* key_at(std::size_t slot) noexcept {
    return keys_.get() + slot * key_width_;
  }

  std::string_view key_view(std::size_t slot) const noexcept {
    return {keys_.get() + slot * key_width_, key_width_};
  }

  /// Compares the key in `slot` with `k` (key_width bytes); the common
  /// 8-byte keys in one load each instead of a memcmp call.
  bool key_equals(std::size_t slot, const char* k) const noexcept {
    auto stored = keys_.get() + slot * key_width_;
    if (key_width_ == 8) {
      std::uint64_t a;
      std::uint64_t b;
      std::memcpy(&a, stored, 8);
      std::memcpy(&b, k, 8);
      return a == b;
    }
    return std::memcmp(stored, k, key_width_) == 0;
  }

  std::size_t locate(std::string_view k, std::uint64_t hash) const noexcept {
    assert(k.size() == key_width_);
    if (size_ == 0)
      return npos;
    auto mask = capacity() - 1;
    auto tag = tag_of(hash);
    for (auto slot = hash & mask;; slot = (slot + 1) & mask) {
      if (tags_[slot] == 0)
        return npos;
      if (tags_[slot] == tag && key_equals(slot, k.data()))
        return slot;
    }
  }

  /// Empties `slot` and moves back the entries after it that probed past
  /// it, so that every entry stays reachable from its home slot.
  void erase_slot(std::size_t hole) {
    auto mask = capacity() - 1;
    auto next = (hole + 1) & mask;
    while (tags_[next] != 0) {
      auto home = key_hash(key_view(next)) & mask;
      // The entry at `next` may fill the hole unless its home lies
      // cyclically in (hole, next].
      auto dist_home = (next - home) & mask;
      auto dist_hole = (next - hole) & mask;
      if (dist_home >= dist_hole) {
        tags_[hole] = tags_[next];
        std::memcpy(key_at(hole), key_at(next), key_width_);
        values_[hole] = std::move(values_[next]);
        hole = next;
      }
      next = (next + 1) & mask;
    }
    tags_[hole] = 0;
    values_[hole] = T{};
    --size_;
  }

  void grow() {
    rehash(capacity() == 0 ? 16 : capacity() * 2);
  }

  void rehash(std::size_t cap) {
    flat_key_map bigger{key_width_};
    bigger.tags_.assign(cap, 0);
    bigger.keys_ = std::make_unique_for_overwrite<char[]>(cap * key_width_);
    bigger.values_.resize(cap);
    auto mask = cap - 1;
    for (std::size_t slot = 0; slot < capacity(); ++slot) {
      if (tags_[slot] == 0)
        continue;
      auto k = key_view(slot);
      auto to = key_hash(k) & mask;
      while (bigger.tags_[to] != 0)
        to = (to + 1) & mask;
      bigger.tags_[to] = tags_[slot];
      std::memcpy(bigger.key_at(to), k.data(), key_width_);
      bigger.values_[to] = std::move(values_[slot]);
    }
    bigger.size_ = size_;
    *this = std::move(bigger);
  }

  std::size_t key_width_;
  std::size_t size_ = 0;
  std::vector<std::uint8_t> tags_;
  std::unique_ptr<char[]> keys_;
  std::vector<T> values_;
};

} // namespace rollblock::storage
