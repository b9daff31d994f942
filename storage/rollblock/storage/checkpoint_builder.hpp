#pragma once

#include "rollblock/messages/block_record.hpp"
#include "rollblock/storage/state_store.hpp"

#include <string_view>
#include <unordered_map>

namespace rollblock::storage {

/// Coalesces blocks into one checkpoint_batch, so that a checkpoint writes
/// each key once however many blocks changed it.
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
  void put(const key& k, const value& v);

  checkpoint_batch batch_;
  std::unordered_map<std::string_view, std::size_t> position_;
  /// Keeps the records alive: position_ views their keys.
  block_record_list held_;
};

} // namespace rollblock::storage
