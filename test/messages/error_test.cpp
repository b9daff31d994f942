#include "rollblock/messages/error.hpp"
#include "rollblock/messages/metrics.hpp"
#include "rollblock/messages/types.hpp"

#include <gtest/gtest.h>

using namespace rollblock;

TEST(error, carries_code_category_and_message) {
  auto err = make_error(ec::block_id_not_increasing,
                        "block 7 is not above the applied height 9");
  EXPECT_EQ(err.category(), error_category);
  EXPECT_EQ(code_of(err), ec::block_id_not_increasing);
  EXPECT_EQ(message_of(err), "block 7 is not above the applied height 9");
  EXPECT_EQ(describe(err), "block_id_not_increasing: block 7 is not above "
                           "the applied height 9");
  EXPECT_EQ(code_of(caf::error{}), ec::none);
  EXPECT_EQ(message_of(make_error(ec::store_closed)), "store_closed");
}

TEST(error, every_code_has_a_name) {
  for (int i = 0; i <= static_cast<int>(ec::store_closed); ++i)
    EXPECT_NE(to_string(static_cast<ec>(i)), "unknown_error_code") << i;
}

TEST(types, key_and_value_helpers) {
  EXPECT_EQ(key_from_u64(0x0102030405060708), std::string("\x08\x07\x06\x05"
                                                          "\x04\x03\x02\x01",
                                                          8));
  auto wide = key_from_u64(1, 16);
  EXPECT_EQ(wide.size(), 16u);
  EXPECT_EQ(wide, std::string("\x01", 1) + std::string(15, '\0'));
  EXPECT_EQ(key_from_prefix("alice", 8), std::string("alice\0\0\0", 8));
  EXPECT_EQ(value_from_u64(258), std::string("\x02\x01\0\0\0\0\0\0", 8));
  EXPECT_EQ(u64_from_bytes(value_from_u64(123456789)), 123456789u);
}

TEST(latency_histogram, quantiles_bound_the_samples) {
  latency_histogram h;
  EXPECT_EQ(h.summary().count, 0u);
  for (int i = 1; i <= 100; ++i)
    h.record(static_cast<std::uint64_t>(i) * 1000); // 1..100 us
  auto s = h.summary();
  EXPECT_EQ(s.count, 100u);
  EXPECT_DOUBLE_EQ(s.avg_us, 50.5);
  // Each quantile is the upper edge of a bucket at most 25% wide.
  EXPECT_GE(s.p50_us, 50.0);
  EXPECT_LE(s.p50_us, 50.0 * 1.25);
  EXPECT_GE(s.p99_us, 99.0);
  EXPECT_LE(s.p99_us, 99.0 * 1.25);
  EXPECT_LE(s.p50_us, s.p95_us);
  EXPECT_LE(s.p95_us, s.p99_us);
}
