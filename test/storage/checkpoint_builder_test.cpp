#include "rollblock/storage/checkpoint_builder.hpp"

#include "rollblock/messages/error.hpp"
#include "rollblock/storage/key_order.hpp"
#include "rollblock/storage/state_store.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <optional>
#include <string>
#include <utility>
#include <vector>

using namespace rollblock;
using namespace rollblock::storage;

namespace {

using writes = std::vector<std::pair<key, value>>;

/// The writes of `batch` as owned strings.
writes owned(const checkpoint_batch& batch) {
  writes result;
  for (auto& w : batch.writes)
    result.emplace_back(w.k, w.v);
  return result;
}

key k8(std::uint64_t x) {
  return key_from_u64(x, 8);
}

block_record_ptr record(block_id height, std::vector<key_change> changes) {
  auto r = std::make_shared<block_record>();
  r->height = height;
  r->changes = std::move(changes);
  return r;
}

} // namespace

TEST(checkpoint_builder, empty_builder_takes_an_empty_batch) {
  checkpoint_builder b;
  EXPECT_EQ(b.blocks(), 0u);
  auto batch = b.take(17);
  EXPECT_EQ(batch.height, 17u);
  EXPECT_TRUE(batch.writes.empty());
  EXPECT_EQ(batch.revert_marker, std::nullopt);
}

TEST(checkpoint_builder, add_coalesces_last_wins_across_blocks) {
  checkpoint_builder b;
  b.add(record(1, {{k8(1), "a1", ""}, {k8(2), "b1", ""}}));
  b.add(record(2, {{k8(3), "c2", ""}, {k8(1), "a2", "a1"}}));
  b.add(record(5, {}));
  b.add(record(9, {{k8(2), "", "b1"}, {k8(1), "a9", "a2"}, {k8(4), "", ""}}));
  EXPECT_EQ(b.blocks(), 4u);
  auto batch = b.take(9);
  EXPECT_EQ(batch.height, 9u);
  EXPECT_EQ(batch.revert_marker, std::nullopt);
  // One write per key, in key order, with the newest after value.
  // Keys 2 (inserted, then deleted) and 4 (deleted while absent) end as they
  // were in LevelDB: no write.
  EXPECT_EQ(owned(batch), (writes{{k8(1), "a9"}, {k8(3), "c2"}}));
}

TEST(checkpoint_builder, keys_back_at_their_stored_value_are_not_written) {
  checkpoint_builder b;
  b.add(record(11, {{k8(1), "x", ""},      // inserted...
                    {k8(2), "b11", "b0"},  // changed...
                    {k8(3), "", "c0"},     // deleted...
                    {k8(4), "d11", "d0"}}));
  b.add(record(12, {{k8(1), "", "x"},      // ...and deleted again
                    {k8(2), "b0", "b11"},  // ...and set back
                    {k8(3), "c0", ""},     // ...and put back
                    {k8(5), "e12", ""}}));
  auto batch = b.take(12);
  EXPECT_EQ(batch.height, 12u);
  EXPECT_EQ(owned(batch), (writes{{k8(4), "d11"}, {k8(5), "e12"}}));
  // A delete of a key LevelDB holds is written as an empty value.
  b.add(record(13, {{k8(4), "", "d11"}, {k8(6), "f13", ""}}));
  b.add(record(14, {{k8(6), "", "f13"}}));
  EXPECT_EQ(owned(b.take(14)), (writes{{k8(4), ""}}));
}

TEST(checkpoint_builder, add_undo_newest_first_yields_the_oldest_before) {
  checkpoint_builder b;
  // Blocks 3, 5 and 8 reverted: records come newest first.
  b.add_undo(record(8, {{k8(1), "a8", "a5"}, {k8(3), "", "c3"}}));
  b.add_undo(record(5, {{k8(1), "a5", "a3"}, {k8(2), "b5", ""}}));
  b.add_undo(record(3, {{k8(1), "a3", "a0"}, {k8(3), "c3", ""},
                        {k8(4), "", "d0"}}));
  EXPECT_EQ(b.blocks(), 3u);
  auto batch = b.take(2);
  EXPECT_EQ(batch.height, 2u);
  // The state below block 3: each key's before value of its oldest change,
  // written only where it differs from LevelDB (the after values of the
  // newest change): key 3, inserted in block 3 and deleted in block 8, is
  // absent in both.
  EXPECT_EQ(owned(batch), (writes{{k8(1), "a0"},
                                  {k8(2), ""},
                                  {k8(4), "d0"}}));
}

TEST(checkpoint_builder, take_resets_the_builder) {
  checkpoint_builder b;
  b.add(record(1, {{k8(1), "a", ""}, {k8(2), "b", ""}}));
  b.add(record(2, {{k8(1), "a2", "a"}}));
  EXPECT_EQ(b.blocks(), 2u);
  auto first = b.take(2);
  EXPECT_EQ(owned(first), (writes{{k8(1), "a2"}, {k8(2), "b"}}));
  EXPECT_EQ(b.blocks(), 0u);
  auto empty = b.take(2);
  EXPECT_EQ(empty.height, 2u);
  EXPECT_TRUE(empty.writes.empty());
  // Keys seen before the take start over: no stale positions.
  b.add(record(3, {{k8(2), "b3", "b"}}));
  b.add(record(4, {{k8(1), "a4", "a2"}, {k8(2), "b4", "b3"}}));
  EXPECT_EQ(b.blocks(), 2u);
  auto second = b.take(4);
  EXPECT_EQ(second.height, 4u);
  EXPECT_EQ(owned(second), (writes{{k8(1), "a4"}, {k8(2), "b4"}}));
  EXPECT_EQ(b.blocks(), 0u);
}

TEST(checkpoint_builder, keys_outlive_the_callers_records) {
  checkpoint_builder b;
  {
    auto r = record(1, {{k8(1), "a", ""}, {key_from_prefix("x", 8), "x", ""}});
    b.add(r);
  } // The builder keeps the record (and the keys it indexes) alive.
  for (block_id h = 2; h < 200; ++h)
    b.add(record(h, {{k8(h % 3), std::to_string(h), ""},
                     {key_from_prefix("x", 8), std::to_string(h), ""}}));
  EXPECT_EQ(b.blocks(), 199u);
  auto batch = b.take(199);
  EXPECT_EQ(owned(batch), (writes{{k8(0), "198"},
                                  {k8(1), "199"},
                                  {k8(2), "197"},
                                  {key_from_prefix("x", 8), "199"}}));
}

TEST(checkpoint_builder, wide_keys_sharing_their_first_8_bytes_come_in_key_order) {
  // 16-byte keys that differ only in their last 8 bytes (the sort's prefix
  // ties), added in descending order, one of them changed twice.
  auto wide = [](std::uint64_t low) {
    return "sameprfx" + key_from_u64(low, 8);
  };
  checkpoint_builder b;
  b.add(record(1, {{wide(3), "c1", ""}, {wide(2), "b1", ""}}));
  b.add(record(2, {{wide(1), "a2", ""}, {wide(3), "c2", "c1"}}));
  EXPECT_EQ(owned(b.take(2)), (writes{{wide(1), "a2"},
                                      {wide(2), "b1"},
                                      {wide(3), "c2"}}));
}

TEST(checkpoint_builder, a_large_checkpoint_writes_what_a_model_expects) {
  // 40 blocks of 3,000 changes over 20,000 keys, values from a small
  // alphabet so that some keys come back to their stored value; the model
  // is a std::map in key order. Keys: 8 bytes, random (sorted as 16-byte
  // change references); 8 bytes, counted up across a carry into the fifth
  // byte (33 varying bits: sorted as one number per change); 24 bytes
  // sharing prefixes.
  enum class keys { random8, counted8, wide24 };
  for (auto kind : {keys::random8, keys::counted8, keys::wide24}) {
    std::mt19937_64 rng{static_cast<std::uint64_t>(kind)};
    auto make_key = [&](std::uint64_t i) {
      switch (kind) {
        case keys::random8:
          return key_from_u64(i * 0x9e3779b97f4a7c15ull, 8);
        case keys::counted8:
          return key_from_u64(0xffffd000ull + i, 8);
        case keys::wide24:
          break;
      }
      // 64 keys per 8-byte prefix.
      return key_from_u64(i / 64, 8) + key_from_u64(i * 0x9e3779b97f4a7c15ull, 16);
    };
    auto make_value = [&]() -> value {
      auto x = rng() % 5;
      if (x == 0)
        return value{};
      value v = "v";
      v += std::to_string(x);
      return v;
    };
    std::map<key, value, key_order_less> stored; // LevelDB's before the batch
    for (std::uint64_t i = 0; i < 20000; ++i)
      stored[make_key(i)] = make_value();
    auto current = stored;
    checkpoint_builder b;
    for (block_id h = 1; h <= 40; ++h) {
      std::set<std::uint64_t> picked;
      while (picked.size() < 3000)
        picked.insert(rng() % 20000);
      std::vector<key_change> changes;
      for (auto i : picked) {
        auto k = make_key(i);
        auto after = make_value();
        changes.push_back({k, after, current[k]});
        current[k] = after;
      }
      std::shuffle(changes.begin(), changes.end(), rng);
      b.add(record(h, std::move(changes)));
    }
    writes expected;
    for (auto& [k, v] : current)
      if (stored[k] != v)
        expected.emplace_back(k, v);
    auto batch = b.take(40);
    EXPECT_EQ(owned(batch), expected) << "keys " << static_cast<int>(kind);
    EXPECT_GT(expected.size(), 10000u);
  }
}

TEST(checkpoint_builder, batch_writes_into_the_state_store) {
  rollblock::test::temp_dir tmp;
  state_store::options opts;
  opts.dir = tmp.path();
  opts.cache_bytes = 1 << 20;
  opts.write_buffer_bytes = 1 << 20;
  auto store = state_store::open(opts);
  ASSERT_TRUE(store) << describe(store.error());
  store_metadata meta;
  ASSERT_FALSE((*store)->write_config(meta));
  checkpoint_builder b;
  b.add(record(1, {{k8(1), "a", ""}, {k8(2), "b", ""}}));
  b.add(record(2, {{k8(2), "", "b"}, {k8(3), "c", ""}}));
  ASSERT_FALSE((*store)->write_checkpoint(b.take(2)));
  auto read = (*store)->read_metadata();
  ASSERT_TRUE(read && *read);
  EXPECT_EQ((**read).checkpoint, 2u);
  writes all;
  ASSERT_FALSE((*store)->for_each(
    [&](const key& k, const value& v) { all.emplace_back(k, v); }));
  EXPECT_EQ(all, (writes{{k8(1), "a"}, {k8(3), "c"}}));
  // Undo block 2: back to the state at 1.
  b.add_undo(record(2, {{k8(2), "", "b"}, {k8(3), "c", ""}}));
  ASSERT_FALSE((*store)->write_checkpoint(b.take(1)));
  all.clear();
  ASSERT_FALSE((*store)->for_each(
    [&](const key& k, const value& v) { all.emplace_back(k, v); }));
  EXPECT_EQ(all, (writes{{k8(1), "a"}, {k8(2), "b"}}));
  read = (*store)->read_metadata();
  ASSERT_TRUE(read && *read);
  EXPECT_EQ((**read).checkpoint, 1u);
}
