#pragma once

// What the crash writer does, as a pure function of its seed and the height
// it starts from: crash_writer.cpp runs the plan against a store, and
// crash_test.cpp replays the same plan against a model to know the exact
// state of every height the writer may have reached.

#include "rollblock/messages/operation.hpp"
#include "rollblock/messages/store_options.hpp"
#include "rollblock/messages/types.hpp"

#include <algorithm>
#include <cstdint>
#include <string>

namespace rollblock::crash {

/// The keys the writer uses: key i of the store's width.
constexpr std::uint64_t key_space = 48;

/// Blocks kept for reverts below the checkpoint.
constexpr std::uint64_t rollback_window = 20;

/// Reverts go at most this far below the applied height (well inside the
/// rollback window, so that they never meet pruned history).
constexpr std::uint64_t max_revert_depth = 15;

/// SplitMix64: a good 64-bit mix, stable across platforms and libraries.
inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// A deterministic stream of random numbers.
class stream {
public:
  explicit stream(std::uint64_t seed) : state_(mix(seed)) {
  }

  std::uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ull;
    return mix(state_);
  }

  /// Uniform in [lo, hi]. REQUIRES: lo <= hi.
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi) {
    return lo + next() % (hi - lo + 1);
  }

  /// True with probability `percent` / 100.
  bool percent(std::uint64_t percent) {
    return next() % 100 < percent;
  }

private:
  std::uint64_t state_;
};

/// Key `i` (< key_space): random-looking bytes over the whole width.
inline key key_of(std::uint64_t i, std::size_t width) {
  key k(width, '\0');
  stream bytes{0x6b657973ull * 1000003ull + i};
  for (auto& c : k)
    c = static_cast<char>(bytes.next());
  return k;
}

/// The options both the writer and the test open the store with (the test
/// leaves the durability mode as the writer stored it). `memory_budget` 0:
/// unlimited.
inline store_options options(const std::string& dir, std::size_t width,
                             std::size_t memory_budget = 0) {
  store_options opts;
  if (memory_budget > 0)
    opts.memory_budget = memory_budget;
  opts.data_dir = dir;
  opts.key_width = width;
  opts.min_rollback_window = rollback_window;
  opts.checkpoint_every_blocks = 4;
  opts.checkpoint_interval = std::chrono::milliseconds{50};
  // Reverts both within the checkpoint lag (the journal is cut) and beyond
  // it (LevelDB is rewritten first).
  opts.checkpoint_lag_blocks = 6;
  opts.journal_segment_bytes = 4096;
  return opts;
}

/// The operations of block `height` in a run with `seed`: a few writes and
/// deletes, sometimes none, sometimes several on one key; values of 1 byte
/// to 65,535 bytes. The genesis block (height 0) always writes key 0, so that
/// a store at height 0 with no keys is a fresh store.
inline operation_list block_ops(std::uint64_t seed, block_id height,
                                std::size_t width) {
  stream r{mix(seed) ^ mix(height + 0x68656967ull)};
  operation_list ops;
  auto n = r.percent(8) ? 0 : r.between(1, 6);
  for (std::uint64_t i = 0; i < n; ++i) {
    auto k = r.percent(15) && !ops.empty() ? ops[r.between(0, ops.size() - 1)].k
                                           : key_of(r.between(0, key_space - 1),
                                                    width);
    auto roll = r.between(0, 99);
    std::size_t size = roll < 15   ? 0
                       : roll < 25 ? 1
                       : roll < 27 ? max_value_size
                       : roll < 32 ? r.between(500, 3000)
                                   : r.between(2, 40);
    value v(size, '\0');
    for (auto& c : v)
      c = static_cast<char>(r.next());
    ops.push_back({std::move(k), std::move(v)});
  }
  if (height == 0)
    ops.push_back({key_of(0, width), "genesis"});
  return ops;
}

/// One step of the writer.
struct action {
  enum kind_t { apply, revert };
  kind_t kind = apply;
  /// The block's height, or the revert target.
  block_id height = 0;
};

/// The writer's steps from a store at `applied` (fresh: no block ever
/// applied). Applies blocks at increasing heights with small gaps; now and
/// then, right after an apply, reverts a few blocks (perhaps to a height never
/// applied), and then continues above every height applied so far, so that a
/// height names one state within a run.
class plan {
public:
  plan(std::uint64_t seed, block_id applied, bool fresh)
    : r_(mix(seed) ^ mix(applied * 2 + (fresh ? 1 : 0))),
      start_(applied),
      applied_(applied),
      highest_(applied),
      fresh_(fresh) {
  }

  action next() {
    action a;
    if (!fresh_ && applied_ == highest_ && applied_ > start_ && r_.percent(4)) {
      auto lowest = std::max(start_, applied_ > max_revert_depth
                                       ? applied_ - max_revert_depth
                                       : block_id{0});
      a.kind = action::revert;
      a.height = r_.between(lowest, applied_ - 1);
      applied_ = a.height;
      return a;
    }
    a.kind = action::apply;
    if (fresh_) {
      a.height = 0;
      fresh_ = false;
    } else {
      a.height = highest_ + (r_.percent(80) ? 1 : r_.between(2, 4));
    }
    applied_ = highest_ = a.height;
    return a;
  }

private:
  stream r_;
  block_id start_;
  block_id applied_;
  block_id highest_;
  bool fresh_;
};

} // namespace rollblock::crash
