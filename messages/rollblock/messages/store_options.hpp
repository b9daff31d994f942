#pragma once

#include "rollblock/messages/durability.hpp"
#include "rollblock/messages/types.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

// The I/O interfaces a store can be opened with, declared only: messages/
// does no I/O and does not depend on storage/ or LevelDB.
namespace leveldb {
class Env;
} // namespace leveldb

namespace rollblock::storage {
class file_system;
} // namespace rollblock::storage

namespace rollblock {

/// Everything a store is opened with. Fields left unset take the value the
/// data directory was created with, or the default when creating it.
struct store_options {
  /// The data directory; created when missing.
  std::string data_dir{};
  /// The key width in bytes (8..64). Fixed at creation; reopening with another
  /// width fails with ec::config_mismatch. Unset: the stored width, or 8.
  std::optional<std::size_t> key_width{};
  /// Keys per LevelDB record of the state (a power of two, 1..64; see
  /// storage/state_page.hpp). 64 suits keys counted up (neighbours written
  /// together); 1 suits hashes and scattered keys, whose deletes and
  /// updates would otherwise read a page from LevelDB at each checkpoint.
  /// Fixed at creation; reopening with another size fails with
  /// ec::config_mismatch. Unset: the stored size, or 64 for 8-byte keys and
  /// 1 for wider ones.
  std::optional<std::size_t> page_keys{};
  /// The durability mode. Persisted; a set value replaces the stored one.
  /// Unset: the stored mode, or synchronous.
  std::optional<durability_mode> durability{};
  /// How many blocks below the checkpoint the journal keeps for reverts.
  /// Persisted; unset: the stored window, or 100.
  std::optional<std::uint64_t> min_rollback_window{};
  /// Checkpoint into LevelDB after this many durable blocks...
  std::uint64_t checkpoint_every_blocks = 64;
  /// ... or this long after the oldest uncheckpointed durable block.
  std::chrono::milliseconds checkpoint_interval{1000};
  /// How many of the newest durable blocks a checkpoint leaves out of
  /// LevelDB (they stay in the journal and in memory): a revert to one of
  /// them only cuts the journal and reverts memory, with no LevelDB write.
  /// Costs: a crash replays up to checkpoint_lag_blocks +
  /// checkpoint_every_blocks journaled blocks, and the persistence actor
  /// holds their records. Flushes before a shutdown or a policy switch
  /// checkpoint everything. Unset: 100, or 0 with a memory budget (whose
  /// reverted keys must be readable from LevelDB). With a memory budget at
  /// most 8,191 (storage::memory_state::max_uncheckpointed_blocks / 2).
  std::optional<std::uint64_t> checkpoint_lag_blocks{};
  /// The bytes the records of the durable blocks not yet checkpointed (the
  /// lag's and those waiting for a checkpoint) may take in memory. Past it,
  /// a checkpoint of the blocks older than the lag starts at once and the
  /// next apply waits for it (backpressure), so that large blocks cannot
  /// fill memory while LevelDB falls behind; the lag's blocks are never
  /// checkpointed early, so with blocks too large for the lag to fit, each
  /// block beyond it waits for its own checkpoint. With a memory budget the
  /// bound is the smaller of this and 1/8 of the budget. At least 1.
  std::size_t checkpoint_backlog_bytes = 256ull << 20;
  /// Start a new journal segment file after this many bytes.
  std::uint64_t journal_segment_bytes = 64ull << 20;
  /// LevelDB block cache and write buffer sizes (without a memory budget).
  /// The write buffer is LevelDB's memtable; up to two of them are resident
  /// (one being written, one being flushed). With the state in pages
  /// (page_keys) a checkpoint writes few records, and 16 MiB ran as fast as
  /// 64 MiB with 150-200 MB less peak memory (bench/RESULTS.md section 14).
  std::size_t leveldb_cache_bytes = 64ull << 20;
  std::size_t leveldb_write_buffer_bytes = 16ull << 20;
  /// The supervisor restarts a crashed store actor at most this many times
  /// within restart_window; the next crash in that window makes the store
  /// fatal (ec::restart_limit_exceeded). 0: every crash is fatal.
  std::uint32_t max_restarts = 3;
  std::chrono::seconds restart_window{60};
  /// For tests only (rollblockd never sets it): the store actors call it with
  /// the name of each fault point they pass (the list is in
  /// rollblock/actors/supervisor.hpp); an exception it throws crashes that
  /// actor the way a bug would. Unset: no calls.
  std::function<void(std::string_view point)> fault_hook{};
  /// For tests only (rollblockd never sets it): the supervisor calls it, on
  /// its own thread, with the name ("mutation", "journal", "persistence",
  /// "health") and the address of each store actor it spawns, at open and
  /// at every restart; tests use it to send a store actor an exit message.
  /// Unset: no calls.
  std::function<void(std::string_view actor, const caf::actor_addr& addr)>
    spawn_hook{};
  /// The memory the store may use, in bytes (at least 64 KiB). Unset:
  /// unlimited, every live entry stays in memory. Set: LevelDB's block
  /// cache gets 1/16 and its write buffers (two may exist) 1/32 each
  /// (instead of the two sizes above), the resident entries 1/4, and the
  /// rest (5/8, as measured in bench/RESULTS.md) covers the undo, the
  /// blocks waiting for the journal and the next checkpoint, LevelDB's
  /// indexes and filters and allocator overhead. Cold entries are evicted and read from LevelDB. Dirty
  /// entries (not yet checkpointed) stay, so a burst of writes between two
  /// checkpoints can exceed the budget. Not persisted.
  std::optional<std::size_t> memory_budget{};
  /// Every file operation of the journal goes through this
  /// (rollblock/storage/file_system.hpp); null: the POSIX file system.
  /// Tests pass a fault-injecting one.
  std::shared_ptr<storage::file_system> journal_file_system{};
  /// LevelDB's file operations; null: leveldb::Env::Default(). Must outlive
  /// the store. Tests pass a fault-injecting leveldb::EnvWrapper.
  leveldb::Env* leveldb_env = nullptr;
};

/// The smallest memory budget a store accepts.
constexpr std::size_t min_memory_budget = 64ull << 10;

/// The three heights of a store.
struct store_heights {
  /// The newest block applied in memory (visible to reads).
  block_id applied = 0;
  /// The newest block whose journal entry is fsynced.
  block_id durable = 0;
  /// The newest block checkpointed into LevelDB (the persisted height).
  block_id current = 0;

  friend bool operator==(const store_heights&, const store_heights&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, store_heights& x) {
  return f(caf::meta::type_name("rollblock.store_heights"), x.applied,
           x.durable, x.current);
}

} // namespace rollblock
