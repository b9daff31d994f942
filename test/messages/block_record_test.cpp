#include "rollblock/messages/block_record.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

using namespace rollblock;

namespace {

std::string bytes(std::initializer_list<int> xs) {
  std::string result;
  for (auto x : xs)
    result.push_back(static_cast<char>(x));
  return result;
}

} // namespace

TEST(change_list, encodes_changes_in_the_journal_payload_layout) {
  change_list changes;
  changes.push_back({key_from_u64(0x0102), "xy", ""});
  changes.push_back({key_from_u64(7), "", "q"});
  EXPECT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes.key_width(), 8u);
  auto expected = bytes({0x02, 0x01, 0, 0, 0, 0, 0, 0, 2, 0, 'x', 'y', 0, 0,
                         7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 'q'});
  EXPECT_EQ(changes.payload(), expected);
  EXPECT_EQ(changes[0], (key_change{key_from_u64(0x0102), "xy", ""}));
  EXPECT_EQ(changes[1], (key_change{key_from_u64(7), "", "q"}));
  EXPECT_EQ(changes.front().after, "xy");
}

TEST(change_list, iterates_in_order_and_holds_values_of_every_size) {
  std::string all_bytes;
  for (int i = 0; i < 256; ++i)
    all_bytes.push_back(static_cast<char>(i));
  std::vector<key_change> expected{
    {key_from_prefix("a", 32), "", ""},
    {key_from_prefix("b", 32), std::string(max_value_size, 'x'), ""},
    {key_from_prefix("c", 32), "", std::string(max_value_size, 'y')},
    {key_from_prefix(std::string(32, '\xff'), 32), all_bytes,
     all_bytes + all_bytes}};
  change_list changes{expected};
  ASSERT_EQ(changes.size(), expected.size());
  std::size_t i = 0;
  for (auto c : changes)
    EXPECT_EQ(c, expected[i++]);
  EXPECT_EQ(changes.end() - changes.begin(), 4);
  EXPECT_EQ(changes.begin()[3].before.size(), 512u);
  // Out of order, loading each change ahead (a hint: nothing changes).
  for (std::size_t j : {3u, 0u, 2u, 1u}) {
    changes.prefetch(j);
    EXPECT_EQ(changes[j], expected[j]);
  }
  std::size_t payload = 0;
  for (auto& c : expected)
    payload += change_list::encoded_size(32, c.after.size(), c.before.size());
  EXPECT_EQ(changes.payload().size(), payload);
  EXPECT_GE(changes.memory_bytes(), payload + 4 * sizeof(std::uint32_t));
}

TEST(change_list, refuses_what_it_cannot_encode_and_keeps_its_changes) {
  change_list changes{{key_from_u64(1), "a", ""}};
  auto before = changes;
  EXPECT_THROW(changes.push_back({key_from_u64(2, 16), "b", ""}),
               std::invalid_argument);
  EXPECT_THROW(changes.push_back(
                 {key_from_u64(2), std::string(max_value_size + 1, 'v'), ""}),
               std::length_error);
  EXPECT_THROW(changes.push_back(
                 {key_from_u64(2), "", std::string(max_value_size + 1, 'v')}),
               std::length_error);
  EXPECT_EQ(changes, before);
  change_list empty;
  EXPECT_THROW(empty.push_back({std::string(7, 'k'), "v", ""}),
               std::invalid_argument);
  EXPECT_THROW(empty.push_back({std::string(65, 'k'), "v", ""}),
               std::invalid_argument);
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.key_width(), 0u);
}

TEST(change_list, append_copies_another_lists_changes_after_its_own) {
  change_list first{{key_from_u64(1), "one", ""}, {key_from_u64(2), "", "2"}};
  change_list second{{key_from_u64(3), "three", "3"}};
  first.append(second);
  EXPECT_EQ(first, (change_list{{key_from_u64(1), "one", ""},
                                {key_from_u64(2), "", "2"},
                                {key_from_u64(3), "three", "3"}}));
  EXPECT_EQ(second, (change_list{{key_from_u64(3), "three", "3"}}));
  // Into an empty list (which takes the other's width), and an empty one.
  change_list empty;
  empty.append(second);
  EXPECT_EQ(empty, second);
  EXPECT_EQ(empty.key_width(), 8u);
  empty.append(change_list{});
  EXPECT_EQ(empty, second);
  // Another key width: refused, nothing changed.
  auto before = first;
  EXPECT_THROW(first.append(change_list{{key_from_u64(4, 16), "w", ""}}),
               std::invalid_argument);
  EXPECT_EQ(first, before);
}

TEST(change_list, adopts_a_verified_payload) {
  change_list built{{key_from_u64(5), "five", ""}, {key_from_u64(6), "", "6"}};
  change_list adopted{std::string{built.payload()}, {0, 16}, 8};
  EXPECT_EQ(adopted, built);
  EXPECT_EQ(adopted[1], (key_change{key_from_u64(6), "", "6"}));
}

TEST(change_list, compares_width_count_and_bytes) {
  change_list a{{key_from_u64(1), "x", ""}};
  change_list b{{key_from_u64(1), "x", ""}};
  change_list c{{key_from_u64(1), "y", ""}};
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(change_list{}, change_list{});
  a.clear();
  EXPECT_EQ(a, change_list{});
  EXPECT_EQ(a.key_width(), 0u);
  a.push_back({key_from_u64(1, 16), "x", ""});
  EXPECT_EQ(a.key_width(), 16u);
}

TEST(block_record, compares_height_and_changes) {
  block_record x{4, {{key_from_u64(4), "torn", ""}}};
  block_record y{4, {{key_from_u64(4), "torn", ""}}};
  EXPECT_EQ(x, y);
  y.height = 5;
  EXPECT_NE(x, y);
  EXPECT_NE(x, (block_record{4, {}}));
}

TEST(change_list, check_payload_accepts_exactly_the_layout) {
  change_list built{{key_from_u64(5), "five", ""}, {key_from_u64(6), "", "6"}};
  auto payload = std::string{built.payload()};
  std::vector<std::uint32_t> offsets;
  EXPECT_TRUE(change_list::check_payload(payload, 2, 8, &offsets));
  EXPECT_EQ(offsets, (std::vector<std::uint32_t>{0, 16}));
  EXPECT_TRUE(change_list::check_payload({}, 0, 8));
  // Another count, another key width, a byte missing or left over.
  EXPECT_FALSE(change_list::check_payload(payload, 1, 8));
  EXPECT_FALSE(change_list::check_payload(payload, 3, 8));
  EXPECT_FALSE(change_list::check_payload(payload, 2, 16));
  EXPECT_FALSE(change_list::check_payload(
    std::string_view{payload}.substr(0, payload.size() - 1), 2, 8));
  EXPECT_FALSE(change_list::check_payload(payload + "x", 2, 8));
  // A length that runs past the end.
  auto long_after = payload;
  long_after[8] = '\x40';
  EXPECT_FALSE(change_list::check_payload(long_after, 2, 8));
}
