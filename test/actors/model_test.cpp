// Model-based randomized test of the blocking store: every call is mirrored
// on a simple in-memory model that keeps the full state at every applied
// height, and the store must agree with it after every step.

#include "rollblock/actors/blocking_store.hpp"
#include "rollblock/messages/error.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

using namespace rollblock;

namespace {

using shared_value = std::shared_ptr<const value>;
using state_map = std::map<key, shared_value>;

/// The oracle: the state after every applied height of the current branch.
class model {
public:
  /// The state at height `h`: that of the newest block at or below `h`.
  const state_map& at(block_id h) const {
    auto it = states_.upper_bound(h);
    if (it == states_.begin())
      return empty_;
    return std::prev(it)->second;
  }

  const state_map& now() const {
    return at(applied_);
  }

  value get(const key& k) const {
    auto& s = now();
    auto it = s.find(k);
    return it == s.end() ? value{} : *it->second;
  }

  /// Whether block `h` may be applied next.
  bool may_apply(block_id h) const {
    return fresh_ || h > applied_;
  }

  void apply(block_id h, const operation_list& ops) {
    state_map s = now();
    for (auto& op : ops) {
      if (op.v.empty())
        s.erase(op.k);
      else
        s[op.k] = std::make_shared<const value>(op.v);
    }
    states_[h] = std::move(s);
    applied_ = h;
    fresh_ = false;
    high_water_ = std::max(high_water_, h);
  }

  void revert(block_id t) {
    if (t == applied_)
      return;
    states_.erase(states_.upper_bound(t), states_.end());
    applied_ = t;
    fresh_ = false;
  }

  block_id applied() const {
    return applied_;
  }

  bool fresh() const {
    return fresh_;
  }

  /// The highest height ever applied, reverted blocks included. The journal
  /// is pruned only below checkpoint - window, and checkpoints never pass
  /// the applied height: every target >= high_water - window is reachable.
  block_id high_water() const {
    return high_water_;
  }

private:
  std::map<block_id, state_map> states_;
  state_map empty_;
  block_id applied_ = 0;
  block_id high_water_ = 0;
  bool fresh_ = true;
};

constexpr std::uint64_t rollback_window = 20;

std::string show(const value& v) {
  if (v.size() <= 16) {
    std::ostringstream out;
    out << '"';
    for (unsigned char c : v) {
      static const char* digits = "0123456789abcdef";
      out << "\\x" << digits[c >> 4] << digits[c & 15];
    }
    out << '"';
    return out.str();
  }
  // Built by appending: GCC 12 at -O3 warns (-Wrestrict, a false
  // positive) on "literal" + std::string temporaries.
  std::string out = "<";
  out += std::to_string(v.size());
  out += " bytes, hash ";
  out += std::to_string(std::hash<std::string>{}(v));
  out += ">";
  return out;
}

/// One seed's run: a store, the model and the random choices.
class run {
public:
  /// With `concurrent`, a reader thread reads the whole key space with
  /// fetch_many all along; every result must be the state of one height.
  /// With `budget`, most opens use that memory budget (a few use none).
  run(std::uint64_t seed, std::size_t width, bool concurrent = false,
      std::optional<std::size_t> budget = std::nullopt)
    : seed_(seed), rng_(seed), width_(width), data_(dir_.sub("data")),
      concurrent_(concurrent), budget_(budget) {
    // A closed key space, so that the model and store can be compared whole;
    // random bytes over the full width.
    std::uniform_int_distribution<int> byte(0, 255);
    while (keys_.size() < 40) {
      key k(width_, '\0');
      for (auto& c : k)
        c = static_cast<char>(byte(rng_));
      if (std::find(keys_.begin(), keys_.end(), k) == keys_.end())
        keys_.push_back(std::move(k));
    }
    // Keys never written: reads of them must stay empty.
    unused_ = keys_.back();
    keys_.pop_back();
  }

  ~run() {
    if (reader_.joinable()) {
      stop_ = true;
      reader_.join();
    }
    if (store_)
      store_->close();
  }

  void execute(int steps) {
    ASSERT_NO_FATAL_FAILURE(open(random_mode(), true));
    ASSERT_NO_FATAL_FAILURE(check_all());
    if (concurrent_)
      start_reader();
    for (step_ = 0; step_ < steps; ++step_) {
      SCOPED_TRACE("seed " + std::to_string(seed_) + ", key width "
                   + std::to_string(width_) + ", step "
                   + std::to_string(step_) + ", applied "
                   + std::to_string(model_.applied()));
      ASSERT_NO_FATAL_FAILURE(one_step());
      if (step_ % 16 == 0) {
        ASSERT_NO_FATAL_FAILURE(check_all());
      }
    }
    ASSERT_NO_FATAL_FAILURE(check_all());
    if (concurrent_) {
      ASSERT_NO_FATAL_FAILURE(stop_reader());
    }
    ASSERT_NO_FATAL_FAILURE(reopen(std::nullopt));
    ASSERT_NO_FATAL_FAILURE(check_all());
    EXPECT_FALSE(store_->close());
    store_.reset();
    std::ostringstream out;
    out << "seed " << seed_ << " (key width " << width_ << "): " << steps
        << " steps, applied " << model_.applied() << ", applies " << applies_
        << ", reverts " << reverts_ << " (" << refused_reverts_
        << " beyond history), reopens " << reopens_ << ", refused calls "
        << invalid_;
    if (concurrent_)
      out << ", concurrent fetch_many reads " << reads_ << " ("
          << distinct_reads_ << " distinct states seen, " << states_.size()
          << " states in the history)";
    out << "\n";
    std::cout << out.str();
  }

private:
  // -- the concurrent reader ----------------------------------------------------

  /// A digest of the values of keys_, in order.
  static std::uint64_t digest(const std::vector<value>& values) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (auto& v : values) {
      h ^= std::hash<std::string_view>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6)
           + (h >> 2);
      h ^= v.size() * 0x100000001b3ull;
    }
    return h;
  }

  /// Remembers the model's current state as one the reader may see.
  void record_state() {
    if (!concurrent_)
      return;
    std::vector<value> values;
    values.reserve(keys_.size());
    for (auto& k : keys_)
      values.push_back(model_.get(k));
    states_.insert(digest(values));
  }

  void start_reader() {
    record_state();
    stop_ = false;
    reader_ = std::thread{[this, store = store_.get()] {
      while (!stop_.load()) {
        auto got = store->fetch_many(keys_);
        if (!got) {
          reader_error_ = describe(got.error());
          return;
        }
        ++reads_;
        seen_.insert(digest(*got));
      }
    }};
  }

  void stop_reader() {
    stop_ = true;
    reader_.join();
    ASSERT_EQ(reader_error_, "") << "concurrent fetch_many failed";
    distinct_reads_ = seen_.size();
    std::size_t torn = 0;
    for (auto h : seen_)
      torn += states_.count(h) == 0 ? 1 : 0;
    ASSERT_EQ(torn, 0u) << "concurrent fetch_many returned " << torn
                        << " results that are the state of no height "
                           "(of "
                        << seen_.size() << " distinct results)";
  }

  // -- randomness --------------------------------------------------------------

  std::uint64_t uniform(std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng_);
  }

  bool chance(double p) {
    return std::bernoulli_distribution(p)(rng_);
  }

  const key& random_key() {
    return keys_[uniform(0, keys_.size() - 1)];
  }

  value random_value() {
    auto r = uniform(0, 99);
    std::size_t size;
    if (r < 12)
      size = 0; // delete
    else if (r < 22)
      size = 1;
    else if (r < 25)
      size = max_value_size;
    else if (r < 30)
      size = uniform(1000, 6000);
    else
      size = uniform(2, 64);
    value v(size, '\0');
    for (auto& c : v)
      c = static_cast<char>(rng_());
    return v;
  }

  durability_mode random_mode() {
    switch (uniform(0, 3)) {
      case 0:
        return durability_mode::synchronous();
      case 1:
        return durability_mode::synchronous_relaxed(
          static_cast<std::uint32_t>(uniform(2, 8)));
      case 2:
        return durability_mode::async(static_cast<std::uint32_t>(uniform(1, 16)));
      default:
        return durability_mode::async_relaxed(
          static_cast<std::uint32_t>(uniform(1, 16)),
          static_cast<std::uint32_t>(uniform(2, 8)));
    }
  }

  /// A height that may be applied next.
  block_id next_height() {
    if (model_.fresh())
      return chance(0.5) ? 0 : uniform(0, 5);
    auto r = uniform(0, 99);
    auto gap = r < 70 ? 1 : r < 90 ? uniform(2, 5) : uniform(6, 30);
    return model_.applied() + gap;
  }

  operation_list random_ops() {
    operation_list ops;
    if (chance(0.1))
      return ops; // an empty block
    auto n = uniform(1, 8);
    for (std::uint64_t i = 0; i < n; ++i) {
      if (!ops.empty() && chance(0.2))
        ops.push_back({ops[uniform(0, ops.size() - 1)].k, random_value()});
      else
        ops.push_back({random_key(), random_value()});
    }
    return ops;
  }

  // -- checks ------------------------------------------------------------------

  void check_key(const key& k) {
    auto got = store_->fetch(k);
    ASSERT_TRUE(got) << describe(got.error());
    auto want = model_.get(k);
    ASSERT_EQ(*got, want) << "key " << show(k) << ": store has " << show(*got)
                          << ", model has " << show(want) << " at height "
                          << model_.applied();
  }

  void check_keys(const operation_list& ops) {
    for (auto& op : ops)
      if (op.k.size() == width_) {
        ASSERT_NO_FATAL_FAILURE(check_key(op.k));
      }
  }

  void check_heights() {
    auto h = store_->heights();
    ASSERT_EQ(h.applied, model_.applied());
    ASSERT_LE(h.durable, h.applied);
    ASSERT_LE(h.current, h.durable);
    if (mode_ == durability_mode::synchronous()) {
      ASSERT_EQ(h.durable, h.applied) << "a synchronous apply returned before "
                                         "its block was durable";
    }
  }

  /// The whole key space with fetch_many (in a shuffled order, with a
  /// duplicate), plus the heights.
  void check_all() {
    std::vector<key> sample = keys_;
    sample.push_back(unused_);
    sample.push_back(sample[uniform(0, sample.size() - 1)]);
    std::shuffle(sample.begin(), sample.end(), rng_);
    auto got = store_->fetch_many(sample);
    ASSERT_TRUE(got) << describe(got.error());
    ASSERT_EQ(got->size(), sample.size());
    for (std::size_t i = 0; i < sample.size(); ++i) {
      auto want = model_.get(sample[i]);
      ASSERT_EQ((*got)[i], want)
        << "fetch_many: key " << show(sample[i]) << ": store has "
        << show((*got)[i]) << ", model has " << show(want) << " at height "
        << model_.applied();
    }
    ASSERT_NO_FATAL_FAILURE(check_heights());
  }

  /// A sample of the key space with fetch_many.
  void check_sample() {
    std::vector<key> sample;
    auto n = uniform(1, 12);
    for (std::uint64_t i = 0; i < n; ++i)
      sample.push_back(chance(0.05) ? unused_ : random_key());
    auto got = store_->fetch_many(sample);
    ASSERT_TRUE(got) << describe(got.error());
    ASSERT_EQ(got->size(), sample.size());
    for (std::size_t i = 0; i < sample.size(); ++i)
      ASSERT_EQ((*got)[i], model_.get(sample[i]))
        << "fetch_many: key " << show(sample[i]);
    ASSERT_NO_FATAL_FAILURE(check_heights());
  }

  /// A refused call: the precise code, and nothing changed.
  void expect_refused(const caf::error& err, ec want,
                      const operation_list& touched, const char* what) {
    ++invalid_;
    ASSERT_TRUE(err) << what << " was accepted";
    ASSERT_EQ(code_of(err), want) << what << ": " << describe(err);
    ASSERT_NO_FATAL_FAILURE(check_heights());
    ASSERT_NO_FATAL_FAILURE(check_keys(touched));
  }

  // -- lifecycle -----------------------------------------------------------------

  store_options options(std::optional<durability_mode> mode) {
    store_options opts;
    opts.data_dir = data_;
    if (chance(0.7))
      opts.key_width = width_;
    opts.durability = mode;
    opts.min_rollback_window = rollback_window;
    opts.checkpoint_every_blocks = 4;
    // Reverts within the lag only cut the journal; beyond it (and with a
    // budget) they rewrite LevelDB: both are exercised.
    static constexpr std::optional<std::uint64_t> lags[]
      = {std::nullopt, 0, 3, 10};
    opts.checkpoint_lag_blocks = lags[uniform(0, 3)];
    opts.journal_segment_bytes = 4096;
    if (budget_ && chance(0.8))
      opts.memory_budget = budget_;
    return opts;
  }

  void open(std::optional<durability_mode> mode, bool first = false) {
    auto opts = options(mode);
    if (first)
      opts.key_width = width_;
    auto opened = blocking_store::open(opts);
    ASSERT_TRUE(opened) << describe(opened.error());
    store_ = std::move(*opened);
    if (mode)
      mode_ = *mode;
    ASSERT_EQ(store_->key_width(), width_);
  }

  void reopen(std::optional<durability_mode> mode) {
    ++reopens_;
    ASSERT_FALSE(store_->close());
    store_.reset();
    if (chance(0.15)) {
      // Another key width is refused, and leaves the directory usable.
      auto opts = options(mode);
      opts.key_width = width_ == 8 ? 9 : width_ - 1;
      auto opened = blocking_store::open(opts);
      ASSERT_FALSE(opened) << "opened with the wrong key width";
      ASSERT_EQ(code_of(opened.error()), ec::config_mismatch)
        << describe(opened.error());
    }
    ASSERT_NO_FATAL_FAILURE(open(mode));
    ASSERT_NO_FATAL_FAILURE(check_all());
  }

  // -- steps ---------------------------------------------------------------------

  void one_step() {
    auto r = uniform(0, 999);
    if (r < 450)
      return do_apply();
    if (r < 530)
      return do_pop();
    if (r < 560) // reads see staged writes: not one height, by design
      return concurrent_ ? do_apply() : do_staged();
    if (r < 700)
      return do_revert();
    if (r < 850)
      return do_invalid();
    if (r < 870)
      return do_policy();
    if (r < 890)
      return do_flush();
    if (r < 905 && !concurrent_)
      return reopen(chance(0.7) ? std::optional{random_mode()} : std::nullopt);
    return check_sample();
  }

  void do_apply() {
    auto h = next_height();
    auto ops = random_ops();
    ++applies_;
    auto err = store_->apply(h, ops);
    ASSERT_FALSE(err) << "apply " << h << ": " << describe(err);
    model_.apply(h, ops);
    record_state();
    ASSERT_NO_FATAL_FAILURE(check_heights());
    ASSERT_NO_FATAL_FAILURE(check_keys(ops));
  }

  void do_pop() {
    auto h = next_height();
    auto k = chance(0.1) ? unused_ : random_key();
    auto want = model_.get(k);
    auto got = store_->pop(h, k);
    ASSERT_TRUE(got) << "pop " << h << ": " << describe(got.error());
    ASSERT_EQ(*got, want) << "pop returned the wrong previous value";
    operation_list ops{{k, {}}};
    model_.apply(h, ops);
    record_state();
    ASSERT_NO_FATAL_FAILURE(check_heights());
    ASSERT_NO_FATAL_FAILURE(check_key(k));
  }

  /// A staged block: start_block, set/pop (reads see the staged writes),
  /// end_block.
  void do_staged() {
    auto h = next_height();
    ASSERT_FALSE(store_->start_block(h));
    operation_list ops;
    std::map<key, value> staged;
    auto n = uniform(0, 5);
    for (std::uint64_t i = 0; i < n; ++i) {
      auto& k = random_key();
      auto before = staged.count(k) ? staged[k] : model_.get(k);
      if (chance(0.3)) {
        auto got = store_->pop(k);
        ASSERT_TRUE(got) << describe(got.error());
        ASSERT_EQ(*got, before) << "staged pop returned the wrong value";
        ops.push_back({k, {}});
      } else {
        ops.push_back({k, random_value()});
        ASSERT_FALSE(store_->set(k, ops.back().v));
      }
      staged[k] = ops.back().v;
      auto seen = store_->fetch(k);
      ASSERT_TRUE(seen);
      ASSERT_EQ(*seen, staged[k]) << "a read does not see a staged write";
    }
    if (chance(0.3)) {
      auto err = store_->apply(model_.applied() + 1000, {});
      expect_refused(err, ec::block_in_progress, {}, "apply while staged");
      --invalid_;
    }
    auto ended = store_->end_block();
    ASSERT_TRUE(ended) << describe(ended.error());
    ASSERT_EQ(*ended, h);
    ++applies_;
    model_.apply(h, ops);
    ASSERT_NO_FATAL_FAILURE(check_heights());
    ASSERT_NO_FATAL_FAILURE(check_keys(ops));
  }

  void do_revert() {
    auto applied = model_.applied();
    block_id t;
    auto r = uniform(0, 99);
    if (r < 15 || applied == 0)
      t = applied; // a no-op
    else if (r < 70)
      t = applied - uniform(1, std::min<block_id>(applied, rollback_window));
    else
      t = uniform(0, applied - 1); // perhaps below the reachable history
    auto guaranteed = model_.high_water() < rollback_window
                      || t + rollback_window >= model_.high_water();
    auto before = store_->heights();
    auto err = store_->revert_to(t);
    ++reverts_;
    if (err && code_of(err) == ec::rollback_beyond_history && !guaranteed) {
      ++refused_reverts_;
      ASSERT_TRUE(t < applied);
      refused_max_ = std::max(refused_max_.value_or(0), t);
      // Nothing changed.
      ASSERT_EQ(store_->heights().applied, before.applied);
      ASSERT_GE(store_->heights().durable, before.durable);
      ASSERT_NO_FATAL_FAILURE(check_all());
      return;
    }
    ASSERT_FALSE(err) << "revert from " << applied << " to " << t
                      << " (highest applied " << model_.high_water()
                      << ", window " << rollback_window
                      << "): " << describe(err);
    if (t < applied && refused_max_ && t <= *refused_max_)
      FAIL() << "revert to " << t << " succeeded after a revert to "
             << *refused_max_ << " was refused as beyond the history";
    model_.revert(t);
    record_state();
    auto h = store_->heights();
    ASSERT_EQ(h.applied, t);
    if (t < applied) {
      ASSERT_EQ(h.durable, t) << "a revert is durable when it returns";
    }
    ASSERT_NO_FATAL_FAILURE(check_all());
  }

  void do_invalid() {
    auto applied = model_.applied();
    auto valid_height = next_height();
    switch (uniform(0, 6)) {
      case 0: { // a height not above the applied one
        if (model_.fresh())
          return;
        auto h = applied - uniform(0, std::min<block_id>(applied, 5));
        auto ops = random_ops();
        return expect_refused(store_->apply(h, ops),
                              ec::block_id_not_increasing, ops,
                              "a non-increasing height");
      }
      case 1: { // a key of the wrong width, among valid operations
        auto ops = random_ops();
        key bad(chance(0.5) ? width_ - 1 : width_ + 1, 'k');
        ops.insert(ops.begin() + static_cast<std::ptrdiff_t>(
                                   uniform(0, ops.size())),
                   {bad, value(3, 'x')});
        return expect_refused(store_->apply(valid_height, ops),
                              ec::key_width_mismatch, ops,
                              "a key of the wrong width");
      }
      case 2: { // a value one byte too large, among valid operations
        auto ops = random_ops();
        ops.insert(ops.begin() + static_cast<std::ptrdiff_t>(
                                   uniform(0, ops.size())),
                   {random_key(), value(max_value_size + 1, 'v')});
        return expect_refused(store_->apply(valid_height, ops),
                              ec::value_too_large, ops, "a too large value");
      }
      case 3: { // a revert above the applied height
        auto t = applied + uniform(1, 50);
        return expect_refused(store_->revert_to(t), ec::rollback_target_ahead,
                              {}, "a revert above the applied height");
      }
      case 4: { // pop with a key of the wrong width
        key bad(width_ + 1, 'p');
        auto got = store_->pop(valid_height, bad);
        return expect_refused(got ? caf::error{} : got.error(),
                              ec::key_width_mismatch, {},
                              "a pop of a key of the wrong width");
      }
      case 5: { // pop at a height not above the applied one
        if (model_.fresh())
          return;
        auto k = random_key();
        auto got = store_->pop(applied - uniform(0, std::min<block_id>(applied, 3)), k);
        return expect_refused(got ? caf::error{} : got.error(),
                              ec::block_id_not_increasing, {{k, {}}},
                              "a pop at a non-increasing height");
      }
      default: { // reads with a key of the wrong width
        key bad(width_ - 1, 'r');
        auto one = store_->fetch(bad);
        ASSERT_FALSE(one);
        ASSERT_EQ(code_of(one.error()), ec::key_width_mismatch);
        auto many = store_->fetch_many({random_key(), bad});
        ASSERT_FALSE(many);
        ASSERT_EQ(code_of(many.error()), ec::key_width_mismatch);
        ++invalid_;
        return;
      }
    }
  }

  void do_policy() {
    if (chance(0.5)) {
      auto n = static_cast<std::uint32_t>(uniform(1, 6));
      auto got = store_->set_relaxed(n);
      ASSERT_TRUE(got) << describe(got.error());
      ASSERT_EQ(*got, mode_.relaxed(n));
      mode_ = *got;
    } else {
      auto got = store_->set_strict();
      ASSERT_TRUE(got) << describe(got.error());
      ASSERT_EQ(*got, mode_.strict());
      mode_ = *got;
    }
    // The switch flushes first.
    auto h = store_->heights();
    ASSERT_EQ(h.applied, model_.applied());
    ASSERT_EQ(h.durable, h.applied);
  }

  void do_flush() {
    auto durable = store_->flush();
    ASSERT_TRUE(durable) << describe(durable.error());
    ASSERT_EQ(*durable, model_.applied());
    auto h = store_->heights();
    ASSERT_EQ(h.applied, model_.applied());
    ASSERT_EQ(h.durable, model_.applied());
    // The checkpoint may lag: the newest blocks live in the journal.
    ASSERT_LE(h.current, model_.applied());
  }

  std::uint64_t seed_;
  std::mt19937_64 rng_;
  std::size_t width_;
  test::temp_dir dir_;
  std::string data_;
  std::vector<key> keys_;
  key unused_;
  model model_;
  std::unique_ptr<blocking_store> store_;
  durability_mode mode_;
  std::optional<block_id> refused_max_;
  int step_ = 0;
  int applies_ = 0;
  int reverts_ = 0;
  int refused_reverts_ = 0;
  int reopens_ = 0;
  int invalid_ = 0;
  bool concurrent_ = false;
  std::optional<std::size_t> budget_;
  std::thread reader_;
  std::atomic<bool> stop_{false};
  std::string reader_error_;
  std::unordered_set<std::uint64_t> seen_;   // reader thread only
  std::unordered_set<std::uint64_t> states_; // main thread only
  std::uint64_t reads_ = 0;
  std::size_t distinct_reads_ = 0;
};

/// The seeds: ROLLBLOCK_MODEL_SEED=<n> runs that one seed only.
std::vector<std::uint64_t> seeds(std::uint64_t base, int count) {
  if (auto env = std::getenv("ROLLBLOCK_MODEL_SEED"))
    return {std::stoull(env)};
  std::vector<std::uint64_t> result;
  for (int i = 0; i < count; ++i)
    result.push_back(base + static_cast<std::uint64_t>(i) * 7919);
  return result;
}

int steps() {
  if (auto env = std::getenv("ROLLBLOCK_MODEL_STEPS"))
    return std::stoi(env);
  return 3000;
}

void run_seeds(std::uint64_t base, std::size_t width, int count = 2,
               bool concurrent = false,
               std::optional<std::size_t> budget = std::nullopt) {
  for (auto seed : seeds(base, count)) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with "
                 "ROLLBLOCK_MODEL_SEED=" + std::to_string(seed) + ")");
    run r{seed, width, concurrent, budget};
    r.execute(steps());
    if (::testing::Test::HasFailure()) {
      std::cout << "FAILED with seed " << seed << " (key width " << width
                << ")\n";
      return;
    }
  }
}

} // namespace

TEST(model, key_width_8) {
  run_seeds(1001, 8);
}

TEST(model, key_width_13) {
  run_seeds(2002, 13);
}

TEST(model, key_width_32) {
  run_seeds(3003, 32);
}

TEST(model, key_width_64) {
  run_seeds(4004, 64);
}

// A reader thread runs fetch_many over the whole key space all along, while
// the main thread applies, pops and reverts: every result must be exactly the
// state of one height (no staged blocks and no reopens in this one).
TEST(model, concurrent_fetch_many_reads_one_height) {
  run_seeds(5005, 16, 1, true);
}

// The same runs under the smallest memory budget: the values (a few KiB on
// average, some 64 KiB) far exceed its 16 KiB for resident entries, so
// entries are evicted and read back from LevelDB all along, across reverts,
// pops and reopens (some reopens without a budget, which loads everything).
TEST(model, budgeted_key_width_8) {
  run_seeds(6006, 8, 2, false, min_memory_budget);
}

TEST(model, budgeted_key_width_64) {
  run_seeds(7007, 64, 2, false, min_memory_budget);
}

TEST(model, budgeted_concurrent_fetch_many_reads_one_height) {
  run_seeds(8008, 16, 1, true, min_memory_budget);
}
