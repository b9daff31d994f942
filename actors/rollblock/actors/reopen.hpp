#pragma once

#include "rollblock/messages/actor_interfaces.hpp"
#include "rollblock/messages/store_options.hpp"

namespace rollblock {

/// The reopen actor's state: the options to recover with.
struct reopen_state {
  static inline const char* name = "rollblock.reopen";

  store_options options;
};

/// Answers one atom::open with storage::recover(options) (the data directory
/// brought back to its durable state, lock taken, memory loaded, journal
/// replayed and checkpointed), then quits. Runs detached: recovery blocks.
/// REQUIRES: no store of this process holds the data directory when asked.
reopen_actor::behavior_type
reopen(reopen_actor::stateful_pointer<reopen_state> self,
       store_options options);

} // namespace rollblock
