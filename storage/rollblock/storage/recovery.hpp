#pragma once

#include "rollblock/messages/store_options.hpp"
#include "rollblock/storage/data_dir_lock.hpp"
#include "rollblock/storage/journal.hpp"
#include "rollblock/storage/memory_state.hpp"
#include "rollblock/storage/state_store.hpp"

#include <caf/expected.hpp>

#include <memory>
#include <optional>

namespace rollblock::storage {

/// A data directory opened and brought to a consistent state: everything a
/// running store needs, ready to be handed to its actors.
struct recovered_store {
  /// The data directory's lock: taken by recover(), or the one handed to it.
  std::shared_ptr<data_dir_lock> lock;
  std::unique_ptr<state_store> state;
  std::unique_ptr<journal> blocks;
  std::shared_ptr<memory_state> memory;
  /// The effective configuration (stored values, overridden by options).
  store_metadata meta;
  /// applied == durable (the newest replayed block, or the checkpoint);
  /// current: the checkpoint LevelDB holds (0 without one).
  store_heights heights;
  journal_open_report journal_report;
  /// The target of an interrupted revert that recovery completed (a revert
  /// marker found in LevelDB, or the journal's truncation record of a revert
  /// within the checkpoint lag); nullopt when there was none.
  std::optional<block_id> completed_revert;
  /// Blocks replayed from the journal above the LevelDB checkpoint.
  std::size_t replayed_blocks = 0;
  std::size_t replayed_changes = 0;
  /// Those blocks, oldest first: durable, in memory, not in LevelDB yet
  /// (the store checkpoints them like blocks within its checkpoint lag).
  block_record_list replayed;
};

/// Checks `opts` for values out of range. Returns ec::invalid_argument naming
/// the option.
caf::error validate(const store_options& opts);

/// Opens the data directory `opts.data_dir`, creating it when missing:
///  1. validates the options and takes the directory lock, or, when `held`
///     is set (a restart reopening a directory its store keeps locked),
///     uses that lock: one for another directory is ec::invalid_argument;
///  2. opens LevelDB (directory "state", through opts.leveldb_env, with
///     paranoid checks) and reads or writes the metadata: a key width other
///     than the stored one is ec::config_mismatch, another format version
///     ec::format_version_mismatch, damage ec::state_corrupt naming the
///     damaged table file;
///  3. opens the journal (directory "journal", through
///     opts.journal_file_system), repairing a torn tail above the
///     checkpoint (logged as a warning with file, offset and height); a
///     missing segment or damage that reaches the checkpoint's entry is
///     ec::journal_corrupt and changes nothing;
///  4. completes an interrupted revert (the journal completes its own
///     truncation record when it opens; a revert marker in LevelDB; the
///     target is reported in completed_revert) or prune;
///  5. loads the LevelDB state into memory (with a memory budget: loads
///     nothing, counts the live keys and serves misses from LevelDB) and
///     replays the journal entries above the checkpoint (sparse heights are
///     fine) and fsyncs the journal; LevelDB is not written: the replayed
///     blocks are returned in `replayed` for the store to checkpoint.
/// On error nothing is held open (but `held` stays with its owners); the
/// data directory may have been repaired (torn tail cut) but never loses a
/// valid entry.
caf::expected<recovered_store>
recover(const store_options& opts,
        std::shared_ptr<data_dir_lock> held = nullptr);

} // namespace rollblock::storage
