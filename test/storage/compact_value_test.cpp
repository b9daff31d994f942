#include "rollblock/storage/compact_value.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>

using namespace rollblock;
using namespace rollblock::storage;

TEST(compact_value, default_is_empty) {
  compact_value v;
  EXPECT_TRUE(v.empty());
  EXPECT_EQ(v.size(), 0u);
  EXPECT_EQ(v.view(), "");
  EXPECT_EQ(v.heap_bytes(), 0u);
}

TEST(compact_value, short_values_stay_inline) {
  for (std::size_t n = 1; n <= compact_value::inline_capacity; ++n) {
    std::string s(n, 'a');
    s.back() = '\0'; // binary bytes are kept as they are
    compact_value v{s};
    EXPECT_EQ(v.size(), n);
    EXPECT_EQ(v.view(), s);
    EXPECT_EQ(v.heap_bytes(), 0u);
  }
}

TEST(compact_value, long_values_go_to_the_heap) {
  std::string s(15, 'x');
  compact_value v{s};
  EXPECT_EQ(v.view(), s);
  EXPECT_EQ(v.heap_bytes(), 15u);
  std::string biggest(max_value_size, 'z');
  biggest[100] = '\0';
  v.assign(biggest);
  EXPECT_EQ(v.size(), max_value_size);
  EXPECT_EQ(v.view(), biggest);
  EXPECT_EQ(v.heap_bytes(), max_value_size);
}

TEST(compact_value, assign_switches_between_inline_and_heap) {
  compact_value v{"short"};
  v.assign(std::string(40, 'L'));
  EXPECT_EQ(v.view(), std::string(40, 'L'));
  v.assign(std::string(40, 'M')); // same size: reuses the block
  EXPECT_EQ(v.view(), std::string(40, 'M'));
  v.assign(std::string(41, 'N'));
  EXPECT_EQ(v.view(), std::string(41, 'N'));
  v.assign("tiny");
  EXPECT_EQ(v.view(), "tiny");
  EXPECT_EQ(v.heap_bytes(), 0u);
  v.assign("");
  EXPECT_TRUE(v.empty());
}

TEST(compact_value, assign_to_empty_sets_inline_and_heap_values) {
  compact_value short_one;
  short_one.assign_to_empty(std::string_view{"ten bytes!", 10});
  EXPECT_EQ(short_one.view(), "ten bytes!");
  EXPECT_EQ(short_one.heap_bytes(), 0u);
  compact_value long_one;
  long_one.assign_to_empty(std::string(11, 'h'));
  EXPECT_EQ(long_one.view(), std::string(11, 'h'));
  EXPECT_EQ(long_one.heap_bytes(), 11u);
  compact_value empty_one;
  empty_one.assign_to_empty("");
  EXPECT_TRUE(empty_one.empty());
  // The heap block is owned as assign's is (the sanitizer build checks it
  // is freed once).
  long_one.assign("x");
  EXPECT_EQ(long_one.view(), "x");
}

TEST(compact_value, copies_and_moves_own_their_bytes) {
  compact_value a{std::string(30, 'a')};
  compact_value b{a};
  EXPECT_EQ(b.view(), std::string(30, 'a'));
  EXPECT_NE(a.view().data(), b.view().data());
  compact_value c{std::move(a)};
  EXPECT_EQ(c.view(), std::string(30, 'a'));
  EXPECT_TRUE(a.empty()); // NOLINT: moved-from is empty by contract
  compact_value d{"inline"};
  d = c;
  EXPECT_EQ(d.view(), std::string(30, 'a'));
  d = compact_value{"x"};
  EXPECT_EQ(d.view(), "x");
  d = std::move(b);
  EXPECT_EQ(d.view(), std::string(30, 'a'));
  EXPECT_EQ(d, c);
  EXPECT_FALSE(d == compact_value{"y"});
  auto& self = d;
  d = self;
  EXPECT_EQ(d.view(), std::string(30, 'a'));
  EXPECT_EQ(d.str(), std::string(30, 'a'));
}
