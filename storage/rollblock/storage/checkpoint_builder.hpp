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
/// Adding a block only notes where its changes are; take() sorts them by
/// key (sort_in_key_order: stable, so a key's changes stay in the order
/// they were added) and reads each key's first and last change. A hash
/// table of the keys cost more than the sort, which LevelDB's memtable
/// wants anyway.
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

  /// Where one added change is, and its key's key_prefix.
  struct change_ref {
    std::uint64_t prefix;
    /// Its block's index in held_.
    std::uint32_t block;
    /// Its index in the block's changes.
    std::uint32_t change;
  };

private:
  void hold(block_record_ptr record, bool undo);

  /// Every change added since the last take(), in the order added.
  std::vector<change_ref> changes_;
  /// The blocks added (the batch's writes view their bytes; take() hands
  /// them to the batch).
  block_record_list held_;
  /// Per held block: whether it was added as undo.
  std::vector<bool> undo_;
};

} // namespace rollblock::storage
