#pragma once

#include "rollblock/messages/block_record.hpp"
#include "rollblock/messages/operation.hpp"
#include "rollblock/messages/types.hpp"
#include "rollblock/storage/compact_value.hpp"
#include "rollblock/storage/flat_key_map.hpp"

#include <caf/expected.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace rollblock::storage {

/// The live state in memory: key -> value at the applied height, readable
/// from any thread while one writer applies and reverts blocks.
///
/// Concurrency contract:
/// - Writer calls (load, plan, install, revert, stage_*) come from one thread
///   at a time (the mutation actor).
/// - Reader calls (get, get_many, applied, ...) may come from any thread at
///   any time. They never wait for a whole block: the writer holds a shard
///   lock only while it updates that shard's part of a block.
/// - get_many reads every key at one height. Each entry remembers the height
///   that wrote it; a reader that meets an entry newer than the height it
///   started at follows the undo of that block (kept for the newest
///   `undo_depth` blocks) back to the value at its height. A reader that falls
///   further behind, or that overlaps a revert, starts over.
class memory_state {
public:
  /// How many recent blocks keep their undo in memory for readers.
  static constexpr std::size_t undo_depth = 16;

  /// How often a reader retries without locks before it takes them all.
  static constexpr std::size_t default_optimistic_attempts = 64;

  /// REQUIRES: min_key_width <= key_width <= max_key_width.
  /// `optimistic_attempts` 0 makes every read take all shard locks (tests).
  explicit memory_state(
    std::size_t key_width, std::size_t shard_count = 64,
    std::size_t optimistic_attempts = default_optimistic_attempts);
  ~memory_state();
  memory_state(const memory_state&) = delete;
  memory_state& operator=(const memory_state&) = delete;

  std::size_t key_width() const {
    return key_width_;
  }

  // -- writer ----------------------------------------------------------------

  /// Inserts a key as loaded from the state of record.
  /// REQUIRES: no block installed yet; k has the key width; v is non-empty.
  void load(const key& k, value v);

  /// Sets the applied height after loading (and the fresh flag: a fresh store
  /// accepts any first height, including genesis 0).
  void set_applied(block_id height, bool fresh);

  /// Checks that `height` may be applied next and every operation is valid,
  /// and returns the block's record (coalesced changes with their undo)
  /// without changing anything. Errors: ec::block_id_not_increasing,
  /// ec::key_width_mismatch, ec::value_too_large (naming the operation).
  caf::expected<block_record_ptr> plan(block_id height,
                                       const operation_list& ops) const;

  /// Makes a planned block visible and sets the applied height to its height.
  /// REQUIRES: `record` came from plan() with no install or revert since.
  void install(block_record_ptr record);

  /// Undoes `newest_first` (records of blocks above `target`, newest first)
  /// and sets the applied height to `target`. Readers wait for the duration.
  /// REQUIRES: the records are exactly the installed blocks above target.
  void revert(const block_record_list& newest_first, block_id target);

  /// Starts showing staged writes to readers (overlay over the state).
  void stage_begin();
  /// Shows one staged write (empty value = staged delete).
  void stage_set(const key& k, const value& v);
  /// Stops showing staged writes.
  void stage_end();

  // -- readers (any thread) --------------------------------------------------

  /// Returns the value of `k` (staged writes included), empty when absent.
  /// REQUIRES: k has the key width (the caller validates).
  value get(const key& k) const;

  /// Returns the values of `keys` in order, all read at one height.
  /// REQUIRES: every key has the key width.
  std::vector<value> get_many(const std::vector<key>& keys) const;

  /// Returns the applied height.
  block_id applied() const {
    return applied_.load(std::memory_order_acquire);
  }

  /// Returns whether no block was ever applied (genesis still allowed).
  bool fresh() const {
    return fresh_.load(std::memory_order_acquire);
  }

  /// Returns the number of live keys.
  std::size_t size() const {
    return live_.load(std::memory_order_relaxed);
  }

  /// Returns a copy of all live keys and values (for tests and dumps).
  std::vector<std::pair<key, value>> snapshot() const;

private:
  /// 24 bytes (plus the key inline in the table and one tag byte).
  struct entry {
    compact_value v;     // empty: a tombstone, purged once its undo expires
    block_id height = 0; // the block that wrote it (0: loaded or reverted)
  };

  struct shard {
    explicit shard(std::size_t key_width) : map(key_width) {
    }
    mutable std::shared_mutex mu;
    flat_key_map<entry> map;
  };

  /// The undo of one installed block, as readers need it.
  struct block_undo {
    explicit block_undo(std::size_t key_width) : index(key_width) {
    }
    block_record_ptr record;
    /// Per change: the height of the entry it replaced (0 when absent).
    std::vector<block_id> before_heights;
    /// Key -> its change in `record`.
    flat_key_map<std::uint32_t> index;
  };
  using block_undo_ptr = std::shared_ptr<const block_undo>;

  /// Returns the shard of a key from its key_hash (bits the tables ignore).
  std::size_t shard_of_hash(std::uint64_t hash) const {
    return (hash >> 40) % shards_.size();
  }

  /// Reads one key at height `at` into `out`; returns false when the reader
  /// must start over (the needed undo is gone). Takes the key's shard lock
  /// unless the caller holds every shard lock (`locked`).
  /// REQUIRES: hash == key_hash(k).
  bool read_at(std::string_view k, std::uint64_t hash, block_id at,
               value& out, bool locked = false) const;

  /// Runs `read(height, locked)` until it succeeds at one height with no
  /// revert overlapping it; `read` returns false when it must start over.
  /// After optimistic_attempts_ failures (a reader starved by a fast
  /// writer) it reads once more holding every shard lock, which no writer
  /// can overlap.
  template <class Read>
  void read_consistent(Read read) const;

  /// Returns the undo of block `height` if still kept.
  block_undo_ptr find_undo(block_id height) const;

  /// Drops the oldest kept undo and the tombstones only it explained.
  void expire_undo(const block_undo_ptr& oldest);

  std::size_t key_width_;
  std::size_t optimistic_attempts_;
  std::vector<std::unique_ptr<shard>> shards_;
  std::atomic<block_id> applied_{0};
  std::atomic<bool> fresh_{true};
  std::atomic<std::size_t> live_{0};
  /// Odd while a revert runs; readers that overlap a change start over.
  std::atomic<std::uint64_t> epoch_{0};
  /// Readers that started below this height start over.
  std::atomic<block_id> floor_{0};

  mutable std::shared_mutex undo_mu_;
  std::vector<block_undo_ptr> undo_; // newest last, at most undo_depth

  std::atomic<bool> staging_{false};
  mutable std::mutex stage_mu_;
  std::unordered_map<key, value> staged_;
};

} // namespace rollblock::storage
