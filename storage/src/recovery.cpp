#include "rollblock/storage/recovery.hpp"

#include "rollblock/messages/error.hpp"

#include "rollblock/storage/logger.hpp"

#include <spdlog/spdlog.h>


namespace rollblock::storage {

caf::error validate(const store_options& opts) {
  auto bad = [](const std::string& what) {
    return make_error(ec::invalid_argument, what);
  };
  if (opts.data_dir.empty())
    return bad("data_dir is empty");
  if (opts.key_width
      && (*opts.key_width < min_key_width || *opts.key_width > max_key_width))
    return bad("key width " + std::to_string(*opts.key_width)
               + " is out of range: keys are 8 to 64 bytes");
  if (opts.page_keys && !valid_page_keys(*opts.page_keys))
    return bad("page_keys " + std::to_string(*opts.page_keys)
               + " is not a power of two from 1 to 64");
  if (opts.durability) {
    auto& d = *opts.durability;
    if (d.max_pending == 0 || d.sync_every == 0)
      return bad("durability mode " + to_string(d)
                 + " needs counts of at least 1");
  }
  if (opts.checkpoint_every_blocks == 0)
    return bad("checkpoint_every_blocks must be at least 1");
  if (opts.checkpoint_backlog_bytes == 0)
    return bad("checkpoint_backlog_bytes must be at least 1");
  if (opts.journal_segment_bytes < 4096)
    return bad("journal_segment_bytes must be at least 4096, got "
               + std::to_string(opts.journal_segment_bytes));
  if (opts.memory_budget && opts.checkpoint_lag_blocks
      && *opts.checkpoint_lag_blocks
           > memory_state::max_uncheckpointed_blocks / 2)
    return bad("with a memory_budget, checkpoint_lag_blocks must be at most "
               + std::to_string(memory_state::max_uncheckpointed_blocks / 2)
               + ", got " + std::to_string(*opts.checkpoint_lag_blocks));
  if (opts.memory_budget && *opts.memory_budget < min_memory_budget)
    return bad("memory_budget must be at least "
               + std::to_string(min_memory_budget) + " bytes (64 KiB), got "
               + std::to_string(*opts.memory_budget));
  return {};
}

namespace {

/// Refuses a height above memory_state::max_height, which older builds
/// accepted: `where` says what holds it ("the journal holds").
caf::error height_from_an_older_build(const std::string& where,
                                      block_id height) {
  return make_error(ec::format_version_mismatch,
                    where + " block " + std::to_string(height)
                      + ", above the highest height this build accepts ("
                      + std::to_string(memory_state::max_height)
                      + "): it was written by an older build; use that "
                        "build or start from an empty data directory");
}

} // namespace

caf::expected<recovered_store>
recover(const store_options& opts, std::shared_ptr<data_dir_lock> held) {
  if (auto err = validate(opts))
    return err;
  recovered_store result;
  std::filesystem::path dir{opts.data_dir};
  if (held) {
    if (held->dir() != dir)
      return make_error(ec::invalid_argument,
                        "the lock handed to recovery is for data directory "
                          + held->dir().string() + ", not "
                          + dir.string());
    result.lock = std::move(held);
  } else {
    auto lock = data_dir_lock::acquire(dir);
    if (!lock)
      return lock.error();
    result.lock = std::move(*lock);
  }
  // -- state of record and metadata
  state_store::options state_opts;
  state_opts.dir = dir / "state";
  state_opts.cache_bytes = opts.leveldb_cache_bytes;
  state_opts.write_buffer_bytes = opts.leveldb_write_buffer_bytes;
  if (opts.memory_budget) {
    // The split documented at store_options::memory_budget.
    state_opts.cache_bytes = *opts.memory_budget / 16;
    state_opts.write_buffer_bytes = *opts.memory_budget / 32;
    state_opts.map_table_files = false;
  }
  state_opts.env = opts.leveldb_env;
  auto state = state_store::open(state_opts);
  if (!state)
    return state.error();
  result.state = std::move(*state);
  auto stored = result.state->read_metadata();
  if (!stored)
    return stored.error();
  auto& meta = result.meta;
  bool config_changed = false;
  if (*stored) {
    meta = **stored;
    // An option fixed at creation that asks for another than the stored.
    auto fixed = [&](const std::string& stored_text,
                     const std::string& asked_text, const char* what) {
      return make_error(ec::config_mismatch,
                        "data directory " + opts.data_dir + " " + stored_text
                          + ", but the options ask for " + asked_text
                          + "; the " + what + " is fixed at creation");
    };
    if (opts.key_width && *opts.key_width != meta.key_width)
      return fixed("holds " + std::to_string(meta.key_width) + "-byte keys",
                   std::to_string(*opts.key_width) + "-byte keys",
                   "key width");
    if (opts.page_keys && *opts.page_keys != meta.page_keys)
      return fixed("keeps " + std::to_string(meta.page_keys)
                     + " keys per state page",
                   std::to_string(*opts.page_keys), "page size");
    if (meta.checkpoint && *meta.checkpoint > memory_state::max_height)
      return height_from_an_older_build("the state database's checkpoint is",
                                        *meta.checkpoint);
  } else {
    meta.key_width = opts.key_width.value_or(default_key_width);
    meta.page_keys = opts.page_keys.value_or(default_page_keys(meta.key_width));
    config_changed = true;
  }
  if (opts.durability && *opts.durability != meta.durability) {
    meta.durability = *opts.durability;
    config_changed = true;
  }
  if (opts.min_rollback_window
      && *opts.min_rollback_window != meta.min_rollback_window) {
    meta.min_rollback_window = *opts.min_rollback_window;
    config_changed = true;
  }
  // A new store's metadata is written once its journal exists: metadata
  // without any journal segment means the journal was deleted.
  bool created = !*stored;
  if (config_changed && !created)
    if (auto err = result.state->write_config(meta))
      return err;
  // -- journal
  journal::options journal_opts;
  journal_opts.must_exist = !created;
  journal_opts.dir = dir / "journal";
  journal_opts.key_width = meta.key_width;
  journal_opts.segment_bytes = opts.journal_segment_bytes;
  journal_opts.fs = opts.journal_file_system;
  // A checkpoint only covers fsynced blocks: unless a revert wrote it (to a
  // height that need not be a block), the journal must hold its entry.
  if (!meta.reverted_to)
    journal_opts.required_height = meta.checkpoint;
  auto blocks = journal::open(journal_opts, &result.journal_report);
  if (!blocks)
    return blocks.error();
  if (created)
    if (auto err = result.state->write_config(meta))
      return err;
  result.blocks = std::move(*blocks);
  auto& report = result.journal_report;
  if (report.truncated_bytes > 0)
    logger().warn("journal: cut a torn tail of {} bytes at offset {} of {} "
                  "(last good height {})",
                  report.truncated_bytes, report.truncated_offset,
                  report.truncated_file,
                  result.blocks->empty()
                    ? std::string{"none"}
                    : std::to_string(result.blocks->last_height()));
  if (report.torn_truncation_record)
    logger().warn("journal: removed a torn truncation record (a crash "
                  "before a revert cut the journal)");
  // -- interrupted revert or prune
  if (report.completed_truncation && !meta.revert_marker) {
    // A revert within the checkpoint lag writes no marker: the journal's
    // truncation record was its commit point.
    logger().info("completed an interrupted revert to block {} (the journal "
                  "cut)",
                  *report.completed_truncation);
    result.completed_revert = report.completed_truncation;
  }
  if (meta.revert_marker) {
    logger().info("completing an interrupted revert to block {}",
                 *meta.revert_marker);
    if (auto err = result.blocks->truncate_after(*meta.revert_marker))
      return err;
    if (auto err = result.state->clear_revert_marker())
      return err;
    result.completed_revert = meta.revert_marker;
    meta.revert_marker.reset();
  }
  if (meta.pruned_through)
    if (auto err = result.blocks->drop_through(*meta.pruned_through))
      return err;
  // -- memory
  result.memory = std::make_shared<memory_state>(meta.key_width);
  auto& memory = *result.memory;
  if (opts.memory_budget) {
    // Nothing is loaded: reads that miss memory go to LevelDB. The live key
    // count comes from one scan of the keys.
    std::size_t live = 0;
    if (auto err = result.state->for_each(
          [&](const key&, const value&) { ++live; }))
      return err;
    memory.set_live_keys(live);
    memory.attach_state_of_record(*result.state, *opts.memory_budget / 4);
  } else {
    // In batches: the tables are loaded slot by slot at random, and a batch
    // lets each key's slot be fetched from memory while earlier keys go in.
    constexpr std::size_t load_batch = 1024;
    std::vector<std::pair<key, value>> batch;
    batch.reserve(load_batch);
    if (auto err = result.state->for_each([&](const key& k, const value& v) {
          batch.emplace_back(k, v);
          if (batch.size() == load_batch) {
            memory.load_many(batch);
            batch.clear();
          }
        }))
      return err;
    memory.load_many(batch);
  }
  auto checkpoint = meta.checkpoint;
  bool fresh = !checkpoint && result.blocks->empty();
  memory.set_applied(checkpoint.value_or(0), fresh);
  auto replay = checkpoint ? result.blocks->read_from(*checkpoint + 1)
                           : result.blocks->read_from(0);
  if (!replay)
    return replay.error();
  for (auto& record : *replay)
    if (record->height > memory_state::max_height)
      return height_from_an_older_build("the journal holds", record->height);
  for (auto& record : *replay) {
    // Nobody reads yet: without a budget no undo or tombstone is needed.
    if (opts.memory_budget)
      memory.install(record);
    else
      memory.replay(*record);
    ++result.replayed_blocks;
    result.replayed_changes += record->changes.size();
  }
  if (!replay->empty()) {
    // Replayed, they are durable (the journal may hold unsynced appends of
    // the crashed run): the store checkpoints them later, like any block.
    if (auto err = result.blocks->sync())
      return err;
    logger().info("replayed {} blocks ({} changes) from the journal up to "
                  "block {}",
                  result.replayed_blocks, result.replayed_changes,
                  replay->back()->height);
  }
  result.replayed = std::move(*replay);
  auto height = memory.applied();
  if (meta.checkpoint)
    memory.set_checkpointed(*meta.checkpoint);
  result.heights = store_heights{height, height, meta.checkpoint.value_or(0)};
  return result;
}

} // namespace rollblock::storage
