#pragma once

#include "rollblock/actors/store_reader.hpp"
#include "rollblock/messages/actor_interfaces.hpp"
#include "rollblock/storage/recovery.hpp"

#include <caf/response_promise.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace rollblock {

/// The supervisor's state: its children, the order of mutating calls and
/// the write pipeline between mutation, journal and persistence.
struct supervisor_state {
  static inline const char* name = "rollblock.supervisor";

  std::shared_ptr<store_shared> shared;
  store_options options;
  durability_mode mode;
  std::uint64_t rollback_window = 100;
  /// Reverts below this height are refused (the journal was pruned).
  std::optional<block_id> pruned_through;
  /// Holds the data directory until the store is closed, across restarts
  /// too: a reopen recovers under this lock (shared with the reopen actor
  /// while it runs), so no other opener gets the directory in between.
  std::shared_ptr<storage::data_dir_lock> lock;

  mutation_actor mutation;
  journal_actor journal;
  persistence_actor persistence;
  health_actor health;
  std::size_t children_alive = 0;
  /// Every child ever spawned, so that they all die with the supervisor.
  std::shared_ptr<std::vector<caf::actor_addr>> spawned;

  /// Bumped whenever a child crashes: replies to requests sent before are
  /// ignored (the restart answers the running call).
  std::uint64_t generation = 0;
  /// The engine children are being restarted: mutating calls wait.
  bool restarting = false;
  /// The children a restart stopped and waits to see go down.
  std::vector<caf::actor_addr> stopping;
  /// Which child crashed and why, for logs and health.
  std::string restart_cause;
  /// The name of the child whose crash began the running restart: a crash
  /// of the reopen actor is counted as another restart of that child.
  std::string restart_actor;
  /// When the restarts within the restart window happened, oldest first.
  std::deque<std::chrono::steady_clock::time_point> restart_times;
  /// How a restart answers the running call (see supervisor.cpp), given the
  /// reopened heights or the fatal error; reset by finish().
  std::function<void(const caf::expected<store_heights>&)> on_restart;

  /// Mutating calls run one at a time, in arrival order; `busy` while one
  /// runs. Each queued call ends by calling finish().
  std::deque<std::function<void()>> queue;
  bool busy = false;
  bool draining_queue = false;

  /// Blocks sent to the journal and not yet durable, oldest first.
  std::deque<block_record_ptr> appended;
  /// Appends sent to the journal and not yet answered.
  std::size_t in_flight = 0;
  /// Run once in_flight is back to zero.
  std::vector<std::function<void()>> on_drained;
  /// Resumes an async apply held back by a full queue (backpressure).
  std::function<void()> on_capacity;

  /// The heights of the durable blocks handed to persistence and not yet
  /// checkpointed, oldest first.
  struct held_block {
    /// Its record (shared with persistence): a revert within the lag undoes
    /// memory from it without reading the journal.
    block_record_ptr record;
    /// The estimated bytes its record takes.
    std::size_t bytes;

    block_id height() const {
      return record->height;
    }
  };
  std::deque<held_block> held;
  /// The sum of the held blocks' bytes.
  std::size_t held_bytes = 0;
  /// How many of the newest held blocks a periodic checkpoint leaves out
  /// (store_options::checkpoint_lag_blocks).
  std::uint64_t checkpoint_lag = 0;
  std::chrono::steady_clock::time_point last_checkpoint;
  bool checkpointing = false;
  /// The height the checkpoint in progress writes through.
  std::optional<block_id> checkpoint_through;
  /// Run once the checkpoint in progress ended.
  std::vector<std::function<void()>> on_checkpointed;
  /// A revert runs: no pruning may start.
  bool barrier = false;
  /// How many blocks the running revert read to undo (its step 2); unset
  /// before that and between calls. A restart that finds the store at the
  /// revert's target counts the revert with these blocks.
  std::optional<std::size_t> revert_blocks;
  /// A block is staged (start_block .. end_block).
  bool staged = false;
  /// The shutdown call waiting for the children to go down.
  std::optional<caf::typed_response_promise<atom::ok>> shutdown_promise;
};

/// The store's front actor. Serializes every write, revert, flush and policy
/// switch; orders the rollback barrier against queued journal and
/// persistence work; owns the fatal state; restarts crashed children from
/// durable state (see the top of supervisor.cpp). Reads are answered inline
/// from the in-memory state.
///
/// Fault points (store_options::fault_hook, tests only), in the order a
/// block passes them: "mutation.apply" (before a block is checked),
/// "mutation.installed" (installed in memory, not yet answered),
/// "mutation.set" (a staged write), "journal.append" (before the write),
/// "journal.appended" (written, not yet fsynced), "journal.sync" (a flush's
/// fsync), "journal.truncate" (a revert's truncation: after LevelDB got the
/// revert marker, or before anything changed within the checkpoint lag),
/// "mutation.revert" (a revert's last step: on disk it is done, memory
/// not yet), "persistence.checkpoint" (queued for the next checkpoint),
/// "persistence.flush" (before the WriteBatch), "health.metrics" (a metrics
/// request); and during a restart "reopen.open" (the reopen actor, before
/// it recovers the data directory).
store_actor::behavior_type
supervisor(store_actor::stateful_pointer<supervisor_state> self,
           std::shared_ptr<storage::recovered_store> recovered,
           std::shared_ptr<store_shared> shared, store_options options);

} // namespace rollblock
