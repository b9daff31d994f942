#pragma once

#include "rollblock/messages/types.hpp"

#include <caf/allowed_unsafe_message_type.hpp>

#include <memory>
#include <vector>

namespace rollblock {

/// What one block did to one key: the value after the block and the value
/// before it (the undo). An empty `after` deletes the key; an empty `before`
/// means the key was absent.
struct key_change {
  key k;
  value after;
  value before;

  friend bool operator==(const key_change&, const key_change&) = default;
};

/// One applied block as the journal stores it and the actors pass it on: its
/// height and one change per distinct key it touched, in the order the keys
/// were first touched (several operations on one key coalesce, last wins).
struct block_record {
  block_id height = 0;
  std::vector<key_change> changes;

  friend bool operator==(const block_record&, const block_record&) = default;
};

/// Records are immutable once built and shared between actors without copies.
using block_record_ptr = std::shared_ptr<const block_record>;
using block_record_list = std::vector<block_record_ptr>;

} // namespace rollblock

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rollblock::block_record_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rollblock::block_record_list)
