#pragma once

#include "rollblock/actors/store_reader.hpp"
#include "rollblock/messages/actor_interfaces.hpp"

#include <memory>
#include <optional>

namespace rollblock {

/// The mutation actor's state: the writer side of the in-memory state and
/// the staged block.
struct mutation_state {
  static inline const char* name = "rollblock.mutation";

  std::shared_ptr<store_shared> shared;
  /// The in-memory state this actor writes (the store's state when spawned).
  std::shared_ptr<storage::memory_state> memory;
  /// The staged block's height and operations, while one is staged.
  std::optional<block_id> staged_height;
  operation_list staged_ops;
};

/// Applies, reverts and stages blocks in memory. The height and operation
/// checks happen here, before anything changes.
mutation_actor::behavior_type
mutation(mutation_actor::stateful_pointer<mutation_state> self,
         std::shared_ptr<store_shared> shared);

} // namespace rollblock
