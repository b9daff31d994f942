#include "rollblock/actors/blocking_store.hpp"
#include "rollblock/messages/error.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

using namespace rollblock;

namespace {

key k(std::uint64_t x) {
  return key_from_u64(x);
}

value v(std::uint64_t x) {
  return value_from_u64(x);
}

std::unique_ptr<blocking_store> open_store(const std::string& dir,
                                           store_options opts = {}) {
  opts.data_dir = dir;
  auto store = blocking_store::open(opts);
  EXPECT_TRUE(store) << describe(store.error());
  return store ? std::move(*store) : nullptr;
}

} // namespace

TEST(blocking_store, smoke) {
  test::temp_dir dir;
  auto store = open_store(dir.sub("data"));
  ASSERT_TRUE(store);
  ASSERT_FALSE(store->apply(1, {{k(1), v(10)}, {k(2), v(20)}}));
  EXPECT_EQ(*store->fetch(k(1)), v(10));
  ASSERT_FALSE(store->apply(2, {{k(1), ""}}));
  EXPECT_EQ(*store->fetch(k(1)), "");
  ASSERT_FALSE(store->revert_to(1));
  EXPECT_EQ(*store->fetch(k(1)), v(10));
  EXPECT_EQ(store->heights(), (store_heights{1, 1, 1}));
  ASSERT_FALSE(store->close());
  store = open_store(dir.sub("data"));
  ASSERT_TRUE(store);
  EXPECT_EQ(*store->fetch(k(1)), v(10));
  EXPECT_EQ(*store->fetch(k(2)), v(20));
  EXPECT_EQ(store->applied_height(), 1u);
}
