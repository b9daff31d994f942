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

/// What sort_in_key_order must produce: std::stable_sort in key order.
std::vector<item> reference_order(std::vector<item> items) {
  std::stable_sort(items.begin(), items.end(),
                   [](const item& a, const item& b) {
                     return key_order_less{}(a.k, b.k);
                   });
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

TEST(key_order, prefix_is_the_first_8_bytes_little_endian) {
  EXPECT_EQ(key_prefix(std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8)),
            0x0807060504030201ull);
  EXPECT_EQ(key_prefix(std::string("\xff\0\0\0\0\0\0\0zzzz", 12)),
            0xffull);
  EXPECT_EQ(key_prefix(key_from_u64(0x1122334455667788ull, 8)),
            0x1122334455667788ull);
}

TEST(key_order, numbers_stored_little_endian_are_in_numeric_order) {
  // key_from_u64 stores little endian: key order is the numbers' order,
  // where bytewise order is not (256 < 1 bytewise).
  std::vector<std::uint64_t> numbers{0, 1, 2, 255, 256, 257, 65535, 65536,
                                     1ull << 40, ~0ull - 1, ~0ull};
  for (std::size_t i = 0; i + 1 < numbers.size(); ++i) {
    auto a = key_from_u64(numbers[i], 8);
    auto b = key_from_u64(numbers[i + 1], 8);
    EXPECT_LT(compare_keys(a, b), 0) << numbers[i] << " vs " << numbers[i + 1];
    EXPECT_GT(compare_keys(b, a), 0) << numbers[i] << " vs " << numbers[i + 1];
    EXPECT_EQ(compare_keys(a, a), 0) << numbers[i];
  }
  EXPECT_GT(key_from_u64(1, 8), key_from_u64(256, 8)); // bytewise
}

TEST(key_order, wider_keys_tie_on_the_prefix_and_compare_their_tails_bytewise) {
  auto head = key_from_u64(42, 8);
  EXPECT_LT(compare_keys(head + "a", head + "b"), 0);
  EXPECT_LT(compare_keys(head + "b", key_from_u64(43, 8) + "a"), 0);
  EXPECT_LT(compare_keys(head + std::string("\x7f", 1),
                         head + std::string("\x80", 1)),
            0); // unsigned bytes
  EXPECT_EQ(compare_keys(head + "same", head + "same"), 0);
  EXPECT_LT(compare_keys(head, head + "longer"), 0);
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

TEST(key_order, radix_sort_orders_by_the_number_stably) {
  // Sorted by the bits above the low 20 (a checkpoint's numbered changes:
  // key bits above position bits); the low bits, the items' order, must
  // stay ascending among equal numbers.
  std::mt19937_64 rng{3};
  std::vector<std::uint64_t> items;
  for (std::uint64_t i = 0; i < 100000; ++i)
    items.push_back(((rng() % 3000 + (std::uint64_t{1} << 30)) << 20) | i);
  auto expected = items;
  auto number = [](std::uint64_t x) { return x >> 20; };
  std::stable_sort(expected.begin(), expected.end(),
                   [&](std::uint64_t a, std::uint64_t b) {
                     return number(a) < number(b);
                   });
  radix_sort(items, number);
  EXPECT_EQ(items, expected);
  // Every number equal: nothing moves.
  std::vector<std::uint64_t> same{5 << 20 | 2, 5 << 20 | 0, 5 << 20 | 1};
  auto before = same;
  radix_sort(same, number);
  EXPECT_EQ(same, before);
}
