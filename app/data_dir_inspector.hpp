#pragma once

// Offline inspection of a stopped data directory, for the `rollblock` admin
// tool: verify, info and dump. Nothing here changes the journal; LevelDB is
// opened without creating anything (LevelDB has no read-only mode: opening it
// may fold its write-ahead log into a table, which keeps its contents).

#include "rollblock/messages/block_record.hpp"
#include "rollblock/messages/types.hpp"
#include "rollblock/storage/data_dir_lock.hpp"
#include "rollblock/storage/journal.hpp"
#include "rollblock/storage/state_store.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace rollblock::admin {

/// Shows how far a long run got: on a terminal, a line on stderr redrawn a
/// few times a second (after the first second); otherwise an spdlog info
/// line every few seconds. Silent for short runs.
class progress {
public:
  /// `total` 0 means unknown.
  explicit progress(std::string what, std::uint64_t total = 0);
  ~progress();
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;

  /// Records that `done` items are done. Cheap: looks at the clock only
  /// every 1024 calls.
  void update(std::uint64_t done);

  /// Clears the terminal line, if one was drawn.
  void finish();

private:
  void show(std::uint64_t done);

  std::string what_;
  std::uint64_t total_;
  std::uint64_t calls_ = 0;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point next_;
};

/// How bad a finding of verify is.
enum class severity {
  problem,    ///< Corruption or inconsistency: verify exits 1.
  repairable, ///< Opening the store repairs it (a torn journal tail).
};

struct finding {
  severity level;
  std::string text;
};

/// The heights the store can be brought to: every height in
/// oldest..newest (oldest = the pruned height or 0; newest = the newest
/// journaled or checkpointed height, or the revert marker).
struct height_range {
  block_id oldest = 0;
  block_id newest = 0;
};

/// What verify found, for printing.
struct verify_result {
  std::vector<finding> findings;
  bool state_opened = false;
  std::optional<storage::store_metadata> meta;
  bool journal_opened = false;
  storage::journal_open_report journal_report;
  std::size_t journal_entries = 0;
  std::size_t journal_changes = 0;
  std::optional<block_id> journal_first;
  std::optional<block_id> journal_last;
  std::uint64_t journal_bytes = 0;
  bool state_checked = false;
  std::uint64_t state_keys = 0;
  std::optional<height_range> range;

  std::size_t count(severity level) const;
};

/// A stopped data directory, locked for the lifetime of this object.
class data_dir_inspector {
public:
  /// Takes the lock of `dir`, which must exist. A running rollblockd gives
  /// data_dir_lock's ec::data_dir_locked, naming the holder's pid.
  static caf::expected<std::unique_ptr<data_dir_inspector>>
  lock(const std::filesystem::path& dir);

  ~data_dir_inspector();
  data_dir_inspector(const data_dir_inspector&) = delete;
  data_dir_inspector& operator=(const data_dir_inspector&) = delete;

  /// Opens LevelDB, reads the metadata and opens the journal read-only: what
  /// info and dump need. Fails on the first error (a corrupt middle journal
  /// entry, no metadata, ...); a torn journal tail is not an error (the
  /// journal ends before it, as the store would after opening).
  caf::error open();

  /// Runs every check (LevelDB, metadata, journal, their agreement) and
  /// collects the findings; never stops at the first one.
  verify_result verify();

  const std::filesystem::path& dir() const {
    return dir_;
  }

  /// REQUIRES: open() succeeded.
  const storage::store_metadata& meta() const;
  const storage::journal& blocks() const;
  const storage::journal_open_report& journal_report() const;

  /// The heights the store can be brought to; nullopt when it holds no block
  /// and no checkpoint. REQUIRES: open() succeeded.
  std::optional<height_range> recoverable() const;

  /// Bytes of the files in DIR/state.
  std::uint64_t state_bytes() const;

  /// Counts the keys LevelDB holds (the state at the checkpoint).
  caf::expected<std::uint64_t> count_state_keys();

  /// Counts the live keys at `height`. REQUIRES: height is recoverable.
  caf::expected<std::uint64_t> count_keys_at(block_id height);

  /// Calls `out` for every live key at `height` in key order (key_order.hpp),
  /// with its value: the LevelDB state merged with the journal entries
  /// between the checkpoint and `height` (their values after the block when
  /// going up, their undo when going down). Returns ec::rollback_beyond_history
  /// or ec::rollback_target_ahead with a precise message when `height` is
  /// outside recoverable().
  caf::error
  state_at(block_id height,
           const std::function<void(const key&, const value&)>& out);

private:
  struct impl;
  explicit data_dir_inspector(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
  std::filesystem::path dir_;
};

} // namespace rollblock::admin
