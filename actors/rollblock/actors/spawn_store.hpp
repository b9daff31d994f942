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

/// Sets up CAF's scheduler for the store's actors. rollblockd and
/// blocking_store's own system use it. Call before constructing the actor
/// system; it replaces these two settings where they were set before.
/// - One worker thread per core (at least 2). CAF 0.17 starts max(4, cores)
///   workers: on a 2-core machine the store's actors then hop between 4
///   threads that the kernel switches, ~10% of the write throughput
///   (bench/RESULTS.md section 13).
/// - Idle workers park at once. Out of work, a CAF 0.17 worker polls its
///   queue 100 times, then 500 times more with a 50 us sleep in between
///   (25 ms), then parks on a condition variable. A client that waits for
///   each block's reply leaves the workers idle between blocks: each sleep
///   was a timer wake-up and a context switch, ~8,000 a second, and cost
///   14-17% of the published workload's CPU time (section 25). Without the
///   sleep a worker polls 600 times in a row (tens of microseconds), then
///   parks until work from outside the scheduler is queued for it, or 10 ms
///   pass (then it steals from the other workers' queues, as before).
void configure_scheduler(caf::actor_system_config& cfg);

/// Opens the data directory `opts.data_dir` (recovering it, see
/// storage::recover) and spawns the store's actors in `sys`. Blocks while it
/// recovers. To close: request atom::shutdown and wait for the reply (the
/// data directory is released once the reply arrives).
caf::expected<store_handle> spawn_store(caf::actor_system& sys,
                                        const store_options& opts);

} // namespace rollblock
