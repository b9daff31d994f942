#pragma once

#define XXH_INLINE_ALL
#include <xxhash.h>
#undef XXH_INLINE_ALL

#include "rollblock/storage/table_memory.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>
#include <type_traits>
#include <utility>

namespace rollblock::storage {

/// Returns the 64-bit hash of a key. flat_key_map uses its low 32 bits for
/// the slot group, bits 32..35 for the home slot in the group and bits
/// 57..63 for the tag; callers may use bits in between (memory_state picks
/// shards from bits 40..). Inline and cheap: every lookup hashes a key, and
/// a table that grows hashes each entry again.
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

/// An open-addressing hash table from fixed-width byte-string keys to T,
/// for the store's millions of small entries: no node per entry, each key
/// beside its value, one tag byte per slot so that a probe rarely compares a
/// key that does not match, and a fill kept high (7/10 to 7/8) at a cost
/// that does not climb with it.
///
/// Layout: groups of 16 slots in one table_memory region: first the slots,
/// `stride` bytes each (a T at offset 0, default-constructed in empty
/// slots, then the key's key_width bytes; stride is their sum rounded up to
/// T's alignment: 24 bytes for memory_state's 16-byte entry and 8-byte
/// keys), then one tag byte per slot (16-byte aligned per group), then one
/// mark bit per slot (64-bit words). A tag is 0 for an empty slot, 1 for a
/// deleted one, and 0x80 | the hash's top 7 bits for an entry.
///
/// Probing (as in SwissTable, with groups at fixed places): a key's home is
/// a group (a multiply of the hash's low half by the group count, so that
/// any count works) and a slot in it. One 16-byte compare finds the slots of
/// a group whose tag matches; a lookup goes on to the next group (wrapping
/// around) only while the group has no empty slot. An insertion takes the
/// first empty or deleted slot on that path, in its group the first from
/// the home slot on (so that prefetching the home slot mostly loads the
/// entry). An erase empties the slot when its group has an empty slot (no
/// probe ever passed it), and leaves a deleted slot otherwise; a group with
/// no empty slot never gets one back, so every entry stays reachable. So
/// neither a lookup nor an erase costs more as the table fills up, and
/// nothing moves on erase.
///
/// An insertion that would take an empty slot past the maximum fill (7/8,
/// or what set_max_fill sets; deleted slots count as full) rebuilds the
/// table: with a quarter more groups, or at the same size when deleted
/// slots are a quarter of the fill (they are dropped on every rebuild).
///
/// The mark bit is one bit of state per entry that readers may set while
/// other readers look up keys (memory_state's clock): mark() sets it with an
/// atomic operation on the bit's word, apart from the tags that lookups read
/// without atomics. An entry is inserted unmarked and keeps its mark when
/// the table is rebuilt.
///
/// Every call that takes a hash expects key_hash(k).
/// REQUIRES for every key argument: k.size() == key_width().
/// Pointers to values are invalidated by any insertion or erasure.
template <class T>
class flat_key_map {
public:
  /// The slots of a group: one 16-byte tag compare.
  static constexpr std::size_t group_slots = 16;

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
      size_(std::exchange(other.size_, 0)),
      deleted_(std::exchange(other.deleted_, 0)),
      groups_(std::exchange(other.groups_, 0)),
      memory_(std::move(other.memory_)),
      tags_(std::exchange(other.tags_, nullptr)),
      marks_(std::exchange(other.marks_, nullptr)) {
  }

  flat_key_map& operator=(flat_key_map&& other) noexcept {
    if (this != &other) {
      destroy_values();
      key_width_ = other.key_width_;
      stride_ = other.stride_;
      max_fill_eighths_ = other.max_fill_eighths_;
      size_ = std::exchange(other.size_, 0);
      deleted_ = std::exchange(other.deleted_, 0);
      groups_ = std::exchange(other.groups_, 0);
      memory_ = std::move(other.memory_);
      tags_ = std::exchange(other.tags_, nullptr);
      marks_ = std::exchange(other.marks_, nullptr);
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

  /// Returns the number of slots (a multiple of 16).
  std::size_t capacity() const noexcept {
    return groups_ * group_slots;
  }

  /// Returns the number of deleted slots (dropped when the table is rebuilt).
  std::size_t deleted() const noexcept {
    return deleted_;
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

  /// Starts loading the tags of the home group of a key with this hash into
  /// the cache: the first of two prefetches for a key that a loop reaches
  /// some keys later. Changes nothing; any hash is fine.
  void prefetch_tags(std::uint64_t hash) const noexcept {
    if (groups_ != 0)
      __builtin_prefetch(tags_ + group_of(hash) * group_slots);
  }

  /// Starts loading the slot that a lookup or an insertion of a key with
  /// this hash reaches first: each slot of its home group whose tag matches,
  /// or else the first free slot from its home slot on. Reads the group's
  /// tags: call prefetch_tags for the hash a few keys earlier, or this waits
  /// for them. Changes nothing; any hash is fine.
  void prefetch(std::uint64_t hash) const noexcept {
    if (groups_ == 0)
      return;
    auto group = group_of(hash);
    __builtin_prefetch(tags_ + group * group_slots);
    auto* slot = slot_at(group * group_slots + home_offset(hash));
    __builtin_prefetch(slot);
    __builtin_prefetch(slot + stride_ - 1);
    __builtin_prefetch(slot + stride_ - 1 + 64);
  }

  /// Returns the value of `k`, inserting a default T first when absent, and
  /// whether it inserted. Only an insertion rebuilds the table.
  std::pair<T*, bool> try_emplace(std::string_view k, std::uint64_t hash) {
    assert(k.size() == key_width_);
    if (groups_ == 0)
      rehash(1);
    auto tag = tag_of(hash);
    auto group = group_of(hash);
    auto free = npos; // the first empty or deleted slot on the path
    {
      auto home = group * group_slots + home_offset(hash);
      if (key_equals(home, k.data()) && tags_[home] == tag)
        return {value_at(home), false};
    }
    for (;;) {
      auto bits = group_bits(group, tag);
      for (auto m = bits.matches; m != 0; m &= m - 1) {
        auto slot = group * group_slots + std::countr_zero(m);
        if (key_equals(slot, k.data()))
          return {value_at(slot), false};
      }
      if (free == npos && bits.free != 0)
        free = group * group_slots + first_from(bits.free, home_offset(hash));
      if (bits.empty != 0)
        break;
      group = next_group(group);
    }
    if (tags_[free] == deleted_tag) {
      --deleted_;
    } else if ((size_ + deleted_ + 1) * 8 > capacity() * max_fill_eighths_) {
      rehash(deleted_ * 32 >= capacity() * max_fill_eighths_
               ? groups_
               : groups_ + std::max<std::size_t>(1, groups_ / 4));
      return try_emplace(k, hash); // the slots moved: probe the new table
    }
    tags_[free] = tag;
    std::memcpy(key_at(free), k.data(), key_width_);
    ++size_;
    return {value_at(free), true};
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
    auto slot = slot_of(found);
    auto* word = marks_ + slot / 64;
    auto bit = std::uint64_t{1} << (slot % 64);
    if ((__atomic_load_n(word, __ATOMIC_RELAXED) & bit) == 0)
      __atomic_fetch_or(word, bit, __ATOMIC_RELAXED);
  }

  /// Returns whether the entry whose value `found` points to is marked.
  bool marked(const T* found) const noexcept {
    return mark_at(slot_of(found));
  }

  /// Calls f(key, value) for every entry, in no particular order.
  template <class F>
  void for_each(F f) const {
    for (std::size_t slot = 0; slot < capacity(); ++slot)
      if (is_full(tags_[slot]))
        f(key_view(slot), std::as_const(*value_at(slot)));
  }

  /// The same, with each value to change (not its key).
  template <class F>
  void for_each(F f) {
    for (std::size_t slot = 0; slot < capacity(); ++slot)
      if (is_full(tags_[slot]))
        f(key_view(slot), *value_at(slot));
  }

  /// Removes the entries in the `count` slots from slot `from` on (wrapping
  /// around; each slot at most once) for which pred(key, value, marked) is
  /// true; returns how many. `marked` is the entry's mark, which pred may
  /// clear (for a kept entry). For sweeps that evict many neighbouring
  /// entries. REQUIRES: pred does not insert or erase (it may change the
  /// value).
  template <class Pred>
  std::size_t erase_in(std::size_t from, std::size_t count, Pred pred) {
    auto slots = capacity();
    if (slots == 0 || size_ == 0)
      return 0;
    count = std::min(count, slots);
    std::size_t removed = 0;
    auto slot = from % slots;
    for (std::size_t i = 0; i < count; ++i) {
      if (is_full(tags_[slot])) {
        auto was_marked = mark_at(slot);
        auto marked = was_marked;
        if (pred(key_view(slot), *value_at(slot), marked)) {
          erase_slot(slot);
          ++removed;
        } else if (marked != was_marked) {
          set_mark(slot, marked);
        }
      }
      if (++slot == slots)
        slot = 0;
    }
    return removed;
  }

  /// Sets the fill above which an insertion rebuilds the table, in eighths
  /// (7 by default). A table whose entries are evicted a window of slots at
  /// a time (memory_state's clock) is full ahead of the window and empty
  /// behind it, so it may want a lower average fill. Takes effect at the
  /// next insertion. REQUIRES: 1 <= eighths <= 7.
  void set_max_fill(unsigned eighths) noexcept {
    assert(eighths >= 1 && eighths <= 7);
    max_fill_eighths_ = eighths;
  }

  /// Makes room for `n` entries without a rebuild.
  void reserve(std::size_t n) {
    auto groups = std::max<std::size_t>(1, groups_);
    while ((n + deleted_) * 8 > groups * group_slots * max_fill_eighths_)
      groups += std::max<std::size_t>(1, groups / 4);
    if (groups != groups_)
      rehash(groups);
  }

  /// Returns the bytes one slot takes: its key, value and tag (not what
  /// values own, nor its mark bit).
  std::size_t slot_bytes() const noexcept {
    return stride_ + 1;
  }

  /// Returns the bytes of the whole table: every slot, tag and mark bit.
  std::size_t table_bytes() const noexcept {
    return memory_.size();
  }

private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  static constexpr std::uint8_t empty_tag = 0;
  static constexpr std::uint8_t deleted_tag = 1;

  /// The slots of one group (bit i: slot i) that match a tag, that are
  /// empty, and that are empty or deleted.
  struct group_masks {
    std::uint32_t matches;
    std::uint32_t empty;
    std::uint32_t free;
  };

  static std::uint8_t tag_of(std::uint64_t hash) noexcept {
    return static_cast<std::uint8_t>(0x80 | (hash >> 57));
  }

  static bool is_full(std::uint8_t tag) noexcept {
    return (tag & 0x80) != 0;
  }

  static std::size_t home_offset(std::uint64_t hash) noexcept {
    return (hash >> 32) % group_slots;
  }

  std::size_t group_of(std::uint64_t hash) const noexcept {
    return static_cast<std::size_t>((hash & 0xffffffffu) * groups_ >> 32);
  }

  std::size_t next_group(std::size_t group) const noexcept {
    return group + 1 == groups_ ? 0 : group + 1;
  }

  /// Returns the index of the first set bit of `mask` (a group's slots) at
  /// or after `offset`, wrapping around. REQUIRES: mask != 0.
  static std::size_t first_from(std::uint32_t mask, std::size_t offset) {
    auto rotated = ((mask >> offset) | (mask << (group_slots - offset)))
                   & 0xffffu;
    return (offset + std::countr_zero(rotated)) % group_slots;
  }

  group_masks group_bits(std::size_t group,
                         std::uint8_t tag) const noexcept {
    const auto* tags = tags_ + group * group_slots;
#if defined(__SSE2__)
    auto v = _mm_load_si128(reinterpret_cast<const __m128i*>(tags));
    auto full = static_cast<std::uint32_t>(_mm_movemask_epi8(v));
    auto matches = static_cast<std::uint32_t>(_mm_movemask_epi8(
      _mm_cmpeq_epi8(v, _mm_set1_epi8(static_cast<char>(tag)))));
    auto empty = static_cast<std::uint32_t>(
      _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128())));
    return {matches, empty, ~full & 0xffffu};
#else
    group_masks m{0, 0, 0};
    for (std::size_t i = 0; i < group_slots; ++i) {
      m.matches |= std::uint32_t{tags[i] == tag} << i;
      m.empty |= std::uint32_t{tags[i] == empty_tag} << i;
      m.free |= std::uint32_t{!is_full(tags[i])} << i;
    }
    return m;
#endif
  }

  void prefetch_slot(std::size_t slot) const noexcept {
    // Both ends: a slot whose stride does not divide 64 may straddle two
    // cache lines.
    __builtin_prefetch(slot_at(slot));
    __builtin_prefetch(slot_at(slot) + stride_ - 1);
  }

  bool mark_at(std::size_t slot) const noexcept {
    return (__atomic_load_n(marks_ + slot / 64, __ATOMIC_RELAXED)
            >> (slot % 64) & 1)
           != 0;
  }

  void set_mark(std::size_t slot, bool on) noexcept {
    auto bit = std::uint64_t{1} << (slot % 64);
    if (on)
      __atomic_fetch_or(marks_ + slot / 64, bit, __ATOMIC_RELAXED);
    else
      __atomic_fetch_and(marks_ + slot / 64, ~bit, __ATOMIC_RELAXED);
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
    auto group = group_of(hash);
    {
      auto home = group * group_slots + home_offset(hash);
      if (key_equals(home, k.data()) && tags_[home] == tag)
        return home;
    }
    for (;;) {
      auto bits = group_bits(group, tag);
      for (auto m = bits.matches; m != 0; m &= m - 1) {
        auto slot = group * group_slots + std::countr_zero(m);
        if (key_equals(slot, k.data()))
          return slot;
      }
      if (bits.empty != 0)
        return npos;
      group = next_group(group);
    }
  }

  /// Empties `slot`, or marks it deleted when its group has no empty slot
  /// (a probe may have passed the group).
  void erase_slot(std::size_t slot) {
    auto group = slot / group_slots;
    if (group_bits(group, empty_tag).empty != 0) {
      tags_[slot] = empty_tag;
    } else {
      tags_[slot] = deleted_tag;
      ++deleted_;
    }
    *value_at(slot) = T{};
    set_mark(slot, false);
    --size_;
  }

  /// Puts an entry in the first empty slot on its path, without counting
  /// it. REQUIRES: a table with no deleted slots that does not hold `k` and
  /// has an empty slot.
  void place(std::string_view k, std::uint8_t tag, bool marked, T&& value) {
    auto hash = key_hash(k);
    auto group = group_of(hash);
    std::uint32_t empty;
    while ((empty = group_bits(group, tag).empty) == 0)
      group = next_group(group);
    auto slot = group * group_slots + first_from(empty, home_offset(hash));
    tags_[slot] = tag;
    std::memcpy(key_at(slot), k.data(), key_width_);
    *value_at(slot) = std::move(value);
    if (marked)
      set_mark(slot, true);
  }

  /// Moves every entry into a new table of `groups` groups.
  void rehash(std::size_t groups) {
    auto slots = groups * group_slots;
    flat_key_map rebuilt{key_width_};
    auto mark_words = (slots + 63) / 64;
    rebuilt.memory_ = table_memory{slots * (stride_ + 1) + mark_words * 8};
    rebuilt.tags_ =
      reinterpret_cast<std::uint8_t*>(rebuilt.memory_.data() + slots * stride_);
    rebuilt.marks_ = reinterpret_cast<std::uint64_t*>(rebuilt.tags_ + slots);
    for (std::size_t slot = 0; slot < slots; ++slot)
      new (rebuilt.slot_at(slot)) T{};
    rebuilt.groups_ = groups;
    for (std::size_t slot = 0; slot < capacity(); ++slot) {
      if (is_full(tags_[slot]))
        rebuilt.place(key_view(slot), tags_[slot], mark_at(slot),
                      std::move(*value_at(slot)));
    }
    rebuilt.size_ = size_;
    rebuilt.max_fill_eighths_ = max_fill_eighths_;
    *this = std::move(rebuilt);
  }

  void destroy_values() noexcept {
    if constexpr (!std::is_trivially_destructible_v<T>)
      for (std::size_t slot = 0; slot < capacity(); ++slot)
        value_at(slot)->~T();
  }

  std::size_t key_width_;
  std::size_t stride_;
  std::size_t max_fill_eighths_ = 7;
  std::size_t size_ = 0;
  std::size_t deleted_ = 0;
  std::size_t groups_ = 0;
  table_memory memory_;
  std::uint8_t* tags_ = nullptr;
  std::uint64_t* marks_ = nullptr;
};

} // namespace rollblock::storage
