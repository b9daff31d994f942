#pragma once

#define XXH_INLINE_ALL
#include <xxhash.h>
#undef XXH_INLINE_ALL

#include "rollblock/storage/table_memory.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace rollblock::storage {

/// Returns the 64-bit hash of a key. flat_key_map uses bits 0..39 for the
/// slot and bits 58..63 for the tag; callers may use bits in between
/// (memory_state picks shards from bits 40..). Inline and cheap: every
/// lookup hashes a key, and every erase hashes each entry it shifts back
/// (a dozen or more in a table near its 7/8 fill).
/// - 8-byte keys (the common width): Murmur3's 64-bit finalizer, a
///   multiply-xorshift bijection in which every output bit depends on every
///   input bit; a few cycles, inlined into the probe loops.
/// - Other widths: XXH3 (xxHash's header-only mode).
/// Nothing stores these hashes: they may change between versions.
inline std::uint64_t key_hash(std::string_view k) noexcept {
  if (k.size() == 8) {
    std::uint64_t x;
    std::memcpy(&x, k.data(), 8);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
  }
  return XXH3_64bits(k.data(), k.size());
}

/// What a loop will do with the keys it prefetches table slots for
/// (flat_key_map::prefetch_slot).
enum class probe_for {
  lookup, ///< find only: a key's slot matters when the table holds it.
  insert, ///< try_emplace: an absent key goes to the first empty slot.
  erase,  ///< find, then erase: the erase reads the slots after the key's
          ///< up to the next empty one (it moves entries back from them).
};

/// An open-addressing hash table from fixed-width byte-string keys to T,
/// for the store's millions of small entries: no node per entry, each key
/// beside its value, one tag byte per slot so that a probe rarely compares a
/// key that does not match.
///
/// Layout: capacity slots in one table_memory region:
/// first the slots, `stride` bytes each (a T at offset 0, default-constructed
/// in empty slots, then the key's key_width bytes; stride is their sum
/// rounded up to T's alignment: 22 bytes for memory_state's 14-byte entry
/// and 8-byte keys; 22 of 32 such slots lie within one cache line), then one
/// tag byte per slot: 0 = empty, otherwise 0x80 | the mark bit (0x40) | the
/// hash's top 6 bits. Linear probing from a home slot that a multiply
/// scales the hash onto (any capacity works); erase shifts the following
/// entries back (no tombstones), so lookups never slow down after many
/// deletes.
///
/// Growth: when more than 7/8 full (or the fill set_max_fill sets), the
/// table takes the next capacity of its ladder: 16 slots, then
/// ceil(16 * 2^(k + phase)) for k = 1, 2, ..., where the phase in [0, 1)
/// is the table's (set_growth_phase): it doubles, and runs 7/16 to 7/8
/// full. Tables that split one key set between them (memory_state's
/// shards) would double at the same moments with the same ladder, their
/// sum swinging between 8/7 and 16/7 slots per entry; ladders with phases
/// spread over [0, 1) keep the sum near 8/7 / ln 2 = 1.65 slots per entry
/// at every size, with each table as full as before.
///
/// The mark bit is one bit of state per entry that readers may set while
/// other readers look up keys (memory_state's clock): mark() sets it with an
/// atomic operation and every tag load is atomic (relaxed), so that marking
/// is no data race with concurrent const calls. An entry is inserted
/// unmarked and keeps its mark when it moves.
///
/// Every call that takes a hash expects key_hash(k).
/// REQUIRES for every key argument: k.size() == key_width().
/// Pointers to values are invalidated by any insertion or erasure.
template <class T>
class flat_key_map {
public:
  explicit flat_key_map(std::size_t key_width)
    : key_width_(key_width),
      stride_((sizeof(T) + key_width + alignof(T) - 1) / alignof(T)
              * alignof(T)) {
    static_assert(alignof(T) <= table_memory::cache_line_bytes,
                  "table_memory aligns to a cache line");
  }

  flat_key_map(flat_key_map&& other) noexcept
    : key_width_(other.key_width_),
      stride_(other.stride_),
      max_fill_eighths_(other.max_fill_eighths_),
      growth_phase_(other.growth_phase_),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)),
      memory_(std::move(other.memory_)),
      tags_(std::exchange(other.tags_, nullptr)) {
  }

  flat_key_map& operator=(flat_key_map&& other) noexcept {
    if (this != &other) {
      destroy_values();
      key_width_ = other.key_width_;
      stride_ = other.stride_;
      max_fill_eighths_ = other.max_fill_eighths_;
      growth_phase_ = other.growth_phase_;
      size_ = std::exchange(other.size_, 0);
      capacity_ = std::exchange(other.capacity_, 0);
      memory_ = std::move(other.memory_);
      tags_ = std::exchange(other.tags_, nullptr);
    }
    return *this;
  }

  flat_key_map(const flat_key_map&) = delete;
  flat_key_map& operator=(const flat_key_map&) = delete;

  ~flat_key_map() {
    destroy_values();
  }

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
    return capacity_;
  }

  /// Returns the value of `k`, or nullptr.
  T* find(std::string_view k, std::uint64_t hash) noexcept {
    auto slot = locate(k, hash);
    return slot == npos ? nullptr : value_at(slot);
  }

  const T* find(std::string_view k, std::uint64_t hash) const noexcept {
    auto slot = locate(k, hash);
    return slot == npos ? nullptr : value_at(slot);
  }

  T* find(std::string_view k) noexcept {
    return find(k, key_hash(k));
  }

  const T* find(std::string_view k) const noexcept {
    return find(k, key_hash(k));
  }

  /// Returns the slot where a probe for a key with this hash starts: the
  /// hash's bits 0..39 scaled onto [0, capacity()) by a multiply.
  /// REQUIRES: capacity() > 0.
  std::size_t home_of(std::uint64_t hash) const noexcept {
    __extension__ using u128 = unsigned __int128;
    return static_cast<std::size_t>((u128{hash << 24} * capacity_) >> 64);
  }

  /// Prefetching, for loops that look keys up in turn, in two stages a few
  /// keys apart, so that a find or try_emplace does not wait for memory.
  /// Any hash is fine.
  ///
  /// The first stage: starts loading the tags a probe for a key with this
  /// hash reads first. Changes nothing.
  void prefetch_tags(std::uint64_t hash) const noexcept {
    if (capacity_ != 0)
      __builtin_prefetch(tags_ + home_of(hash));
  }

  /// The second stage, a few keys later (once the tags are loaded): reads
  /// the tags from the key's home slot on and starts loading the one slot
  /// the key's probe ends at: the first whose tag matches the key's (the
  /// key's slot, unless another key shares the tag), else, for `insert`
  /// only, the first empty one. Where the home slot is not that slot (a key
  /// that probed on), this loads the line needed instead of the home
  /// slot's; a lookup of an absent key loads no slot at all (the line fill
  /// buffers it would take are what a loop of lookups waits for). For
  /// `erase`, a matching slot's load extends over the slots after it up to
  /// the next empty one, which the erase's backward shift reads one by one.
  /// Changes nothing.
  void prefetch_slot(std::uint64_t hash, probe_for use) const noexcept {
    if (capacity_ == 0)
      return;
    auto tag = tag_of(hash);
    auto slot = home_of(hash);
    for (std::size_t probes = 0; probes < max_prefetch_probes; ++probes) {
      auto t = tag_at(slot);
      if (t == 0 && use != probe_for::insert)
        return;
      if (t == 0 || (t & ~mark_bit) == tag) {
        auto last = slot;
        if (t != 0 && use == probe_for::erase) {
          // Within the probe bound, and not past the table's end (a
          // cluster that wraps around is rare).
          while (++probes < max_prefetch_probes && last + 1 < capacity_
                 && tag_at(last + 1) != 0)
            ++last;
        }
        prefetch_bytes(slot_at(slot), slot_at(last) + stride_);
        return;
      }
      slot = next_slot(slot);
    }
  }

  /// Returns the value of `k`, inserting a default T first when absent, and
  /// whether it inserted. Only an insertion grows the table.
  std::pair<T*, bool> try_emplace(std::string_view k, std::uint64_t hash) {
    assert(k.size() == key_width_);
    if (capacity_ == 0)
      grow();
    auto tag = tag_of(hash);
    for (auto slot = home_of(hash);; slot = next_slot(slot)) {
      auto t = tag_at(slot);
      if (t == 0) {
        if ((size_ + 1) * 8 > capacity_ * max_fill_eighths_) {
          grow(); // the slot moved: probe the bigger table
          return try_emplace(k, hash);
        }
        tags_[slot] = tag;
        std::memcpy(key_at(slot), k.data(), key_width_);
        ++size_;
        return {value_at(slot), true};
      }
      if ((t & ~mark_bit) == tag && key_equals(slot, k.data()))
        return {value_at(slot), false};
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
    erase_slot(slot_of(found));
  }

  /// Sets the mark of the entry whose value `found` points to (as find
  /// returned it). Safe while other threads make const calls or mark
  /// entries; not while one changes the table.
  void mark(const T* found) const noexcept {
    auto* tag = tags_ + slot_of(found);
    if ((__atomic_load_n(tag, __ATOMIC_RELAXED) & mark_bit) == 0)
      __atomic_fetch_or(tag, mark_bit, __ATOMIC_RELAXED);
  }

  /// Returns whether the entry whose value `found` points to is marked.
  bool marked(const T* found) const noexcept {
    return (tag_at(slot_of(found)) & mark_bit) != 0;
  }

  /// Calls f(key, value) for every entry, in no particular order.
  template <class F>
  void for_each(F f) const {
    for (std::size_t slot = 0; slot < capacity_; ++slot)
      if (tag_at(slot) != 0)
        f(key_view(slot), std::as_const(*value_at(slot)));
  }

  /// The same, with each value to change (not its key).
  template <class F>
  void for_each(F f) {
    for (std::size_t slot = 0; slot < capacity_; ++slot)
      if (tag_at(slot) != 0)
        f(key_view(slot), *value_at(slot));
  }

  /// Removes the entries in the `count` slots from slot `from` on (wrapping
  /// around) for which pred(key, value, marked) is true; returns how many.
  /// `marked` is the entry's mark, which pred may clear (for a kept entry).
  /// The entries between the first removed one and the next empty slot
  /// after the window are placed again once each (one key_hash apiece),
  /// where erasing one by one would shift and hash the rest of the cluster
  /// per removal. For sweeps that evict many neighbouring entries.
  /// REQUIRES: pred does not insert or erase (it may change the value).
  template <class Pred>
  std::size_t erase_in(std::size_t from, std::size_t count, Pred pred) {
    if (capacity_ == 0 || size_ == 0)
      return 0;
    from %= capacity_;
    count = std::min(count, capacity_);
    std::size_t removed = 0;
    std::size_t first = npos; // the first removed slot's index in the window
    for (std::size_t i = 0; i < count; ++i) {
      auto slot = wrap(from + i);
      auto t = tags_[slot];
      if (t == 0)
        continue;
      bool marked = (t & mark_bit) != 0;
      if (pred(key_view(slot), *value_at(slot), marked)) {
        tags_[slot] = 0;
        *value_at(slot) = T{};
        ++removed;
        if (first == npos)
          first = i;
      } else {
        tags_[slot] = static_cast<std::uint8_t>(marked ? t | mark_bit
                                                       : t & ~mark_bit);
      }
    }
    if (removed == 0)
      return 0;
    size_ -= removed;
    if (size_ == 0)
      return removed;
    // Lift the entries from the first hole to the first empty slot at or
    // after the window's end (an empty slot no probe crosses) ... When there
    // is none (a window of the whole table, or clusters running from the
    // window's end all the way round to its start), an entry before the
    // first hole may probe from a slot the lift empties: lift them all.
    bool whole = true;
    for (auto i = count; i < capacity_; ++i) {
      if (tags_[wrap(from + i)] == 0) {
        whole = false;
        break;
      }
    }
    std::vector<std::uint8_t> lifted_tags;
    std::vector<char> lifted_keys;
    std::vector<T> lifted_values;
    for (auto i = whole ? 0 : first; i < capacity_; ++i) {
      auto slot = wrap(from + i);
      if (tags_[slot] == 0) {
        if (!whole && i >= count)
          break;
        continue;
      }
      lifted_tags.push_back(tags_[slot]);
      lifted_keys.insert(lifted_keys.end(), key_at(slot),
                         key_at(slot) + key_width_);
      lifted_values.push_back(std::move(*value_at(slot)));
      tags_[slot] = 0;
      *value_at(slot) = T{};
    }
    // ... and place them again in their order: each lands at or before its
    // old slot, the first free one from its home.
    for (std::size_t j = 0; j < lifted_tags.size(); ++j)
      place({lifted_keys.data() + j * key_width_, key_width_},
            lifted_tags[j], std::move(lifted_values[j]));
    return removed;
  }

  /// Sets the fill above which an insertion grows the table, in eighths
  /// (7 by default). Linear probing slows down sharply where a table is
  /// nearly full: a table whose entries are evicted a window of slots at a
  /// time (memory_state's clock) is full ahead of the window and empty
  /// behind it, so it needs a lower average fill. Takes effect at the next
  /// insertion. REQUIRES: 1 <= eighths <= 7.
  void set_max_fill(unsigned eighths) noexcept {
    assert(eighths >= 1 && eighths <= 7);
    max_fill_eighths_ = eighths;
  }

  /// Sets where on its ladder of capacities the table grows (see the class
  /// comment). Takes effect at the next growth. REQUIRES: 0 <= phase < 1.
  void set_growth_phase(double phase) noexcept {
    assert(phase >= 0 && phase < 1);
    growth_phase_ = phase;
  }

  /// Makes room for `n` entries without growing: takes the first capacity
  /// of the ladder that holds them.
  void reserve(std::size_t n) {
    auto cap = std::max(min_capacity, capacity_);
    while (n * 8 > cap * max_fill_eighths_)
      cap = next_capacity(cap);
    if (cap != capacity_)
      rehash(cap);
  }

  /// Returns the bytes one slot takes: its key, value and tag (not what
  /// values own). The table takes capacity() times as many.
  std::size_t slot_bytes() const noexcept {
    return stride_ + 1;
  }

private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  static constexpr std::uint8_t mark_bit = 0x40;
  static constexpr std::size_t min_capacity = 16;
  /// How many tags prefetch_slot reads looking for the slot and, for
  /// `erase`, the slots after it (a longer probe is rare and only goes
  /// without its prefetch, or part of it).
  static constexpr std::size_t max_prefetch_probes = 32;

  /// Returns the capacity of the ladder after `cap`.
  std::size_t next_capacity(std::size_t cap) const noexcept {
    if (cap < min_capacity)
      return min_capacity;
    auto rung =
      static_cast<double>(min_capacity) * std::exp2(growth_phase_);
    std::size_t next;
    do {
      rung *= 2;
      next = static_cast<std::size_t>(std::ceil(rung));
    } while (next <= cap);
    return next;
  }

  std::size_t next_slot(std::size_t slot) const noexcept {
    return slot + 1 == capacity_ ? 0 : slot + 1;
  }

  /// REQUIRES: i < 2 * capacity().
  std::size_t wrap(std::size_t i) const noexcept {
    return i >= capacity_ ? i - capacity_ : i;
  }

  /// Returns how many slots a probe walks from `from` to reach `to`.
  std::size_t distance(std::size_t from, std::size_t to) const noexcept {
    return to >= from ? to - from : to + capacity_ - from;
  }

  static std::uint8_t tag_of(std::uint64_t hash) noexcept {
    return static_cast<std::uint8_t>(0x80 | (hash >> 58));
  }

  /// Loads a tag atomically: readers may be setting its mark bit.
  std::uint8_t tag_at(std::size_t slot) const noexcept {
    return __atomic_load_n(tags_ + slot, __ATOMIC_RELAXED);
  }

  /// Starts loading every cache line of [first, end). Slots whose stride
  /// does not divide 64 may straddle two lines.
  static void prefetch_bytes(const std::byte* first,
                             const std::byte* end) noexcept {
    constexpr auto line = table_memory::cache_line_bytes;
    auto at = reinterpret_cast<std::uintptr_t>(first) & ~(line - 1);
    for (; at < reinterpret_cast<std::uintptr_t>(end); at += line)
      __builtin_prefetch(reinterpret_cast<const void*>(at));
  }

  std::byte* slot_at(std::size_t slot) const noexcept {
    return memory_.data() + slot * stride_;
  }

  T* value_at(std::size_t slot) const noexcept {
    return std::launder(reinterpret_cast<T*>(slot_at(slot)));
  }

  std::size_t slot_of(const T* value) const noexcept {
    return static_cast<std::size_t>(reinterpret_cast<const std::byte*>(value)
                                    - memory_.data())
           / stride_;
  }

  char* key_at(std::size_t slot) const noexcept {
    return reinterpret_cast<char*>(slot_at(slot) + sizeof(T));
  }

  std::string_view key_view(std::size_t slot) const noexcept {
    return {key_at(slot), key_width_};
  }

  /// Compares the key in `slot` with `k` (key_width bytes); the common
  /// 8-byte keys in one load each instead of a memcmp call.
  bool key_equals(std::size_t slot, const char* k) const noexcept {
    auto stored = key_at(slot);
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
    auto tag = tag_of(hash);
    for (auto slot = home_of(hash);; slot = next_slot(slot)) {
      auto t = tag_at(slot);
      if (t == 0)
        return npos;
      if ((t & ~mark_bit) == tag && key_equals(slot, k.data()))
        return slot;
    }
  }

  /// Empties `slot` and moves back the entries after it that probed past
  /// it, so that every entry stays reachable from its home slot.
  void erase_slot(std::size_t hole) {
    auto next = next_slot(hole);
    while (tags_[next] != 0) {
      auto home = home_of(key_hash(key_view(next)));
      // The entry at `next` may fill the hole unless its home lies
      // cyclically in (hole, next].
      if (distance(home, next) >= distance(hole, next)) {
        tags_[hole] = tags_[next];
        std::memcpy(key_at(hole), key_at(next), key_width_);
        *value_at(hole) = std::move(*value_at(next));
        hole = next;
      }
      next = next_slot(next);
    }
    tags_[hole] = 0;
    *value_at(hole) = T{};
    --size_;
  }

  /// Puts an entry (its tag kept, mark included) in the first empty slot
  /// from its home, without counting it. REQUIRES: the table has an empty
  /// slot and does not hold `k`.
  void place(std::string_view k, std::uint8_t tag, T&& value) {
    auto to = home_of(key_hash(k));
    while (tags_[to] != 0)
      to = next_slot(to);
    tags_[to] = tag;
    std::memcpy(key_at(to), k.data(), key_width_);
    *value_at(to) = std::move(value);
  }

  void grow() {
    rehash(next_capacity(capacity_));
  }

  void rehash(std::size_t cap) {
    flat_key_map bigger{key_width_};
    bigger.memory_ = table_memory{cap * (bigger.stride_ + 1)};
    bigger.tags_ =
      reinterpret_cast<std::uint8_t*>(bigger.memory_.data() + cap * stride_);
    for (std::size_t slot = 0; slot < cap; ++slot)
      new (bigger.slot_at(slot)) T{};
    bigger.capacity_ = cap;
    for (std::size_t slot = 0; slot < capacity_; ++slot) {
      if (tags_[slot] == 0)
        continue;
      bigger.place(key_view(slot), tags_[slot], std::move(*value_at(slot)));
    }
    bigger.size_ = size_;
    bigger.max_fill_eighths_ = max_fill_eighths_;
    bigger.growth_phase_ = growth_phase_;
    *this = std::move(bigger);
  }

  void destroy_values() noexcept {
    if constexpr (!std::is_trivially_destructible_v<T>)
      for (std::size_t slot = 0; slot < capacity_; ++slot)
        value_at(slot)->~T();
  }

  std::size_t key_width_;
  std::size_t stride_;
  std::size_t max_fill_eighths_ = 7;
  double growth_phase_ = 0;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  table_memory memory_;
  std::uint8_t* tags_ = nullptr;
};

} // namespace rollblock::storage
