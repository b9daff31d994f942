#pragma once

#include "rollblock/messages/durability.hpp"
#include "rollblock/messages/store_options.hpp"

#include <caf/meta/type_name.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace rollblock {

/// How a store is doing, as a supervisor or probe wants to know it.
/// - serving: answering calls, no store fault seen. Client errors (bad
///   input, wrong state) never change this.
/// - degraded: answering calls (or about to again), but a store fault was
///   seen and survived: a store actor is being restarted or was restarted
///   within the restart window, checksum errors, repaired damage.
/// - fatal: refusing every call until reopened.
enum class health_state : std::uint8_t { serving, degraded, fatal };

std::string to_string(health_state x);

/// A health state and, unless serving, why.
struct health_report {
  health_state state = health_state::serving;
  std::string reason;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, health_report& x) {
  return f(caf::meta::type_name("rollblock.health_report"), x.state,
           x.reason);
}

/// Latency figures of one kind of call, in microseconds.
struct latency_summary {
  std::uint64_t count = 0;
  double avg_us = 0;
  double p50_us = 0;
  double p95_us = 0;
  double p99_us = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, latency_summary& x) {
  return f(caf::meta::type_name("rollblock.latency_summary"), x.count,
           x.avg_us, x.p50_us, x.p95_us, x.p99_us);
}

/// A point-in-time copy of a store's figures.
struct metrics_snapshot {
  store_heights heights;
  durability_mode durability;
  std::uint64_t blocks_applied = 0;
  std::uint64_t operations_applied = 0;
  std::uint64_t sets = 0;
  std::uint64_t deletes = 0;
  /// Reverts that took effect since the store was opened, each counted
  /// once, when its call is answered with its target: a revert that
  /// returned, or one that a store actor's crash interrupted after it had
  /// read the blocks to undo and that the restart found done (recovery
  /// completed it from its revert marker, or it was complete on disk before
  /// the crash). Not counted: a revert to the applied height (no change), a
  /// revert that failed, and a revert marker that the store's own open
  /// completes (an earlier store's revert). Restarts never count a revert
  /// again: a counted revert has no marker left and its call has ended.
  std::uint64_t reverts = 0;
  /// The blocks those reverts undid (journal entries above each target).
  std::uint64_t blocks_reverted = 0;
  std::uint64_t lookups = 0;
  /// Calls refused for bad input or wrong state; they do not affect health.
  std::uint64_t client_errors = 0;
  std::uint64_t checksum_errors = 0;
  std::uint64_t checkpoints = 0;
  std::uint64_t live_keys = 0;
  /// The bytes of the tables that hold the state in memory (every slot,
  /// used or not; values longer than 10 bytes take heap blocks besides).
  std::uint64_t state_table_bytes = 0;
  std::uint64_t journal_bytes = 0;
  /// The durable blocks not yet checkpointed into LevelDB that the store
  /// holds in memory, and the bytes their records take
  /// (store_options::checkpoint_backlog_bytes bounds them).
  std::uint64_t held_blocks = 0;
  std::uint64_t held_bytes = 0;
  latency_summary apply_latency;
  latency_summary revert_latency;
  latency_summary lookup_latency;
  health_state health = health_state::serving;
  /// Why the store is degraded or fatal; empty otherwise.
  std::string health_reason;
  /// Crashed store actors restarted by the supervisor, per actor. A crash of
  /// the reopen actor during a restart counts as one more restart of the
  /// engine actor whose crash began that restart.
  std::uint64_t mutation_restarts = 0;
  std::uint64_t journal_restarts = 0;
  std::uint64_t persistence_restarts = 0;
  std::uint64_t health_restarts = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, metrics_snapshot& x) {
  return f(caf::meta::type_name("rollblock.metrics_snapshot"), x.heights,
           x.durability, x.blocks_applied, x.operations_applied, x.sets,
           x.deletes, x.reverts, x.blocks_reverted, x.lookups,
           x.client_errors, x.checksum_errors, x.checkpoints, x.live_keys,
           x.state_table_bytes, x.journal_bytes, x.held_blocks, x.held_bytes,
           x.apply_latency, x.revert_latency, x.lookup_latency, x.health,
           x.health_reason, x.mutation_restarts, x.journal_restarts,
           x.persistence_restarts, x.health_restarts);
}

/// A lock-free latency histogram: buckets a quarter of a power of two wide,
/// from 1 us to about 70 minutes. Safe to record from any thread.
class latency_histogram {
public:
  static constexpr std::size_t bucket_count = 128;

  /// Adds one sample.
  void record(std::uint64_t nanoseconds);

  /// Returns count, mean and quantiles (each quantile is the upper edge of
  /// the bucket it falls in).
  latency_summary summary() const;

private:
  std::array<std::atomic<std::uint64_t>, bucket_count> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> total_ns_{0};
};

} // namespace rollblock

namespace rollblock {

/// The figures a running store keeps, updated without locks from whichever
/// thread does the work (actors, readers) and copied into metrics_snapshot.
struct store_counters {
  std::atomic<std::uint64_t> blocks_applied{0};
  std::atomic<std::uint64_t> operations_applied{0};
  std::atomic<std::uint64_t> sets{0};
  std::atomic<std::uint64_t> deletes{0};
  /// See metrics_snapshot::reverts.
  std::atomic<std::uint64_t> reverts{0};
  std::atomic<std::uint64_t> blocks_reverted{0};
  std::atomic<std::uint64_t> lookups{0};
  std::atomic<std::uint64_t> client_errors{0};
  std::atomic<std::uint64_t> checksum_errors{0};
  std::atomic<std::uint64_t> checkpoints{0};
  /// Restarts of crashed store actors, per actor.
  std::atomic<std::uint64_t> mutation_restarts{0};
  std::atomic<std::uint64_t> journal_restarts{0};
  std::atomic<std::uint64_t> persistence_restarts{0};
  std::atomic<std::uint64_t> health_restarts{0};
  /// The journal's size on disk, as its actor last saw it.
  std::atomic<std::uint64_t> journal_bytes{0};
  /// The held blocks (see metrics_snapshot), as the supervisor last set them.
  std::atomic<std::uint64_t> held_blocks{0};
  std::atomic<std::uint64_t> held_bytes{0};
  latency_histogram apply_latency;
  latency_histogram revert_latency;
  latency_histogram lookup_latency;
};

} // namespace rollblock
