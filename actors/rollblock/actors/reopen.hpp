#pragma once

#include "rollblock/messages/actor_interfaces.hpp"
#include "rollblock/messages/store_options.hpp"
#include "rollblock/storage/data_dir_lock.hpp"

#include <memory>

namespace rollblock {

/// The reopen actor's state: the options to recover with and the data
/// directory's lock, which the store keeps held across the restart.
struct reopen_state {
  static inline const char* name = "rollblock.reopen";

  store_options options;
  std::shared_ptr<storage::data_dir_lock> lock;
};

/// Answers one atom::open with storage::recover(options, lock) (the data
/// directory brought back to its durable state under the lock the store
/// kept, memory loaded, journal replayed and checkpointed), then quits.
/// Runs detached: recovery blocks. Passes the fault point "reopen.open"
/// (store_options::fault_hook) before recovering; an exception escaping
/// crashes it and the request fails with its exit reason
/// (caf::exit_reason::unhandled_exception).
/// REQUIRES: the journal and LevelDB of the directory are closed.
reopen_actor::behavior_type
reopen(reopen_actor::stateful_pointer<reopen_state> self,
       store_options options, std::shared_ptr<storage::data_dir_lock> lock);

} // namespace rollblock
