#include "rollblock/messages/durability.hpp"

#include "rollblock/messages/error.hpp"

#include <gtest/gtest.h>

using namespace rollblock;

TEST(durability, to_string_and_parse_round_trip) {
  for (auto mode : {durability_mode::synchronous(),
                    durability_mode::synchronous_relaxed(5),
                    durability_mode::async(64),
                    durability_mode::async_relaxed(64, 10)}) {
    auto parsed = parse_durability(to_string(mode));
    ASSERT_TRUE(parsed) << describe(parsed.error());
    EXPECT_EQ(*parsed, mode) << to_string(mode);
  }
  EXPECT_EQ(to_string(durability_mode::synchronous()), "sync");
  EXPECT_EQ(to_string(durability_mode::synchronous_relaxed(5)),
            "sync-relaxed:5");
  EXPECT_EQ(to_string(durability_mode::async(64)), "async:64");
  EXPECT_EQ(to_string(durability_mode::async_relaxed(64, 10)),
            "async-relaxed:64:10");
}

TEST(durability, defaults_match_the_reference) {
  EXPECT_EQ(durability_mode::async().max_pending, 1024u);
  EXPECT_EQ(durability_mode::async_relaxed().max_pending, 1024u);
  EXPECT_EQ(durability_mode::async_relaxed().sync_every, 100u);
}

TEST(durability, bad_text_is_refused_with_the_reason) {
  for (auto text : {"", "fast", "sync:1", "sync-relaxed", "sync-relaxed:0",
                    "sync-relaxed:x", "async", "async:0", "async:-1",
                    "async-relaxed:1", "async-relaxed:1:0",
                    "async-relaxed:1:2:3", "async:99999999999"}) {
    auto parsed = parse_durability(text);
    ASSERT_FALSE(parsed) << text;
    EXPECT_EQ(code_of(parsed.error()), ec::invalid_argument);
    EXPECT_NE(message_of(parsed.error())
                .find("invalid durability mode '" + std::string{text} + "'"),
              std::string::npos)
      << message_of(parsed.error());
  }
}

TEST(durability, relaxed_and_strict_keep_the_sync_or_async_choice) {
  auto sync = durability_mode::synchronous();
  EXPECT_EQ(sync.relaxed(7), durability_mode::synchronous_relaxed(7));
  EXPECT_EQ(sync.relaxed(7).strict(), sync);
  auto async = durability_mode::async(32);
  EXPECT_EQ(async.relaxed(9), durability_mode::async_relaxed(32, 9));
  EXPECT_EQ(async.relaxed(9).strict(), async);
  EXPECT_TRUE(sync.is_synchronous());
  EXPECT_FALSE(async.is_synchronous());
  EXPECT_TRUE(async.relaxed(2).is_relaxed());
  EXPECT_FALSE(async.is_relaxed());
}
