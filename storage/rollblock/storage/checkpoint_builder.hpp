#pragma once

#include "rollblock/messages/block_record.hpp"
#include "rollblock/storage/flat_key_map.hpp"
#include "rollblock/storage/state_store.hpp"

#include <string_view>
#include <vector>

namespace rollblock::storage {

/// Coalesces blocks into one checkpoint_batch, so that a checkpoint writes
/// each key once however many blocks changed it, and not at all when those
/// blocks left it as it was in LevelDB (a key inserted and deleted again, a
/// value set back): the batch holds only the keys whose value in LevelDB
/// must change.
///
/// REQUIRES: the blocks added since the last take() start right above the
/// state LevelDB holds (add) or end at it (add_undo), so that each key's
/// first change seen tells its value in LevelDB.
class checkpoint_builder {
public:
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
  /// Records that `k` goes from `stored` (its value in LevelDB, used only
  /// at the key's first change) to `v`.
  void put(std::string_view k, std::string_view stored, std::string_view v);

  checkpoint_batch batch_;
  /// Per write in batch_: the key's value in LevelDB before the batch. Views
  /// into held_ records.
  std::vector<std::string_view> stored_;
  /// Key -> its write in batch_ (the table takes the key width at the
  /// first key).
  flat_key_map<std::size_t> position_{0};
  /// Keeps the records alive: batch_ and stored_ view their bytes (take()
  /// hands them to the batch).
  block_record_list held_;
};

} // namespace rollblock::storage
