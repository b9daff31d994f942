#include "rollblock/storage/recovery.hpp"

#include "rollblock/messages/error.hpp"
#include "rollblock/storage/checkpoint_builder.hpp"
#include "rollblock/storage/logger.hpp"
#include "support/file_bytes.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <tuple>
#include <vector>

using namespace rollblock;
using namespace rollblock::storage;
namespace fs = std::filesystem;

namespace {

using contents = std::vector<std::pair<key, value>>;

key k8(std::uint64_t x) {
  return key_from_u64(x, 8);
}

value v64(std::uint64_t x) {
  return value_from_u64(x);
}

store_options options_for(const fs::path& dir) {
  store_options opts;
  opts.data_dir = dir.string();
  opts.leveldb_cache_bytes = 1 << 20;
  opts.leveldb_write_buffer_bytes = 1 << 20;
  return opts;
}

/// Recovers and expects success.
std::optional<recovered_store> recover_ok(const store_options& opts) {
  auto r = recover(opts);
  EXPECT_TRUE(r) << describe(r.error());
  if (!r)
    return std::nullopt;
  return std::move(*r);
}

contents leveldb_contents(const state_store& state) {
  contents result;
  auto err = state.for_each(
    [&](const key& k, const value& v) { result.emplace_back(k, v); });
  EXPECT_FALSE(err) << describe(err);
  return result;
}

store_metadata leveldb_meta(const state_store& state) {
  auto meta = state.read_metadata();
  EXPECT_TRUE(meta) << describe(meta.error());
  if (!meta || !*meta) {
    ADD_FAILURE() << "no metadata";
    return {};
  }
  return **meta;
}

contents to_contents(const std::map<key, value>& m) {
  return contents{m.begin(), m.end()};
}

/// Drives a recovered store the way the actors do, with the storage pieces:
/// plan + install in memory, append to the journal, checkpoint into LevelDB.
/// Destroying it without a final checkpoint is a crash.
class driver {
public:
  explicit driver(recovered_store s) : s_(std::move(s)) {
  }

  recovered_store& store() {
    return s_;
  }

  /// Applies block `h`; updates the expected state.
  void apply(block_id h, const operation_list& ops) {
    auto rec = s_.memory->plan(h, ops);
    ASSERT_TRUE(rec) << describe(rec.error());
    s_.memory->install(*rec);
    auto err = s_.blocks->append(**rec);
    ASSERT_FALSE(err) << describe(err);
    pending_.add(*rec);
    history_.push_back(*rec);
    for (auto& op : ops) {
      if (op.v.empty())
        model_.erase(op.k);
      else
        model_[op.k] = op.v;
    }
    states_[h] = model_;
  }

  /// fsyncs the journal and writes every block since the last checkpoint
  /// into LevelDB as checkpoint `h`.
  void checkpoint(block_id h) {
    auto err = s_.blocks->sync();
    ASSERT_FALSE(err) << describe(err);
    err = s_.state->write_checkpoint(pending_.take(h));
    ASSERT_FALSE(err) << describe(err);
  }

  /// The expected contents after block `h`.
  contents state_at(block_id h) {
    return to_contents(states_.at(h));
  }

  /// The records of the blocks above `target`, newest first.
  block_record_list above(block_id target) const {
    block_record_list result;
    for (auto it = history_.rbegin(); it != history_.rend(); ++it)
      if ((*it)->height > target)
        result.push_back(*it);
    return result;
  }

private:
  recovered_store s_;
  checkpoint_builder pending_;
  block_record_list history_;
  std::map<key, value> model_;
  std::map<block_id, std::map<key, value>> states_;
};

/// Block `h` of a test history: sets three keys, deletes one set earlier.
operation_list ops_of(block_id h) {
  operation_list ops{{k8(h % 10), v64(h)},
                     {k8(100 + h), "h" + std::to_string(h)},
                     {k8(1000 + h % 3), std::string(h % 50 + 1, 'v')}};
  if (h >= 2)
    ops.push_back({k8(100 + h - 2), ""});
  return ops;
}

} // namespace

// -- validate -----------------------------------------------------------------

TEST(recovery, validate_accepts_defaults_and_bounds) {
  auto opts = options_for("/nonexistent/dir");
  EXPECT_FALSE(validate(opts));
  opts.key_width = 8;
  EXPECT_FALSE(validate(opts));
  opts.key_width = 64;
  EXPECT_FALSE(validate(opts));
  opts.journal_segment_bytes = 4096;
  opts.checkpoint_every_blocks = 1;
  opts.durability = durability_mode::async_relaxed(1, 1);
  EXPECT_FALSE(validate(opts));
  // Any checkpoint lag without a budget; with one, at most half the blocks
  // that may wait for a checkpoint.
  opts.checkpoint_lag_blocks = 1'000'000;
  EXPECT_FALSE(validate(opts));
  opts.memory_budget = 1 << 30;
  opts.checkpoint_lag_blocks = 8191;
  EXPECT_FALSE(validate(opts));
}

TEST(recovery, validate_rejects_out_of_range_options) {
  auto expect_invalid = [](const store_options& opts,
                           const std::string& message) {
    auto err = validate(opts);
    ASSERT_TRUE(err) << message;
    EXPECT_EQ(code_of(err), ec::invalid_argument);
    EXPECT_EQ(message_of(err), message);
  };
  auto base = options_for("/tmp/unused");
  auto o = base;
  o.key_width = 7;
  expect_invalid(o, "key width 7 is out of range: keys are 8 to 64 bytes");
  o.key_width = 65;
  expect_invalid(o, "key width 65 is out of range: keys are 8 to 64 bytes");
  o.key_width = 0;
  expect_invalid(o, "key width 0 is out of range: keys are 8 to 64 bytes");
  o = base;
  o.page_keys = 0;
  expect_invalid(o, "page_keys 0 is not a power of two from 1 to 64");
  o.page_keys = 24;
  expect_invalid(o, "page_keys 24 is not a power of two from 1 to 64");
  o.page_keys = 128;
  expect_invalid(o, "page_keys 128 is not a power of two from 1 to 64");
  o = base;
  o.checkpoint_every_blocks = 0;
  expect_invalid(o, "checkpoint_every_blocks must be at least 1");
  o = base;
  o.checkpoint_backlog_bytes = 0;
  expect_invalid(o, "checkpoint_backlog_bytes must be at least 1");
  o = base;
  o.journal_segment_bytes = 4095;
  expect_invalid(o, "journal_segment_bytes must be at least 4096, got 4095");
  o.journal_segment_bytes = 0;
  expect_invalid(o, "journal_segment_bytes must be at least 4096, got 0");
  o = base;
  o.data_dir = "";
  expect_invalid(o, "data_dir is empty");
  o = base;
  o.memory_budget = 1 << 30;
  o.checkpoint_lag_blocks = 8192;
  expect_invalid(o, "with a memory_budget, checkpoint_lag_blocks must be at "
                    "most 8191, got 8192");
  o = base;
  auto d = durability_mode::async_relaxed(16, 4);
  d.sync_every = 0;
  o.durability = d;
  auto err = validate(o);
  ASSERT_TRUE(err);
  EXPECT_EQ(code_of(err), ec::invalid_argument);
  d = durability_mode::async(16);
  d.max_pending = 0;
  o.durability = d;
  err = validate(o);
  ASSERT_TRUE(err);
  EXPECT_EQ(code_of(err), ec::invalid_argument);
}

TEST(recovery, recover_with_bad_options_touches_nothing) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path() / "data";
  auto o = options_for(dir);
  o.key_width = 65;
  auto r = recover(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), ec::invalid_argument);
  EXPECT_EQ(message_of(r.error()),
            "key width 65 is out of range: keys are 8 to 64 bytes");
  EXPECT_FALSE(fs::exists(dir));
  o = options_for(dir);
  o.journal_segment_bytes = 100;
  r = recover(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), ec::invalid_argument);
  EXPECT_FALSE(fs::exists(dir));
}

// -- fresh directories ----------------------------------------------------------

TEST(recovery, fresh_directory_is_created_empty) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path() / "a" / "b";
  auto s = recover_ok(options_for(dir));
  ASSERT_TRUE(s);
  EXPECT_TRUE(fs::is_directory(dir / "state"));
  EXPECT_TRUE(fs::is_directory(dir / "journal"));
  EXPECT_TRUE(fs::exists(dir / "LOCK"));
  EXPECT_EQ(s->heights, (store_heights{0, 0, 0}));
  ASSERT_TRUE(s->memory);
  EXPECT_TRUE(s->memory->fresh());
  EXPECT_EQ(s->memory->applied(), 0u);
  EXPECT_EQ(s->memory->size(), 0u);
  EXPECT_EQ(s->memory->key_width(), 8u);
  EXPECT_EQ(s->replayed_blocks, 0u);
  EXPECT_EQ(s->replayed_changes, 0u);
  EXPECT_TRUE(s->blocks->empty());
  EXPECT_EQ(s->journal_report.entries, 0u);
  EXPECT_EQ(s->journal_report.truncated_bytes, 0u);
  store_metadata expected;
  EXPECT_EQ(s->meta, expected);
  EXPECT_EQ(s->meta.key_width, 8u);
  EXPECT_EQ(s->meta.durability, durability_mode::synchronous());
  EXPECT_EQ(s->meta.min_rollback_window, 100u);
  EXPECT_EQ(s->meta.checkpoint, std::nullopt);
  // The configuration is persisted at creation.
  EXPECT_EQ(leveldb_meta(*s->state), expected);
  // Genesis is allowed.
  EXPECT_TRUE(s->memory->plan(0, {}));
}

TEST(recovery, reopening_a_directory_without_blocks_stays_fresh) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  o.key_width = 32;
  { ASSERT_TRUE(recover_ok(o)); }
  o.key_width.reset();
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->memory->fresh());
  EXPECT_EQ(s->memory->key_width(), 32u);
  EXPECT_EQ(s->meta.key_width, 32u);
  EXPECT_EQ(s->heights, (store_heights{0, 0, 0}));
}

// -- replay -----------------------------------------------------------------

TEST(recovery, replays_journal_entries_above_the_checkpoint) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  contents at4;
  contents at10;
  std::size_t changes_5_to_10 = 0;
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    driver d{std::move(*s)};
    for (block_id h = 1; h <= 4; ++h)
      d.apply(h, ops_of(h));
    d.checkpoint(4);
    for (block_id h = 5; h <= 10; ++h) {
      d.apply(h, ops_of(h));
      changes_5_to_10 += ops_of(h).size();
    }
    at4 = d.state_at(4);
    at10 = d.state_at(10);
    EXPECT_EQ(d.store().memory->snapshot(), at10);
    EXPECT_EQ(leveldb_contents(*d.store().state), at4);
  } // Crash: blocks 5..10 are only in the journal.
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->replayed_blocks, 6u);
    EXPECT_EQ(s->replayed_changes, changes_5_to_10);
    EXPECT_EQ(s->heights, (store_heights{10, 10, 4}));
    EXPECT_EQ(s->memory->applied(), 10u);
    EXPECT_FALSE(s->memory->fresh());
    EXPECT_EQ(s->memory->snapshot(), at10);
    EXPECT_EQ(s->memory->size(), at10.size());
    EXPECT_EQ(s->journal_report.entries, 10u);
    // The replayed blocks are handed over for a later checkpoint; LevelDB
    // is untouched.
    ASSERT_EQ(s->replayed.size(), 6u);
    for (std::size_t i = 0; i < 6; ++i)
      EXPECT_EQ(s->replayed[i]->height, 5 + i);
    EXPECT_EQ(s->meta.checkpoint, 4u);
    EXPECT_EQ(leveldb_meta(*s->state).checkpoint, 4u);
    EXPECT_EQ(leveldb_contents(*s->state), at4);
    // The journal still holds every entry (for reverts).
    EXPECT_EQ(s->blocks->first_height(), 1u);
    EXPECT_EQ(s->blocks->last_height(), 10u);
    auto again = s->memory->plan(10, {});
    ASSERT_FALSE(again);
    EXPECT_EQ(code_of(again.error()), ec::block_id_not_increasing);
  }
  // Nothing was checkpointed: a second recovery replays the same blocks
  // to the same state.
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->replayed_blocks, 6u);
  EXPECT_EQ(s->replayed_changes, changes_5_to_10);
  EXPECT_EQ(s->heights, (store_heights{10, 10, 4}));
  EXPECT_EQ(s->memory->snapshot(), at10);
  EXPECT_EQ(s->meta.checkpoint, 4u);
}

TEST(recovery, crash_before_any_checkpoint_replays_from_genesis) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  contents expected;
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    driver d{std::move(*s)};
    d.apply(0, {{k8(1), "genesis"}, {k8(2), "two"}});
    d.apply(7, {{k8(2), ""}, {k8(3), "seven"}});
    d.apply(1000, {{k8(1), "thousand"}});
    expected = d.state_at(1000);
    EXPECT_EQ(leveldb_meta(*d.store().state).checkpoint, std::nullopt);
  }
  EXPECT_EQ(expected, (contents{{k8(1), "thousand"}, {k8(3), "seven"}}));
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->replayed_blocks, 3u);
  EXPECT_EQ(s->replayed_changes, 5u);
  EXPECT_EQ(s->heights, (store_heights{1000, 1000, 0}));
  EXPECT_FALSE(s->memory->fresh());
  EXPECT_EQ(s->memory->snapshot(), expected);
  EXPECT_EQ(s->memory->size(), 2u);
  EXPECT_EQ(s->replayed.size(), 3u);
  EXPECT_EQ(s->meta.checkpoint, std::nullopt);
  EXPECT_EQ(leveldb_contents(*s->state), contents{});
  auto r = s->memory->plan(1000, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(message_of(r.error()),
            "block 1000 is not above the applied height 1000");
  EXPECT_TRUE(s->memory->plan(1001, {}));
}

TEST(recovery, sparse_heights_replay_above_a_sparse_checkpoint) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  contents at7;
  contents expected;
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    driver d{std::move(*s)};
    d.apply(0, {{k8(1), "genesis"}});
    d.apply(7, {{k8(2), "seven"}, {k8(1), ""}});
    d.checkpoint(7);
    d.apply(1000, {{k8(3), "thousand"}, {k8(2), "2k"}});
    d.apply(5000, {});
    at7 = d.state_at(7);
    expected = d.state_at(5000);
  }
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->replayed_blocks, 2u);
  EXPECT_EQ(s->replayed_changes, 2u);
  EXPECT_EQ(s->heights, (store_heights{5000, 5000, 7}));
  EXPECT_EQ(s->memory->snapshot(), expected);
  EXPECT_EQ(expected, (contents{{k8(2), "2k"}, {k8(3), "thousand"}}));
  EXPECT_EQ(leveldb_contents(*s->state), at7);
  EXPECT_EQ(leveldb_meta(*s->state).checkpoint, 7u);
  EXPECT_NE(at7, expected);
}

TEST(recovery, checkpoint_at_the_last_block_replays_nothing) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  contents expected;
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    driver d{std::move(*s)};
    for (block_id h = 1; h <= 5; ++h)
      d.apply(h * 3, ops_of(h));
    d.checkpoint(15);
    expected = d.state_at(15);
  }
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->replayed_blocks, 0u);
  EXPECT_EQ(s->heights, (store_heights{15, 15, 15}));
  EXPECT_EQ(s->memory->snapshot(), expected);
  EXPECT_FALSE(s->memory->fresh());
}

TEST(recovery, checkpointed_genesis_is_not_fresh) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    driver d{std::move(*s)};
    d.apply(0, {{k8(1), "g"}});
    d.checkpoint(0);
  }
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->replayed_blocks, 0u);
  EXPECT_EQ(s->heights, (store_heights{0, 0, 0}));
  EXPECT_FALSE(s->memory->fresh());
  EXPECT_EQ(s->memory->snapshot(), (contents{{k8(1), "g"}}));
  auto r = s->memory->plan(0, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), ec::block_id_not_increasing);
  EXPECT_EQ(message_of(r.error()),
            "block 0 is not above the applied height 0");
}

TEST(recovery, uncheckpointed_genesis_in_the_journal_is_not_fresh) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    driver d{std::move(*s)};
    d.apply(0, {});
  }
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->replayed_blocks, 1u);
  EXPECT_EQ(s->replayed_changes, 0u);
  EXPECT_EQ(s->heights, (store_heights{0, 0, 0}));
  EXPECT_FALSE(s->memory->fresh());
  EXPECT_FALSE(s->memory->plan(0, {}));
  EXPECT_EQ(s->meta.checkpoint, std::nullopt);
  EXPECT_EQ(leveldb_meta(*s->state).checkpoint, std::nullopt);
}

TEST(recovery, torn_journal_tail_is_cut_and_the_rest_replayed) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  contents at3;
  std::uint64_t good_size = 0;
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    driver d{std::move(*s)};
    for (block_id h = 1; h <= 3; ++h)
      d.apply(h, ops_of(h));
    at3 = d.state_at(3);
    ASSERT_FALSE(d.store().blocks->sync());
    good_size = d.store().blocks->size_bytes();
  }
  auto segment = tmp.path() / "journal" / "000001.rbj";
  ASSERT_EQ(fs::file_size(segment), good_size);
  {
    // Half of an entry for block 4.
    auto entry = encode_journal_entry(
      block_record{4, {{k8(4), "torn", ""}}}, 8);
    std::ofstream out{segment, std::ios::binary | std::ios::app};
    out.write(entry.data(), static_cast<std::streamsize>(entry.size() / 2));
  }
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->journal_report.entries, 3u);
  EXPECT_GT(s->journal_report.truncated_bytes, 0u);
  EXPECT_EQ(s->journal_report.truncated_offset, good_size);
  EXPECT_EQ(fs::file_size(segment), good_size);
  EXPECT_EQ(s->replayed_blocks, 3u);
  EXPECT_EQ(s->heights, (store_heights{3, 3, 0}));
  EXPECT_EQ(s->memory->snapshot(), at3);
  EXPECT_EQ(s->memory->get(k8(4)), "");
}

// -- interrupted revert and prune -----------------------------------------------

TEST(recovery, revert_marker_truncates_the_journal_and_is_cleared) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  contents at6;
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    driver d{std::move(*s)};
    for (block_id h = 1; h <= 10; ++h)
      d.apply(h, ops_of(h));
    d.checkpoint(10);
    at6 = d.state_at(6);
    // A revert to 6: LevelDB gets the state at 6 and the marker in one
    // batch; the process dies before the journal is truncated.
    checkpoint_builder undo;
    for (auto& r : d.above(6))
      undo.add_undo(r);
    EXPECT_EQ(undo.blocks(), 4u);
    auto batch = undo.take(6);
    batch.revert_marker = 6;
    ASSERT_FALSE(d.store().state->write_checkpoint(batch));
    EXPECT_EQ(leveldb_meta(*d.store().state).revert_marker, 6u);
    EXPECT_EQ(leveldb_contents(*d.store().state), at6);
    EXPECT_EQ(d.store().blocks->last_height(), 10u);
  }
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->completed_revert, 6u);
    EXPECT_EQ(s->replayed_blocks, 0u);
    EXPECT_EQ(s->heights, (store_heights{6, 6, 6}));
    EXPECT_EQ(s->memory->applied(), 6u);
    EXPECT_EQ(s->memory->snapshot(), at6);
    EXPECT_EQ(s->meta.revert_marker, std::nullopt);
    EXPECT_EQ(s->meta.checkpoint, 6u);
    auto meta = leveldb_meta(*s->state);
    EXPECT_EQ(meta.revert_marker, std::nullopt);
    EXPECT_EQ(meta.checkpoint, 6u);
    EXPECT_EQ(s->blocks->first_height(), 1u);
    EXPECT_EQ(s->blocks->last_height(), 6u);
    EXPECT_EQ(s->blocks->index().size(), 6u);
    EXPECT_TRUE(s->memory->plan(7, {}));
  }
  // The journal was cut on disk too, and the marker is gone: nothing more
  // to complete.
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->completed_revert, std::nullopt);
  EXPECT_EQ(s->journal_report.entries, 6u);
  EXPECT_EQ(s->blocks->last_height(), 6u);
  EXPECT_EQ(s->heights, (store_heights{6, 6, 6}));
  EXPECT_EQ(s->memory->snapshot(), at6);
}

TEST(recovery, revert_marker_to_a_height_never_applied) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  contents at500;
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    driver d{std::move(*s)};
    d.apply(500, {{k8(1), "a"}, {k8(2), "b"}});
    d.apply(1000, {{k8(1), ""}, {k8(3), "c"}});
    d.checkpoint(1000);
    at500 = d.state_at(500);
    checkpoint_builder undo;
    for (auto& r : d.above(750))
      undo.add_undo(r);
    auto batch = undo.take(750);
    batch.revert_marker = 750;
    ASSERT_FALSE(d.store().state->write_checkpoint(batch));
  }
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->completed_revert, 750u);
  EXPECT_EQ(s->heights, (store_heights{750, 750, 750}));
  EXPECT_EQ(s->memory->applied(), 750u);
  EXPECT_EQ(s->memory->snapshot(), at500);
  EXPECT_EQ(s->blocks->last_height(), 500u);
  EXPECT_EQ(leveldb_meta(*s->state).revert_marker, std::nullopt);
  auto r = s->memory->plan(750, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(message_of(r.error()),
            "block 750 is not above the applied height 750");
  EXPECT_TRUE(s->memory->plan(751, {}));
}

TEST(recovery, pruned_through_drops_whole_old_segments) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  o.journal_segment_bytes = 4096;
  contents at100;
  block_id pruned = 0;
  std::size_t segments_before = 0;
  std::size_t entries_kept = 0;
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    driver d{std::move(*s)};
    for (block_id h = 1; h <= 100; ++h)
      d.apply(h, ops_of(h));
    d.checkpoint(100);
    at100 = d.state_at(100);
    auto& j = *d.store().blocks;
    segments_before = j.index().back().segment;
    ASSERT_GE(segments_before, 4u);
    auto through = j.prunable_through(60);
    ASSERT_TRUE(through);
    pruned = *through;
    ASSERT_LT(pruned, 60u);
    for (auto& p : j.index())
      if (p.height > pruned)
        ++entries_kept;
    // The prune is recorded; the process dies before deleting the files.
    ASSERT_FALSE(d.store().state->write_pruned_through(pruned));
  }
  auto count_segments = [&] {
    std::size_t n = 0;
    for (auto& e : fs::directory_iterator{tmp.path() / "journal"})
      if (e.path().extension() == ".rbj")
        ++n;
    return n;
  };
  EXPECT_EQ(count_segments(), segments_before);
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->meta.pruned_through, pruned);
  EXPECT_EQ(s->blocks->first_height(), pruned + 1);
  EXPECT_EQ(s->blocks->last_height(), 100u);
  EXPECT_EQ(s->blocks->index().size(), entries_kept);
  EXPECT_LT(count_segments(), segments_before);
  EXPECT_EQ(count_segments(), segments_before
                                - (s->blocks->index().front().segment - 1));
  EXPECT_EQ(s->replayed_blocks, 0u);
  EXPECT_EQ(s->heights, (store_heights{100, 100, 100}));
  EXPECT_EQ(s->memory->snapshot(), at100);
}

// -- configuration --------------------------------------------------------------

TEST(recovery, page_keys_default_by_key_width_and_are_fixed_at_creation) {
  // 8-byte keys: 64 per page; wider keys: 1; a size the options name wins
  // at creation, and is refused with config_mismatch on reopen when it is
  // another than the stored one.
  for (auto [width, asked, stored] :
       {std::tuple<std::size_t, std::optional<std::size_t>, std::size_t>{
          8, std::nullopt, 64},
        {32, std::nullopt, 1},
        {8, 4, 4},
        {32, 16, 16}}) {
    SCOPED_TRACE("width " + std::to_string(width) + ", asked "
                 + (asked ? std::to_string(*asked) : std::string{"none"}));
    rollblock::test::temp_dir tmp;
    auto o = options_for(tmp.path());
    o.key_width = width;
    o.page_keys = asked;
    std::map<key, value> want;
    {
      auto s = recover_ok(o);
      ASSERT_TRUE(s);
      EXPECT_EQ(s->meta.page_keys, stored);
      driver d{std::move(*s)};
      operation_list ops;
      for (std::uint64_t i = 0; i < 100; ++i) {
        auto k = key_from_u64(i * 7, width);
        k[width - 1] = static_cast<char>(i);
        ops.push_back({k, value_from_u64(i)});
        want[k] = value_from_u64(i);
      }
      d.apply(1, ops);
      d.checkpoint(1);
    }
    o.page_keys.reset();
    {
      auto s = recover_ok(o);
      ASSERT_TRUE(s);
      EXPECT_EQ(s->meta.page_keys, stored);
      auto got = s->state->get(want.begin()->first);
      ASSERT_TRUE(got);
      EXPECT_EQ(*got, want.begin()->second);
      // Loaded from the pages: every key.
      auto snap = s->memory->snapshot();
      ASSERT_TRUE(snap);
      EXPECT_EQ(*snap, (std::vector<std::pair<key, value>>{want.begin(),
                                                          want.end()}));
    }
    o.page_keys = stored == 1 ? 2 : 1;
    auto bad = recover(o);
    ASSERT_FALSE(bad);
    EXPECT_EQ(code_of(bad.error()), ec::config_mismatch);
    EXPECT_EQ(message_of(bad.error()),
              "data directory " + tmp.path().string() + " keeps "
                + std::to_string(stored)
                + " keys per state page, but the options ask for "
                + std::to_string(*o.page_keys)
                + "; the page size is fixed at creation");
  }
}

TEST(recovery, key_width_mismatch_on_reopen_names_both_widths) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  o.key_width = 16;
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->meta.key_width, 16u);
    EXPECT_EQ(s->memory->key_width(), 16u);
    driver d{std::move(*s)};
    d.apply(1, {{key_from_prefix("k", 16), "v"}});
  }
  o.key_width = 32;
  auto bad = recover(o);
  ASSERT_FALSE(bad);
  EXPECT_EQ(code_of(bad.error()), ec::config_mismatch);
  EXPECT_EQ(message_of(bad.error()),
            "data directory " + tmp.path().string()
              + " holds 16-byte keys, but the options ask for 32-byte keys; "
                "the key width is fixed at creation");
  // Nothing is held open after the error: the same width opens fine.
  o.key_width = 16;
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->memory->key_width(), 16u);
  EXPECT_EQ(s->memory->get(key_from_prefix("k", 16)), "v");
  EXPECT_EQ(s->heights, (store_heights{1, 1, 0}));
  EXPECT_EQ(leveldb_meta(*s->state).key_width, 16u);
}

TEST(recovery, second_recover_while_open_is_data_dir_locked) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  {
    auto first = recover_ok(o);
    ASSERT_TRUE(first);
    auto second = recover(o);
    ASSERT_FALSE(second);
    EXPECT_EQ(code_of(second.error()), ec::data_dir_locked);
    EXPECT_NE(message_of(second.error()).find(tmp.path().string()),
              std::string::npos)
      << message_of(second.error());
    // The first store is unaffected.
    driver d{std::move(*first)};
    d.apply(1, {{k8(1), "a"}});
  }
  auto again = recover_ok(o);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->heights, (store_heights{1, 1, 0}));
}

TEST(recovery, recover_with_a_held_lock_uses_it_and_never_releases_it) {
  // A supervised restart reopens the directory under the lock its store
  // kept: recover() takes that lock over instead of acquiring one.
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  std::shared_ptr<data_dir_lock> lock;
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->completed_revert, std::nullopt);
    lock = s->lock;
    driver d{std::move(*s)};
    d.apply(1, {{k8(1), "a"}});
    d.checkpoint(1);
  }
  // The journal and LevelDB are closed; the lock is still held.
  auto other = recover(o);
  ASSERT_FALSE(other);
  EXPECT_EQ(code_of(other.error()), ec::data_dir_locked);
  auto s = recover(o, lock);
  ASSERT_TRUE(s) << describe(s.error());
  EXPECT_EQ(s->lock.get(), lock.get());
  EXPECT_EQ(s->heights, (store_heights{1, 1, 1}));
  EXPECT_EQ(s->memory->get(k8(1)), "a");
  lock.reset();
  // Held by the recovered store alone now.
  other = recover(o);
  ASSERT_FALSE(other);
  EXPECT_EQ(code_of(other.error()), ec::data_dir_locked);
}

TEST(recovery, recover_with_the_lock_of_another_directory_is_refused) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path() / "a");
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  auto elsewhere = options_for(tmp.path() / "b");
  auto r = recover(elsewhere, s->lock);
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), ec::invalid_argument);
  EXPECT_EQ(message_of(r.error()),
            "the lock handed to recovery is for data directory "
              + (tmp.path() / "a").string() + ", not "
              + (tmp.path() / "b").string());
  EXPECT_FALSE(fs::exists(tmp.path() / "b"));
}

TEST(recovery, durability_and_window_options_override_and_persist) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  o.durability = durability_mode::async_relaxed(64, 10);
  o.min_rollback_window = 500;
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->meta.durability, durability_mode::async_relaxed(64, 10));
    EXPECT_EQ(s->meta.min_rollback_window, 500u);
    auto stored = leveldb_meta(*s->state);
    EXPECT_EQ(stored.durability, durability_mode::async_relaxed(64, 10));
    EXPECT_EQ(stored.min_rollback_window, 500u);
  }
  // Unset options keep the stored values.
  auto plain = options_for(tmp.path());
  {
    auto s = recover_ok(plain);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->meta.durability, durability_mode::async_relaxed(64, 10));
    EXPECT_EQ(s->meta.min_rollback_window, 500u);
    EXPECT_EQ(s->meta.key_width, 8u);
  }
  // Only the durability is overridden; the window stays.
  o = options_for(tmp.path());
  o.durability = durability_mode::synchronous_relaxed(5);
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->meta.durability, durability_mode::synchronous_relaxed(5));
    EXPECT_EQ(s->meta.min_rollback_window, 500u);
  }
  {
    auto s = recover_ok(plain);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->meta.durability, durability_mode::synchronous_relaxed(5));
    EXPECT_EQ(s->meta.min_rollback_window, 500u);
    auto stored = leveldb_meta(*s->state);
    EXPECT_EQ(stored.durability, durability_mode::synchronous_relaxed(5));
    EXPECT_EQ(stored.min_rollback_window, 500u);
  }
  // Only the window is overridden; the durability stays.
  o = options_for(tmp.path());
  o.min_rollback_window = 7;
  { ASSERT_TRUE(recover_ok(o)); }
  auto s = recover_ok(plain);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->meta.durability, durability_mode::synchronous_relaxed(5));
  EXPECT_EQ(s->meta.min_rollback_window, 7u);
  auto stored = leveldb_meta(*s->state);
  EXPECT_EQ(stored.durability, durability_mode::synchronous_relaxed(5));
  EXPECT_EQ(stored.min_rollback_window, 7u);
  EXPECT_EQ(stored.key_width, 8u);
}

TEST(recovery, config_changes_keep_blocks_and_checkpoint) {
  rollblock::test::temp_dir tmp;
  auto o = options_for(tmp.path());
  contents expected;
  {
    auto s = recover_ok(o);
    ASSERT_TRUE(s);
    driver d{std::move(*s)};
    for (block_id h = 1; h <= 3; ++h)
      d.apply(h, ops_of(h));
    d.checkpoint(2);
    expected = d.state_at(3);
  }
  o.durability = durability_mode::async(8);
  o.min_rollback_window = 1;
  auto s = recover_ok(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->replayed_blocks, 1u);
  EXPECT_EQ(s->heights, (store_heights{3, 3, 2}));
  EXPECT_EQ(s->memory->snapshot(), expected);
  auto stored = leveldb_meta(*s->state);
  EXPECT_EQ(stored.checkpoint, 2u); // block 3 waits for the store's checkpoint
  EXPECT_EQ(stored.durability, durability_mode::async(8));
  EXPECT_EQ(stored.min_rollback_window, 1u);
}

// -- corruption found at open ---------------------------------------------------

namespace {

using rollblock::test::read_bytes;
using rollblock::test::write_bytes;

/// A data directory holding blocks 1..8 in the journal, checkpointed at 5;
/// with `big` values, blocks 1..20 over several 4 KiB segments,
/// checkpointed at 14.
struct damaged_dir {
  explicit damaged_dir(bool big = false) {
    opts = options_for(tmp.path());
    if (big)
      opts.journal_segment_bytes = 4096;
    auto s = recover_ok(opts);
    EXPECT_TRUE(s);
    driver d{std::move(*s)};
    last = big ? 20 : 8;
    checkpoint = big ? 14 : 5;
    for (block_id h = 1; h <= last; ++h) {
      auto ops = ops_of(h);
      if (big)
        ops.push_back({k8(5000 + h), std::string(1500, char('a' + h % 26))});
      d.apply(h, ops);
      if (h == checkpoint)
        d.checkpoint(h);
    }
    EXPECT_FALSE(d.store().blocks->sync());
    index = d.store().blocks->index();
  }

  fs::path segment(std::uint64_t seq) const {
    char name[32];
    std::snprintf(name, sizeof(name), "%06llu.rbj",
                  static_cast<unsigned long long>(seq));
    return tmp.path() / "journal" / name;
  }

  /// The journal position of height `h`.
  const journal_position& at(block_id h) const {
    return index.at(static_cast<std::size_t>(h - 1));
  }

  void flip(block_id h, std::uint64_t delta) const {
    auto path = segment(at(h).segment);
    auto bytes = read_bytes(path);
    bytes[at(h).offset + delta] ^= 0x10;
    write_bytes(path, bytes);
  }

  /// Every file of the journal with its bytes.
  std::map<std::string, std::string> journal_files() const {
    std::map<std::string, std::string> out;
    for (auto& e : fs::directory_iterator{tmp.path() / "journal"})
      out[e.path().filename().string()] = read_bytes(e.path());
    return out;
  }

  /// Recovers, expecting `code` with every text of `texts` in the message
  /// and no journal file changed.
  void expect_refused(ec code, const std::vector<std::string>& texts) const {
    auto before = journal_files();
    auto r = recover(opts);
    ASSERT_FALSE(r);
    EXPECT_EQ(code_of(r.error()), code) << describe(r.error());
    for (auto& t : texts)
      EXPECT_NE(message_of(r.error()).find(t), std::string::npos)
        << "'" << t << "' not in: " << message_of(r.error());
    EXPECT_EQ(journal_files(), before);
  }

  rollblock::test::temp_dir tmp;
  store_options opts;
  block_id last = 0;
  block_id checkpoint = 0;
  std::vector<journal_position> index;
};

} // namespace

TEST(recovery, byte_flipped_in_the_first_entry_header_is_refused) {
  damaged_dir dd;
  dd.flip(1, 9); // The height field.
  dd.expect_refused(ec::journal_corrupt,
                    {dd.segment(1).string() + " is corrupt at offset 0",
                     "header checksum mismatch",
                     "last good height none",
                     "valid entry follows at " + dd.segment(1).string()
                       + " offset " + std::to_string(dd.at(2).offset)});
}

TEST(recovery, byte_flipped_in_a_middle_entry_is_refused) {
  damaged_dir dd;
  dd.flip(4, 40 + 3);
  dd.expect_refused(ec::journal_corrupt,
                    {dd.segment(1).string() + " is corrupt at offset "
                       + std::to_string(dd.at(4).offset),
                     "payload checksum mismatch", "last good height 3"});
}

TEST(recovery, byte_flipped_in_the_last_entry_above_the_checkpoint_is_a_torn_tail) {
  damaged_dir dd;
  dd.flip(8, 30);
  // Capture the store's log.
  std::ostringstream log;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  sink->set_pattern("%l %v");
  logger().sinks().push_back(sink);
  auto s = recover_ok(dd.opts);
  logger().sinks().pop_back();
  ASSERT_TRUE(s);
  EXPECT_NE(log.str().find("warning journal: cut a torn tail of "
                           + std::to_string(dd.at(8).size)
                           + " bytes at offset "
                           + std::to_string(dd.at(8).offset) + " of "
                           + dd.segment(1).string() + " (last good height 7)"),
            std::string::npos)
    << log.str();
  EXPECT_EQ(s->journal_report.truncated_file, dd.segment(1).string());
  EXPECT_EQ(s->journal_report.truncated_offset, dd.at(8).offset);
  EXPECT_EQ(s->heights, (store_heights{7, 7, 5}));
}

TEST(recovery, byte_flipped_in_the_checkpoint_entry_is_refused_even_at_the_tail) {
  damaged_dir dd;
  // Cut the journal after block 5 (the checkpoint), then damage block 5:
  // a torn tail cannot reach a block that was checkpointed.
  auto path = dd.segment(1);
  auto bytes = read_bytes(path);
  write_bytes(path, bytes.substr(0, dd.at(5).offset + dd.at(5).size));
  dd.flip(5, 50);
  dd.expect_refused(ec::journal_corrupt,
                    {"damaged at " + path.string() + " offset "
                       + std::to_string(dd.at(5).offset),
                     "holds no entry at height 5",
                     "ends with height 4"});
}

TEST(recovery, journal_truncated_below_the_checkpoint_is_refused) {
  damaged_dir dd;
  auto path = dd.segment(1);
  auto bytes = read_bytes(path);
  write_bytes(path, bytes.substr(0, dd.at(4).offset + 11));
  dd.expect_refused(ec::journal_corrupt,
                    {"damaged at " + path.string() + " offset "
                       + std::to_string(dd.at(4).offset),
                     "holds no entry at height 5", "ends with height 3"});
}

TEST(recovery, journal_truncated_above_the_checkpoint_is_a_torn_tail) {
  damaged_dir dd;
  auto path = dd.segment(1);
  auto bytes = read_bytes(path);
  write_bytes(path, bytes.substr(0, dd.at(7).offset + 11));
  auto s = recover_ok(dd.opts);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->journal_report.truncated_offset, dd.at(7).offset);
  EXPECT_EQ(s->journal_report.truncated_bytes, 11u);
  EXPECT_EQ(s->heights, (store_heights{6, 6, 5}));
}

TEST(recovery, missing_middle_journal_segment_is_refused) {
  damaged_dir dd{true};
  ASSERT_GE(dd.at(dd.last).segment, 4u);
  block_id last_in_1 = 0;
  for (auto& p : dd.index)
    if (p.segment == 1)
      last_in_1 = p.height;
  fs::remove(dd.segment(2));
  dd.expect_refused(ec::journal_corrupt,
                    {"journal segment " + dd.segment(2).string()
                       + " is missing",
                     "last good height " + std::to_string(last_in_1)});
}

namespace {

/// The last journal entry of segment `seq` in `dd`.
journal_position last_in_segment(const damaged_dir& dd, std::uint64_t seq) {
  journal_position last;
  for (auto& p : dd.index)
    if (p.segment == seq)
      last = p;
  return last;
}

} // namespace

TEST(recovery, missing_journal_segment_holding_the_checkpoint_is_refused) {
  damaged_dir dd{true};
  auto seg = dd.at(dd.checkpoint).segment;
  ASSERT_GT(seg, 1u);
  // Remove the checkpoint's segment and every later one: no gap is left,
  // but the trailer of the segment before names the first one removed.
  for (auto s = seg; s <= dd.at(dd.last).segment; ++s)
    fs::remove(dd.segment(s));
  auto before = last_in_segment(dd, seg - 1);
  dd.expect_refused(ec::journal_corrupt,
                    {"journal segment " + dd.segment(seg).string()
                       + " is missing: segment "
                       + dd.segment(seg - 1).filename().string()
                       + " ends with a trailer at offset "
                       + std::to_string(before.offset + before.size),
                     "last good height " + std::to_string(before.height)});
}

TEST(recovery, missing_newest_journal_segments_above_the_checkpoint_are_refused) {
  damaged_dir dd{true};
  auto seg = dd.at(dd.checkpoint).segment;
  auto newest = dd.at(dd.last).segment;
  ASSERT_GE(newest, seg + 2);
  // Delete only whole segments holding blocks above the checkpoint, newest
  // first: every time the store refuses to open (it would otherwise come
  // back at an older height, losing acknowledged blocks), naming the file.
  for (auto gone = newest; gone > seg; --gone) {
    SCOPED_TRACE("segments " + std::to_string(gone) + ".."
                 + std::to_string(newest) + " deleted");
    fs::remove(dd.segment(gone));
    auto end = last_in_segment(dd, gone - 1);
    dd.expect_refused(ec::journal_corrupt,
                      {"journal segment " + dd.segment(gone).string()
                         + " is missing: segment "
                         + dd.segment(gone - 1).filename().string()
                         + " ends with a trailer at offset "
                         + std::to_string(end.offset + end.size)
                         + " naming it as the next segment (last good "
                           "height "
                         + std::to_string(end.height) + ")"});
  }
}

TEST(recovery, revert_across_a_journal_segment_reopens_at_the_target) {
  damaged_dir dd{true};
  auto seg = dd.at(dd.checkpoint).segment;
  ASSERT_GT(dd.at(dd.last).segment, seg);
  {
    // A revert to the checkpoint interrupted after its marker: the journal
    // still holds every block. Opening completes it.
    state_store::options so;
    so.dir = dd.tmp.path() / "state";
    auto st = state_store::open(so);
    ASSERT_TRUE(st) << describe(st.error());
    checkpoint_batch batch; // LevelDB already holds the state at the target.
    batch.height = dd.checkpoint;
    batch.revert_marker = dd.checkpoint;
    ASSERT_FALSE((*st)->write_checkpoint(batch));
  }
  {
    auto s = recover_ok(dd.opts);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->heights, (store_heights{dd.checkpoint, dd.checkpoint,
                                         dd.checkpoint}));
    EXPECT_EQ(s->blocks->last_height(), dd.checkpoint);
  }
  // The segment that holds the checkpoint is the newest again: no trailer
  // names a segment that is gone.
  EXPECT_FALSE(fs::exists(dd.segment(seg + 1)));
  EXPECT_EQ(fs::file_size(dd.segment(seg)),
            dd.at(dd.checkpoint).offset + dd.at(dd.checkpoint).size);
  auto s = recover_ok(dd.opts);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->heights, (store_heights{dd.checkpoint, dd.checkpoint,
                                       dd.checkpoint}));
}

TEST(recovery, missing_journal_directory_contents_are_refused) {
  damaged_dir dd;
  fs::remove(dd.segment(1));
  dd.expect_refused(ec::journal_corrupt,
                    {"holds no entry at height 5",
                     "the journal holds no entry"});
}

TEST(recovery, deleted_journal_of_a_store_without_a_checkpoint_is_refused) {
  // No checkpoint names a block the journal must hold (the blocks are all
  // within the checkpoint lag): the store's metadata says that the journal
  // existed, so an empty journal directory is refused, not started anew.
  rollblock::test::temp_dir tmp;
  auto opts = options_for(tmp.path());
  {
    auto s = recover_ok(opts);
    ASSERT_TRUE(s);
    driver d{std::move(*s)};
    for (block_id h = 1; h <= 3; ++h)
      d.apply(h, ops_of(h));
    EXPECT_FALSE(d.store().blocks->sync());
    EXPECT_FALSE(leveldb_meta(*d.store().state).checkpoint);
  }
  auto journal_dir = tmp.path() / "journal";
  for (auto& entry : fs::directory_iterator(journal_dir))
    fs::remove(entry.path());
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto r = recover(opts);
    ASSERT_FALSE(r);
    EXPECT_EQ(code_of(r.error()), ec::journal_corrupt);
    EXPECT_EQ(message_of(r.error()),
              "journal directory " + journal_dir.string()
                + " holds no segment file, but its store was created "
                  "before: the journal was deleted (its blocks would be "
                  "lost); refusing to start a new one");
    // Nothing was created: the next open refuses the same way.
    EXPECT_TRUE(fs::is_empty(journal_dir));
  }
}

TEST(recovery, new_store_writes_its_metadata_after_creating_its_journal) {
  rollblock::test::temp_dir tmp;
  auto opts = options_for(tmp.path());
  {
    auto s = recover_ok(opts);
    ASSERT_TRUE(s);
    EXPECT_TRUE(fs::exists(tmp.path() / "journal" / "000001.rbj"));
    EXPECT_TRUE(leveldb_meta(*s->state).checkpoint == std::nullopt);
  }
  // Reopening an empty store finds its (empty) journal segment.
  auto again = recover_ok(opts);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->heights, (store_heights{0, 0, 0}));
}

TEST(recovery, metadata_of_another_format_version_is_refused) {
  damaged_dir dd;
  {
    state_store::options so;
    so.dir = dd.tmp.path() / "state";
    auto st = state_store::open(so);
    ASSERT_TRUE(st) << describe(st.error());
    auto meta = leveldb_meta(**st);
    meta.format_version = format_version + 1;
    ASSERT_FALSE((*st)->write_config(meta));
  }
  dd.expect_refused(ec::format_version_mismatch,
                    {"written by format version "
                       + std::to_string(format_version + 1),
                     "this build reads version "
                       + std::to_string(format_version),
                     (dd.tmp.path() / "state").string()});
}

TEST(recovery, a_journaled_height_above_the_highest_accepted_is_refused) {
  // Older builds accepted height 2^64 - 1, whose position wrapped around to
  // 0; this one refuses such a journal unchanged.
  damaged_dir dd;
  {
    auto s = recover_ok(dd.opts);
    ASSERT_TRUE(s);
    auto record = std::make_shared<block_record>();
    record->height = memory_state::max_height + 1;
    record->changes.push_back({k8(1), "far", ""});
    ASSERT_FALSE(s->blocks->append(*record));
    ASSERT_FALSE(s->blocks->sync());
  }
  dd.expect_refused(ec::format_version_mismatch,
                    {"the journal holds block "
                       + std::to_string(memory_state::max_height + 1),
                     "above the highest height this build accepts ("
                       + std::to_string(memory_state::max_height) + ")"});
}

TEST(recovery, a_checkpoint_above_the_highest_accepted_height_is_refused) {
  damaged_dir dd;
  {
    state_store::options so;
    so.dir = dd.tmp.path() / "state";
    auto st = state_store::open(so);
    ASSERT_TRUE(st) << describe(st.error());
    checkpoint_batch batch;
    batch.height = memory_state::max_height + 1;
    ASSERT_FALSE((*st)->write_checkpoint(batch));
  }
  dd.expect_refused(ec::format_version_mismatch,
                    {"the state database's checkpoint is block "
                       + std::to_string(memory_state::max_height + 1),
                     "above the highest height this build accepts ("
                       + std::to_string(memory_state::max_height) + ")"});
}

TEST(recovery, damaged_leveldb_table_is_state_corrupt_naming_the_file) {
  damaged_dir dd;
  // Reopening folds LevelDB's log into a table file.
  ASSERT_TRUE(recover_ok(dd.opts));
  std::vector<fs::path> tables;
  for (auto& e : fs::directory_iterator{dd.tmp.path() / "state"})
    if (e.path().extension() == ".ldb")
      tables.push_back(e.path());
  ASSERT_FALSE(tables.empty());
  for (auto& t : tables) {
    auto bytes = read_bytes(t);
    bytes[20] ^= 0x01; // Inside the first data block.
    write_bytes(t, bytes);
  }
  auto r = recover(dd.opts);
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), ec::state_corrupt) << describe(r.error());
  EXPECT_NE(message_of(r.error()).find(tables.front().string()),
            std::string::npos)
    << message_of(r.error());
}
