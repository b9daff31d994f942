// Disk faults under a running store (through blocking_store): ENOSPC, EIO
// on fsync and short writes in the journal, ENOSPC in LevelDB, and SIGKILL
// at chosen operations (between the journal append and the checkpoint, in
// the middle of pruning), each followed by a clean reopen.

#include "rollblock/actors/blocking_store.hpp"
#include "rollblock/messages/error.hpp"
#include "support/fault_env.hpp"
#include "support/fault_file_system.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <map>
#include <sys/wait.h>
#include <unistd.h>

using namespace rollblock;
using rollblock::test::fault_env;
using rollblock::test::fault_file_system;
using rollblock::test::fault_op;
namespace fs = std::filesystem;

namespace {

constexpr std::size_t pad_bytes = 700;

/// Block `h`: rewrites key h % 7 and writes a padded key of its own, so that
/// a few blocks fill a 4 KiB journal segment.
operation_list ops_of(block_id h) {
  return {{key_from_u64(h % 7), value_from_u64(h)},
          {key_from_u64(1000 + h), std::string(pad_bytes, char('a' + h % 26))}};
}

/// The state after blocks 1..h.
std::map<key, value> model_at(block_id h) {
  std::map<key, value> m;
  for (block_id i = 1; i <= h; ++i)
    for (auto& op : ops_of(i))
      m[op.k] = op.v;
  return m;
}

/// Checks that `store` holds exactly the state after blocks 1..h of the
/// keys blocks 1..limit write.
void expect_state(blocking_store& store, block_id h, block_id limit) {
  auto m = model_at(h);
  std::vector<key> keys;
  for (block_id i = 0; i < 7; ++i)
    keys.push_back(key_from_u64(i));
  for (block_id i = 1; i <= limit; ++i)
    keys.push_back(key_from_u64(1000 + i));
  auto got = store.fetch_many(keys);
  ASSERT_TRUE(got) << describe(got.error());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto it = m.find(keys[i]);
    EXPECT_EQ((*got)[i], it == m.end() ? value{} : it->second)
      << "key " << i << " at height " << h;
  }
}

void expect_contains(const caf::error& err, const std::string& text) {
  EXPECT_NE(message_of(err).find(text), std::string::npos)
    << "'" << text << "' not in: " << describe(err);
}

class disk_fault_test : public ::testing::Test {
protected:
  store_options options() const {
    store_options opts;
    opts.data_dir = dir.sub("data");
    opts.journal_segment_bytes = 4096;
    opts.checkpoint_every_blocks = 1000;
    opts.checkpoint_interval = std::chrono::hours{1};
    // Checkpoints (and their faults) come every checkpoint_every_blocks.
    opts.checkpoint_lag_blocks = 0;
    return opts;
  }

  std::unique_ptr<blocking_store> open(const store_options& opts) {
    auto store = blocking_store::open(opts);
    EXPECT_TRUE(store) << describe(store.error());
    return store ? std::move(*store) : nullptr;
  }

  /// Returns `opts` with every journal file operation going through `ffs`.
  store_options with_journal_faults(store_options opts) const {
    opts.journal_file_system = ffs;
    return opts;
  }

  /// Opens the data directory without faults.
  std::unique_ptr<blocking_store> reopen() {
    return open(options());
  }

  void apply_ok(blocking_store& store, block_id from, block_id to) {
    for (auto h = from; h <= to; ++h) {
      auto err = store.apply(h, ops_of(h));
      ASSERT_FALSE(err) << "block " << h << ": " << describe(err);
    }
  }

  /// Checks the fatal state: every call fails fast with `err`.
  void expect_fatal(blocking_store& store, const caf::error& err,
                    block_id next) {
    EXPECT_EQ(store.apply(next, ops_of(next)), err);
    EXPECT_EQ(store.flush().error(), err);
    EXPECT_EQ(store.ensure_healthy(), err);
    EXPECT_EQ(store.revert_to(1), err);
    EXPECT_EQ(store.fetch(key_from_u64(1)).error(), err);
  }

  test::temp_dir dir;
  /// The journal's fault layer (with_journal_faults).
  std::shared_ptr<fault_file_system> ffs =
    std::make_shared<fault_file_system>();
};

// -- journal faults --------------------------------------------------------------

TEST_F(disk_fault_test, enospc_on_journal_write_is_fatal_and_reopen_recovers) {
  auto store = open(with_journal_faults(options()));
  ASSERT_TRUE(store);
  apply_ok(*store, 1, 3);
  ffs->schedule().fail_writes_after(100);
  auto err = store->apply(4, ops_of(4));
  ASSERT_EQ(code_of(err), ec::durability_failure) << describe(err);
  expect_contains(err, "journal append of block 4 failed");
  expect_contains(err, "No space left on device");
  expect_contains(err, (fs::path{options().data_dir} / "journal").string());
  EXPECT_EQ(store->durable_height(), 3u);
  ffs->schedule().heal(); // Space is back: the store stays fatal anyway.
  expect_fatal(*store, err, 5);
  EXPECT_EQ(store->durable_height(), 3u);
  store.reset();
  store = reopen();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->applied_height(), 3u);
  EXPECT_EQ(store->durable_height(), 3u);
  expect_state(*store, 3, 5);
  apply_ok(*store, 4, 6);
  expect_state(*store, 6, 6);
}

TEST_F(disk_fault_test, short_journal_write_then_enospc_is_fatal) {
  auto store = open(with_journal_faults(options()));
  ASSERT_TRUE(store);
  apply_ok(*store, 1, 2);
  // A write that lands 9 bytes and reports it, then a full disk.
  ffs->schedule().short_write_at(1, 9);
  ffs->schedule().fail_at(fault_op::write, 2, ENOSPC);
  auto err = store->apply(3, ops_of(3));
  ASSERT_EQ(code_of(err), ec::durability_failure) << describe(err);
  expect_contains(err, "No space left on device");
  expect_fatal(*store, err, 4);
  store.reset();
  store = reopen();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->applied_height(), 2u);
  expect_state(*store, 2, 4);
}

TEST_F(disk_fault_test, short_journal_write_alone_is_completed) {
  auto store = open(with_journal_faults(options()));
  ASSERT_TRUE(store);
  ffs->schedule().short_write_at(2, 100);
  apply_ok(*store, 1, 3);
  EXPECT_EQ(store->durable_height(), 3u);
  ASSERT_FALSE(store->close());
  store = reopen();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->applied_height(), 3u);
  expect_state(*store, 3, 3);
}

TEST_F(disk_fault_test, eio_on_journal_fsync_never_reports_the_block_durable) {
  auto store = open(with_journal_faults(options()));
  ASSERT_TRUE(store);
  apply_ok(*store, 1, 3);
  ffs->schedule().fail_at(fault_op::sync, 1, EIO);
  auto err = store->apply(4, ops_of(4));
  ASSERT_EQ(code_of(err), ec::durability_failure) << describe(err);
  expect_contains(err, "journal fsync failed; blocks above 3 may not be "
                       "durable");
  expect_contains(err, "Input/output error");
  // fsyncgate: the disk works again and a retried fsync would succeed, but
  // block 4's pages may be gone. Nothing above 3 is ever reported durable.
  ffs->schedule().heal();
  auto syncs = ffs->schedule().calls(fault_op::sync);
  expect_fatal(*store, err, 5);
  EXPECT_EQ(store->durable_height(), 3u);
  EXPECT_EQ(store->heights().durable, 3u);
  EXPECT_EQ(ffs->schedule().calls(fault_op::sync), syncs);
  store.reset();
  // Block 4 reached the page cache, so the reopened store may hold it: any
  // height between the last durable (3) and the last applied (4).
  store = reopen();
  ASSERT_TRUE(store);
  auto h = store->applied_height();
  EXPECT_GE(h, 3u);
  EXPECT_LE(h, 4u);
  expect_state(*store, h, 5);
}

TEST_F(disk_fault_test, eio_on_fsync_in_relaxed_mode_keeps_the_durable_height) {
  auto opts = with_journal_faults(options());
  opts.durability = durability_mode::synchronous_relaxed(100);
  auto store = open(opts);
  ASSERT_TRUE(store);
  apply_ok(*store, 1, 3);
  auto flushed = store->flush();
  ASSERT_TRUE(flushed) << describe(flushed.error());
  EXPECT_EQ(*flushed, 3u);
  apply_ok(*store, 4, 8); // Applied, not yet fsynced.
  EXPECT_EQ(store->durable_height(), 3u);
  ffs->schedule().fail_at(fault_op::sync, 1, EIO);
  auto err = store->flush().error();
  ASSERT_EQ(code_of(err), ec::durability_failure) << describe(err);
  expect_contains(err, "Input/output error");
  ffs->schedule().heal();
  expect_fatal(*store, err, 9);
  EXPECT_EQ(store->durable_height(), 3u);
  store.reset();
  store = reopen();
  ASSERT_TRUE(store);
  auto h = store->applied_height();
  EXPECT_GE(h, 3u);
  EXPECT_LE(h, 8u);
  expect_state(*store, h, 9);
}

// -- LevelDB faults --------------------------------------------------------------

TEST_F(disk_fault_test, enospc_on_checkpoint_write_is_fatal_and_loses_nothing) {
  fault_env env;
  auto opts = options();
  opts.leveldb_env = &env;
  opts.checkpoint_every_blocks = 4;
  auto store = open(opts);
  ASSERT_TRUE(store);
  apply_ok(*store, 1, 3);
  env.schedule().fail_writes_after(10);
  // Block 4 is durable in the journal; its checkpoint fails behind it.
  ASSERT_FALSE(store->apply(4, ops_of(4)));
  auto flushed = store->flush();
  ASSERT_FALSE(flushed);
  auto err = flushed.error();
  ASSERT_EQ(code_of(err), ec::durability_failure) << describe(err);
  expect_contains(err, "checkpoint of block");
  expect_contains(err, "No space left on device");
  expect_contains(err, (fs::path{opts.data_dir} / "state").string());
  env.schedule().heal();
  expect_fatal(*store, err, 5);
  EXPECT_EQ(store->durable_height(), 4u);
  store.reset();
  // Every acknowledged block comes back from the journal.
  store = reopen();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->applied_height(), 4u);
  EXPECT_EQ(store->durable_height(), 4u);
  // LevelDB never got a checkpoint: the replayed blocks wait for one.
  EXPECT_EQ(store->current_height(), 0u);
  expect_state(*store, 4, 5);
  ASSERT_FALSE(store->close());
  store = reopen();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->current_height(), 4u); // the close checkpointed them
  expect_state(*store, 4, 5);
}

TEST_F(disk_fault_test, eio_on_leveldb_sync_is_fatal) {
  fault_env env;
  auto opts = options();
  opts.leveldb_env = &env;
  auto store = open(opts);
  ASSERT_TRUE(store);
  apply_ok(*store, 1, 5);
  env.schedule().fail_at(fault_op::sync, 1, EIO);
  // A policy switch checkpoints everything first.
  auto switched = store->set_relaxed(2);
  ASSERT_FALSE(switched);
  auto err = switched.error();
  ASSERT_EQ(code_of(err), ec::durability_failure) << describe(err);
  expect_contains(err, "Input/output error");
  env.schedule().heal();
  expect_fatal(*store, err, 6);
  store.reset();
  store = reopen();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->applied_height(), 5u);
  expect_state(*store, 5, 6);
}

// -- crash points (SIGKILL in a child process) -----------------------------------

/// How a child's run ended: the heights it saw acknowledged.
struct child_run {
  bool killed = false;
  block_id last_acked = 0;
  bool any_acked = false;
};

/// A fault layer for a child: installs itself in the options and, once the
/// store is open, arms its crash point (counting from there).
struct crash_point {
  std::shared_ptr<fault_file_system> journal_fs;
  std::shared_ptr<fault_env> env;
  fault_op op = fault_op::write;
  std::uint64_t nth = 1;
  std::size_t keep = 0;

  void install(store_options& opts) const {
    opts.journal_file_system = journal_fs;
    opts.leveldb_env = env.get();
  }

  void arm() const {
    if (journal_fs)
      journal_fs->schedule().crash_at(op, nth, keep);
    if (env)
      env->schedule().crash_at(op, nth, keep);
  }
};

crash_point in_journal(fault_op op, std::uint64_t nth, std::size_t keep = 0) {
  return {std::make_shared<fault_file_system>(), nullptr, op, nth, keep};
}

crash_point in_leveldb(fault_op op, std::uint64_t nth) {
  return {nullptr, std::make_shared<fault_env>(), op, nth, 0};
}

/// Forks a child that opens the store, arms `point`, applies blocks
/// 1..last (reporting each acknowledgement through a pipe) and is expected
/// to die of SIGKILL at the crash point. The parent runs no actor system
/// while forking.
child_run run_child(const store_options& base, block_id last,
                    const crash_point& point) {
  child_run run;
  int fds[2];
  if (::pipe(fds) != 0)
    return run;
  auto pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    auto opts = base;
    point.install(opts);
    auto store = blocking_store::open(opts);
    if (!store)
      ::_exit(4);
    point.arm();
    for (block_id h = 1; h <= last; ++h) {
      if ((*store)->apply(h, ops_of(h)))
        ::_exit(5);
      if (::write(fds[1], &h, sizeof(h)) != sizeof(h))
        ::_exit(6);
    }
    (*store)->flush();
    ::_exit(3); // The crash point was never reached.
  }
  ::close(fds[1]);
  block_id h = 0;
  while (::read(fds[0], &h, sizeof(h)) == sizeof(h)) {
    run.last_acked = h;
    run.any_acked = true;
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  run.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  EXPECT_TRUE(run.killed) << "child status " << status;
  return run;
}

/// Reopens after a crash and checks the sync-mode invariant: exactly the
/// state at a height between the last acknowledged and the last attempted.
void expect_recovered(const store_options& opts, const child_run& run,
                      block_id last) {
  auto store = blocking_store::open(opts);
  ASSERT_TRUE(store) << describe(store.error());
  auto h = (*store)->applied_height();
  EXPECT_GE(h, run.last_acked);
  EXPECT_LE(h, last);
  EXPECT_EQ((*store)->durable_height(), h);
  expect_state(**store, h, last);
  // And it carries on.
  ASSERT_FALSE((*store)->apply(h + 1, ops_of(h + 1)));
  ASSERT_FALSE((*store)->close());
}

TEST_F(disk_fault_test, crash_in_the_checkpoint_write_after_the_journal) {
  auto opts = options();
  opts.checkpoint_every_blocks = 4;
  // The first LevelDB write after opening is the first checkpoint (blocks
  // 1..4, all journaled and fsynced): the process dies inside it.
  auto run = run_child(opts, 20, in_leveldb(fault_op::write, 1));
  ASSERT_TRUE(run.killed);
  EXPECT_TRUE(run.any_acked);
  expect_recovered(options(), run, 20);
}

TEST_F(disk_fault_test, crash_between_the_journal_append_and_its_fsync) {
  auto opts = options();
  opts.checkpoint_every_blocks = 2;
  auto run = run_child(opts, 20, in_journal(fault_op::sync, 6));
  ASSERT_TRUE(run.killed);
  expect_recovered(options(), run, 20);
}

TEST_F(disk_fault_test, crash_in_the_middle_of_a_journal_write) {
  auto opts = options();
  opts.checkpoint_every_blocks = 3;
  // Block 7's entry is torn after 300 bytes.
  auto run = run_child(opts, 20, in_journal(fault_op::write, 7, 300));
  ASSERT_TRUE(run.killed);
  EXPECT_EQ(run.last_acked, 6u);
  expect_recovered(options(), run, 20);
}

/// Options under which the first checkpoint prunes several segments at once.
store_options pruning(store_options opts) {
  opts.checkpoint_every_blocks = 40;
  opts.min_rollback_window = 2;
  return opts;
}

TEST_F(disk_fault_test, crash_after_pruned_through_before_the_unlinks) {
  auto opts = pruning(options());
  auto run = run_child(opts, 60, in_journal(fault_op::remove, 1));
  ASSERT_TRUE(run.killed);
  auto journal = fs::path{opts.data_dir} / "journal";
  // LevelDB recorded the prune, no segment went yet: reopening finishes it.
  EXPECT_TRUE(fs::exists(journal / "000001.rbj"));
  expect_recovered(opts, run, 60);
  EXPECT_FALSE(fs::exists(journal / "000001.rbj"));
  EXPECT_FALSE(fs::exists(journal / "000002.rbj"));
}

TEST_F(disk_fault_test, crash_between_two_unlinks_of_a_prune) {
  auto opts = pruning(options());
  auto run = run_child(opts, 60, in_journal(fault_op::remove, 2));
  ASSERT_TRUE(run.killed);
  auto journal = fs::path{opts.data_dir} / "journal";
  EXPECT_FALSE(fs::exists(journal / "000001.rbj"));
  EXPECT_TRUE(fs::exists(journal / "000002.rbj"));
  expect_recovered(opts, run, 60);
  EXPECT_FALSE(fs::exists(journal / "000002.rbj"));
}

/// A child that applies blocks 1..20 (sync mode: each acknowledged block is
/// durable; they fill about seven 4 KiB segments), arms `point` and reverts
/// to block 6, within the checkpoint lag: the revert cuts the journal
/// across segments and dies at the crash point.
bool revert_child(const store_options& base, const crash_point& point) {
  auto pid = ::fork();
  if (pid == 0) {
    auto opts = base;
    point.install(opts);
    auto store = blocking_store::open(opts);
    if (!store)
      ::_exit(4);
    for (block_id h = 1; h <= 20; ++h)
      if ((*store)->apply(h, ops_of(h)))
        ::_exit(5);
    point.arm();
    (*store)->revert_to(6);
    ::_exit(3); // The crash point was never reached.
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
    << "child status " << status;
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

TEST_F(disk_fault_test, crash_in_a_revert_within_the_lag_is_all_or_nothing) {
  struct crash_case {
    const char* what;
    crash_point point;
    block_id recovered;
  };
  const std::vector<crash_case> cases{
    {"creating the truncation record", in_journal(fault_op::create, 1), 20},
    {"writing the truncation record (torn)",
     in_journal(fault_op::write, 1, 10), 20},
    {"emptying the newest segment", in_journal(fault_op::truncate, 1), 6},
    {"emptying the next segment", in_journal(fault_op::truncate, 2), 6},
    {"deleting an emptied segment", in_journal(fault_op::remove, 1), 6},
    // Segments 4 and 3 go first (block 6 is in segment 2).
    {"deleting the truncation record", in_journal(fault_op::remove, 3), 6},
    {"the directory fsync after it", in_journal(fault_op::sync_directory, 2),
     6},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.what);
    test::temp_dir tmp;
    auto opts = options();
    opts.data_dir = tmp.sub("data");
    opts.checkpoint_lag_blocks = 100;
    ASSERT_TRUE(revert_child(opts, c.point));
    // The old tip or the target, never a height in between.
    auto store = blocking_store::open(opts);
    ASSERT_TRUE(store) << describe(store.error());
    EXPECT_EQ((*store)->applied_height(), c.recovered);
    expect_state(**store, c.recovered, 20);
    ASSERT_FALSE((*store)->apply(21, ops_of(21)));
    ASSERT_FALSE((*store)->close());
  }
}

} // namespace
