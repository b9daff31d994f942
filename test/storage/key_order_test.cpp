#include "rollblock/storage/key_order.hpp"

#include "rollblock/messages/types.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

using namespace rollblock;
using namespace rollblock::storage;

namespace {

struct item {
  std::uint64_t prefix = 0;
  std::string k;
  std::size_t seq = 0;
};

std::vector<item> items_of(const std::vector<std::string>& keys) {
  std::vector<item> result;
  for (std::size_t i = 0; i < keys.size(); ++i)
    result.push_back({key_prefix(keys[i]), keys[i], i});
  return result;
}

/// What sort_in_key_order must produce: std::stable_sort by key.
std::vector<item> reference_order(std::vector<item> items) {
  std::stable_sort(items.begin(), items.end(),
                   [](const item& a, const item& b) { return a.k < b.k; });
  return items;
}

void expect_sorted_like_reference(std::vector<item> items) {
  auto expected = reference_order(items);
  sort_in_key_order(items, [](const item& x) -> std::string_view {
    return x.k;
  });
  ASSERT_EQ(items.size(), expected.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    EXPECT_EQ(items[i].k, expected[i].k) << "at " << i;
    EXPECT_EQ(items[i].seq, expected[i].seq) << "at " << i;
  }
}

} // namespace

TEST(key_order, prefix_is_the_first_8_bytes_big_endian) {
  EXPECT_EQ(key_prefix(std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8)),
            0x0102030405060708ull);
  EXPECT_EQ(key_prefix(std::string("\xff\0\0\0\0\0\0\0zzzz", 12)),
            0xff00000000000000ull);
  // Bytewise order of keys is the order of their prefixes.
  EXPECT_LT(key_prefix(std::string("\x00\xff\xff\xff\xff\xff\xff\xff", 8)),
            key_prefix(std::string("\x01\x00\x00\x00\x00\x00\x00\x00", 8)));
}

TEST(key_order, empty_and_single_items_stay) {
  std::vector<item> none;
  sort_in_key_order(none, [](const item& x) -> std::string_view {
    return x.k;
  });
  EXPECT_TRUE(none.empty());
  expect_sorted_like_reference(items_of({key_from_u64(7)}));
}

TEST(key_order, random_8_byte_keys_with_repeats_sort_stably) {
  std::mt19937_64 rng{1};
  std::vector<std::string> keys;
  for (int i = 0; i < 50000; ++i)
    keys.push_back(key_from_u64(rng() % 20000 * 0x9e3779b97f4a7c15ull, 8));
  expect_sorted_like_reference(items_of(keys));
}

TEST(key_order, sequential_keys_skip_the_digits_they_share) {
  // Little-endian sequential numbers: most bytes are equal in every key.
  std::vector<std::string> keys;
  for (std::uint64_t i = 300000; i > 0; --i)
    keys.push_back(key_from_u64(i, 8));
  expect_sorted_like_reference(items_of(keys));
  // Every key equal: nothing moves.
  expect_sorted_like_reference(
    items_of(std::vector<std::string>(1000, key_from_u64(5, 8))));
}

TEST(key_order, wide_keys_sharing_prefixes_sort_by_the_whole_key) {
  std::mt19937_64 rng{2};
  std::vector<std::string> keys;
  for (int i = 0; i < 20000; ++i) {
    // 32-byte keys: one of 50 prefixes, random tails, some repeated.
    keys.push_back(key_from_u64(rng() % 50, 8)
                   + key_from_u64(rng() % 5000, 24));
  }
  expect_sorted_like_reference(items_of(keys));
}
