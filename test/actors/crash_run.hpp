#pragma once

// The checker shared by the crash tests (crash_test.cpp) and the kill soak
// (soak_test.cpp, test/soak.sh): a child process (crash_writer) applies and
// reverts blocks until it gets SIGKILL at a random instant; then this process
// reopens the data directory and checks the recovery invariants against a
// model that replays the child's deterministic plan (crash_plan.hpp):
//   (a) sync mode: nothing acknowledged is lost;
//   (b) every mode: the last durable height the child saw <= recovered
//       height <= the last height the child applied (durable never
//       regresses, except through a revert the child was running);
//   (c) the recovered state is exactly the state at the recovered height.
// Then the next child resumes from the recovered height, on the same
// directory. Failures are reported through gtest assertions.
//
// The child is started with posix_spawn: this process runs CAF (the
// blocking store's actor system), and fork() in it is not safe.

#include "actors/crash_plan.hpp"
#include "support/temp_dir.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace rollblock::crash {

/// What kill/recover cycles found.
struct tally {
  /// SIGKILLs sent (one per cycle).
  std::uint64_t kills = 0;
  /// Lines the writers printed: acknowledged applies and reverts.
  std::uint64_t acknowledged_steps = 0;
  /// Acknowledged blocks whose survival was checked at a reopen (those a
  /// later acknowledged revert removed are not counted).
  std::uint64_t blocks_checked = 0;
  /// Acknowledged blocks the mode promised to keep (sync: every one; other
  /// modes: those at or below the durable height the writer saw) that a
  /// reopen did not bring back. Must be 0.
  std::uint64_t lost = 0;
  /// Acknowledged blocks not yet durable that a reopen did not bring back,
  /// as the async and relaxed modes allow.
  std::uint64_t rolled_back = 0;
  /// Acknowledged blocks above the target of a revert in progress at the
  /// kill, which the reopen did not bring back (the revert was durable).
  std::uint64_t reverted = 0;

  tally& operator+=(const tally& other);
};

/// "<kills> kills, <blocks> blocks checked, <lost> lost acknowledged blocks
/// (<steps> acknowledged steps, <rolled back> undurable blocks rolled back,
/// <reverted> blocks removed by a revert in progress)".
std::string to_string(const tally& x);

/// Many kill/recover cycles on one data directory.
class crash_run {
public:
  /// A run whose children get seeds derived from `seed`, on a store of
  /// `width`-byte keys; the writer and the reopen use `memory_budget`
  /// (0: unlimited).
  crash_run(std::uint64_t seed, std::size_t width,
            std::size_t memory_budget = 0);

  /// One cycle: spawns the writer in `mode` (a parse_durability text), kills
  /// it after a random time (3 to 300 ms; a quarter of the cycles 3 to 40 ms,
  /// while the child opens and recovers the store), reopens and checks.
  void cycle(const std::string& mode);

  const tally& counts() const {
    return counts_;
  }

  /// One line: seed, key width, the tally and the final height.
  std::string summary() const;

private:
  using shared_value = std::shared_ptr<const value>;

  /// The state the store went through at one step of the child's plan.
  struct model_state {
    block_id height = 0;
    std::map<key, shared_value> state;
  };

  std::uint64_t seed_;
  std::mt19937_64 rng_;
  std::size_t width_;
  test::temp_dir dir_;
  std::string data_;
  std::string log_;
  std::vector<key> keys_;
  model_state start_;
  tally counts_;
  std::size_t budget_;
};

} // namespace rollblock::crash
