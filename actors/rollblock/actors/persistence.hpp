#pragma once

#include "rollblock/actors/store_reader.hpp"
#include "rollblock/messages/actor_interfaces.hpp"
#include "rollblock/storage/checkpoint_builder.hpp"
#include "rollblock/storage/memory_state.hpp"
#include "rollblock/storage/state_store.hpp"

#include <caf/error.hpp>

#include <deque>
#include <memory>

namespace rollblock {

/// The persistence actor's state: the LevelDB state of record, its metadata
/// and the durable blocks waiting for the next checkpoint.
struct persistence_state {
  static inline const char* name = "rollblock.persistence";

  /// Where the fault hook lives.
  std::shared_ptr<store_shared> shared;
  std::unique_ptr<storage::state_store> state;
  /// The in-memory state, told what LevelDB holds (with a memory budget it
  /// reads LevelDB for keys it evicted).
  std::shared_ptr<storage::memory_state> memory;
  storage::store_metadata meta;
  /// The durable blocks above the checkpoint, oldest first: the newest of
  /// them stay out of LevelDB (the checkpoint lag), so that a revert to one
  /// of them only forgets the blocks above it.
  std::deque<block_record_ptr> held;
  /// Whether LevelDB holds a revert marker (cleared by atom::clear).
  bool marker_set = false;
  /// The first write failure; every later call fails with it.
  caf::error failure;

  /// Turns a failed write into the sticky failure and returns it.
  caf::error fail(const caf::error& err, const std::string& what);

  /// Stops the in-memory state's reads of LevelDB before LevelDB closes.
  ~persistence_state();
};

/// Writes checkpoints, reverts and metadata into LevelDB, one atomic
/// WriteBatch each. Runs detached: every handler does blocking I/O.
persistence_actor::behavior_type
persistence(persistence_actor::stateful_pointer<persistence_state> self,
            std::shared_ptr<std::unique_ptr<storage::state_store>> state,
            storage::store_metadata meta,
            std::shared_ptr<store_shared> shared);

} // namespace rollblock
