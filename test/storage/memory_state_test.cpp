#include "rollblock/storage/memory_state.hpp"

#include "rollblock/messages/error.hpp"
#include "rollblock/storage/checkpoint_builder.hpp"
#include "rollblock/storage/state_store.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <leveldb/env.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

using namespace rollblock;
using namespace rollblock::storage;

namespace {

using contents = std::vector<std::pair<key, value>>;

key k8(std::uint64_t x) {
  return key_from_u64(x, 8);
}

value v64(std::uint64_t x) {
  return value_from_u64(x);
}

/// Plans block `height` and expects it to be accepted.
block_record_ptr plan_ok(const memory_state& ms, block_id height,
                         const operation_list& ops) {
  auto rec = ms.plan(height, ops);
  EXPECT_TRUE(rec) << describe(rec.error());
  if (!rec)
    return nullptr;
  return *rec;
}

/// Plans and installs block `height`; returns its record.
block_record_ptr apply(memory_state& ms, block_id height,
                       const operation_list& ops) {
  auto rec = plan_ok(ms, height, ops);
  if (rec)
    ms.install(rec);
  return rec;
}

/// Returns `history` (oldest first) restricted to heights above `target`,
/// newest first.
block_record_list above(const block_record_list& history, block_id target) {
  block_record_list result;
  for (auto it = history.rbegin(); it != history.rend(); ++it)
    if ((*it)->height > target)
      result.push_back(*it);
  return result;
}

/// Returns the live contents of `ms` (an error fails the test).
contents snapshot_of(const memory_state& ms) {
  auto result = ms.snapshot();
  if (!result) {
    ADD_FAILURE() << describe(result.error());
    return {};
  }
  return std::move(*result);
}

/// Returns the values of `keys` (an error fails the test).
std::vector<value> values_of(const memory_state& ms,
                             const std::vector<key>& keys) {
  auto result = ms.get_many(keys);
  if (!result) {
    ADD_FAILURE() << describe(result.error());
    return {};
  }
  return std::move(*result);
}

/// Reverts `ms` to `target` with the records of `history` above it and drops
/// them from `history`.
void revert_to(memory_state& ms, block_record_list& history, block_id target) {
  ms.revert(above(history, target), target);
  std::erase_if(history,
                [&](const block_record_ptr& r) { return r->height > target; });
}

/// Block `h` of 6,000 operations, a block memory_state splits over two
/// threads: 3,000 new keys [3000 (h - 1), 3000 h), then 3,000 deletes and
/// sets of random keys below 3000 h (absent ones and repeats included).
operation_list large_block(block_id h, std::mt19937_64& rng) {
  static_assert(memory_state::parallel_block_changes <= 6000);
  operation_list ops;
  for (std::uint64_t i = 3000 * (h - 1); i < 3000 * h; ++i)
    ops.push_back({k8(i), v64(i)});
  std::uniform_int_distribution<std::uint64_t> any{0, 3000 * h - 1};
  for (std::uint64_t i = 0; i < 3000; ++i)
    ops.push_back(
      {k8(any(rng)), i % 2 == 0 ? value{} : v64(h * 1'000'000 + i)});
  return ops;
}

} // namespace

// -- construction -------------------------------------------------------------

TEST(memory_state, starts_empty_and_fresh) {
  memory_state ms{8};
  EXPECT_EQ(ms.key_width(), 8u);
  EXPECT_EQ(ms.applied(), 0u);
  EXPECT_TRUE(ms.fresh());
  EXPECT_EQ(ms.size(), 0u);
  EXPECT_TRUE(snapshot_of(ms).empty());
  EXPECT_EQ(ms.get(k8(1)), "");
  EXPECT_EQ(ms.get_many({k8(1), k8(2)}), (std::vector<value>{"", ""}));
  EXPECT_TRUE(values_of(ms, {}).empty());
}

TEST(memory_state, load_and_set_applied) {
  memory_state ms{8};
  ms.load(k8(1), "a");
  ms.load(k8(2), "b");
  ms.load(k8(1), "c"); // Same key again: replaced, not counted twice.
  ms.set_applied(41, false);
  EXPECT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms.applied(), 41u);
  EXPECT_FALSE(ms.fresh());
  EXPECT_EQ(ms.get(k8(1)), "c");
  EXPECT_EQ(ms.get(k8(2)), "b");
  EXPECT_EQ(snapshot_of(ms), (contents{{k8(1), "c"}, {k8(2), "b"}}));
  auto bad = ms.plan(41, {});
  ASSERT_FALSE(bad);
  EXPECT_EQ(code_of(bad.error()), ec::block_id_not_increasing);
  EXPECT_EQ(message_of(bad.error()),
            "block 41 is not above the applied height 41");
  // A loaded key is undone to its loaded value.
  block_record_list history;
  history.push_back(apply(ms, 42, {{k8(1), "d"}, {k8(3), "e"}}));
  EXPECT_EQ(history.back()->changes[0].before, "c");
  EXPECT_EQ(ms.size(), 3u);
  revert_to(ms, history, 41);
  EXPECT_EQ(snapshot_of(ms), (contents{{k8(1), "c"}, {k8(2), "b"}}));
  EXPECT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms.applied(), 41u);
}

TEST(memory_state, replay_applies_journaled_blocks_like_install) {
  // Replay (recovery, no readers) and install must end in the same state,
  // and a replayed state reverts and applies like any other.
  auto block = [](block_id h, std::vector<key_change> changes) {
    auto r = std::make_shared<block_record>();
    r->height = h;
    r->changes = std::move(changes);
    return block_record_ptr{std::move(r)};
  };
  block_record_list blocks{
    block(42, {{k8(1), "d", "c"}, {k8(3), "e", ""}}),
    block(45, {{k8(2), "", "b"}, {k8(4), "", ""}, {k8(5), "f", ""}}),
    block(46, {{k8(3), "", "e"}, {k8(2), "g", ""}}),
  };
  memory_state replayed{8};
  memory_state installed{8};
  for (auto* ms : {&replayed, &installed}) {
    ms->load(k8(1), "c");
    ms->load(k8(2), "b");
    ms->set_applied(41, false);
  }
  for (auto& b : blocks) {
    replayed.replay(*b);
    installed.install(b);
  }
  contents expected{{k8(1), "d"}, {k8(2), "g"}, {k8(5), "f"}};
  for (auto* ms : {&replayed, &installed}) {
    EXPECT_EQ(snapshot_of(*ms), expected);
    EXPECT_EQ(ms->size(), 3u);
    EXPECT_EQ(ms->applied(), 46u);
    EXPECT_FALSE(ms->fresh());
    EXPECT_EQ(ms->get_many({k8(1), k8(2), k8(3), k8(4), k8(5)}),
              (std::vector<value>{"d", "g", "", "", "f"}));
  }
  // No tombstones left behind: deleted keys are gone from the tables.
  EXPECT_EQ(replayed.resident_entries(), 3u);
  block_record_list newest_first(blocks.rbegin(), blocks.rend());
  replayed.revert({newest_first[0], newest_first[1]}, 42);
  EXPECT_EQ(snapshot_of(replayed),
            (contents{{k8(1), "d"}, {k8(2), "b"}, {k8(3), "e"}}));
  EXPECT_EQ(replayed.size(), 3u);
  EXPECT_EQ(replayed.applied(), 42u);
  auto again = replayed.apply(43, {{k8(1), ""}});
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->changes[0].before, "d");
  EXPECT_EQ(replayed.size(), 2u);
}

TEST(memory_state, key_width_64_works) {
  memory_state ms{64};
  auto k = key_from_prefix("wide", 64);
  apply(ms, 1, {{k, "x"}});
  EXPECT_EQ(ms.get(k), "x");
  auto short_key = ms.plan(2, {{key_from_prefix("wide", 63), "y"}});
  ASSERT_FALSE(short_key);
  EXPECT_EQ(code_of(short_key.error()), ec::key_width_mismatch);
  EXPECT_EQ(message_of(short_key.error()),
            "operation 0 of block 2 has a 63-byte key; this store's keys are "
            "64 bytes");
}

// -- plan errors ----------------------------------------------------------------

TEST(memory_state, plan_refuses_heights_not_above_applied) {
  memory_state ms{8};
  apply(ms, 9, {{k8(1), "a"}});
  for (block_id h : {block_id{0}, block_id{7}, block_id{9}}) {
    auto r = ms.plan(h, {{k8(2), "b"}});
    ASSERT_FALSE(r) << h;
    EXPECT_EQ(code_of(r.error()), ec::block_id_not_increasing);
    EXPECT_EQ(message_of(r.error()),
              "block " + std::to_string(h)
                + " is not above the applied height 9");
  }
  auto ok = plan_ok(ms, 10, {{k8(2), "b"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->height, 10u);
  EXPECT_EQ(ms.applied(), 9u);
}

TEST(memory_state, heights_up_to_the_highest_work_and_above_are_refused) {
  static_assert(memory_state::max_height == 18446744073709551614ull);
  memory_state ms{8};
  block_record_list history;
  auto top = memory_state::max_height;
  history.push_back(apply(ms, top - 1, {{k8(1), "a"}, {k8(2), "b"}}));
  history.push_back(apply(ms, top, {{k8(1), "c"}, {k8(2), ""}}));
  EXPECT_EQ(ms.applied(), top);
  EXPECT_EQ(ms.get_many({k8(1), k8(2)}), (std::vector<value>{"c", ""}));
  // Its position would wrap around to 0 ("loaded").
  auto r = ms.plan(top + 1, {{k8(3), "d"}});
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), ec::invalid_argument);
  EXPECT_EQ(message_of(r.error()),
            "block 18446744073709551615 is above the highest height a store "
            "accepts, 18446744073709551614");
  EXPECT_EQ(ms.get(k8(3)), "");
  // The undo of the top blocks reverts exactly.
  revert_to(ms, history, top - 1);
  EXPECT_EQ(ms.get_many({k8(1), k8(2)}), (std::vector<value>{"a", "b"}));
  EXPECT_EQ(ms.applied(), top - 1);
  // A fresh state refuses it too.
  memory_state fresh{8};
  EXPECT_EQ(code_of(fresh.plan(top + 1, {}).error()), ec::invalid_argument);
}

TEST(memory_state, plan_refuses_wrong_key_widths_naming_the_operation) {
  memory_state ms{8};
  apply(ms, 1, {{k8(1), "a"}});
  auto short_key = ms.plan(5, {{k8(2), "b"}, {std::string(7, 'k'), "c"}});
  ASSERT_FALSE(short_key);
  EXPECT_EQ(code_of(short_key.error()), ec::key_width_mismatch);
  EXPECT_EQ(message_of(short_key.error()),
            "operation 1 of block 5 has a 7-byte key; this store's keys are 8 "
            "bytes");
  auto long_key = ms.plan(5, {{std::string(9, 'k'), "c"}});
  ASSERT_FALSE(long_key);
  EXPECT_EQ(code_of(long_key.error()), ec::key_width_mismatch);
  EXPECT_EQ(message_of(long_key.error()),
            "operation 0 of block 5 has a 9-byte key; this store's keys are 8 "
            "bytes");
  auto empty_key = ms.plan(5, {{"", ""}});
  ASSERT_FALSE(empty_key);
  EXPECT_EQ(code_of(empty_key.error()), ec::key_width_mismatch);
  // The height is checked before the operations.
  auto both = ms.plan(1, {{std::string(7, 'k'), "c"}});
  ASSERT_FALSE(both);
  EXPECT_EQ(code_of(both.error()), ec::block_id_not_increasing);
}

TEST(memory_state, plan_value_size_limit_is_65535_bytes) {
  memory_state ms{8};
  std::string largest(65535, 'x');
  std::string too_large(65536, 'y');
  auto over = ms.plan(3, {{k8(1), "a"}, {k8(2), "b"}, {k8(3), too_large}});
  ASSERT_FALSE(over);
  EXPECT_EQ(code_of(over.error()), ec::value_too_large);
  EXPECT_EQ(message_of(over.error()),
            "operation 2 of block 3 has a 65536-byte value; the limit is 65535 "
            "bytes");
  // Nothing changed: still fresh, empty, at 0.
  EXPECT_TRUE(ms.fresh());
  EXPECT_EQ(ms.applied(), 0u);
  EXPECT_EQ(ms.size(), 0u);
  EXPECT_EQ(ms.get(k8(1)), "");
  auto rec = apply(ms, 3, {{k8(1), largest}});
  ASSERT_TRUE(rec);
  EXPECT_EQ(ms.get(k8(1)), largest);
  EXPECT_EQ(ms.get(k8(1))->size(), 65535u);
}

TEST(memory_state, refused_or_uninstalled_plans_change_nothing) {
  memory_state ms{8};
  apply(ms, 1, {{k8(1), "a"}, {k8(2), "b"}});
  auto before = snapshot_of(ms);
  // Valid operations ahead of a bad one are not applied.
  auto bad = ms.plan(2, {{k8(1), "changed"}, {k8(3), "new"}, {k8(2), ""},
                         {k8(4), std::string(65536, 'z')}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(code_of(bad.error()), ec::value_too_large);
  auto bad_key = ms.plan(2, {{k8(1), "changed"}, {"short", "x"}});
  ASSERT_FALSE(bad_key);
  EXPECT_EQ(code_of(bad_key.error()), ec::key_width_mismatch);
  // A valid plan that is never installed changes nothing either.
  auto unused = plan_ok(ms, 2, {{k8(1), "changed"}, {k8(2), ""}});
  ASSERT_TRUE(unused);
  EXPECT_EQ(snapshot_of(ms), before);
  EXPECT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms.applied(), 1u);
  EXPECT_FALSE(ms.fresh());
  EXPECT_EQ(ms.get(k8(1)), "a");
  EXPECT_EQ(ms.get(k8(3)), "");
  // And the height it planned is still free.
  apply(ms, 2, {{k8(3), "c"}});
  EXPECT_EQ(ms.applied(), 2u);
  EXPECT_EQ(snapshot_of(ms),
            (contents{{k8(1), "a"}, {k8(2), "b"}, {k8(3), "c"}}));
}

// -- heights ----------------------------------------------------------------

TEST(memory_state, genesis_zero_is_accepted_once_on_a_fresh_state) {
  memory_state ms{8};
  EXPECT_TRUE(ms.fresh());
  auto rec = apply(ms, 0, {{k8(1), "genesis"}});
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->height, 0u);
  EXPECT_EQ(ms.applied(), 0u);
  EXPECT_FALSE(ms.fresh());
  EXPECT_EQ(ms.get(k8(1)), "genesis");
  auto again = ms.plan(0, {{k8(1), "again"}});
  ASSERT_FALSE(again);
  EXPECT_EQ(code_of(again.error()), ec::block_id_not_increasing);
  EXPECT_EQ(message_of(again.error()),
            "block 0 is not above the applied height 0");
  EXPECT_TRUE(plan_ok(ms, 1, {}));
}

TEST(memory_state, fresh_state_accepts_any_first_height) {
  memory_state ms{8};
  apply(ms, 1000, {{k8(1), "a"}});
  EXPECT_EQ(ms.applied(), 1000u);
  EXPECT_FALSE(ms.fresh());
  auto zero = ms.plan(0, {});
  ASSERT_FALSE(zero);
  EXPECT_EQ(message_of(zero.error()),
            "block 0 is not above the applied height 1000");
}

TEST(memory_state, set_applied_fresh_allows_genesis_but_not_after) {
  memory_state ms{8};
  ms.set_applied(0, true);
  EXPECT_TRUE(plan_ok(ms, 0, {}));
  ms.set_applied(0, false);
  auto r = ms.plan(0, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), ec::block_id_not_increasing);
  EXPECT_TRUE(plan_ok(ms, 1, {}));
}

TEST(memory_state, sparse_heights_and_empty_blocks) {
  memory_state ms{8};
  apply(ms, 0, {{k8(1), "a"}});
  auto empty = apply(ms, 7, {});
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->height, 7u);
  EXPECT_TRUE(empty->changes.empty());
  EXPECT_EQ(ms.applied(), 7u); // An empty block advances the height.
  EXPECT_EQ(ms.size(), 1u);
  auto r = ms.plan(7, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(message_of(r.error()),
            "block 7 is not above the applied height 7");
  apply(ms, 1000, {{k8(2), "b"}});
  EXPECT_EQ(ms.applied(), 1000u);
  apply(ms, 1'000'000'000'000ull, {});
  EXPECT_EQ(ms.applied(), 1'000'000'000'000ull);
  EXPECT_EQ(snapshot_of(ms), (contents{{k8(1), "a"}, {k8(2), "b"}}));
}

// -- records ----------------------------------------------------------------

TEST(memory_state, ops_on_one_key_coalesce_last_wins_with_before_of_the_block) {
  memory_state ms{8};
  apply(ms, 1, {{k8(1), "old"}, {k8(2), "two"}});
  auto rec = apply(ms, 2,
                   {{k8(1), "x"},
                    {k8(3), "p"},
                    {k8(1), "y"},
                    {k8(2), ""},
                    {k8(3), ""},
                    {k8(1), "z"},
                    {k8(4), ""},
                    {k8(4), "four"}});
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->height, 2u);
  // One change per distinct key, in first-touched order.
  std::vector<key_change> expected{{k8(1), "z", "old"},
                                   {k8(3), "", ""},
                                   {k8(2), "", "two"},
                                   {k8(4), "four", ""}};
  EXPECT_EQ(rec->changes, expected);
  EXPECT_EQ(snapshot_of(ms), (contents{{k8(1), "z"}, {k8(4), "four"}}));
  EXPECT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms.get(k8(1)), "z");
  EXPECT_EQ(ms.get(k8(2)), "");
  EXPECT_EQ(ms.get(k8(3)), "");
}

TEST(memory_state, deleting_an_absent_key_is_a_no_op) {
  memory_state ms{8};
  apply(ms, 1, {{k8(1), "a"}});
  auto rec = apply(ms, 2, {{k8(9), ""}});
  ASSERT_TRUE(rec);
  ASSERT_EQ(rec->changes.size(), 1u);
  EXPECT_EQ(rec->changes[0], (key_change{k8(9), "", ""}));
  EXPECT_EQ(ms.size(), 1u);
  EXPECT_EQ(ms.get(k8(9)), "");
  EXPECT_EQ(snapshot_of(ms), (contents{{k8(1), "a"}}));
  EXPECT_EQ(ms.applied(), 2u);
  // Deleting a key twice: the second delete is a no-op too.
  apply(ms, 3, {{k8(1), ""}});
  EXPECT_EQ(ms.size(), 0u);
  auto again = apply(ms, 4, {{k8(1), ""}});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->changes[0], (key_change{k8(1), "", ""}));
  EXPECT_EQ(ms.size(), 0u);
  EXPECT_TRUE(snapshot_of(ms).empty());
  // Reverting the no-op deletes restores nothing but the real delete.
  block_record_list history{again};
  ms.revert(history, 3);
  EXPECT_EQ(ms.size(), 0u);
  EXPECT_EQ(ms.get(k8(1)), "");
}

// -- install and revert -------------------------------------------------------

TEST(memory_state, revert_restores_exact_previous_states) {
  memory_state ms{8};
  block_record_list history;
  std::map<block_id, contents> states;
  history.push_back(apply(ms, 0, {{k8(1), "a0"}, {k8(2), "b0"}}));
  states[0] = snapshot_of(ms);
  history.push_back(
    apply(ms, 3, {{k8(1), "a3"}, {k8(3), "c3"}, {k8(2), ""}}));
  states[3] = snapshot_of(ms);
  history.push_back(apply(ms, 4, {}));
  states[4] = snapshot_of(ms);
  history.push_back(
    apply(ms, 8, {{k8(2), "b8"}, {k8(3), ""}, {k8(1), "a8"}, {k8(4), "d8"}}));
  states[8] = snapshot_of(ms);
  history.push_back(apply(ms, 9, {{k8(4), ""}, {k8(1), ""}}));
  states[9] = snapshot_of(ms);
  EXPECT_EQ(states[9], (contents{{k8(2), "b8"}}));
  EXPECT_EQ(ms.size(), 1u);

  revert_to(ms, history, 8);
  EXPECT_EQ(ms.applied(), 8u);
  EXPECT_FALSE(ms.fresh());
  EXPECT_EQ(snapshot_of(ms), states[8]);
  EXPECT_EQ(snapshot_of(ms),
            (contents{{k8(1), "a8"}, {k8(2), "b8"}, {k8(4), "d8"}}));
  EXPECT_EQ(ms.size(), 3u);
  EXPECT_EQ(ms.get(k8(4)), "d8");

  revert_to(ms, history, 3);
  EXPECT_EQ(ms.applied(), 3u);
  EXPECT_EQ(snapshot_of(ms), states[3]);
  EXPECT_EQ(snapshot_of(ms), (contents{{k8(1), "a3"}, {k8(3), "c3"}}));
  EXPECT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms.get(k8(2)), "");

  // The next block must be above the revert target; 4 is free again.
  auto r = ms.plan(3, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(message_of(r.error()),
            "block 3 is not above the applied height 3");
  history.push_back(apply(ms, 4, {{k8(2), "b4"}}));
  EXPECT_EQ(snapshot_of(ms),
            (contents{{k8(1), "a3"}, {k8(2), "b4"}, {k8(3), "c3"}}));
  revert_to(ms, history, 0);
  EXPECT_EQ(ms.applied(), 0u);
  EXPECT_EQ(snapshot_of(ms), states[0]);
  EXPECT_EQ(ms.size(), 2u);
  EXPECT_FALSE(ms.fresh()); // Genesis was applied: 0 is not allowed again.
  EXPECT_FALSE(ms.plan(0, {}));
}

TEST(memory_state, a_large_revert_on_two_threads_restores_the_exact_state) {
  // At least parallel_revert_changes changes above the target: the revert
  // splits the shards between two threads.
  memory_state ms{8};
  block_record_list history;
  operation_list base;
  for (std::uint64_t i = 0; i < 30000; ++i)
    base.push_back({k8(i), v64(i)});
  history.push_back(apply(ms, 1, base));
  auto state_at_1 = snapshot_of(ms);
  auto bytes_at_1 = ms.resident_bytes();
  std::size_t changes = 0;
  for (block_id h = 2; h <= 4; ++h) {
    operation_list ops;
    // Delete a third of the keys, rewrite a third, insert new ones; each
    // block touches some keys of the block before it again.
    for (std::uint64_t i = 0; i < 30000; ++i) {
      auto x = i + 10000 * (h - 1);
      if (x % 3 == 0)
        ops.push_back({k8(x), {}});
      else
        ops.push_back({k8(x), v64(x * 100 + h)});
    }
    history.push_back(apply(ms, h, ops));
    changes += history.back()->changes.size();
  }
  ASSERT_GE(changes, memory_state::parallel_revert_changes);
  ASSERT_NE(snapshot_of(ms), state_at_1);
  revert_to(ms, history, 1);
  EXPECT_EQ(ms.applied(), 1u);
  EXPECT_EQ(snapshot_of(ms), state_at_1);
  EXPECT_EQ(ms.size(), 30000u);
  EXPECT_EQ(ms.resident_bytes(), bytes_at_1);
  EXPECT_EQ(ms.get(k8(0)), v64(0));
  EXPECT_EQ(ms.get(k8(29999)), v64(29999));
  EXPECT_EQ(ms.get(k8(30000)), "");
}

TEST(memory_state, revert_to_a_height_never_applied) {
  memory_state ms{8};
  block_record_list history;
  history.push_back(apply(ms, 500, {{k8(1), "a500"}, {k8(2), "b500"}}));
  auto at500 = snapshot_of(ms);
  history.push_back(
    apply(ms, 1000, {{k8(1), "a1000"}, {k8(2), ""}, {k8(3), "c1000"}}));
  revert_to(ms, history, 750);
  EXPECT_EQ(ms.applied(), 750u);
  EXPECT_EQ(snapshot_of(ms), at500);
  EXPECT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms.get_many({k8(1), k8(2), k8(3)}),
            (std::vector<value>{"a500", "b500", ""}));
  auto r = ms.plan(750, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), ec::block_id_not_increasing);
  EXPECT_EQ(message_of(r.error()),
            "block 750 is not above the applied height 750");
  history.push_back(apply(ms, 751, {{k8(3), "c751"}}));
  EXPECT_EQ(ms.applied(), 751u);
  EXPECT_EQ(ms.get(k8(3)), "c751");
  EXPECT_EQ(ms.size(), 3u);
}

TEST(memory_state, revert_with_no_records_only_moves_the_height) {
  memory_state ms{8};
  apply(ms, 10, {{k8(1), "a"}});
  ms.revert({}, 10);
  EXPECT_EQ(ms.applied(), 10u);
  EXPECT_EQ(snapshot_of(ms), (contents{{k8(1), "a"}}));
  // Reverting from a fresh state makes it non-fresh.
  memory_state fresh{8};
  fresh.revert({}, 0);
  EXPECT_FALSE(fresh.fresh());
  EXPECT_EQ(fresh.applied(), 0u);
  EXPECT_FALSE(fresh.plan(0, {}));
}

TEST(memory_state, size_counts_live_keys_through_sets_deletes_and_reverts) {
  memory_state ms{8, 4};
  block_record_list history;
  history.push_back(apply(ms, 1, {{k8(1), "a"}, {k8(2), "b"}, {k8(3), "c"}}));
  EXPECT_EQ(ms.size(), 3u);
  history.push_back(apply(ms, 2, {{k8(1), "a2"}, {k8(4), "d"}}));
  EXPECT_EQ(ms.size(), 4u);
  history.push_back(apply(ms, 3, {{k8(2), ""}, {k8(3), ""}, {k8(5), ""}}));
  EXPECT_EQ(ms.size(), 2u);
  history.push_back(apply(ms, 4, {{k8(2), "b4"}, {k8(1), ""}}));
  EXPECT_EQ(ms.size(), 2u);
  history.push_back(apply(ms, 5, {{k8(6), "f"}, {k8(6), ""}}));
  EXPECT_EQ(ms.size(), 2u);
  EXPECT_EQ(snapshot_of(ms), (contents{{k8(2), "b4"}, {k8(4), "d"}}));
  revert_to(ms, history, 3);
  EXPECT_EQ(ms.size(), 2u);
  EXPECT_EQ(snapshot_of(ms), (contents{{k8(1), "a2"}, {k8(4), "d"}}));
  revert_to(ms, history, 2);
  EXPECT_EQ(ms.size(), 4u);
  revert_to(ms, history, 0);
  EXPECT_EQ(ms.size(), 0u);
  EXPECT_TRUE(snapshot_of(ms).empty());
}

TEST(memory_state, get_after_reads_the_states_the_undo_keeps) {
  memory_state ms{8, 4};
  apply(ms, 1, {{k8(1), v64(1)}, {k8(2), v64(2)}});
  apply(ms, 2, {{k8(1), v64(10)}, {k8(2), ""}, {k8(3), v64(30)}});
  apply(ms, 3, {{k8(1), ""}, {k8(2), v64(200)}});
  std::vector<key> keys{k8(1), k8(2), k8(3), k8(4)};
  auto after = [&](block_id h) {
    std::vector<value> vals;
    for (auto& k : keys) {
      auto v = ms.get_after(k, h);
      EXPECT_TRUE(v) << describe(v.error());
      vals.push_back(v ? *v : "error");
    }
    return vals;
  };
  EXPECT_EQ(after(1), (std::vector<value>{v64(1), v64(2), "", ""}));
  EXPECT_EQ(after(2), (std::vector<value>{v64(10), "", v64(30), ""}));
  EXPECT_EQ(after(3), (std::vector<value>{"", v64(200), v64(30), ""}));
  EXPECT_EQ(ms.get_after(k8(1), 4).error(), ec::rollback_beyond_history);
  // Only the undo_depth newest blocks are kept.
  for (block_id h = 4; h <= 3 + memory_state::undo_depth; ++h)
    apply(ms, h, {{k8(1), v64(h)}});
  EXPECT_EQ(ms.get_after(k8(1), 3).error(), ec::rollback_beyond_history);
  EXPECT_EQ(ms.get_after(k8(1), 4), v64(4));
  EXPECT_EQ(ms.get_after(k8(2), 4), v64(200));
}

TEST(memory_state, large_blocks_on_two_threads_match_a_model) {
  // Odd blocks through apply(), even ones through plan() and install(); then
  // a revert of 11 blocks (66,000 changes: on two threads too) and one of 3.
  memory_state ms{8};
  std::mt19937_64 rng{7};
  std::map<key, value> model;
  std::map<block_id, contents> states;
  block_record_list history;
  for (block_id h = 1; h <= 20; ++h) {
    auto ops = large_block(h, rng);
    // The record expected: per key, its value before the block and the
    // block's last operation on it.
    std::map<key, std::pair<value, value>> expected;
    for (auto& op : ops) {
      auto [it, added] = expected.try_emplace(op.k);
      if (added)
        it->second.first = model.count(op.k) ? model[op.k] : value{};
      it->second.second = op.v;
    }
    for (auto& op : ops) {
      if (op.v.empty())
        model.erase(op.k);
      else
        model[op.k] = op.v;
    }
    block_record_ptr rec;
    if (h % 2 == 1) {
      auto applied = ms.apply(h, ops);
      ASSERT_TRUE(applied) << describe(applied.error());
      rec = *applied;
    } else {
      rec = apply(ms, h, ops);
      ASSERT_TRUE(rec);
    }
    std::map<key, std::pair<value, value>> got;
    for (auto change : rec->changes)
      got[key{change.k}] = {value{change.before}, value{change.after}};
    ASSERT_EQ(got, expected) << h;
    history.push_back(rec);
    states[h] = contents(model.begin(), model.end());
    ASSERT_EQ(ms.size(), model.size()) << h;
    if (h % 5 == 0) {
      ASSERT_EQ(snapshot_of(ms), states[h]) << h;
    }
    // Reads below this block find each key's value in the undo of the
    // half that planned it (and below the block before, through two).
    for (block_id below = h > 2 ? h - 2 : 1; below < h; ++below) {
      auto& then = states[below]; // in key order
      for (std::size_t i = 0; i < ops.size(); i += 5) {
        auto& k = ops[i].k;
        auto it = std::lower_bound(
          then.begin(), then.end(), k,
          [](const auto& kv, const key& x) { return kv.first < x; });
        auto expected = it != then.end() && it->first == k ? it->second
                                                           : value{};
        ASSERT_EQ(ms.get_after(k, below), expected)
          << "block " << h << ", below " << below;
      }
    }
  }
  EXPECT_EQ(ms.get_after(k8(1), 3).error(), ec::rollback_beyond_history);
  revert_to(ms, history, 9);
  EXPECT_EQ(snapshot_of(ms), states[9]);
  EXPECT_EQ(ms.size(), states[9].size());
  revert_to(ms, history, 6);
  EXPECT_EQ(snapshot_of(ms), states[6]);
  EXPECT_EQ(ms.size(), states[6].size());
  std::vector<key> keys;
  std::vector<value> expected;
  std::map<key, value> at6(states[6].begin(), states[6].end());
  for (std::uint64_t i = 0; i < 3000 * 7; ++i) {
    keys.push_back(k8(i));
    expected.push_back(at6.count(keys.back()) ? at6[keys.back()] : value{});
  }
  EXPECT_EQ(values_of(ms, keys), expected);
}

TEST(memory_state, load_many_loads_like_load_each_key_in_order) {
  // 3,000 keys in batches across 4 shards (their tables grow meanwhile),
  // one key twice: the later value wins and counts once.
  memory_state each{8, 4};
  memory_state many{8, 4};
  std::vector<std::pair<key, value>> batch;
  for (std::uint64_t i = 0; i < 3000; ++i) {
    each.load(k8(i * 7919), v64(i));
    batch.emplace_back(k8(i * 7919), v64(i));
  }
  each.load(k8(7919), v64(99));
  batch.emplace_back(k8(7919), v64(99));
  many.load_many({batch.begin(), batch.begin() + 1000});
  many.load_many({batch.begin() + 1000, batch.end()});
  many.load_many({});
  EXPECT_EQ(many.size(), 3000u);
  EXPECT_EQ(each.size(), 3000u);
  EXPECT_EQ(snapshot_of(many), snapshot_of(each));
  EXPECT_EQ(many.get(k8(7919)), v64(99));
  EXPECT_EQ(many.get(k8(2999 * 7919)), v64(2999));
}

TEST(memory_state, table_bytes_counts_every_slot_of_each_table) {
  // One shard: a table of 16 slots of 23 bytes (the 14-byte entry, the
  // 8-byte key, the tag) holds 14 entries (7/8 full), then doubles at each
  // 7/8: 1,000 entries take 2,048 slots, 47.1 bytes each.
  memory_state ms{8, 1};
  EXPECT_EQ(ms.table_bytes(), 0u);
  for (std::uint64_t i = 0; i < 14; ++i)
    ms.load(k8(i), v64(i));
  EXPECT_EQ(ms.table_bytes(), 16u * 23);
  ms.load(k8(14), v64(14));
  EXPECT_EQ(ms.table_bytes(), 32u * 23);
  for (std::uint64_t i = 15; i < 1000; ++i)
    ms.load(k8(i), v64(i));
  EXPECT_EQ(ms.table_bytes(), 2048u * 23);
  // Without a budget a block's deletes free their slots at once (no
  // tombstones), but a table never shrinks.
  ms.set_applied(0, false);
  operation_list deletes;
  for (std::uint64_t i = 0; i < 500; ++i)
    deletes.push_back({k8(i), ""});
  apply(ms, 1, deletes);
  EXPECT_EQ(ms.size(), 500u);
  EXPECT_EQ(ms.resident_entries(), 500u);
  for (block_id h = 2; h < 2 + memory_state::undo_depth; ++h)
    apply(ms, h, {{k8(5000 + h), "x"}});
  EXPECT_EQ(ms.size(), 500u + memory_state::undo_depth);
  EXPECT_EQ(ms.resident_entries(), 500u + memory_state::undo_depth);
  EXPECT_EQ(ms.table_bytes(), 2048u * 23);
}

TEST(memory_state, shards_grow_in_turn_so_an_entry_costs_under_40_bytes) {
  // 64 shards with growth phases spread over [0, 1): at every size through
  // a doubling the tables (23-byte slots, 7/16 to 7/8 full each) take about
  // 23 * 8/7 / ln 2 = 37.9 bytes per entry, where tables doubling in step
  // would take 26.3 to 52.6.
  memory_state ms{8};
  std::uint64_t loaded = 0;
  for (std::uint64_t n = 100'000; n <= 200'000; n += 10'000) {
    for (; loaded < n; ++loaded)
      ms.load(k8(loaded), v64(loaded));
    EXPECT_LE(ms.table_bytes(), 40 * n) << n;
    EXPECT_GE(ms.table_bytes(), 35 * n) << n;
  }
}

// -- reads ------------------------------------------------------------------

TEST(memory_state, get_many_returns_values_in_order_with_duplicates) {
  memory_state ms{8};
  apply(ms, 1, {{k8(1), "a"}, {k8(2), "b"}, {k8(3), std::string(1, '\0')}});
  EXPECT_EQ(ms.get_many({k8(3), k8(9), k8(1), k8(1), k8(2)}),
            (std::vector<value>{std::string(1, '\0'), "", "a", "a", "b"}));
}

TEST(memory_state, staged_overlay_is_visible_in_get_and_get_many) {
  memory_state ms{8};
  apply(ms, 1, {{k8(1), "a"}, {k8(2), "b"}});
  ms.stage_begin();
  EXPECT_EQ(ms.get(k8(1)), "a"); // Nothing staged yet.
  ms.stage_set(k8(1), "staged");
  ms.stage_set(k8(2), ""); // Staged delete reads as absent.
  ms.stage_set(k8(3), "new");
  ms.stage_set(k8(3), "newer");
  EXPECT_EQ(ms.get(k8(1)), "staged");
  EXPECT_EQ(ms.get(k8(2)), "");
  EXPECT_EQ(ms.get(k8(3)), "newer");
  EXPECT_EQ(ms.get(k8(4)), "");
  EXPECT_EQ(ms.get_many({k8(1), k8(2), k8(3), k8(4)}),
            (std::vector<value>{"staged", "", "newer", ""}));
  // Staging changes neither the state, its size nor its height.
  EXPECT_EQ(snapshot_of(ms), (contents{{k8(1), "a"}, {k8(2), "b"}}));
  EXPECT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms.applied(), 1u);
  ms.stage_end();
  EXPECT_EQ(ms.get(k8(1)), "a");
  EXPECT_EQ(ms.get(k8(2)), "b");
  EXPECT_EQ(ms.get(k8(3)), "");
  EXPECT_EQ(ms.get_many({k8(1), k8(2), k8(3)}),
            (std::vector<value>{"a", "b", ""}));
  // A new stage starts empty.
  ms.stage_begin();
  EXPECT_EQ(ms.get(k8(1)), "a");
  ms.stage_set(k8(1), "x");
  ms.stage_begin();
  EXPECT_EQ(ms.get(k8(1)), "a");
  ms.stage_end();
}

TEST(memory_state, snapshot_lists_live_keys_sorted) {
  memory_state ms{8, 3};
  operation_list ops;
  contents expected;
  for (std::uint64_t i = 0; i < 100; ++i) {
    ops.push_back({k8(i * 7919), v64(i)});
    expected.emplace_back(k8(i * 7919), v64(i));
  }
  apply(ms, 1, ops);
  apply(ms, 2, {{k8(0), ""}, {k8(7919), ""}});
  expected.erase(expected.begin(), expected.begin() + 2);
  std::sort(expected.begin(), expected.end());
  auto snap = snapshot_of(ms);
  EXPECT_EQ(snap, expected);
  EXPECT_EQ(snap.size(), 98u);
  EXPECT_TRUE(std::is_sorted(snap.begin(), snap.end()));
  EXPECT_EQ(ms.size(), 98u);
}

// -- beyond the kept undo -----------------------------------------------------

TEST(memory_state, reads_stay_right_after_more_blocks_than_the_undo_depth) {
  static_assert(memory_state::undo_depth == 16);
  memory_state ms{8, 4};
  block_record_list history;
  history.push_back(apply(ms, 1, {{k8(1), "x1"}, {k8(2), "y1"}}));
  // Delete key 1: its value stays in block 2's undo until it expires.
  history.push_back(apply(ms, 2, {{k8(1), ""}}));
  auto at2 = snapshot_of(ms);
  for (block_id h = 3; h <= 22; ++h)
    history.push_back(apply(ms, h, {{k8(100 + h), v64(h)}, {k8(2), v64(h)}}));
  EXPECT_EQ(ms.applied(), 22u);
  EXPECT_EQ(ms.get(k8(1)), "");
  EXPECT_EQ(ms.get_many({k8(1), k8(2)}), (std::vector<value>{"", v64(22)}));
  EXPECT_EQ(ms.size(), 21u);
  // Setting the purged key again works and is undone to absent.
  history.push_back(apply(ms, 23, {{k8(1), "x23"}}));
  EXPECT_EQ(history.back()->changes[0], (key_change{k8(1), "x23", ""}));
  EXPECT_EQ(ms.get(k8(1)), "x23");
  EXPECT_EQ(ms.size(), 22u);
  revert_to(ms, history, 22);
  EXPECT_EQ(ms.get(k8(1)), "");
  EXPECT_EQ(ms.size(), 21u);
  // Reverting across the delete restores the key.
  revert_to(ms, history, 2);
  EXPECT_EQ(snapshot_of(ms), at2);
  EXPECT_EQ(ms.get(k8(1)), "");
  revert_to(ms, history, 1);
  EXPECT_EQ(ms.get(k8(1)), "x1");
  EXPECT_EQ(ms.get_many({k8(1), k8(2)}), (std::vector<value>{"x1", "y1"}));
  EXPECT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms.applied(), 1u);
  // And the state goes on after a deep revert.
  for (block_id h = 2; h <= 40; ++h)
    history.push_back(apply(ms, h, {{k8(h % 5), v64(h)}}));
  EXPECT_EQ(ms.get_many({k8(0), k8(1), k8(2), k8(3), k8(4)}),
            (std::vector<value>{v64(40), v64(36), v64(37), v64(38), v64(39)}));
  EXPECT_EQ(ms.size(), 5u);
}

TEST(memory_state, revert_of_a_delete_older_than_the_kept_undo) {
  memory_state ms{8, 2};
  block_record_list history;
  history.push_back(apply(ms, 1, {{k8(1), "a"}, {k8(2), "b"}}));
  history.push_back(apply(ms, 2, {{k8(1), ""}, {k8(2), ""}}));
  // Re-set one of the keys while the delete's undo is still kept.
  history.push_back(apply(ms, 3, {{k8(2), "b3"}}));
  for (block_id h = 4; h <= 40; ++h)
    history.push_back(apply(ms, h, {{k8(1000), v64(h)}}));
  EXPECT_EQ(ms.get_many({k8(1), k8(2)}), (std::vector<value>{"", "b3"}));
  EXPECT_EQ(ms.size(), 2u);
  revert_to(ms, history, 2);
  EXPECT_EQ(ms.get_many({k8(1), k8(2), k8(1000)}),
            (std::vector<value>{"", "", ""}));
  EXPECT_EQ(ms.size(), 0u);
  revert_to(ms, history, 1);
  EXPECT_EQ(snapshot_of(ms), (contents{{k8(1), "a"}, {k8(2), "b"}}));
  EXPECT_EQ(ms.size(), 2u);
}

// -- concurrency --------------------------------------------------------------

namespace {

/// Readers check that every get_many is one height while blocks apply and
/// revert; `optimistic_attempts` 0 sends every read down the locked path, a
/// small `stamp_limit` rebases the entries' stamps every few blocks. Every
/// block sets each key to its height, or with `deletes` deletes a third of
/// them (key i when (height + i) % 3 == 0) and sets the rest: each key is
/// then deleted and set again every three blocks, and a reader below a
/// block reads deleted keys from its undo. With `key_count` at least
/// memory_state::parallel_block_changes the blocks are installed on two
/// threads.
void check_concurrent_reads(
  std::size_t optimistic_attempts,
  memory_state::stamp_type stamp_limit = memory_state::default_stamp_limit,
  bool deletes = false, std::size_t key_count = 12, block_id blocks = 10000) {
  memory_state ms{8, 8, optimistic_attempts, stamp_limit};
  std::vector<key> keys;
  for (std::size_t i = 0; i < key_count; ++i)
    keys.push_back(k8(i * 1'000'003));
  auto state_at = [&](block_id h) {
    std::vector<value> vals;
    for (std::size_t i = 0; i < key_count; ++i)
      vals.push_back(deletes && (h + i) % 3 == 0 ? value{} : v64(h));
    return vals;
  };
  auto set_all = [&](block_id h) {
    operation_list ops;
    auto vals = state_at(h);
    for (std::size_t i = 0; i < key_count; ++i)
      ops.push_back({keys[i], vals[i]});
    return ops;
  };
  block_record_list history;
  history.push_back(apply(ms, 0, set_all(0)));
  // Even while no revert runs; bumped before and after each revert.
  std::atomic<std::uint64_t> revert_gen{0};
  std::atomic<bool> done{false};
  std::atomic<std::size_t> failures{0};
  std::atomic<std::size_t> reads{0};
  auto reader = [&] {
    std::uint64_t last_gen = 1; // Odd: no previous read to compare with.
    std::uint64_t last_value = 0;
    while (!done.load()) {
      auto gen_before = revert_gen.load();
      auto low = ms.applied();
      auto vals = values_of(ms, keys);
      auto high = ms.applied();
      auto gen_after = revert_gen.load();
      reads.fetch_add(1, std::memory_order_relaxed);
      // Keys 1 and 2 are never both deleted: one of them tells the height.
      auto v = vals.size() == key_count && vals[1].size() == 8
                 ? u64_from_bytes(vals[1])
               : vals.size() == key_count && vals[2].size() == 8
                 ? u64_from_bytes(vals[2])
                 : ~std::uint64_t{0};
      if (v == ~std::uint64_t{0} || vals != state_at(v)) {
        if (failures.fetch_add(1) < 5)
          ADD_FAILURE() << "get_many mixed heights";
        continue;
      }
      if (gen_before == gen_after && gen_before % 2 == 0) {
        // No revert overlapped: the read is at a height in [low, high].
        if (v < low || v > high) {
          if (failures.fetch_add(1) < 5)
            ADD_FAILURE() << "read height " << v << " outside [" << low
                          << ", " << high << "]";
        }
        if (gen_before == last_gen && v < last_value) {
          if (failures.fetch_add(1) < 5)
            ADD_FAILURE() << "read height went back from " << last_value
                          << " to " << v << " without a revert";
        }
        last_gen = gen_before;
        last_value = v;
      } else {
        last_gen = 1;
      }
      std::this_thread::yield(); // Leave the writer some of the 2 cores.
    }
  };
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i)
    readers.emplace_back(reader);
  std::size_t since_revert = 0;
  block_id h = 0;
  for (block_id n = 1; n <= blocks; ++n) {
    ++h;
    history.push_back(apply(ms, h, set_all(h)));
    ++since_revert;
    if (n % 97 == 0 && since_revert > 3) {
      auto target = history[history.size() - 4]->height;
      revert_gen.fetch_add(1);
      ms.revert(above(history, target), target);
      revert_gen.fetch_add(1);
      history.resize(history.size() - 3);
      since_revert = 0;
      EXPECT_EQ(ms.applied(), target);
      EXPECT_EQ(ms.get_many(keys), state_at(target));
      h += 5; // The next block is well above the target.
    }
    if (history.size() > 64)
      history.erase(history.begin(), history.begin() + 32);
    std::this_thread::yield(); // Let the readers overlap every block.
  }
  done.store(true);
  for (auto& t : readers)
    t.join();
  EXPECT_EQ(failures.load(), 0u);
  EXPECT_GT(reads.load(), 0u);
  EXPECT_EQ(ms.applied(), h);
  auto last = state_at(h);
  EXPECT_EQ(ms.get_many(keys), last);
  EXPECT_EQ(ms.size(), key_count - std::count(last.begin(), last.end(), ""));
}

} // namespace

TEST(memory_state, get_many_reads_one_height_while_blocks_are_applied) {
  check_concurrent_reads(memory_state::default_optimistic_attempts);
}

TEST(memory_state, locked_reads_are_one_height_while_blocks_are_applied) {
  check_concurrent_reads(0);
}

TEST(memory_state, reads_are_one_height_while_stamps_are_rebased) {
  // A rebase every other block.
  check_concurrent_reads(memory_state::default_optimistic_attempts, 3);
}

TEST(memory_state, reads_below_a_delete_are_one_height) {
  check_concurrent_reads(memory_state::default_optimistic_attempts,
                         memory_state::default_stamp_limit, true);
}

TEST(memory_state, locked_reads_below_a_delete_are_one_height) {
  check_concurrent_reads(0, memory_state::default_stamp_limit, true);
}

TEST(memory_state, reads_are_one_height_while_large_blocks_are_applied) {
  check_concurrent_reads(memory_state::default_optimistic_attempts,
                         memory_state::default_stamp_limit, true,
                         memory_state::parallel_block_changes + 100, 50);
}

TEST(memory_state, stamps_rebase_without_changing_any_read) {
  // Stamps count up to 3: the entries are rewritten every other block.
  // Keys written once at block 1 stay readable; deleted keys leave no
  // entry; reverts go back across rebases.
  memory_state ms{8, 4, memory_state::default_optimistic_attempts, 3};
  std::map<block_id, contents> states; // the state after each height
  block_record_list history;
  operation_list first;
  for (std::uint64_t i = 0; i < 50; ++i)
    first.push_back({k8(1000 + i), v64(i)});
  history.push_back(apply(ms, 1, first));
  states[1] = snapshot_of(ms);
  for (block_id h = 2; h <= 300; ++h) {
    operation_list ops{{k8(h % 7), v64(h)}, {k8(100 + h), v64(h)}};
    if (h > 2)
      ops.push_back({k8(100 + h - 1), ""}); // the previous block's new key
    history.push_back(apply(ms, h, ops));
    states[h] = snapshot_of(ms);
    // 50 + 7 + 1 live keys from block 8 on, and no other entry.
    if (h > 20) {
      ASSERT_EQ(ms.size(), 58u) << h;
      ASSERT_EQ(ms.resident_entries(), 58u) << h;
    }
  }
  EXPECT_EQ(ms.get(k8(1000)), v64(0));
  EXPECT_EQ(ms.get(k8(1049)), v64(49));
  EXPECT_EQ(ms.get(k8(400)), v64(300));
  EXPECT_EQ(ms.get(k8(399)), "");
  // Reverts within and beyond the undo kept, each followed by new blocks.
  revert_to(ms, history, 290);
  EXPECT_EQ(snapshot_of(ms), states[290]);
  for (block_id h = 291; h <= 330; ++h)
    history.push_back(apply(ms, h, {{k8(h % 7), v64(h + 1'000'000)}}));
  revert_to(ms, history, 250);
  EXPECT_EQ(snapshot_of(ms), states[250]);
  EXPECT_EQ(ms.get_many({k8(250 % 7), k8(350), k8(349), k8(1010)}),
            (std::vector<value>{v64(250), v64(250), "", v64(10)}));
  revert_to(ms, history, 1);
  EXPECT_EQ(snapshot_of(ms), states[1]);
  EXPECT_EQ(ms.size(), 50u);
  for (block_id h = 2; h <= 60; ++h)
    history.push_back(apply(ms, h, {{k8(h % 3), v64(h)}}));
  EXPECT_EQ(ms.get_many({k8(0), k8(1), k8(2), k8(1049)}),
            (std::vector<value>{v64(60), v64(58), v64(59), v64(49)}));
  EXPECT_EQ(ms.size(), 53u);
}

// -- memory budget --------------------------------------------------------------

namespace {

/// The estimated bytes of one resident entry with an 8-byte key and a value
/// of at most 10 bytes (inline): twice its table slot (the 14-byte entry
/// and the key in 22 bytes, and the tag byte), as tables are 7/16 to 7/8
/// full.
constexpr std::size_t small_entry_bytes = 2 * (22 + 1);

/// The same under a budget: three slots, as tables there are 1/4 to 1/2
/// full.
constexpr std::size_t budget_entry_bytes = 3 * (22 + 1);

/// A memory_state with a budget over a real state store, driven as the
/// actors drive it: a checkpoint every `checkpoint_every` blocks, and a
/// revert that checkpoints, makes the reverted keys resident, writes the
/// target state to the store, then reverts memory. Keeps its own model of
/// the state (with its own undo) to compare against.
class budgeted_state {
public:
  budgeted_state(
    std::size_t entry_budget, std::size_t checkpoint_every,
    memory_state::stamp_type stamp_limit =
      memory_state::default_stamp_limit)
    : ms_{8, 64, memory_state::default_optimistic_attempts, stamp_limit},
      checkpoint_every_(checkpoint_every) {
    state_store::options opts;
    opts.dir = dir_.path() / "state";
    opts.cache_bytes = 1 << 20;
    opts.write_buffer_bytes = 1 << 20;
    auto opened = state_store::open(opts);
    EXPECT_TRUE(opened) << describe(opened.error());
    store_ = std::move(*opened);
    ms_.attach_state_of_record(*store_, entry_budget);
  }

  ~budgeted_state() {
    ms_.detach_state_of_record();
  }

  memory_state& ms() {
    return ms_;
  }

  const std::map<key, value>& model() const {
    return model_;
  }

  void apply(block_id height, const operation_list& ops) {
    std::vector<std::pair<key, std::optional<value>>> undo;
    for (auto& op : ops) {
      auto found = model_.find(op.k);
      undo.emplace_back(op.k, found != model_.end()
                                ? std::optional<value>{found->second}
                                : std::nullopt);
      if (op.v.empty())
        model_.erase(op.k);
      else
        model_[op.k] = op.v;
    }
    model_undo_.emplace_back(height, std::move(undo));
    auto rec = plan_ok(ms_, height, ops);
    ASSERT_TRUE(rec);
    ms_.install(rec);
    history_.push_back(rec);
    pending_.add(rec);
    if (++since_checkpoint_ == checkpoint_every_)
      checkpoint();
  }

  void checkpoint() {
    if (pending_.blocks() == 0)
      return;
    auto height = ms_.applied();
    ASSERT_EQ(store_->write_checkpoint(pending_.take(height)), caf::error{});
    ms_.set_checkpointed(height);
    since_checkpoint_ = 0;
  }

  /// Overwrites `keys` in the state of record with `v`, behind memory's
  /// back: a key that reads `v` afterwards was not resident.
  void overwrite_state_of_record(const std::vector<key>& keys, const value& v) {
    checkpoint_batch batch;
    batch.height = ms_.applied();
    for (auto& k : keys)
      batch.put(k, v);
    ASSERT_EQ(store_->write_checkpoint(batch), caf::error{});
  }

  void revert(block_id target) {
    checkpoint();
    auto newest_first = above(history_, target);
    ms_.make_resident(newest_first);
    checkpoint_builder undo;
    for (auto& rec : newest_first)
      undo.add_undo(rec);
    ASSERT_EQ(store_->write_checkpoint(undo.take(target)), caf::error{});
    ms_.set_checkpointed(target);
    ms_.revert(newest_first, target);
    std::erase_if(history_,
                  [&](const block_record_ptr& r) { return r->height > target; });
    while (!model_undo_.empty() && model_undo_.back().first > target) {
      auto& changes = model_undo_.back().second;
      for (auto it = changes.rbegin(); it != changes.rend(); ++it) {
        if (it->second)
          model_[it->first] = *it->second;
        else
          model_.erase(it->first);
      }
      model_undo_.pop_back();
    }
  }

  /// Expects every key below `key_limit` to read as the model says, one by
  /// one and with get_many, and the live count and snapshot to match.
  void expect_matches_model(std::uint64_t key_limit) {
    ASSERT_EQ(ms_.size(), model_.size());
    std::vector<key> keys;
    std::vector<value> expected;
    for (std::uint64_t i = 0; i < key_limit; ++i) {
      auto k = k8(i);
      auto found = model_.find(k);
      auto want = found != model_.end() ? found->second : value{};
      auto got = ms_.get(k);
      ASSERT_TRUE(got) << describe(got.error());
      ASSERT_EQ(*got, want) << "key " << i << " at " << ms_.applied();
      keys.push_back(k);
      expected.push_back(want);
    }
    EXPECT_EQ(values_of(ms_, keys), expected);
    EXPECT_EQ(snapshot_of(ms_),
              contents(model_.begin(), model_.end()));
  }

private:
  test::temp_dir dir_;
  std::unique_ptr<state_store> store_;
  memory_state ms_;
  std::size_t checkpoint_every_;
  std::size_t since_checkpoint_ = 0;
  checkpoint_builder pending_;
  block_record_list history_;
  std::map<key, value> model_;
  std::vector<std::pair<block_id,
                        std::vector<std::pair<key, std::optional<value>>>>>
    model_undo_;
};

/// Block `h` of a workload over keys [0, 1000 h): 1000 new keys, 100
/// updates and 50 deletes of random older keys.
operation_list workload_block(block_id h, std::mt19937_64& rng) {
  operation_list ops;
  for (std::uint64_t i = 1000 * (h - 1); i < 1000 * h; ++i)
    ops.push_back({k8(i), v64(i)});
  if (h > 1) {
    std::uniform_int_distribution<std::uint64_t> older{0, 1000 * (h - 1) - 1};
    for (int i = 0; i < 100; ++i)
      ops.push_back({k8(older(rng)), v64(h * 1'000'000 + i)});
    for (int i = 0; i < 50; ++i)
      ops.push_back({k8(older(rng)), ""});
  }
  return ops;
}

} // namespace

TEST(memory_state_budget, large_blocks_on_two_threads_stay_exact) {
  // Blocks of 6,000 operations with a budget: lookups and installs on two
  // threads, with tombstones, new keys looked up in the state of record and
  // reverts. (Nothing is clean to evict within 16 blocks of such size.)
  budgeted_state b{4000 * budget_entry_bytes, 3};
  std::mt19937_64 rng{11};
  for (block_id h = 1; h <= 12; ++h) {
    b.apply(h, large_block(h, rng));
    if (h % 4 == 0)
      b.expect_matches_model(3000 * h);
  }
  b.revert(9);
  b.expect_matches_model(3000 * 12);
  for (block_id h = 10; h <= 14; ++h)
    b.apply(h, large_block(h, rng));
  b.expect_matches_model(3000 * 14);
  b.revert(4);
  b.expect_matches_model(3000 * 14);
}

TEST(memory_state_budget, accounting_counts_entry_bytes_exactly) {
  memory_state ms{8};
  EXPECT_EQ(ms.resident_bytes(), 0u);
  apply(ms, 1, {{k8(1), "a"}, {k8(2), "b"}, {k8(3), "c"}});
  EXPECT_EQ(ms.resident_entries(), 3u);
  EXPECT_EQ(ms.resident_bytes(), 3 * small_entry_bytes);
  // A value beyond the 10 inline bytes adds its heap block: its size and
  // the allocator's 16 bytes.
  value big(100, 'x');
  apply(ms, 2, {{k8(1), big}});
  EXPECT_EQ(ms.resident_bytes(), 3 * small_entry_bytes + 100 + 16);
  // Without a budget a delete purges the entry once its undo expires.
  apply(ms, 3, {{k8(1), ""}});
  for (block_id h = 4; h < 4 + memory_state::undo_depth; ++h)
    apply(ms, h, {});
  EXPECT_EQ(ms.resident_entries(), 2u);
  EXPECT_EQ(ms.resident_bytes(), 2 * small_entry_bytes);
}

TEST(memory_state_budget, dirty_entries_stay_until_their_checkpoint) {
  // A budget of 10 entries; 40 blocks of 100 new keys with no checkpoint.
  budgeted_state b{10 * budget_entry_bytes, 1000};
  for (block_id h = 1; h <= 40; ++h) {
    operation_list ops;
    for (std::uint64_t i = 100 * (h - 1); i < 100 * h; ++i)
      ops.push_back({k8(i), v64(i)});
    b.apply(h, ops);
  }
  // Nothing was written to LevelDB, so nothing may go.
  EXPECT_EQ(b.ms().resident_entries(), 4000u);
  EXPECT_EQ(b.ms().resident_bytes(), 4000 * budget_entry_bytes);
  b.expect_matches_model(4100);
  // Checkpoint 40; block 41 expires the undo of block 25: entries of blocks
  // 1..25 are clean and go, those of the 16 blocks readers may need stay.
  b.checkpoint();
  b.apply(41, {{k8(4000), v64(4000)}});
  EXPECT_EQ(b.ms().resident_entries(), 15 * 100 + 1u);
  EXPECT_EQ(b.ms().resident_bytes(), (15 * 100 + 1) * budget_entry_bytes);
  b.expect_matches_model(4100);
  // Reading evicted keys does not bring them back.
  EXPECT_EQ(b.ms().resident_entries(), 15 * 100 + 1u);
}

TEST(memory_state_budget, a_read_entry_gets_a_second_chance_against_eviction) {
  // 150 keys in block 1, clean once checkpointed and out of the undo depth;
  // 60 of them read (50 with get_many, 10 with get); then 100 new keys push
  // the resident entries over the budget of 200: the eviction takes
  // unread entries only.
  budgeted_state b{200 * budget_entry_bytes, 1};
  operation_list first;
  std::vector<key> keys;
  for (std::uint64_t i = 0; i < 150; ++i) {
    first.push_back({k8(i), v64(i)});
    keys.push_back(k8(i));
  }
  b.apply(1, first);
  for (block_id h = 2; h <= 18; ++h)
    b.apply(h, {});
  ASSERT_EQ(b.ms().resident_entries(), 150u);
  std::vector<key> read(keys.begin(), keys.begin() + 50);
  auto got = b.ms().get_many(read);
  ASSERT_TRUE(got);
  for (std::uint64_t i = 50; i < 60; ++i)
    ASSERT_EQ(b.ms().get(k8(i)), v64(i));
  operation_list more;
  for (std::uint64_t i = 150; i < 250; ++i)
    more.push_back({k8(i), v64(i)});
  b.apply(19, more);
  auto resident = b.ms().resident_entries();
  ASSERT_LT(resident, 250u);
  b.overwrite_state_of_record(keys, "from LevelDB");
  std::size_t evicted = 0;
  for (std::uint64_t i = 0; i < 150; ++i) {
    auto v = b.ms().get(k8(i));
    ASSERT_TRUE(v);
    if (i < 60)
      EXPECT_EQ(*v, v64(i)) << "read key " << i << " was evicted";
    else if (*v == "from LevelDB")
      ++evicted;
    else
      EXPECT_EQ(*v, v64(i));
  }
  EXPECT_EQ(evicted, 250 - resident);
}

namespace {

/// 120k keys written under a budget of about 2000 entries, with reverts
/// across evictions; `stamp_limit` as memory_state's.
void check_budgeted_reads_and_reverts(memory_state::stamp_type stamp_limit) {
  budgeted_state b{2000 * budget_entry_bytes, 4, stamp_limit};
  std::mt19937_64 rng{42};
  for (block_id h = 1; h <= 120; ++h) {
    b.apply(h, workload_block(h, rng));
    if (h % 60 == 0)
      b.expect_matches_model(1000 * h + 10);
  }
  EXPECT_EQ(b.ms().applied(), 120u);
  // Resident: at most the budget plus the entries of the undo window and the
  // blocks since the checkpoint (dirty), 19 blocks of 1150 changes.
  EXPECT_LE(b.ms().resident_entries(), 2000u + 19 * 1150);
  EXPECT_LT(b.ms().resident_entries(), b.model().size() / 4);
  // Revert across evictions: blocks 91..120 changed keys long evicted.
  b.revert(90);
  EXPECT_EQ(b.ms().applied(), 90u);
  b.expect_matches_model(120'010);
  // Go on above the target, then revert again within the new blocks.
  std::mt19937_64 rng2{7};
  for (block_id h = 101; h <= 140; ++h)
    b.apply(h, workload_block(h, rng2));
  b.revert(110);
  b.expect_matches_model(140'010);
  for (block_id h = 111; h <= 130; ++h)
    b.apply(h, workload_block(h, rng2));
  b.checkpoint();
  b.apply(131, {});
  b.expect_matches_model(140'010);
  EXPECT_LE(b.ms().resident_bytes(),
            (2000 + 16 * 1150) * budget_entry_bytes);
}

} // namespace

TEST(memory_state_budget, reads_reverts_and_live_count_stay_exact) {
  check_budgeted_reads_and_reverts(memory_state::default_stamp_limit);
}

TEST(memory_state_budget, stamps_rebase_under_a_budget_below_the_checkpoint) {
  // A checkpoint every 4 blocks: the base follows the checkpoint, and dirty
  // entries keep their stamps.
  check_budgeted_reads_and_reverts(8);
}

TEST(memory_state_budget, stamps_cannot_outrun_a_stalled_checkpoint) {
  // Without a checkpoint no stamp can be rebased: the install after the
  // limit is refused and changes nothing (the store's backpressure keeps
  // the checkpoint at most max_uncheckpointed_blocks behind, a quarter of
  // the 2^16 - 1 stamps).
  budgeted_state b{1 << 20, 1000, 20};
  for (block_id h = 1; h <= 19; ++h)
    b.apply(h, {{k8(h), v64(h)}});
  auto rec = plan_ok(b.ms(), 20, {{k8(20), v64(20)}});
  ASSERT_TRUE(rec);
  EXPECT_THROW(b.ms().install(rec), std::length_error);
  EXPECT_EQ(b.ms().applied(), 19u);
  EXPECT_EQ(b.ms().get(k8(20)), "");
  EXPECT_EQ(b.ms().size(), 19u);
  b.checkpoint();
  b.ms().install(rec); // the checkpoint lets the stamps count on
  EXPECT_EQ(b.ms().applied(), 20u);
  EXPECT_EQ(b.ms().get(k8(20)), v64(20));
}

namespace {

/// A LevelDB Env that, once armed, holds the next opening of a table file
/// until released: a read of the state of record that stalls there.
class stalling_env : public leveldb::EnvWrapper {
public:
  stalling_env() : leveldb::EnvWrapper(leveldb::Env::Default()) {
  }

  void arm() {
    std::lock_guard guard{mu_};
    armed_ = true;
  }

  /// Waits until an armed opening stalls; false if none did in time.
  bool await_stalled(std::chrono::seconds timeout) {
    std::unique_lock guard{mu_};
    return cv_.wait_for(guard, timeout, [this] { return stalled_; });
  }

  void release() {
    std::lock_guard guard{mu_};
    released_ = true;
    cv_.notify_all();
  }

  leveldb::Status NewRandomAccessFile(const std::string& fname,
                                      leveldb::RandomAccessFile** result)
    override {
    {
      std::unique_lock guard{mu_};
      if (armed_ && fname.ends_with(".ldb")) {
        armed_ = false;
        stalled_ = true;
        cv_.notify_all();
        cv_.wait(guard, [this] { return released_; });
      }
    }
    return target()->NewRandomAccessFile(fname, result);
  }

private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false;
  bool stalled_ = false;
  bool released_ = false;
};

} // namespace

// Block 0 is a real height, and so is the fresh state before it: a reader of
// a fresh state reads at applied() == 0 both before and after block 0. Here
// a get_many of a fresh state reads its first key (absent), then stalls in
// the state of record on the second while block 0 installs both; its second
// look at memory then finds the second key written by block 0. The result
// must be the state before block 0 or after it, not the first key before and
// the second after.
TEST(memory_state_budget, a_read_overlapping_block_0_of_a_fresh_state) {
  test::temp_dir dir;
  stalling_env env;
  state_store::options opts;
  opts.dir = dir.path() / "state";
  opts.cache_bytes = 1 << 20;
  opts.write_buffer_bytes = 1 << 20;
  opts.env = &env;
  // Keys in key order: second < stored < first. The state of record holds
  // a table of `stored` (a key only there to make the table's range reach
  // `second`; memory never reads it) that is not open yet: reading `second`
  // opens it, where the Env stalls; `first` lies above the table and is
  // answered from the empty memtable.
  key second(8, '\x10');
  key stored(8, '\x80');
  key first(8, '\xf0');
  {
    auto store = state_store::open(opts);
    ASSERT_TRUE(store) << describe(store.error());
    checkpoint_builder batch;
    auto rec = std::make_shared<block_record>();
    rec->height = 0;
    rec->changes.push_back(key_change{stored, "x", ""});
    batch.add(rec);
    ASSERT_EQ((*store)->write_checkpoint(batch.take(0)), caf::error{});
  }
  {
    // Reopening writes the log to a table (and opens it to verify it). The
    // configuration goes into a newer one, written by the next open: that
    // open reads "m/page_keys" from it and leaves the older table closed.
    auto store = state_store::open(opts);
    ASSERT_TRUE(store) << describe(store.error());
    ASSERT_EQ((*store)->write_config(store_metadata{}), caf::error{});
  }
  // Opened again, the store has the older table, `stored`'s, not open.
  auto store = state_store::open(opts);
  ASSERT_TRUE(store) << describe(store.error());
  memory_state ms{8};
  ms.attach_state_of_record(**store, 1 << 20);
  ASSERT_TRUE(ms.fresh());
  env.arm();
  std::vector<value> got;
  std::thread reader{[&] { got = values_of(ms, {first, second}); }};
  auto stalled = env.await_stalled(std::chrono::seconds{30});
  apply(ms, 0, {{first, "a"}, {second, "b"}});
  env.release();
  reader.join();
  ASSERT_TRUE(stalled) << "the read of the second key did not open the "
                          "table: the interleaving was not set up";
  auto before = std::vector<value>{"", ""};
  auto after = std::vector<value>{"a", "b"};
  EXPECT_TRUE(got == before || got == after)
    << "get_many read {\"" << got.at(0) << "\", \"" << got.at(1)
    << "\"}: the state of no height";
  EXPECT_EQ(values_of(ms, {first, second}), after);
  ms.detach_state_of_record();
}
