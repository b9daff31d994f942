#pragma once

#include "rollblock/messages/block_record.hpp"
#include "rollblock/messages/operation.hpp"
#include "rollblock/messages/types.hpp"
#include "rollblock/storage/compact_value.hpp"
#include "rollblock/storage/flat_key_map.hpp"
#include "rollblock/storage/worker_pair.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace rollblock::storage {

class state_store;

/// The live state in memory: key -> value at the applied height, readable
/// from any thread while one writer applies and reverts blocks.
///
/// Concurrency contract:
/// - Writer calls (load, plan, install, revert, stage_*) come from one thread
///   at a time (the mutation actor). For a large block (or revert) the writer
///   works on half of the shards and a second thread of its own (worker_pair)
///   on the other half: each table has one writing thread at a time.
/// - Reader calls (get, get_many, applied, ...) may come from any thread at
///   any time. They never wait for a whole block: the writer holds a shard
///   lock only for a short run of updates (updates_per_lock in
///   memory_state.cpp) of that shard's part of a block.
/// - get_many reads every key at one state. States are counted in sequence
///   numbers, not heights: each installed block takes the next number of a
///   64-bit counter that never goes back (a revert takes one too, for the
///   state it leaves), and 0 comes before every block. A reader reads at the
///   applied state's number, or at 0 while the state is fresh. Block 0 is a
///   real height, so the fresh state and the state after block 0 both have
///   applied() == 0; were a reader's number its height, a reader of the
///   fresh state would take the entries block 0 is installing for its own
///   and mix them with keys block 0 has not reached yet (a torn read; with a
///   budget, one cold read on a key is enough to let the whole block 0 land
///   in between). A fresh reader instead sees block 0's entries above it and
///   walks back their undo, and one that sees the state no longer fresh also
///   sees block 0's number (install sets it, then clears fresh).
/// - Each entry remembers the number of the block that wrote it (0: loaded,
///   reverted, or older than every undo kept: valid at every number a reader
///   can start at); a reader that meets an entry above its number follows the
///   undo of that block (kept for the newest `undo_depth` blocks) back to the
///   value at its number. A reader that falls further behind, or that
///   overlaps a revert, starts over.
/// - Without a budget a delete removes the entry at once (no tombstone). A
///   key a reader does not find, or whose undo says it was absent, may have
///   been deleted above the reader's number: the oldest kept block above
///   that number which changed the key holds its value there (read_before).
///   A block's undo is published before any of its entries change, so a
///   reader that sees an entry gone sees that undo too.
/// - An entry keeps its number in 2 bytes, as a stamp: the number minus a
///   base (0 when at or below the base). When the stamp of a new number
///   would reach `stamp_limit`, the base moves up to the applied state's
///   number (with a budget: to the checkpoint's, when lower, so that dirty
///   entries stay dirty) and every entry's stamp is rewritten: a rebase.
///   Readers start over, as for a revert, so every read after it is at the
///   base or above, where stamp 0 reads the same as the number it replaced.
///   With 2^16 - 1 stamps a rebase comes once in 65,535 numbers (one per
///   installed block or revert); it rewrites every entry with the readers
///   waiting (bench/RESULTS.md section 19: BM_rebase). A 4-byte stamp
///   would make every table slot 25 bytes instead of 23 (8% more table
///   memory); a pause every 65,535 blocks is the price.
///
/// With a memory budget (attach_state_of_record) only a working set is
/// resident and the state of record (LevelDB, at the checkpoint height)
/// answers for the rest:
/// - An entry is clean when its number is at or below both the checkpoint's
///   (LevelDB holds its value) and the newest expired undo's, the undo floor
///   (no reader can need an older value; an entry of block 0 is not clean
///   before block 0's undo expires, since a reader of the fresh state may
///   need the value before it). Only clean entries are evicted, by a clock
///   (second chance: a read sets the entry's referenced bit, the sweep
///   clears it once before evicting), when the resident bytes exceed the
///   budget after an install. Dirty entries stay until the checkpoint that
///   writes them.
/// - A delete leaves a tombstone (LevelDB may still hold the key), resident
///   until clean.
/// - A read that misses memory reads LevelDB, then looks at memory again: a
///   key that became resident meanwhile is read from memory (walking back
///   its undo if it was written above the reader's number: the entries of a
///   block being installed, block 0 of a fresh state included, are all above
///   it). A key evicted meanwhile was clean, so its number is at or below the
///   undo floor, which then lies above the reader's number: the reader
///   starts over.
/// - plan() reads the before values of a block's non-resident keys from
///   LevelDB, in one pass in key order.
/// - The live key count is kept from each change's before and after.
class memory_state {
public:
  /// How many recent blocks keep their undo in memory for readers.
  static constexpr std::size_t undo_depth = 16;

  /// The highest block height a store accepts: the height after a block
  /// (height + 1: the next block, a checkpoint's first replayed block) must
  /// not wrap around to 0.
  static constexpr block_id max_height = ~block_id{0} - 1;

  /// How often a reader retries without locks before it takes them all.
  static constexpr std::size_t default_optimistic_attempts = 64;

  /// An entry's stamp: its number counted from a base (see the class
  /// comment).
  using stamp_type = std::uint16_t;

  /// The most stamps an entry's 2 bytes hold.
  static constexpr stamp_type default_stamp_limit = 0xffff;

  /// With a budget, a rebase cannot pass the checkpoint's number, so a
  /// checkpoint must never fall default_stamp_limit numbers behind (every
  /// installed block and every revert takes one): the store's backpressure
  /// lets at most this many blocks wait for a checkpoint (held or in
  /// flight), a quarter of the numbers, and refuses a checkpoint lag above
  /// half of it (store_options::checkpoint_lag_blocks).
  static constexpr std::size_t max_uncheckpointed_blocks =
    default_stamp_limit / 4;

  /// REQUIRES: min_key_width <= key_width <= max_key_width;
  /// stamp_limit >= 2.
  /// `optimistic_attempts` 0 makes every read take all shard locks, and a
  /// small `stamp_limit` makes rebases frequent (tests).
  explicit memory_state(
    std::size_t key_width, std::size_t shard_count = 64,
    std::size_t optimistic_attempts = default_optimistic_attempts,
    stamp_type stamp_limit = default_stamp_limit);
  ~memory_state();
  memory_state(const memory_state&) = delete;
  memory_state& operator=(const memory_state&) = delete;

  std::size_t key_width() const {
    return key_width_;
  }

  // -- writer ----------------------------------------------------------------

  /// Inserts a key as loaded from the state of record.
  /// REQUIRES: no block installed yet; k has the key width; v is non-empty.
  void load(const key& k, const value& v);

  /// Inserts keys as load() does each, in order (a later duplicate wins),
  /// starting to load the table slots of the keys ahead of the one it
  /// inserts. REQUIRES: as load(), for every key.
  void load_many(const std::vector<std::pair<key, value>>& batch);

  /// Applies a journaled block the way load() loads keys: no undo for
  /// readers, no tombstones, entries as loaded. Recovery replays with it.
  /// REQUIRES: no reader yet and no budget; blocks in height order.
  void replay(const block_record& record);

  /// Sets the applied height after loading (and the fresh flag: a fresh store
  /// accepts any first height, including genesis 0).
  void set_applied(block_id height, bool fresh);

  /// Sets the live key count of a state that was not loaded (budgeted
  /// recovery). REQUIRES: no block installed yet.
  void set_live_keys(std::size_t count);

  /// Serves keys that are not resident from `store` and keeps the resident
  /// entries within about `entry_budget_bytes`. REQUIRES: nothing loaded
  /// and no block installed yet; `store` holds the state at the applied
  /// height and outlives this object or a later detach_state_of_record();
  /// entry_budget_bytes > 0.
  void attach_state_of_record(const state_store& store,
                              std::size_t entry_budget_bytes);

  /// Stops reading the state of record (before it closes). Reads that
  /// miss memory fail with ec::store_closed from now on.
  void detach_state_of_record();

  /// Records that the state of record now holds the state at `height`
  /// (a checkpoint or revert was written). May be called from any thread.
  void set_checkpointed(block_id height);

  /// Makes every key changed by `newest_first` (the blocks above a revert
  /// target, newest first) resident with its current value, so that readers
  /// keep reading memory while the state of record is rewritten to the
  /// target. Does nothing without a budget.
  /// REQUIRES: no other writer call runs concurrently.
  void make_resident(const block_record_list& newest_first);

  /// Checks that `height` may be applied next and every operation is valid,
  /// and returns the block's record (coalesced changes with their undo)
  /// without changing anything. Errors: ec::block_id_not_increasing,
  /// ec::key_width_mismatch, ec::value_too_large (naming the operation), and
  /// the state of record's read errors for non-resident keys.
  caf::expected<block_record_ptr> plan(block_id height,
                                       const operation_list& ops) const;

  /// Makes a planned block visible and sets the applied height to its height,
  /// then evicts clean entries while over the budget.
  /// REQUIRES: `record` came from plan() with no install or revert since.
  /// With a budget, also: the checkpoint is less than stamp_limit numbers
  /// behind (the store's backpressure keeps it at most
  /// max_uncheckpointed_blocks behind); otherwise std::length_error, with
  /// nothing changed.
  void install(block_record_ptr record);

  /// plan() and install() in one pass over the keys (the lookups plan makes
  /// serve install); returns the installed block's record. Errors as plan(),
  /// with nothing changed.
  caf::expected<block_record_ptr> apply(block_id height,
                                        const operation_list& ops);

  /// Undoes `newest_first` (records of blocks above `target`, newest first)
  /// and sets the applied height to `target`. Readers wait for the duration.
  /// REQUIRES: the records are exactly the installed blocks above target.
  /// With a budget, also: the state of record holds the state at `target`
  /// (written after make_resident), or no block is installed afterwards
  /// (a fatal store), since the reverted entries count as clean; and the
  /// checkpoint is less than stamp_limit numbers behind, as for install().
  /// Large reverts (at least parallel_revert_changes changes) run on two
  /// threads, each on half of the shards: readers wait anyway.
  void revert(const block_record_list& newest_first, block_id target);

  static constexpr std::size_t parallel_revert_changes = 65536;

  /// Blocks of at least this many operations (or changes) are looked up,
  /// recorded (plan_block: each half's changes and undo index, the record
  /// half 0's changes, then half 1's) and installed on two threads, each in
  /// half of the shards (worker_pair):
  /// the lookups wait for memory, and a block of the published workload
  /// (19,000 operations) takes milliseconds, where handing half of it to the
  /// parked thread takes microseconds.
  static constexpr std::size_t parallel_block_changes = 4096;

  /// Starts showing staged writes to readers (overlay over the state).
  void stage_begin();
  /// Shows one staged write (empty value = staged delete).
  void stage_set(const key& k, const value& v);
  /// Stops showing staged writes.
  void stage_end();

  // -- readers (any thread) --------------------------------------------------

  /// Returns the value of `k` (staged writes included), empty when absent.
  /// Errors only with a budget: the state of record's read errors, or
  /// ec::store_closed once detached.
  /// REQUIRES: k has the key width (the caller validates).
  caf::expected<value> get(const key& k) const;

  /// Returns the values of `keys` in order, all read at one height. Errors
  /// as get().
  /// REQUIRES: every key has the key width.
  caf::expected<std::vector<value>> get_many(const std::vector<key>& keys) const;

  /// Returns the value of `k` in the state right after block `height`, one
  /// of the blocks whose undo is kept (at most the undo_depth newest; a
  /// revert drops those of the blocks it undoes), as a reader that started
  /// then reads it now (staged writes not included). Errors:
  /// ec::rollback_beyond_history when no kept undo is block `height`'s;
  /// with a budget, as get().
  /// REQUIRES: k has the key width.
  caf::expected<value> get_after(const key& k, block_id height) const;

  /// Returns the applied height.
  block_id applied() const;

  /// Returns whether no block was ever applied (genesis still allowed).
  bool fresh() const {
    return fresh_.load(std::memory_order_acquire);
  }

  /// Returns the number of live keys.
  std::size_t size() const {
    return live_.load(std::memory_order_relaxed);
  }

  /// Returns the bytes the resident entries take (estimated: table slots at
  /// the tables' typical fill, and the heap blocks of long values).
  std::size_t resident_bytes() const;

  /// Returns the number of resident entries (tombstones included).
  std::size_t resident_entries() const;

  /// Returns the bytes the tables of resident entries take: every slot, used
  /// or not, with its key, entry and tag. Values longer than
  /// compact_value::inline_capacity take heap blocks besides.
  std::size_t table_bytes() const;

  /// Returns a copy of all live keys and values in bytewise order (for tests
  /// and dumps), with a budget merged from the state of record.
  /// REQUIRES with a budget: no writer call runs concurrently.
  caf::expected<std::vector<std::pair<key, value>>> snapshot() const;

private:
  /// A state's sequence number (see the class comment).
  using block_seq = std::uint64_t;

  /// 14 bytes: with an 8-byte key a table slot is 22 (23 with its tag).
  /// The clock's second chance is the table's mark bit of the entry
  /// (flat_key_map::mark): set by reads, which share the shard lock,
  /// cleared by the eviction sweep.
  struct entry {
    /// Empty (with a budget only): a tombstone, kept until clean.
    compact_value v;
    /// The number of the block that wrote it minus stamp_base_; 0: at or
    /// below the base, loaded or reverted (see the class comment).
    stamp_type stamp = 0;
  };
  static_assert(sizeof(entry) == 14);

  struct shard {
    explicit shard(std::size_t key_width) : map(key_width) {
    }
    mutable std::shared_mutex mu;
    flat_key_map<entry> map;
    /// The eviction clock's hand: the next slot to sweep.
    std::size_t hand = 0;
    /// The entry_bytes of its entries (per shard, so that threads working
    /// on different shards do not share the counter's cache line). Atomic
    /// for readers (resident_bytes()); changed by add_resident_bytes only.
    std::atomic<std::size_t> resident_bytes{0};
  };

  /// The undo of one installed block, as readers need it.
  struct block_undo {
    explicit block_undo(std::size_t key_width)
      : index{flat_key_map<std::uint32_t>{key_width},
              flat_key_map<std::uint32_t>{key_width}} {
    }
    block_record_ptr record;
    /// Its block's number.
    block_seq seq = 0;
    /// Per change: the number of the entry it replaced, or absent_before
    /// (before_seq_of).
    std::vector<block_seq> before_seqs;
    /// Key -> its change in `record` (change_of): every key in index[0];
    /// or, for a block planned in halves, the keys of even shards in
    /// index[0] and of odd ones in index[1], numbered from
    /// second_half_base.
    std::array<flat_key_map<std::uint32_t>, 2> index;
    std::uint32_t second_half_base = 0;
    /// Per change: the key_hash of its key (install and expiry reuse it).
    std::vector<std::uint64_t> hashes;
  };
  using block_undo_ptr = std::shared_ptr<const block_undo>;

  /// A block ready for install_planned(): its undo and each change's
  /// key_hash.
  struct planned_block {
    std::shared_ptr<block_undo> undo;
  };

  /// Checks a block and builds its record, undo index and hashes (plan()).
  caf::expected<planned_block> plan_block(block_id height,
                                          const operation_list& ops) const;

  /// Returns the index in undo.record of the change of `k`, if the block
  /// changed it. REQUIRES: hash == key_hash(k).
  std::optional<std::uint32_t> change_of(const block_undo& undo,
                                         std::string_view k,
                                         std::uint64_t hash) const;

  /// Builds the undo index and hashes of a record built elsewhere (a
  /// journal entry, or plan()'s result).
  planned_block prepare(block_record_ptr record) const;

  /// Installs a block (install()).
  void install_planned(planned_block block);

  /// Makes one change of a block being installed, stamped `stamp`, in `s`,
  /// whose lock the caller holds exclusively; returns the change in live
  /// keys. REQUIRES: hash == key_hash(change.k).
  std::ptrdiff_t install_change(shard& s, key_change_view change,
                                std::uint64_t hash, stamp_type stamp);

  /// Returns whether installing `change` erases its key: a delete without a
  /// budget leaves no tombstone (install_change; the install's prefetch).
  bool install_erases(key_change_view change) const noexcept {
    return change.after.empty() && entry_budget_ == 0;
  }

  /// Returns the number a reader starting now reads at: 0 while fresh
  /// (before every block, block 0 included), else the applied state's.
  block_seq read_seq() const {
    // fresh_ first: install stores applied_seq_ before clearing fresh_, so
    // a reader that sees it cleared sees block 0's number at least.
    if (fresh_.load(std::memory_order_acquire))
      return 0;
    return applied_seq_.load(std::memory_order_acquire);
  }

  /// Returns the number of the block that wrote `e`.
  /// REQUIRES: the caller holds e's shard lock or is the writer.
  block_seq seq_of(const entry& e) const {
    return e.stamp == 0 ? 0
                        : stamp_base_.load(std::memory_order_relaxed) + e.stamp;
  }

  /// A before number: the key was not resident and had no tombstone, so
  /// (without a budget) a kept block may have deleted it (read_before).
  static constexpr block_seq absent_before = ~block_seq{0};

  /// A `below` of read_before: the current state.
  static constexpr block_seq no_bound = ~block_seq{0};

  /// Returns the before number of a change whose key plan found at `found`
  /// (nullptr: not resident). With a budget a key that is not resident
  /// was not written since the undo floor (tombstones stay until clean): 0.
  block_seq before_seq_of(const entry* found) const {
    if (found)
      return seq_of(*found);
    return entry_budget_ > 0 ? 0 : absent_before;
  }

  /// Returns the stamp of number `seq`. REQUIRES: the writer; seq is below
  /// stamp_base_ + stamp_limit_.
  stamp_type stamp_of(block_seq seq) const {
    auto base = stamp_base_.load(std::memory_order_relaxed);
    return seq <= base ? 0 : static_cast<stamp_type>(seq - base);
  }

  /// Makes state `seq`, at `height`, the applied one (readers start at it).
  /// Writer only.
  void publish_applied(block_seq seq, block_id height);

  /// Hands out the next number, rebasing the stamps first when it would
  /// reach the limit. Writer only; takes every shard lock for a rebase.
  block_seq next_seq();

  /// Moves stamp_base_ up to the applied state's number (with a budget: at
  /// most to the checkpoint's), rewriting every entry's stamp. Writer only.
  void rebase();

  /// Returns the number of the newest installed block at or below `height`
  /// (0: none since the state was loaded). With a budget only.
  block_seq seq_at_or_below(block_id height) const;

  /// Forgets the numbers of blocks both checkpointed and below the undo
  /// floor. REQUIRES: seqs_mu_ held.
  void trim_seqs();

  /// Returns the shard of a key from its key_hash (bits the tables ignore).
  std::size_t shard_of_hash(std::uint64_t hash) const {
    // A mask for a power-of-two count (the default): every lookup, prefetch
    // and part filter picks a shard, and a division takes tens of cycles.
    return shard_mask_ ? (hash >> 40) & *shard_mask_
                       : (hash >> 40) % shards_.size();
  }

  /// Runs job(part, parts): for parts 0 and 1 of 2 at once, on the writer's
  /// thread and its second (halves_), when `split`; else job(0, 1).
  template <class Job>
  void run_in_parts(bool split, Job job) const;

  /// Calls f(i), in order, for every key i (hashes[i]: its key_hash) whose
  /// shard is in `part` of `parts` (shard index % parts == part),
  /// prefetching the part's slots a few keys ahead (prefetch_ahead) for
  /// what f does with key i (use_of(i)).
  /// REQUIRES: parts is 1 or 2 (so is every `parts` below).
  template <class UseOf, class F>
  void for_each_of_part(const std::vector<std::uint64_t>& hashes,
                        std::size_t part, std::size_t parts, UseOf use_of,
                        F f) const;

  /// Calls update(shard, i) for every change i of a block (hashes[i]: its
  /// key's hash) in a shard of `part` of `parts` that wanted(i) selects,
  /// shard by shard, each shard's lock held exclusively once, prefetching
  /// slots a few keys ahead for what update does with change i
  /// (use_of(i)). Calls for different parts may run at once.
  template <class UseOf, class Wanted, class Update>
  void update_by_shard(const std::vector<std::uint64_t>& hashes,
                       std::size_t part, std::size_t parts, UseOf use_of,
                       Wanted wanted, Update update);

  /// Prefetches for the m-th of `count` keys a loop visits in turn (the
  /// j-th is key index_at(j), whose key_hash is hashes[index_at(j)]), for
  /// what the loop does with key i (use_of(i): lookup, insert or erase):
  /// the tags of the key two prefetch distances ahead, the slot of the key
  /// one distance ahead (flat_key_map::prefetch_tags, prefetch_slot).
  /// REQUIRES: the caller is the writer (the only thread that changes the
  /// tables) or holds the shard locks of those keys.
  template <class IndexAt, class UseOf>
  void prefetch_ahead(std::size_t m, std::size_t count,
                      const std::vector<std::uint64_t>& hashes,
                      IndexAt index_at, UseOf use_of) const noexcept;

  /// Reads one key at number `at` into `out`; returns false when the reader
  /// must start over (the needed undo is gone). Takes the key's shard lock
  /// unless the caller holds every shard lock (`locked`). A failed read of
  /// the state of record returns true with `err` set.
  /// REQUIRES: hash == key_hash(k).
  bool read_at(std::string_view k, std::uint64_t hash, block_seq at,
               value& out, caf::error& err, bool locked = false) const;

  /// Reads at number `at` a key that is absent just below number `below`
  /// (no_bound: in the current state), without a budget: the before value
  /// of the oldest kept block numbered in (at, below) that changed the key,
  /// else absent. Returns false when such a block may have expired (the
  /// reader starts over). REQUIRES: hash == key_hash(k).
  bool read_before(std::string_view k, std::uint64_t hash, block_seq at,
                   block_seq below, value& out) const;

  /// Gives an entry a read's second chance against eviction (with a
  /// budget). REQUIRES: the caller holds the entry's shard lock (shared is
  /// enough: readers set the bit atomically).
  void mark_referenced(const shard& s, const entry& e) const;

  /// Reads a non-resident key from the state of record (empty when absent).
  caf::expected<value> read_state_of_record(std::string_view k) const;

  /// The same for many keys, in one pass (state_store::get_many).
  caf::expected<std::vector<value>>
  read_state_of_record(const std::vector<std::string_view>& keys) const;

  /// The estimated bytes of an entry with this value: its table slot 2
  /// times (3 with a budget) and the heap block of a long value.
  std::size_t entry_bytes(const compact_value& v) const;

  /// Sets a key's value as loaded (stamp 0) in `s`, whose lock the caller
  /// holds exclusively, as load(), replay() and load_many() do; returns
  /// whether the key is new (the caller counts it live). REQUIRES: hash ==
  /// key_hash(k); v is non-empty.
  bool load_entry(shard& s, std::string_view k, std::uint64_t hash,
                  std::string_view v);

  /// Adds an entry to a shard whose lock the caller holds exclusively.
  /// REQUIRES: k is not in the shard; hash == key_hash(k).
  void emplace_entry(shard& s, std::string_view k, std::uint64_t hash,
                     std::string_view v, stamp_type stamp);

  /// Sets an entry try_emplace has just added (and counts its bytes).
  void set_new_entry(shard& s, entry& e, std::string_view v,
                     stamp_type stamp);

  /// Replaces the value of an entry of `s` under its exclusive lock.
  void assign_entry(shard& s, entry& e, std::string_view v,
                    stamp_type stamp);

  /// Removes the entry of `s` that `found` points to (as find returned it),
  /// under the exclusive shard lock.
  void erase_entry(shard& s, entry* found);

  /// Adds `delta` to s.resident_bytes with a plain load and store: a locked
  /// add per entry would wait for the stores of the entries before it.
  /// REQUIRES: the caller is the shard's only writer (it holds the
  /// exclusive lock, or is the half of a revert that owns the shard).
  static void add_resident_bytes(shard& s, std::ptrdiff_t delta) noexcept;

  /// Undoes the changes of `newest_first` whose keys live in the shards
  /// `part`, `part + parts`, `part + 2 * parts`, ...; returns the change in
  /// live keys. REQUIRES: the caller holds every shard lock exclusively.
  std::ptrdiff_t revert_shards(const block_record_list& newest_first,
                               std::size_t part, std::size_t parts);

  /// Returns whether reverting `change` erases its key: absent before the
  /// block, and no budget (with one a tombstone stays).
  bool revert_erases(key_change_view change) const noexcept {
    return change.before.empty() && entry_budget_ == 0;
  }

  /// Evicts clean entries (clock sweep) while the resident bytes exceed the
  /// budget. Writer only.
  void evict_over_budget();

  /// Sweeps up to `max_slots` slots of shard `s` from its hand, evicting
  /// clean entries at or below number `ceiling` until `goal` bytes are
  /// freed. Returns the bytes freed.
  std::size_t sweep(shard& s, block_seq ceiling, std::size_t goal,
                    std::size_t max_slots);

  /// Runs `read(number, locked)` until it succeeds at one number with no
  /// revert or rebase overlapping it; `read` returns false when it must start
  /// over.
  /// After optimistic_attempts_ failures (a reader starved by a fast
  /// writer) it reads once more holding every shard lock, which no writer
  /// can overlap.
  template <class Read>
  void read_consistent(Read read) const;

  /// Returns the undo of the block numbered `seq` if still kept.
  block_undo_ptr find_undo(block_seq seq) const;

  /// Purges the tombstones (budget only) that only `oldest`, the undo just
  /// dropped, explained.
  void expire_undo(const block_undo_ptr& oldest);

  std::size_t key_width_;
  std::size_t optimistic_attempts_;
  std::vector<std::unique_ptr<shard>> shards_;
  /// shards_.size() - 1 when the count is a power of two (shard_of_hash).
  std::optional<std::size_t> shard_mask_;
  /// The bytes of one table slot (entry_bytes).
  std::size_t slot_bytes_ = 0;
  /// The writer's second thread (parallel_block_changes); const writer
  /// calls (plan) use it too.
  mutable worker_pair halves_;
  /// The applied state's number (read_seq()). Its height is
  /// heights_[applied_seq_ % heights_.size()]: one atomic publishes both,
  /// so that a read never sees a state newer or older than the applied()
  /// calls around it.
  std::atomic<block_seq> applied_seq_{0};
  std::array<std::atomic<block_id>, 64> heights_{};
  std::atomic<bool> fresh_{true};
  std::atomic<std::size_t> live_{0};
  /// Odd while a revert or rebase runs; readers that overlap one start over.
  std::atomic<std::uint64_t> epoch_{0};
  /// The undo floor: readers that started below this number start over.
  std::atomic<block_seq> floor_{0};
  /// The last number handed out (writer only).
  block_seq last_seq_ = 0;
  /// Entries' stamps count from here; changed by a rebase only, under every
  /// shard lock.
  std::atomic<block_seq> stamp_base_{0};
  stamp_type stamp_limit_;

  mutable std::shared_mutex undo_mu_;
  std::vector<block_undo_ptr> undo_; // newest last, at most undo_depth
  /// The number of the newest undo ever published (set under undo_mu_,
  /// before the block's entries change): a reader at or above it needs no
  /// undo for a key it does not find.
  std::atomic<block_seq> newest_undo_seq_{0};

  /// The budget for resident entries; 0: unlimited (everything resident).
  std::size_t entry_budget_ = 0;
  /// Guards state_of_record_ against detaching while a read uses it.
  mutable std::shared_mutex state_of_record_mu_;
  const state_store* state_of_record_ = nullptr;
  /// One above the number of the newest block the state of record holds;
  /// 0 before the first checkpoint (block 0 is a real height).
  std::atomic<block_seq> checkpoint_end_{0};
  /// With a budget: (height, number) of the installed blocks that are not
  /// both checkpointed and below the undo floor, oldest first
  /// (set_checkpointed and make_resident look up heights).
  mutable std::mutex seqs_mu_;
  std::deque<std::pair<block_id, block_seq>> seqs_;
  /// The next shard the eviction clock visits.
  std::size_t hand_shard_ = 0;
  /// The clean ceiling of the last sweep that could not get under the
  /// budget: no new sweep until more entries can be clean.
  std::optional<block_seq> stalled_ceiling_;

  std::atomic<bool> staging_{false};
  mutable std::mutex stage_mu_;
  std::unordered_map<key, value> staged_;
};

} // namespace rollblock::storage
