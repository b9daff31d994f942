// Behaviour tests of the store through its blocking facade: one test (or
// more) per row of the parity list (shared/reference/rollblock-0.4.1.md),
// every error path and every durability mode.

#include "rollblock/actors/blocking_store.hpp"
#include "rollblock/messages/error.hpp"
#include "rollblock/storage/memory_state.hpp"
#include "support/file_size_limit.hpp"
#include "support/error_assertions.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

using namespace rollblock;

namespace {

key k(std::uint64_t x) {
  return key_from_u64(x);
}

value v(std::uint64_t x) {
  return value_from_u64(x);
}

class store_test : public ::testing::Test {
protected:
  std::unique_ptr<blocking_store> open(store_options opts = {}) {
    opts.data_dir = dir.sub("data");
    auto store = blocking_store::open(opts);
    EXPECT_TRUE(store) << describe(store.error());
    return store ? std::move(*store) : nullptr;
  }

  caf::error open_error(store_options opts) {
    opts.data_dir = dir.sub("data");
    auto store = blocking_store::open(opts);
    EXPECT_FALSE(store);
    return store ? caf::error{} : store.error();
  }

  static value get(blocking_store& store, const key& x) {
    auto result = store.fetch(x);
    EXPECT_TRUE(result) << describe(result.error());
    return result ? *result : value{"<error>"};
  }

  test::temp_dir dir;
};

} // namespace

// -- data model ----------------------------------------------------------------

TEST_F(store_test, key_width_is_fixed_at_creation) {
  auto store = open({.key_width = 32});
  ASSERT_TRUE(store);
  EXPECT_EQ(store->key_width(), 32u);
  ASSERT_OK(store->apply(1, {{key_from_prefix("alice", 32), "100"}}));
  EXPECT_CODE(store->apply(2, {{k(1), "x"}}), ec::key_width_mismatch);
  EXPECT_CODE(store->fetch(k(1)).error(), ec::key_width_mismatch);
  ASSERT_OK(store->close());
  auto err = open_error({.key_width = 8});
  EXPECT_EQ(code_of(err), ec::config_mismatch);
  EXPECT_NE(message_of(err).find("holds 32-byte keys, but the options ask "
                                 "for 8-byte keys"),
            std::string::npos)
    << message_of(err);
  store = open(); // unset width: the stored one
  ASSERT_TRUE(store);
  EXPECT_EQ(store->key_width(), 32u);
  EXPECT_EQ(get(*store, key_from_prefix("alice", 32)), "100");
}

TEST_F(store_test, key_width_out_of_range_is_refused) {
  EXPECT_CODE(open_error({.key_width = 7}), ec::invalid_argument);
  EXPECT_CODE(open_error({.key_width = 65}), ec::invalid_argument);
  EXPECT_FALSE(std::filesystem::exists(dir.sub("data")));
}

TEST_F(store_test, wrong_key_width_message_names_both_widths) {
  auto store = open();
  ASSERT_TRUE(store);
  auto err = store->apply(1, {{k(1), v(1)}, {std::string(9, 'k'), v(2)}});
  EXPECT_EQ(code_of(err), ec::key_width_mismatch);
  EXPECT_EQ(message_of(err), "operation 1 of block 1 has a 9-byte key; this "
                             "store's keys are 8 bytes");
  EXPECT_EQ(store->applied_height(), 0u);
  EXPECT_EQ(get(*store, k(1)), "");
}

TEST_F(store_test, value_limit_is_65535_bytes) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(1, {{k(1), std::string(65535, 'x')}}));
  EXPECT_EQ(get(*store, k(1)).size(), 65535u);
  auto err = store->apply(2, {{k(2), v(2)}, {k(1), std::string(65536, 'y')}});
  EXPECT_EQ(code_of(err), ec::value_too_large);
  EXPECT_EQ(message_of(err), "operation 1 of block 2 has a 65536-byte value; "
                             "the limit is 65535 bytes");
  EXPECT_EQ(store->applied_height(), 1u);
  EXPECT_EQ(get(*store, k(1)), std::string(65535, 'x'));
  EXPECT_EQ(get(*store, k(2)), "");
}

TEST_F(store_test, empty_value_deletes) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(1, {{k(1), v(1)}}));
  ASSERT_OK(store->apply(2, {{k(1), ""}}));
  EXPECT_EQ(get(*store, k(1)), "");
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->live_keys, 0u);
}

// -- apply ---------------------------------------------------------------------

TEST_F(store_test, heights_must_increase) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(9, {{k(1), v(1)}}));
  auto err = store->apply(7, {{k(1), v(2)}});
  EXPECT_EQ(code_of(err), ec::block_id_not_increasing);
  EXPECT_EQ(message_of(err), "block 7 is not above the applied height 9");
  EXPECT_CODE(store->apply(9, {}), ec::block_id_not_increasing);
  EXPECT_EQ(get(*store, k(1)), v(1));
  EXPECT_EQ(store->applied_height(), 9u);
}

TEST_F(store_test, heights_above_the_highest_accepted_are_refused) {
  auto store = open();
  ASSERT_TRUE(store);
  auto top = storage::memory_state::max_height;
  ASSERT_OK(store->apply(top - 1, {{k(1), v(1)}}));
  auto err = store->apply(top + 1, {{k(1), v(2)}});
  EXPECT_EQ(code_of(err), ec::invalid_argument);
  EXPECT_EQ(message_of(err), "block 18446744073709551615 is above the highest "
                             "height a store accepts, 18446744073709551614");
  EXPECT_EQ(get(*store, k(1)), v(1));
  EXPECT_EQ(store->applied_height(), top - 1);
  ASSERT_OK(store->apply(top, {{k(1), v(3)}}));
  ASSERT_OK(store->close());
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(get(*store, k(1)), v(3));
  EXPECT_EQ(store->applied_height(), top);
}

TEST_F(store_test, genesis_zero_is_accepted_once) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(0, {{k(1), v(1)}}));
  EXPECT_EQ(get(*store, k(1)), v(1));
  EXPECT_CODE(store->apply(0, {{k(1), v(2)}}), ec::block_id_not_increasing);
  ASSERT_OK(store->close());
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(get(*store, k(1)), v(1));
  EXPECT_CODE(store->apply(0, {}), ec::block_id_not_increasing);
  ASSERT_OK(store->apply(1, {}));
}

TEST_F(store_test, sparse_heights_apply_revert_and_recover) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(5, {{k(1), v(5)}}));
  ASSERT_OK(store->apply(500, {{k(1), v(500)}}));
  ASSERT_OK(store->apply(1000, {{k(1), v(1000)}}));
  ASSERT_OK(store->revert_to(750));
  EXPECT_EQ(get(*store, k(1)), v(500));
  EXPECT_EQ(store->applied_height(), 750u);
  EXPECT_CODE(store->apply(750, {}), ec::block_id_not_increasing);
  ASSERT_OK(store->apply(751, {{k(2), v(751)}}));
  ASSERT_OK(store->close());
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->applied_height(), 751u);
  EXPECT_EQ(get(*store, k(1)), v(500));
  EXPECT_EQ(get(*store, k(2)), v(751));
}

TEST_F(store_test, empty_block_advances_height) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(3, {}));
  EXPECT_EQ(store->applied_height(), 3u);
  EXPECT_CODE(store->apply(3, {}), ec::block_id_not_increasing);
}

TEST_F(store_test, last_operation_on_a_key_wins) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(1, {{k(1), v(1)}, {k(1), v(2)}, {k(2), v(3)},
                             {k(2), ""}, {k(3), ""}, {k(3), v(4)}}));
  EXPECT_EQ(get(*store, k(1)), v(2));
  EXPECT_EQ(get(*store, k(2)), "");
  EXPECT_EQ(get(*store, k(3)), v(4));
  ASSERT_OK(store->revert_to(0));
  EXPECT_EQ(get(*store, k(1)), "");
  EXPECT_EQ(get(*store, k(3)), "");
}

TEST_F(store_test, deleting_an_absent_key_is_a_no_op) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(1, {{k(1), ""}}));
  EXPECT_EQ(get(*store, k(1)), "");
  EXPECT_EQ(store->applied_height(), 1u);
  EXPECT_EQ(store->metrics()->live_keys, 0u);
}

TEST_F(store_test, a_block_is_all_or_nothing) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(1, {{k(1), v(1)}}));
  EXPECT_CODE(store->apply(2, {{k(1), v(2)}, {k(2), v(2)},
                               {k(3), std::string(70000, 'z')}}),
              ec::value_too_large);
  EXPECT_EQ(get(*store, k(1)), v(1));
  EXPECT_EQ(get(*store, k(2)), "");
  EXPECT_EQ(store->applied_height(), 1u);
  ASSERT_OK(store->close());
  store = open();
  EXPECT_EQ(get(*store, k(1)), v(1));
  EXPECT_EQ(get(*store, k(2)), "");
}

// -- revert ----------------------------------------------------------------------

TEST_F(store_test, revert_above_applied_is_refused) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(7, {{k(1), v(7)}}));
  auto err = store->revert_to(9);
  EXPECT_EQ(code_of(err), ec::rollback_target_ahead);
  EXPECT_EQ(message_of(err),
            "cannot revert to block 9: it is above the applied height 7");
  EXPECT_EQ(store->applied_height(), 7u);
  EXPECT_EQ(get(*store, k(1)), v(7));
}

TEST_F(store_test, revert_to_applied_is_a_no_op) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->revert_to(0)); // fresh store
  ASSERT_OK(store->apply(0, {{k(1), v(0)}})); // genesis still allowed
  ASSERT_OK(store->apply(4, {{k(1), v(4)}}));
  ASSERT_OK(store->revert_to(4));
  EXPECT_EQ(get(*store, k(1)), v(4));
  EXPECT_EQ(store->metrics()->reverts, 0u);
}

TEST_F(store_test, revert_undoes_newest_first_to_exact_state) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(1, {{k(1), v(1)}, {k(2), v(1)}}));
  ASSERT_OK(store->apply(2, {{k(1), v(2)}, {k(3), v(2)}}));
  ASSERT_OK(store->apply(3, {{k(1), ""}, {k(2), v(3)}, {k(4), v(3)}}));
  ASSERT_OK(store->revert_to(1));
  EXPECT_EQ(*store->fetch_many({k(1), k(2), k(3), k(4)}),
            (std::vector<value>{v(1), v(1), "", ""}));
  // Within the checkpoint lag: LevelDB was not written (current 0).
  EXPECT_EQ(store->heights(), (store_heights{1, 1, 0}));
  auto m = store->metrics();
  EXPECT_EQ(m->reverts, 1u);
  EXPECT_EQ(m->blocks_reverted, 2u);
  EXPECT_EQ(m->live_keys, 2u);
}

TEST_F(store_test, revert_is_durable_when_it_returns) {
  auto store = open();
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 10; ++h)
    ASSERT_OK(store->apply(h, {{k(h), v(h)}, {k(0), v(h)}}));
  ASSERT_OK(store->revert_to(4));
  ASSERT_OK(store->close());
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->applied_height(), 4u);
  EXPECT_EQ(get(*store, k(0)), v(4));
  EXPECT_EQ(get(*store, k(5)), "");
  EXPECT_CODE(store->apply(4, {}), ec::block_id_not_increasing);
  ASSERT_OK(store->apply(5, {{k(5), v(55)}}));
  EXPECT_EQ(get(*store, k(5)), v(55));
}

TEST_F(store_test, revert_below_pruned_history_is_refused_and_changes_nothing) {
  store_options opts{.min_rollback_window = 10,
                     .checkpoint_every_blocks = 2,
                     .checkpoint_lag_blocks = 5,
                     .journal_segment_bytes = 4096};
  auto store = open(opts);
  ASSERT_TRUE(store);
  // Each block is ~1.1 KB: a segment holds three or four blocks.
  for (block_id h = 1; h <= 100; ++h)
    ASSERT_OK(store->apply(h, {{k(h), std::string(1000, 'a')}, {k(0), v(h)}}));
  ASSERT_TRUE(store->flush());
  // The pruned floor is at most 100 - 10: reverting to 90 must work.
  auto err = store->revert_to(1);
  EXPECT_EQ(code_of(err), ec::rollback_beyond_history);
  EXPECT_NE(message_of(err).find("cannot revert to block 1: the journal was "
                                 "pruned through block "),
            std::string::npos)
    << message_of(err);
  EXPECT_EQ(store->applied_height(), 100u);
  EXPECT_EQ(get(*store, k(0)), v(100));
  ASSERT_OK(store->revert_to(90));
  EXPECT_EQ(get(*store, k(0)), v(90));
  EXPECT_EQ(get(*store, k(91)), "");
  ASSERT_OK(store->close());
  // The floor survives a reopen.
  store = open(opts);
  ASSERT_TRUE(store);
  EXPECT_CODE(store->revert_to(1), ec::rollback_beyond_history);
  EXPECT_EQ(get(*store, k(0)), v(90));
}

// -- reads ---------------------------------------------------------------------

TEST_F(store_test, fetch_many_returns_values_in_input_order) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(1, {{k(1), "one"}, {k(3), "three"}}));
  EXPECT_EQ(*store->fetch_many({k(3), k(2), k(1), k(3)}),
            (std::vector<value>{"three", "", "one", "three"}));
  EXPECT_EQ(*store->fetch_many({}), std::vector<value>{});
  EXPECT_CODE(store->fetch_many({k(1), "short"}).error(),
              ec::key_width_mismatch);
}

TEST_F(store_test, fetch_many_reads_one_height_while_blocks_apply) {
  auto store = open({.durability = durability_mode::async(64)});
  ASSERT_TRUE(store);
  std::vector<key> keys;
  for (std::uint64_t i = 0; i < 64; ++i)
    keys.push_back(k(i));
  std::atomic<bool> done{false};
  std::atomic<std::size_t> reads{0};
  std::atomic<std::size_t> torn{0};
  std::thread reader{[&] {
    while (!done) {
      auto values = store->fetch_many(keys);
      if (!values)
        continue;
      for (auto& x : *values)
        if (x != values->front())
          ++torn;
      ++reads;
    }
  }};
  for (block_id h = 1; h <= 300; ++h) {
    operation_list ops;
    for (auto& x : keys)
      ops.push_back({x, v(h)});
    ASSERT_OK(store->apply(h, std::move(ops)));
    if (h % 50 == 0)
      ASSERT_OK(store->revert_to(h - 3));
  }
  done = true;
  reader.join();
  EXPECT_GT(reads.load(), 0u);
  EXPECT_EQ(torn.load(), 0u);
}

// -- pop and staged blocks --------------------------------------------------------

TEST_F(store_test, pop_commits_a_block_and_returns_the_previous_value) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(1, {{k(1), v(1)}}));
  auto before = store->pop(2, k(1));
  ASSERT_TRUE(before);
  EXPECT_EQ(*before, v(1));
  EXPECT_EQ(get(*store, k(1)), "");
  EXPECT_EQ(store->applied_height(), 2u);
  auto absent = store->pop(3, k(9));
  ASSERT_TRUE(absent);
  EXPECT_EQ(*absent, "");
  EXPECT_EQ(store->applied_height(), 3u);
  EXPECT_CODE(store->pop(3, k(1)).error(), ec::block_id_not_increasing);
  EXPECT_CODE(store->pop(4, "short").error(), ec::key_width_mismatch);
  EXPECT_EQ(store->applied_height(), 3u);
}

TEST_F(store_test, staged_block_reads_see_staged_writes) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(1, {{k(1), v(1)}, {k(2), v(2)}}));
  ASSERT_OK(store->start_block(2));
  ASSERT_OK(store->set(k(1), v(10)));
  ASSERT_OK(store->set(k(3), v(30)));
  EXPECT_EQ(get(*store, k(1)), v(10));
  EXPECT_EQ(get(*store, k(3)), v(30));
  auto popped = store->pop(k(2));
  ASSERT_TRUE(popped);
  EXPECT_EQ(*popped, v(2));
  EXPECT_EQ(get(*store, k(2)), "");
  EXPECT_EQ(store->applied_height(), 1u);
  auto end = store->end_block();
  ASSERT_TRUE(end);
  EXPECT_EQ(*end, 2u);
  EXPECT_EQ(store->applied_height(), 2u);
  EXPECT_EQ(*store->fetch_many({k(1), k(2), k(3)}),
            (std::vector<value>{v(10), "", v(30)}));
  ASSERT_OK(store->revert_to(1));
  EXPECT_EQ(*store->fetch_many({k(1), k(2), k(3)}),
            (std::vector<value>{v(1), v(2), ""}));
}

TEST_F(store_test, staged_block_errors) {
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_CODE(store->set(k(1), v(1)), ec::no_block_in_progress);
  EXPECT_CODE(store->pop(k(1)).error(), ec::no_block_in_progress);
  EXPECT_CODE(store->end_block().error(), ec::no_block_in_progress);
  ASSERT_OK(store->apply(5, {}));
  EXPECT_CODE(store->start_block(5), ec::block_id_not_increasing);
  ASSERT_OK(store->start_block(6));
  EXPECT_CODE(store->start_block(7), ec::block_in_progress);
  EXPECT_CODE(store->apply(7, {}), ec::block_in_progress);
  EXPECT_CODE(store->pop(7, k(1)).error(), ec::block_in_progress);
  EXPECT_CODE(store->revert_to(0), ec::block_in_progress);
  EXPECT_CODE(store->close(), ec::block_in_progress);
  EXPECT_CODE(store->set("short", v(1)), ec::key_width_mismatch);
  EXPECT_CODE(store->set(k(1), std::string(65536, 'x')), ec::value_too_large);
  ASSERT_OK(store->set(k(1), v(6)));
  ASSERT_TRUE(store->end_block());
  EXPECT_EQ(get(*store, k(1)), v(6));
  ASSERT_OK(store->close());
}

// -- heights, flush, close, health ---------------------------------------------------

TEST_F(store_test, three_heights) {
  auto store = open({.durability = durability_mode::synchronous(),
                     .checkpoint_every_blocks = 1000});
  ASSERT_TRUE(store);
  EXPECT_EQ(store->heights(), (store_heights{0, 0, 0}));
  ASSERT_OK(store->apply(1, {{k(1), v(1)}}));
  ASSERT_OK(store->apply(2, {{k(1), v(2)}}));
  // Synchronous: durable at once; not yet checkpointed into LevelDB.
  EXPECT_EQ(store->heights(), (store_heights{2, 2, 0}));
  auto flushed = store->flush();
  ASSERT_TRUE(flushed);
  EXPECT_EQ(*flushed, 2u);
  // A flush makes blocks durable; the newest stay out of LevelDB (lag).
  EXPECT_EQ(store->heights(), (store_heights{2, 2, 0}));
  // A shutdown checkpoints everything.
  ASSERT_OK(store->close());
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->heights(), (store_heights{2, 2, 2}));
}

TEST_F(store_test, checkpoints_lag_and_reverts_within_the_lag_keep_leveldb) {
  auto store = open({.durability = durability_mode::synchronous(),
                     .checkpoint_every_blocks = 1,
                     .checkpoint_lag_blocks = 3});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 8; ++h)
    ASSERT_OK(store->apply(h, {{k(h % 3), v(h)}, {k(10 + h), v(h)}}));
  // Checkpoints run behind the replies: wait for the one of block 5.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  while (store->heights().current < 5
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
  EXPECT_EQ(store->heights(), (store_heights{8, 8, 5}));
  auto checkpoints = store->metrics()->checkpoints;
  // Block 5 is in LevelDB and 6..8 only in the journal: reverting to 6 or
  // 5 writes nothing to LevelDB.
  ASSERT_OK(store->revert_to(6));
  EXPECT_EQ(store->heights(), (store_heights{6, 6, 5}));
  ASSERT_OK(store->revert_to(5));
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 5}));
  EXPECT_EQ(get(*store, k(2)), v(5));
  EXPECT_EQ(get(*store, k(16)), "");
  // Below the checkpoint: LevelDB is rewritten to the target.
  ASSERT_OK(store->revert_to(3));
  EXPECT_EQ(store->heights(), (store_heights{3, 3, 3}));
  EXPECT_EQ(store->metrics()->checkpoints, checkpoints);
  EXPECT_EQ(*store->fetch_many({k(0), k(1), k(2), k(13), k(14)}),
            (std::vector<value>{v(3), v(1), v(2), v(3), ""}));
  // Each state survives a reopen exactly.
  ASSERT_OK(store->apply(9, {{k(1), v(9)}}));
  store.reset();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->heights(), (store_heights{9, 9, 9}));
  EXPECT_EQ(*store->fetch_many({k(0), k(1), k(2), k(13), k(14)}),
            (std::vector<value>{v(3), v(9), v(2), v(3), ""}));
}

TEST_F(store_test, close_then_every_call_fails_with_store_closed) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(1, {{k(1), v(1)}}));
  ASSERT_OK(store->close());
  EXPECT_CODE(store->close(), ec::store_closed);
  EXPECT_CODE(store->apply(2, {}), ec::store_closed);
  EXPECT_CODE(store->fetch(k(1)).error(), ec::store_closed);
  EXPECT_CODE(store->revert_to(0), ec::store_closed);
  EXPECT_CODE(store->flush().error(), ec::store_closed);
  EXPECT_CODE(store->ensure_healthy(), ec::store_closed);
}

TEST_F(store_test, a_second_opener_gets_data_dir_locked) {
  auto store = open();
  ASSERT_TRUE(store);
  auto err = open_error({});
  EXPECT_EQ(code_of(err), ec::data_dir_locked);
  ASSERT_OK(store->close());
  store = open();
  EXPECT_TRUE(store);
}

TEST_F(store_test, client_errors_are_counted_and_leave_health_alone) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(5, {{k(1), v(1)}}));
  EXPECT_TRUE(store->apply(5, {}));
  EXPECT_TRUE(store->apply(6, {{"bad", v(1)}}));
  EXPECT_TRUE(store->revert_to(9));
  ASSERT_OK(store->ensure_healthy());
  auto health = store->health();
  ASSERT_TRUE(health);
  EXPECT_EQ(health->state, health_state::serving);
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->client_errors, 3u);
  EXPECT_EQ(m->blocks_applied, 1u);
  EXPECT_EQ(m->health, health_state::serving);
}

TEST_F(store_test, metrics_count_exactly) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(store->apply(1, {{k(1), v(1)}, {k(2), v(2)}, {k(3), ""}}));
  ASSERT_OK(store->apply(2, {{k(1), ""}}));
  ASSERT_TRUE(store->fetch(k(1)));
  ASSERT_TRUE(store->fetch_many({k(1), k(2)}));
  ASSERT_OK(store->revert_to(1));
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->blocks_applied, 2u);
  EXPECT_EQ(m->operations_applied, 4u);
  EXPECT_EQ(m->sets, 2u);
  EXPECT_EQ(m->deletes, 2u);
  EXPECT_EQ(m->lookups, 3u);
  EXPECT_EQ(m->reverts, 1u);
  EXPECT_EQ(m->blocks_reverted, 1u);
  EXPECT_EQ(m->live_keys, 2u);
  EXPECT_EQ(m->apply_latency.count, 2u);
  EXPECT_EQ(m->revert_latency.count, 1u);
  EXPECT_EQ(m->lookup_latency.count, 2u);
  EXPECT_EQ(m->heights, (store_heights{1, 1, 0}));
  EXPECT_GT(m->journal_bytes, 0u);
  EXPECT_EQ(m->held_blocks, 1u); // block 1, within the checkpoint lag
  EXPECT_GT(m->held_bytes, 0u);
  EXPECT_EQ(m->durability, durability_mode::synchronous());
}

// -- durability modes ------------------------------------------------------------

class durability_test : public store_test,
                        public ::testing::WithParamInterface<durability_mode> {
};

TEST_P(durability_test, blocks_survive_close_and_reopen) {
  auto store = open({.durability = GetParam()});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 50; ++h)
    ASSERT_OK(store->apply(h, {{k(h % 7), v(h)}, {k(100 + h), v(h)}}));
  ASSERT_OK(store->revert_to(45));
  for (block_id h = 46; h <= 60; ++h)
    ASSERT_OK(store->apply(h, {{k(h % 7), v(h * 2)}}));
  auto flushed = store->flush();
  ASSERT_TRUE(flushed);
  EXPECT_EQ(*flushed, 60u);
  EXPECT_EQ(store->applied_height(), 60u);
  EXPECT_EQ(store->durable_height(), 60u);
  ASSERT_OK(store->close());
  store = open(); // the mode is persisted
  ASSERT_TRUE(store);
  EXPECT_EQ(store->metrics()->durability, GetParam());
  EXPECT_EQ(store->applied_height(), 60u);
  for (block_id h = 54; h <= 60; ++h)
    EXPECT_EQ(get(*store, k(h % 7)), v(h * 2));
  EXPECT_EQ(get(*store, k(145)), v(45));
  EXPECT_EQ(get(*store, k(146)), "");
}

INSTANTIATE_TEST_SUITE_P(
  modes, durability_test,
  ::testing::Values(durability_mode::synchronous(),
                    durability_mode::synchronous_relaxed(7),
                    durability_mode::async(4),
                    durability_mode::async_relaxed(4, 7)));

TEST_F(store_test, synchronous_mode_is_durable_on_reply) {
  auto store = open({.durability = durability_mode::synchronous()});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 5; ++h) {
    ASSERT_OK(store->apply(h, {{k(h), v(h)}}));
    EXPECT_EQ(store->durable_height(), h);
  }
}

TEST_F(store_test, relaxed_mode_syncs_every_n_blocks) {
  auto store = open({.durability = durability_mode::synchronous_relaxed(4)});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 10; ++h)
    ASSERT_OK(store->apply(h, {{k(h), v(h)}}));
  EXPECT_EQ(store->durable_height(), 8u);
  EXPECT_EQ(*store->flush(), 10u);
  EXPECT_EQ(store->durable_height(), 10u);
}

TEST_F(store_test, async_mode_applies_past_max_pending_with_backpressure) {
  auto store = open({.durability = durability_mode::async(2)});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 200; ++h)
    ASSERT_OK(store->apply(h, {{k(h), v(h)}}));
  EXPECT_EQ(store->applied_height(), 200u);
  EXPECT_GE(store->durable_height(), 198u);
  EXPECT_EQ(*store->flush(), 200u);
}

namespace {

/// A block of 1,000 new keys (the same bytes for every height).
operation_list thousand_keys(block_id h) {
  operation_list ops;
  for (std::uint64_t i = 0; i < 1000; ++i)
    ops.push_back({k(h * 1000 + i), v(i)});
  return ops;
}

} // namespace

TEST_F(store_test, held_blocks_past_the_backlog_bytes_are_checkpointed) {
  // No checkpoint falls due by count or time: only the byte bound writes.
  store_options opts{.checkpoint_every_blocks = 1000,
                     .checkpoint_interval = std::chrono::hours{1},
                     .checkpoint_lag_blocks = 2};
  std::uint64_t block_bytes = 0;
  auto expect_held = [&](blocking_store& store, store_heights heights,
                         std::uint64_t checkpoints, std::uint64_t blocks) {
    auto m = store.metrics();
    ASSERT_TRUE(m);
    EXPECT_EQ(m->heights, heights);
    EXPECT_EQ(m->checkpoints, checkpoints);
    EXPECT_EQ(m->held_blocks, blocks);
    EXPECT_EQ(m->held_bytes, blocks * block_bytes);
  };
  {
    // The default bound (256 MiB) holds all 30 blocks.
    auto store = open(opts);
    ASSERT_TRUE(store);
    ASSERT_OK(store->apply(1, thousand_keys(1)));
    block_bytes = store->metrics()->held_bytes;
    ASSERT_GT(block_bytes, 16'000u);
    for (block_id h = 2; h <= 30; ++h)
      ASSERT_OK(store->apply(h, thousand_keys(h)));
    ASSERT_EQ(*store->flush(), 30u);
    expect_held(*store, {30, 30, 0}, 0, 30);
  }
  std::filesystem::remove_all(dir.sub("data"));
  // Five and a half blocks: holding the sixth block checkpoints the four
  // older than the lag of 2, before the next call runs.
  opts.checkpoint_backlog_bytes = 5 * block_bytes + block_bytes / 2;
  auto store = open(opts);
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 5; ++h)
    ASSERT_OK(store->apply(h, thousand_keys(h)));
  ASSERT_EQ(*store->flush(), 5u);
  expect_held(*store, {5, 5, 0}, 0, 5);
  ASSERT_OK(store->apply(6, thousand_keys(6)));
  ASSERT_EQ(*store->flush(), 6u);
  expect_held(*store, {6, 6, 4}, 1, 2);
  for (block_id h = 7; h <= 30; ++h)
    ASSERT_OK(store->apply(h, thousand_keys(h)));
  ASSERT_EQ(*store->flush(), 30u);
  // Checkpoints at blocks 6, 10, ..., 30, each through the block 2 below.
  expect_held(*store, {30, 30, 28}, 7, 2);
  // The held blocks are the undo of a revert within the lag.
  ASSERT_OK(store->revert_to(29));
  expect_held(*store, {29, 29, 28}, 7, 1);
  EXPECT_EQ(get(*store, k(29 * 1000 + 999)), v(999));
  EXPECT_EQ(get(*store, k(30 * 1000)), value{});
}

TEST_F(store_test, with_a_budget_blocks_past_a_quarter_of_the_stamps_wait) {
  // With a budget no rebase passes the checkpoint: 65,535 installs without
  // one would leave the next nothing to stamp its entries with. Here no
  // checkpoint falls due by count, time or bytes (17,000 one-key blocks
  // take ~4 MB, the budget's bound is 128 MiB): only the bound on blocks
  // held or in flight (memory_state::max_uncheckpointed_blocks, 16,383)
  // writes one.
  store_options opts{.durability = durability_mode::async_relaxed(),
                     .checkpoint_every_blocks = 1'000'000,
                     .checkpoint_interval = std::chrono::hours{1},
                     .memory_budget = std::size_t{1} << 30};
  auto store = open(opts);
  ASSERT_TRUE(store);
  constexpr block_id blocks = 17'000;
  for (block_id h = 1; h <= blocks; ++h)
    ASSERT_OK(store->apply(h, {{k(h), v(h)}}));
  ASSERT_EQ(*store->flush(), blocks);
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->heights.applied, blocks);
  constexpr auto bound = storage::memory_state::max_uncheckpointed_blocks;
  EXPECT_GE(m->checkpoints, 1u);
  EXPECT_LT(m->held_blocks, bound);
  EXPECT_EQ(m->mutation_restarts, 0u);
  EXPECT_EQ(get(*store, k(1)), v(1));
  EXPECT_EQ(get(*store, k(blocks)), v(blocks));
  ASSERT_OK(store->revert_to(blocks - 1));
  EXPECT_EQ(get(*store, k(blocks)), value{});
}

TEST_F(store_test, relaxed_switch_at_run_time_flushes_first_and_persists) {
  auto store = open({.durability = durability_mode::synchronous()});
  ASSERT_TRUE(store);
  auto relaxed = store->set_relaxed(100);
  ASSERT_TRUE(relaxed);
  EXPECT_EQ(*relaxed, durability_mode::synchronous_relaxed(100));
  for (block_id h = 1; h <= 10; ++h)
    ASSERT_OK(store->apply(h, {{k(h), v(h)}}));
  EXPECT_EQ(store->durable_height(), 0u);
  auto strict = store->set_strict();
  ASSERT_TRUE(strict);
  EXPECT_EQ(*strict, durability_mode::synchronous());
  EXPECT_EQ(store->durable_height(), 10u); // the switch flushed
  ASSERT_OK(store->apply(11, {}));
  EXPECT_EQ(store->durable_height(), 11u);
  EXPECT_CODE(store->set_relaxed(0).error(), ec::invalid_argument);
  ASSERT_TRUE(store->set_relaxed(3));
  ASSERT_OK(store->close());
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->metrics()->durability,
            durability_mode::synchronous_relaxed(3));
}

// -- faults ----------------------------------------------------------------------

TEST_F(store_test, journal_failure_is_fatal_and_loses_nothing_durable) {
  auto store = open({.durability = durability_mode::synchronous()});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 5; ++h)
    ASSERT_OK(store->apply(h, {{k(h), v(h)}}));
  caf::error fatal;
  {
    // The journal cannot grow: the next append fails with EFBIG.
    test::file_size_limit limit{1};
    ASSERT_TRUE(limit.ok());
    fatal = store->apply(6, {{k(6), std::string(5000, 'x')}});
  }
  EXPECT_EQ(code_of(fatal), ec::durability_failure);
  // Every later call fails fast with the same error.
  EXPECT_EQ(store->apply(7, {}), fatal);
  EXPECT_EQ(store->fetch(k(1)).error(), fatal);
  EXPECT_EQ(store->ensure_healthy(), fatal);
  EXPECT_EQ(store->revert_to(1), fatal);
  auto health = store->health();
  ASSERT_TRUE(health);
  EXPECT_EQ(health->state, health_state::fatal);
  store.reset();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->applied_height(), 5u);
  EXPECT_EQ(get(*store, k(5)), v(5));
  EXPECT_EQ(get(*store, k(6)), "");
  ASSERT_OK(store->ensure_healthy());
}

TEST_F(store_test, async_journal_failure_reverts_undurable_blocks_in_memory) {
  auto store = open({.durability = durability_mode::async(1000)});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 3; ++h)
    ASSERT_OK(store->apply(h, {{k(h), v(h)}}));
  ASSERT_EQ(*store->flush(), 3u);
  caf::error fatal;
  {
    test::file_size_limit limit{1};
    ASSERT_TRUE(limit.ok());
    // Async: the apply is acknowledged once queued; the journal then fails.
    ASSERT_OK(store->apply(4, {{k(4), std::string(5000, 'x')}}));
    auto flushed = store->flush();
    ASSERT_FALSE(flushed);
    fatal = flushed.error();
  }
  EXPECT_EQ(code_of(fatal), ec::durability_failure);
  EXPECT_EQ(store->apply(5, {}), fatal);
  EXPECT_EQ(store->ensure_healthy(), fatal);
  // Reads fail with the fatal error, and memory goes back to the durable
  // height (the supervisor has the mutation actor revert block 4).
  EXPECT_EQ(store->fetch(k(4)).error(), fatal);
  for (int i = 0; i < 500 && store->applied_height() != 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  EXPECT_EQ(store->applied_height(), 3u);
  store.reset();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->applied_height(), 3u);
  EXPECT_EQ(get(*store, k(3)), v(3));
  EXPECT_EQ(get(*store, k(4)), "");
}
