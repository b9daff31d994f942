// Crash tests: kill/recover cycles of crash_writer in every durability mode,
// with fixed seeds (ROLLBLOCK_CRASH_SEED and ROLLBLOCK_CRASH_KILLS override
// them). crash_run.hpp describes the checks; soak_test.cpp runs the same
// checker with random seeds and many more kills.

#include "actors/crash_run.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

using namespace rollblock;

namespace {

std::uint64_t base_seed() {
  if (auto env = std::getenv("ROLLBLOCK_CRASH_SEED"))
    return std::stoull(env);
  return 20240601;
}

int kills_per_test() {
  if (auto env = std::getenv("ROLLBLOCK_CRASH_KILLS"))
    return std::stoi(env);
  return 24;
}

void kill_loop(std::uint64_t seed, std::size_t width,
               const std::vector<std::string>& modes,
               std::size_t memory_budget = 0) {
  SCOPED_TRACE("rerun with ROLLBLOCK_CRASH_SEED=" + std::to_string(base_seed()));
  crash::crash_run run{seed, width, memory_budget};
  auto kills = kills_per_test();
  for (int i = 0; i < kills; ++i) {
    run.cycle(modes[static_cast<std::size_t>(i) % modes.size()]);
    if (::testing::Test::HasFatalFailure())
      break;
  }
  std::cout << run.summary() << "\n";
}

} // namespace

TEST(crash, kill9_sync) {
  kill_loop(base_seed() + 1, 8, {"sync"});
}

TEST(crash, kill9_sync_relaxed) {
  kill_loop(base_seed() + 2, 13, {"sync-relaxed:5"});
}

TEST(crash, kill9_async) {
  kill_loop(base_seed() + 3, 32, {"async:64"});
}

TEST(crash, kill9_async_relaxed) {
  kill_loop(base_seed() + 4, 64, {"async-relaxed:64:10"});
}

TEST(crash, kill9_switching_modes) {
  kill_loop(base_seed() + 5, 8,
            {"sync", "async-relaxed:64:10", "sync-relaxed:5", "async:64"});
}

// The writer and the recovery run under the smallest memory budget (values
// up to 64 KiB overflow it): evicted entries, reads from LevelDB and
// budgeted recovery, killed at random instants.
TEST(crash, kill9_budgeted_switching_modes) {
  kill_loop(base_seed() + 6, 8,
            {"sync", "async-relaxed:64:10", "sync-relaxed:5", "async:64"},
            min_memory_budget);
}
