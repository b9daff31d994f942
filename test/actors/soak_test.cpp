// Kill soak (ctest label "soak"; test/soak.sh runs it locally with 1,000+
// kills): crash_writer in each durability mode, SIGKILLed at random instants,
// every reopen checked against the model of crash_run.hpp (exact state at a
// height between durable and applied; sync: at least the last acknowledged;
// durable never regresses; the writers revert now and then).
//
//   ROLLBLOCK_SOAK_KILLS  kills over the four tests (default 200)
//   ROLLBLOCK_SOAK_SEED   base seed (default: random, printed; set it to
//                         rerun a failure)
//
// Each test prints its tally; the whole run ends with one summary line:
// "soak: <kills> kills, <blocks> blocks checked, <lost> lost acknowledged
// blocks ...". Any lost acknowledged block fails the test.

#include "actors/crash_run.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <iostream>
#include <random>
#include <string>

using namespace rollblock;

namespace {

std::uint64_t soak_seed() {
  static const std::uint64_t seed = [] {
    if (auto env = std::getenv("ROLLBLOCK_SOAK_SEED"))
      return static_cast<std::uint64_t>(std::stoull(env));
    std::random_device dev;
    return (static_cast<std::uint64_t>(dev()) << 32) | dev();
  }();
  return seed;
}

/// The kills of test `index` (0..3): the total spread over the four tests.
int kills_of(int index) {
  int total = 200;
  if (auto env = std::getenv("ROLLBLOCK_SOAK_KILLS"))
    total = std::stoi(env);
  return total / 4 + (index < total % 4 ? 1 : 0);
}

/// Every test's tally, for the summary at the end of the run.
crash::tally& total() {
  static crash::tally counts;
  return counts;
}

class soak_summary : public ::testing::Environment {
public:
  void TearDown() override {
    std::cout << "soak: " << crash::to_string(total()) << "; seed "
              << soak_seed() << "\n";
  }
};

const auto* const summary_environment
  = ::testing::AddGlobalTestEnvironment(new soak_summary);

/// Runs the kills of test `index`, each in the mode `mode_of` draws.
void soak(int index,
          const std::function<std::string(crash::stream&)>& mode_of) {
  auto seed = crash::mix(soak_seed() + static_cast<std::uint64_t>(index));
  crash::stream draw{seed};
  auto width = static_cast<std::size_t>(draw.between(8, 64));
  SCOPED_TRACE("rerun with ROLLBLOCK_SOAK_SEED=" + std::to_string(soak_seed())
               + " ROLLBLOCK_SOAK_KILLS="
               + (std::getenv("ROLLBLOCK_SOAK_KILLS")
                    ? std::string{std::getenv("ROLLBLOCK_SOAK_KILLS")}
                    : std::string{"200"}));
  std::cout << "soak seed " << soak_seed() << " (test seed " << seed
            << ", key width " << width << ")" << std::endl;
  crash::crash_run run{seed, width};
  auto kills = kills_of(index);
  for (int i = 0; i < kills; ++i) {
    run.cycle(mode_of(draw));
    if (::testing::Test::HasFatalFailure())
      break;
  }
  total() += run.counts();
  std::cout << run.summary() << std::endl;
  EXPECT_EQ(run.counts().lost, 0u);
}

} // namespace

TEST(soak, kill9_sync) {
  soak(0, [](crash::stream&) { return std::string{"sync"}; });
}

TEST(soak, kill9_sync_relaxed) {
  soak(1, [](crash::stream& r) {
    return "sync-relaxed:" + std::to_string(r.between(2, 20));
  });
}

TEST(soak, kill9_async) {
  soak(2, [](crash::stream& r) {
    return "async:" + std::to_string(r.between(1, 256));
  });
}

TEST(soak, kill9_async_relaxed) {
  soak(3, [](crash::stream& r) {
    return "async-relaxed:" + std::to_string(r.between(1, 256)) + ":"
           + std::to_string(r.between(2, 20));
  });
}
