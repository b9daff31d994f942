#pragma once

#include "rollblock/actors/store_reader.hpp"
#include "rollblock/messages/actor_interfaces.hpp"
#include "rollblock/storage/checkpoint_builder.hpp"
#include "rollblock/storage/state_store.hpp"

#include <caf/error.hpp>

#include <memory>

namespace rollblock {

/// The persistence actor's state: the LevelDB state of record, its metadata
/// and the durable blocks waiting for the next checkpoint.
struct persistence_state {
  static inline const char* name = "rollblock.persistence";

  /// Where the fault hook lives.
  std::shared_ptr<store_shared> shared;
  std::unique_ptr<storage::state_store> state;
  storage::store_metadata meta;
  storage::checkpoint_builder pending;
  /// The newest height queued in `pending`.
  block_id pending_height = 0;
  /// The first write failure; every later call fails with it.
  caf::error failure;

  /// Turns a failed write into the sticky failure and returns it.
  caf::error fail(const caf::error& err, const std::string& what);
};

/// Writes checkpoints, reverts and metadata into LevelDB, one atomic
/// WriteBatch each. Runs detached: every handler does blocking I/O.
persistence_actor::behavior_type
persistence(persistence_actor::stateful_pointer<persistence_state> self,
            std::shared_ptr<std::unique_ptr<storage::state_store>> state,
            storage::store_metadata meta,
            std::shared_ptr<store_shared> shared);

} // namespace rollblock
