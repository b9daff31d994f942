#pragma once

#include "rollblock/actors/store_reader.hpp"
#include "rollblock/messages/actor_interfaces.hpp"
#include "rollblock/messages/store_options.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/expected.hpp>

namespace rollblock {

/// A running store inside an actor system: its typed actor (for every call)
/// and a reader (for reads from any thread without a round trip).
struct store_handle {
  store_actor actor;
  store_reader reader;
};

/// Registers rollblock's message types and error category with `cfg`, so
/// that the store actor works across the network (on both sides of a
/// remote_actor link) and CAF renders rollblock errors by name. Call before
/// constructing the actor system.
void add_rollblock_types(caf::actor_system_config& cfg);

/// Sizes CAF's scheduler to one worker thread per core (at least 2). CAF
/// 0.17 starts max(4, cores) workers: on a 2-core machine the store's
/// actors then hop between 4 threads that the kernel switches, ~10% of the
/// write throughput (bench/RESULTS.md section 13). rollblockd and
/// blocking_store's own system use it. Call before constructing the actor
/// system; it replaces a size set before.
void use_one_worker_per_core(caf::actor_system_config& cfg);

/// Opens the data directory `opts.data_dir` (recovering it, see
/// storage::recover) and spawns the store's actors in `sys`. Blocks while it
/// recovers. To close: request atom::shutdown and wait for the reply (the
/// data directory is released once the reply arrives).
caf::expected<store_handle> spawn_store(caf::actor_system& sys,
                                        const store_options& opts);

} // namespace rollblock
