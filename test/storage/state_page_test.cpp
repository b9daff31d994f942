#include "rollblock/storage/state_page.hpp"

#include "rollblock/messages/types.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

using namespace rollblock;
using namespace rollblock::storage;

namespace {

using entries = std::vector<std::pair<std::size_t, std::string>>;

entries entries_of(const page_image& image) {
  entries result;
  image.for_each([&](std::size_t slot, std::string_view v) {
    result.emplace_back(slot, std::string{v});
  });
  return result;
}

std::string page_key(std::string_view k, std::size_t page_keys = 64) {
  std::string result;
  page_key_of(k, page_keys, result);
  return result;
}

/// Decodes `bytes` as the page of key 0 (8 bytes): the error text.
std::string decode_error(std::string_view bytes, std::size_t page_keys = 64) {
  page_image image;
  return image.decode(key_from_u64(0), bytes, page_keys);
}

} // namespace

TEST(state_page, eight_byte_keys_page_on_the_low_bits_of_byte_0) {
  // Key order reads 8-byte keys as little-endian numbers: 64 consecutive
  // numbers from a multiple of 64 share a page.
  EXPECT_EQ(slot_byte(8), 0u);
  EXPECT_EQ(slot_of(key_from_u64(0), 64), 0u);
  EXPECT_EQ(slot_of(key_from_u64(63), 64), 63u);
  EXPECT_EQ(slot_of(key_from_u64(64), 64), 0u);
  EXPECT_EQ(slot_of(key_from_u64(1000), 64), 1000u % 64);
  EXPECT_EQ(page_key(key_from_u64(1000)), key_from_u64(960));
  EXPECT_EQ(page_key(key_from_u64(0xffffffffffffffffull)),
            key_from_u64(0xffffffffffffffc0ull));
  EXPECT_TRUE(same_page(key_from_u64(960), key_from_u64(1023), 64));
  EXPECT_FALSE(same_page(key_from_u64(1023), key_from_u64(1024), 64));
  EXPECT_FALSE(
    same_page(key_from_u64(5), key_from_u64(5 + (1ull << 40)), 64));
  std::string k;
  key_in_page(key_from_u64(960), 40, k);
  EXPECT_EQ(k, key_from_u64(1000));
}

TEST(state_page, wider_keys_page_on_the_low_bits_of_their_last_byte) {
  // Key order compares the bytes after the first 8 bytewise: the last byte
  // is the least significant.
  EXPECT_EQ(slot_byte(9), 8u);
  EXPECT_EQ(slot_byte(32), 31u);
  EXPECT_EQ(slot_byte(64), 63u);
  auto a = key_from_u64(7, 32);
  a[31] = '\xc5'; // slot 5 of the page ending in 0xc0
  EXPECT_EQ(slot_of(a, 64), 5u);
  auto pa = a;
  pa[31] = '\xc0';
  EXPECT_EQ(page_key(a), pa);
  auto b = a;
  b[31] = '\xff';
  EXPECT_TRUE(same_page(a, b, 64));
  auto c = a;
  c[0] = 8; // byte 0 belongs to the page key here
  EXPECT_FALSE(same_page(a, c, 64));
  auto d = a;
  d[31] = '\x85';
  EXPECT_FALSE(same_page(a, d, 64));
  std::string k;
  key_in_page(pa, 63, k);
  EXPECT_EQ(k, b);
}

TEST(state_page, page_sizes_are_powers_of_two_up_to_64) {
  for (std::size_t n = 0; n <= 130; ++n)
    EXPECT_EQ(valid_page_keys(n),
              n == 1 || n == 2 || n == 4 || n == 8 || n == 16 || n == 32
                || n == 64)
      << n;
  EXPECT_EQ(default_page_keys(8), 64u);
  EXPECT_EQ(default_page_keys(9), 1u);
  EXPECT_EQ(default_page_keys(32), 1u);
}

TEST(state_page, smaller_pages_use_fewer_slot_bits) {
  // 16 keys per page: the low 4 bits of byte 0.
  EXPECT_EQ(slot_of(key_from_u64(1000), 16), 1000u % 16);
  EXPECT_EQ(page_key(key_from_u64(1000), 16), key_from_u64(992));
  EXPECT_TRUE(same_page(key_from_u64(992), key_from_u64(1007), 16));
  EXPECT_FALSE(same_page(key_from_u64(1007), key_from_u64(1008), 16));
  EXPECT_EQ(decode_error("\x10\x01x", 16),
            "entry at byte 0: slot 16 is outside 0..15");
  page_image image;
  EXPECT_EQ(image.decode(key_from_u64(1000), "", 16),
            "the page key's slot bits are not zero");
  // One key per page: every key is its own page, slot 0.
  EXPECT_EQ(slot_of(key_from_u64(1001), 1), 0u);
  EXPECT_EQ(page_key(key_from_u64(1001), 1), key_from_u64(1001));
  EXPECT_FALSE(same_page(key_from_u64(1000), key_from_u64(1001), 1));
  EXPECT_EQ(decode_error("\x01\x01x", 1),
            "entry at byte 0: slot 1 is outside 0..0");
  auto one = std::string{"\0\2ab", 4}; // the image views it
  ASSERT_EQ(image.decode(key_from_u64(1001), one, 1), "");
  EXPECT_EQ(entries_of(image), (entries{{0, "ab"}}));
}

TEST(state_page, round_trip_of_every_slot_and_every_size_class) {
  // Slots 0..63, value sizes with 1-, 2- and 3-byte size fields, binary
  // bytes.
  std::vector<std::string> values(max_page_keys);
  for (std::size_t slot = 0; slot < max_page_keys; ++slot) {
    auto size = slot == 0 ? max_value_size
                : slot % 3 == 0 ? 127
                : slot % 3 == 1 ? 128
                                : 1 + slot;
    values[slot].resize(size);
    for (std::size_t i = 0; i < size; ++i)
      values[slot][i] = static_cast<char>(slot * 31 + i);
  }
  page_image full;
  for (std::size_t slot = 0; slot < max_page_keys; ++slot)
    full.set(slot, values[slot]);
  EXPECT_FALSE(full.empty());
  std::string bytes;
  full.encode(bytes);
  // 64 slot bytes, 1 + 2 * 21 + 2 * 21 + 1 size bytes... summed exactly:
  std::size_t expected_size = 0;
  for (auto& v : values)
    expected_size += 1 + (v.size() < 128 ? 1 : v.size() < 16384 ? 2 : 3)
                     + v.size();
  EXPECT_EQ(bytes.size(), expected_size);
  page_image back;
  ASSERT_EQ(back.decode(key_from_u64(64), bytes, 64), "");
  entries want;
  for (std::size_t slot = 0; slot < max_page_keys; ++slot)
    want.emplace_back(slot, values[slot]);
  EXPECT_EQ(entries_of(back), want);
}

TEST(state_page, sparse_pages_encode_exactly) {
  page_image image;
  EXPECT_TRUE(image.empty());
  auto zs = std::string(200, 'z'); // the image views it
  image.set(3, "abc");
  image.set(63, zs);
  image.set(10, "gone");
  image.set(10, ""); // removed again
  std::string bytes;
  image.encode(bytes);
  EXPECT_EQ(bytes, std::string("\x03\x03" "abc" "\x3f\xc8\x01", 8)
                     + std::string(200, 'z'));
  page_image back;
  ASSERT_EQ(back.decode(key_from_u64(128), bytes, 64), "");
  EXPECT_EQ(entries_of(back),
            (entries{{3, "abc"}, {63, std::string(200, 'z')}}));
  // The empty page decodes to no entry.
  ASSERT_EQ(back.decode(key_from_u64(128), "", 64), "");
  EXPECT_TRUE(back.empty());
}

TEST(state_page, malformed_pages_are_refused_with_the_reason) {
  using namespace std::string_literals;
  EXPECT_EQ(decode_error("\x40\x01x"s),
            "entry at byte 0: slot 64 is outside 0..63");
  EXPECT_EQ(decode_error("\x05\x01x\x05\x01y"s),
            "entry at byte 3: slot 5 follows slot 5 (slots must increase)");
  EXPECT_EQ(decode_error("\x05\x01x\x02\x01y"s),
            "entry at byte 3: slot 2 follows slot 5 (slots must increase)");
  EXPECT_EQ(decode_error("\x05"s),
            "entry at byte 0: the value size is truncated");
  EXPECT_EQ(decode_error("\x05\x80"s),
            "entry at byte 0: the value size is truncated");
  EXPECT_EQ(decode_error("\x05\x80\x80\x80\x01"s),
            "entry at byte 0: the value size has more than 3 bytes");
  EXPECT_EQ(decode_error("\x05\x00"s),
            "entry at byte 0: slot 5 holds an empty value (deletes are never "
            "stored)");
  EXPECT_EQ(decode_error("\x05\x80\x80\x04"s), // 65536
            "entry at byte 0: slot 5 holds a value of 65536 bytes, more than "
            "65535");
  EXPECT_EQ(decode_error("\x01\x01x\x05\x04xy"s),
            "entry at byte 3: slot 5 holds a value of 4 bytes but only 2 "
            "remain");
  page_image image;
  EXPECT_EQ(image.decode(std::string(7, '\0'), "", 64),
            "the page key has 7 bytes, not 8..64");
  EXPECT_EQ(image.decode(std::string(65, '\0'), "", 64),
            "the page key has 65 bytes, not 8..64");
  EXPECT_EQ(image.decode(key_from_u64(65), "\x01\x01x", 64),
            "the page key's slot bits are not zero");
  // A failed decode leaves the image empty, even after good entries.
  ASSERT_EQ(image.decode(key_from_u64(0), "\x01\x01x", 64), "");
  EXPECT_FALSE(image.empty());
  EXPECT_NE(image.decode(key_from_u64(0), "\x01\x01x\x40\x01y"s, 64), "");
  EXPECT_TRUE(image.empty());
}
