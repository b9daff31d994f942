#pragma once

#include "rollblock/messages/block_record.hpp"
#include "rollblock/storage/state_store.hpp"

#include <cstdint>
#include <string_view>
#include <vector>

namespace rollblock::storage {

/// Coalesces blocks into one checkpoint_batch, so that a checkpoint writes
/// each key once however many blocks changed it, and not at all when those
/// blocks left it as it was in LevelDB (a key inserted and deleted again, a
/// value set back): the batch holds only the keys whose value in LevelDB
/// must change, in key order.
///
/// Adding a block only notes its changes' key prefixes; take() sorts the
/// changes by key, stably (a key's changes stay in the order they were
/// added), and reads each key's first and last change. A hash table of the
/// keys cost more than the sort, which LevelDB's memtable wants anyway.
///
/// The sort moves 8 bytes per change where it can: when the keys are 8
/// bytes wide and the bits in which their numbers differ, together with
/// the bits that number a change (its block, its index in the block), fit
/// in 64 (keys counted up: a checkpoint's keys span a few million numbers),
/// each change is one number, those key bits above its position, sorted by
/// radix_sort on the key bits. Otherwise (random or wider keys) it sorts
/// 16-byte change_refs with sort_in_key_order. The radix sort's scatter
/// waits on memory: half the bytes, about half the time.
///
/// REQUIRES: the blocks added since the last take() start right above the
/// state LevelDB holds (add) or end at it (add_undo), so that each key's
/// first change seen tells its value in LevelDB; a block holds each key at
/// most once (block records are coalesced).
class checkpoint_builder {
public:
  /// Makes room for `changes` more changes (those of the blocks about to be
  /// added), so that adding them does not grow the builder step by step.
  void reserve(std::size_t changes);

  /// Adds a block's changes (its `after` values). Call oldest first.
  void add(block_record_ptr record);

  /// Adds a block's undo (its `before` values), for writing the state below
  /// it. Call newest first.
  void add_undo(block_record_ptr record);

  /// Returns how many blocks were added since the last take().
  std::size_t blocks() const {
    return held_.size();
  }

  /// Returns the batch for checkpoint `height` and starts over.
  checkpoint_batch take(block_id height);

private:
  /// Where one added change is, and its key's key_prefix.
  struct change_ref {
    std::uint64_t prefix;
    /// Its block's index in held_.
    std::uint32_t block;
    /// Its index in the block's changes.
    std::uint32_t change;
  };

  void hold(block_record_ptr record, bool undo);

  /// Appends to `batch` the write of each key whose value in LevelDB must
  /// change. `ref_at(i)` returns the i-th of `n` changes in key order.
  template <class RefAt>
  void fold(std::size_t n, RefAt ref_at, checkpoint_batch& batch) const;

  /// The key_prefix of every change added since the last take(), in the
  /// order added.
  std::vector<std::uint64_t> prefixes_;
  /// Whether every key added since the last take() is 8 bytes wide.
  bool narrow_keys_ = true;
  /// The blocks added (the batch's writes view their bytes; take() hands
  /// them to the batch).
  block_record_list held_;
  /// Per held block: whether it was added as undo.
  std::vector<bool> undo_;
};

} // namespace rollblock::storage
