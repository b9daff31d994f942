#pragma once

#include "rollblock/messages/block_record.hpp"
#include "rollblock/messages/durability.hpp"
#include "rollblock/messages/types.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace leveldb {
class Comparator;
class Env;
} // namespace leveldb

namespace rollblock::storage {

/// The format version of the state store's records (and of the data
/// directory as a whole). Bumped on any incompatible change. Version 3
/// keeps the state in pages of up to 64 keys (state_page.hpp); version 2
/// kept a record per key; version 1 kept them bytewise, not in key order.
constexpr std::uint32_t format_version = 3;

/// The order of the state database's LevelDB keys: what a tool or test that
/// opens that database directly must pass as leveldb::Options::comparator.
const leveldb::Comparator& state_key_comparator() noexcept;

/// The metadata a data directory persists in LevelDB.
struct store_metadata {
  std::uint32_t format_version = storage::format_version;
  std::size_t key_width = default_key_width;
  /// Keys per state page (state_page.hpp): a power of two from 1 to 64.
  std::size_t page_keys = 64;
  durability_mode durability = durability_mode::synchronous();
  std::uint64_t min_rollback_window = 100;
  /// The height whose state LevelDB holds; nullopt on a fresh store.
  std::optional<block_id> checkpoint;
  /// The newest height pruned from the journal; reverts below it are refused.
  std::optional<block_id> pruned_through;
  /// Set while a revert to this height is being applied to the journal: at
  /// open, journal entries above it are removed, then the marker is cleared.
  std::optional<block_id> revert_marker;
  /// Set when the checkpoint was written by a revert to this height (which
  /// need not be a journaled block); cleared by the next checkpoint. Without
  /// it the checkpoint height is a block the journal must hold.
  std::optional<block_id> reverted_to;

  friend bool operator==(const store_metadata&,
                         const store_metadata&) = default;
};

/// One state change of a checkpoint: `k` gets `v` (empty: deleted).
struct checkpoint_write {
  std::string_view k;
  std::string_view v;

  friend bool operator==(const checkpoint_write&,
                         const checkpoint_write&) = default;
};

/// One atomic write: coalesced state changes and the checkpoint height,
/// optionally setting the revert marker. The writes view bytes the batch
/// keeps alive: the block records they came from (checkpoint_builder), or
/// copies put() made. Move-only, since copies would view the original.
struct checkpoint_batch {
  block_id height = 0;
  std::vector<checkpoint_write> writes;
  std::optional<block_id> revert_marker;
  /// The records `writes` may view.
  block_record_list records;

  checkpoint_batch() = default;
  checkpoint_batch(checkpoint_batch&&) = default;
  checkpoint_batch& operator=(checkpoint_batch&&) = default;
  checkpoint_batch(const checkpoint_batch&) = delete;
  checkpoint_batch& operator=(const checkpoint_batch&) = delete;

  /// Appends a write of copies of `k` and `v`.
  void put(std::string_view k, std::string_view v) {
    auto& copy = owned.emplace_back(k);
    copy.append(v);
    auto bytes = std::string_view{copy};
    writes.push_back({bytes.substr(0, k.size()), bytes.substr(k.size())});
  }

private:
  /// The bytes put() copied (a deque: its strings never move).
  std::deque<std::string> owned;
};

/// The LevelDB state of record: key -> value at the checkpoint height, plus
/// the metadata. Not thread-safe for writes (one owner: the persistence
/// actor); get() may be called from any thread.
class state_store {
public:
  struct options {
    std::filesystem::path dir;
    std::size_t cache_bytes = 64ull << 20;
    std::size_t write_buffer_bytes = 16ull << 20;
    /// Whether LevelDB maps table files into memory (its default, up to
    /// 1000 files). Mapped pages that reads and compactions touch count as
    /// the process's resident memory, so a memory budget reads them with
    /// pread instead (through the page cache, not counted).
    bool map_table_files = true;
    /// Opens an existing database for inspection (ec::state_corrupt when
    /// there is none): nothing is created, LevelDB
    /// runs with paranoid checks and writes no LOG file, and every write
    /// returns ec::invalid_argument.
    bool read_only = false;
    /// LevelDB's file operations; null means leveldb::Env::Default(). Tests
    /// pass a fault-injecting one. Must outlive the state_store.
    leveldb::Env* env = nullptr;
    /// Keys per page (state_page.hpp) while the database holds no
    /// "m/page_keys" record (write_config writes it); a stored size wins.
    std::size_t page_keys = 64;
  };

  /// Opens (or creates) the LevelDB database in `opts.dir`, with paranoid
  /// checks (a damaged log record or table fails the open instead of being
  /// skipped). Returns ec::io_error or ec::state_corrupt with LevelDB's
  /// message (naming the damaged file where LevelDB knows it) on failure.
  static caf::expected<std::unique_ptr<state_store>>
  open(const options& opts);

  ~state_store();
  state_store(const state_store&) = delete;
  state_store& operator=(const state_store&) = delete;

  /// Reads the metadata; nullopt when the database holds none (a new store).
  /// Returns ec::format_version_mismatch naming both versions for a store
  /// written by another format, ec::state_corrupt for unreadable records.
  caf::expected<std::optional<store_metadata>> read_metadata() const;

  /// Writes the configuration part of `meta` (format version, key width,
  /// page keys, durability, rollback window) with sync, and from then on
  /// pages hold meta.page_keys keys; ec::invalid_argument when that is not a
  /// page size (valid_page_keys).
  /// REQUIRES: the store holds no page of another size.
  caf::error write_config(const store_metadata& meta);

  /// Applies `batch` in ONE LevelDB WriteBatch with sync: the state writes,
  /// the checkpoint height and, when set, the revert marker and reverted_to
  /// (else reverted_to is cleared).
  /// REQUIRES: every key has the store's width.
  caf::error write_checkpoint(const checkpoint_batch& batch);

  /// The same, and releases the batch's writes once LevelDB's WriteBatch
  /// holds them, before LevelDB's write (the records they view stay).
  caf::error write_checkpoint(checkpoint_batch&& batch);

  /// Records the newest pruned height (sync).
  caf::error write_pruned_through(block_id height);

  /// Clears the revert marker (sync).
  caf::error clear_revert_marker();

  /// Reads one key at the checkpoint (from its page); an empty value when
  /// absent. A key whose page was never written is refused by the bloom
  /// filter without a disk read. Returns ec::state_corrupt naming the page
  /// when it is malformed. Thread-safe.
  caf::expected<value> get(std::string_view k) const;

  /// Reads `keys` at the checkpoint in one pass in key order (one seek per
  /// run of keys that no stored page separates: the new keys of a block of
  /// counted-up keys cost one seek); returns their values in the order of
  /// `keys` (empty: absent). Errors as get(). Thread-safe.
  caf::expected<std::vector<value>>
  get_many(const std::vector<std::string_view>& keys) const;

  /// Calls `f` for every stored key/value pair in key order. Stops with the
  /// error LevelDB reports, or ec::state_corrupt naming a malformed page.
  caf::error for_each(const std::function<void(const key&, const value&)>& f) const;

  /// Calls `f` with every record as stored (metadata, and state pages as
  /// "s" + page key and the encoded page), in key order, with checksums
  /// verified. For inspection tools.
  caf::error for_each_record(
    const std::function<void(std::string_view, std::string_view)>& f) const;

  /// Returns LevelDB's approximate on-disk size in bytes.
  std::uint64_t size_bytes() const;

private:
  struct impl;
  explicit state_store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace rollblock::storage
