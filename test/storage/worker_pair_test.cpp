#include "rollblock/storage/worker_pair.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>

using namespace rollblock::storage;

TEST(worker_pair, runs_half_0_on_the_caller_and_half_1_on_another_thread) {
  worker_pair pair;
  std::array<std::thread::id, 2> ran_on;
  auto record = [&](std::size_t half) {
    ran_on.at(half) = std::this_thread::get_id();
  };
  pair.run(record);
  EXPECT_EQ(ran_on[0], std::this_thread::get_id());
  EXPECT_NE(ran_on[1], std::this_thread::get_id());
  EXPECT_NE(ran_on[1], std::thread::id{});
  // The same worker serves every run.
  auto worker = ran_on[1];
  pair.run(record);
  EXPECT_EQ(ran_on[1], worker);
}

TEST(worker_pair, every_run_ends_with_both_halves_done) {
  worker_pair pair;
  std::array<std::uint64_t, 2> sums{};
  for (std::uint64_t round = 1; round <= 20'000; ++round) {
    pair.run([&](std::size_t half) { sums.at(half) += round; });
    ASSERT_EQ(sums[0], round * (round + 1) / 2);
    ASSERT_EQ(sums[1], round * (round + 1) / 2);
  }
}

TEST(worker_pair, the_halves_run_at_the_same_time) {
  // Each half waits for the other to start: run one after the other, they
  // would wait out the deadline.
  worker_pair pair;
  std::array<std::atomic<bool>, 2> started{};
  std::array<bool, 2> saw_other{};
  pair.run([&](std::size_t half) {
    started[half].store(true);
    auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds{30};
    while (!started[1 - half].load()
           && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    saw_other[half] = started[1 - half].load();
  });
  EXPECT_TRUE(saw_other[0]);
  EXPECT_TRUE(saw_other[1]);
}

TEST(worker_pair, an_exception_of_either_half_reaches_the_caller) {
  worker_pair pair;
  std::atomic<int> finished{0};
  auto throw_in = [&](std::size_t thrower) {
    return [&, thrower](std::size_t half) {
      if (half == thrower)
        throw std::runtime_error{"half " + std::to_string(half)};
      finished.fetch_add(1);
    };
  };
  try {
    pair.run(throw_in(1));
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "half 1");
  }
  EXPECT_EQ(finished.load(), 1); // half 0 ran to its end
  try {
    pair.run(throw_in(0));
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "half 0");
  }
  EXPECT_EQ(finished.load(), 2); // half 1 ran to its end before the rethrow
  // Both throwing: the caller's half wins.
  try {
    pair.run([](std::size_t half) {
      throw std::runtime_error{"half " + std::to_string(half)};
    });
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "half 0");
  }
  // And the pair still works.
  std::array<int, 2> ran{};
  pair.run([&](std::size_t half) { ran.at(half) = 1; });
  EXPECT_EQ(ran, (std::array<int, 2>{1, 1}));
}

TEST(worker_pair, a_pair_never_run_destroys_cleanly) {
  worker_pair pair;
}
