// Supervision inside the store: a store actor that crashes (an exception
// thrown by the fault hook at a named fault point, as a bug would) is
// restarted from durable state; the call it interrupted gets the answer the
// table at the top of actors/src/supervisor.cpp documents; nothing
// acknowledged as durable is lost; durable never regresses; a restart loop
// turns fatal; restarts are counted; bad input leaves health alone.

#include "rollblock/actors/blocking_store.hpp"
#include "rollblock/messages/error.hpp"
#include "support/error_assertions.hpp"
#include "rollblock/storage/data_dir_lock.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <caf/actor_addr.hpp>
#include <caf/actor_cast.hpp>
#include <caf/exit_reason.hpp>
#include <caf/make_message.hpp>
#include <caf/message_id.hpp>
#include <caf/system_messages.hpp>

#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>

#include <sys/wait.h>
#include <unistd.h>

using namespace rollblock;

namespace {

key k(std::uint64_t x) {
  return key_from_u64(x);
}

value v(std::uint64_t x) {
  return value_from_u64(x);
}

/// Decides when the store's fault hook throws: at the next passes of the
/// armed fault points, `times` passes of each; and where it waits (one pass
/// of the pause point blocks until resume()). Thread-safe (the actors call
/// it).
class fault_plan {
public:
  void arm(std::string point, int times = 1) {
    std::lock_guard guard{mu_};
    armed_[std::move(point)] = times;
  }

  void disarm() {
    std::lock_guard guard{mu_};
    armed_.clear();
  }

  /// The next pass of `point` waits until resume().
  void pause_at(std::string point) {
    std::lock_guard guard{mu_};
    pause_point_ = std::move(point);
    paused_ = false;
    released_ = false;
  }

  /// Waits (at most 10 s) until a pass waits at the pause point.
  bool wait_paused() {
    std::unique_lock guard{mu_};
    return cv_.wait_for(guard, std::chrono::seconds{10},
                        [this] { return paused_; });
  }

  void resume() {
    std::lock_guard guard{mu_};
    released_ = true;
    cv_.notify_all();
  }

  /// How many times the hook threw.
  int thrown() const {
    std::lock_guard guard{mu_};
    return thrown_;
  }

  static std::function<void(std::string_view)>
  hook(std::shared_ptr<fault_plan> plan) {
    return [plan](std::string_view point) { plan->pass(point); };
  }

private:
  void pass(std::string_view point) {
    std::unique_lock guard{mu_};
    if (!pause_point_.empty() && point == pause_point_) {
      pause_point_.clear();
      paused_ = true;
      cv_.notify_all();
      cv_.wait(guard, [this] { return released_; });
    }
    auto armed = armed_.find(std::string{point});
    if (armed == armed_.end() || armed->second == 0)
      return;
    --armed->second;
    ++thrown_;
    throw std::runtime_error("injected crash at " + std::string{point});
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int> armed_;
  int thrown_ = 0;
  std::string pause_point_;
  bool paused_ = false;
  bool released_ = false;
};

/// Sends `to` an exit message with `reason`, as a linked actor or anyone
/// holding its address could.
void send_exit(const caf::actor_addr& to, caf::error reason) {
  auto ptr = caf::actor_cast<caf::strong_actor_ptr>(to);
  if (!ptr)
    throw std::logic_error("no such actor");
  ptr->enqueue(nullptr, caf::make_message_id(),
               caf::make_message(caf::exit_msg{to, std::move(reason)}),
               nullptr);
}

/// The store actors the supervisor spawned, by name (its spawn_hook).
class spawn_book {
public:
  /// The newest actor of that name.
  caf::actor_addr latest(const std::string& name) const {
    std::lock_guard guard{mu_};
    auto i = actors_.find(name);
    return i == actors_.end() || i->second.empty() ? caf::actor_addr{}
                                                   : i->second.back();
  }

  /// How many actors of that name were spawned.
  std::size_t spawned(const std::string& name) const {
    std::lock_guard guard{mu_};
    auto i = actors_.find(name);
    return i == actors_.end() ? 0 : i->second.size();
  }

  /// The nth actor of that name (counting from 1) gets an exit message with
  /// `reason` as soon as it is spawned.
  void stop_on_spawn(std::string name, std::size_t nth, caf::error reason) {
    std::lock_guard guard{mu_};
    stop_name_ = std::move(name);
    stop_nth_ = nth;
    stop_reason_ = std::move(reason);
  }

  static std::function<void(std::string_view, const caf::actor_addr&)>
  hook(std::shared_ptr<spawn_book> book) {
    return [book](std::string_view name, const caf::actor_addr& addr) {
      std::lock_guard guard{book->mu_};
      auto& list = book->actors_[std::string{name}];
      list.push_back(addr);
      if (name == book->stop_name_ && list.size() == book->stop_nth_)
        send_exit(addr, book->stop_reason_);
    };
  }

private:
  mutable std::mutex mu_;
  std::map<std::string, std::vector<caf::actor_addr>> actors_;
  std::string stop_name_;
  std::size_t stop_nth_ = 0;
  caf::error stop_reason_;
};

class supervision_test : public ::testing::Test {
protected:
  std::unique_ptr<blocking_store> open(store_options opts = {}) {
    opts.data_dir = dir.sub("data");
    opts.fault_hook = fault_plan::hook(plan);
    opts.spawn_hook = spawn_book::hook(book);
    auto store = blocking_store::open(opts);
    EXPECT_TRUE(store) << describe(store.error());
    return store ? std::move(*store) : nullptr;
  }

  /// Opens a store in sync mode and applies blocks 1..`height` (none
  /// reaches LevelDB: they are within the checkpoint lag). Null on failure.
  std::unique_ptr<blocking_store> open_at(block_id height) {
    auto store = open({.durability = durability_mode::synchronous()});
    for (block_id h = 1; store && h <= height; ++h) {
      auto err = apply(*store, h);
      EXPECT_FALSE(err) << "block " << h << ": " << describe(err);
      if (err)
        return nullptr;
    }
    return store;
  }

  /// Opens a store, applies blocks 1..10 and reopens it after a shutdown,
  /// which checkpointed them all: a revert must rewrite LevelDB. Null on
  /// failure.
  std::unique_ptr<blocking_store> open_checkpointed_through_10() {
    auto store = open({.checkpoint_every_blocks = 1000});
    for (block_id h = 1; store && h <= 10; ++h) {
      auto err = apply(*store, h);
      EXPECT_FALSE(err) << "block " << h << ": " << describe(err);
      if (err)
        return nullptr;
    }
    if (!store)
      return nullptr;
    auto err = store->close();
    EXPECT_FALSE(err) << describe(err);
    if (err)
      return nullptr;
    return open({.checkpoint_every_blocks = 1000});
  }

  static value get(blocking_store& store, const key& x) {
    auto result = store.fetch(x);
    EXPECT_TRUE(result) << describe(result.error());
    return result ? *result : value{"<error>"};
  }

  /// Applies block h: k(h) = v(h) and k(0) = v(h) (the newest block).
  static caf::error apply(blocking_store& store, block_id h) {
    return store.apply(h, {{k(h), v(h)}, {k(0), v(h)}});
  }

  static std::uint64_t restarts(const metrics_snapshot& m) {
    return m.mutation_restarts + m.journal_restarts + m.persistence_restarts
           + m.health_restarts;
  }

  /// Polls health (at most 10 s) until its reason is `reason`.
  static health_report wait_for_health(blocking_store& store,
                                       const std::string& reason) {
    auto report = store.health();
    for (int i = 0; i < 1000 && (!report || report->reason != reason); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
      report = store.health();
    }
    EXPECT_TRUE(report) << describe(report.error());
    return report ? *report : health_report{};
  }

  /// The health reason after a restart of `actor` that ended with `reason`.
  static std::string restarted(const std::string& actor, caf::error reason) {
    return "restarted the " + actor + " actor after it terminated: "
           + caf::to_string(reason);
  }

  test::temp_dir dir;
  std::shared_ptr<fault_plan> plan = std::make_shared<fault_plan>();
  std::shared_ptr<spawn_book> book = std::make_shared<spawn_book>();
};

// -- a crash at each fault point in each durability mode ----------------------

using crash_case = std::tuple<std::string, durability_mode>;

class crash_test : public supervision_test,
                   public ::testing::WithParamInterface<crash_case> {};

/// Returns which actor a fault point belongs to.
std::string actor_of(const std::string& point) {
  return point.substr(0, point.find('.'));
}

TEST_P(crash_test, child_restarts_and_nothing_durable_is_lost) {
  // Named, not bound: clang 14 (the sanitizer build) cannot capture a
  // structured binding in a lambda.
  auto point = std::get<0>(GetParam());
  auto mode = std::get<1>(GetParam());
  // No checkpoint lag: every 4 durable blocks reach persistence.flush.
  auto store = open({.durability = mode,
                     .checkpoint_every_blocks = 4,
                     .checkpoint_lag_blocks = 0});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 10; ++h)
    ASSERT_OK(apply(*store, h));
  ASSERT_EQ(*store->flush(), 10u);
  plan->arm(point);
  block_id durable = store->durable_height();
  block_id last_acknowledged = 10;
  int interrupted = 0;
  for (block_id h = 11; h <= 30; ++h) {
    auto err = apply(*store, h);
    if (err) {
      // Only the call a crash interrupted fails, with actor_restarted, and
      // then the block is not in the store; in synchronous modes the store
      // is exactly at the last acknowledged block.
      EXPECT_CODE(err, ec::actor_restarted);
      ++interrupted;
      auto applied = store->applied_height();
      EXPECT_LT(applied, h);
      if (mode.is_synchronous()) {
        EXPECT_EQ(applied, last_acknowledged);
      }
      ASSERT_OK(apply(*store, h)); // retrying works
    }
    last_acknowledged = h;
    auto now = store->durable_height();
    EXPECT_GE(now, durable) << "durable regressed at block " << h;
    durable = now;
  }
  EXPECT_LE(interrupted, 1);
  ASSERT_EQ(*store->flush(), 30u);
  EXPECT_EQ(plan->thrown(), 1);
  auto m = store->metrics();
  ASSERT_TRUE(m);
  auto actor = actor_of(point);
  EXPECT_EQ(m->mutation_restarts, actor == "mutation" ? 1u : 0u);
  EXPECT_EQ(m->journal_restarts, actor == "journal" ? 1u : 0u);
  EXPECT_EQ(m->persistence_restarts, actor == "persistence" ? 1u : 0u);
  EXPECT_EQ(m->health_restarts, 0u);
  EXPECT_EQ(m->health, health_state::degraded);
  EXPECT_NE(m->health_reason.find("restarted the " + actor + " actor"),
            std::string::npos)
    << m->health_reason;
  // The state: every block present, except (async only) a run of blocks
  // acknowledged before the crash and not yet in the journal file.
  auto check = [&](blocking_store& s) {
    EXPECT_EQ(s.applied_height(), 30u);
    EXPECT_EQ(get(s, k(0)), v(30));
    std::vector<block_id> lost;
    for (block_id h = 1; h <= 30; ++h) {
      auto x = get(s, k(h));
      if (x.empty())
        lost.push_back(h);
      else
        EXPECT_EQ(x, v(h)) << "block " << h;
    }
    if (mode.is_synchronous()) {
      EXPECT_TRUE(lost.empty()) << lost.size() << " blocks lost";
    } else if (!lost.empty()) {
      EXPECT_GT(lost.front(), 10u); // flushed before the crash
      EXPECT_EQ(lost.back() - lost.front() + 1, lost.size());
    }
    return lost;
  };
  auto lost = check(*store);
  // The same state after a reopen.
  store.reset();
  plan->disarm();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(check(*store), lost);
}

INSTANTIATE_TEST_SUITE_P(
  supervision, crash_test,
  ::testing::Combine(::testing::Values("mutation.apply", "mutation.installed",
                                       "journal.append", "journal.appended",
                                       "persistence.checkpoint",
                                       "persistence.flush"),
                     ::testing::Values(durability_mode::synchronous(),
                                       durability_mode::synchronous_relaxed(4),
                                       durability_mode::async(8))),
  [](const ::testing::TestParamInfo<crash_case>& info) {
    auto name = std::get<0>(info.param) + "_"
                + to_string(std::get<1>(info.param));
    for (auto& c : name)
      if (!std::isalnum(static_cast<unsigned char>(c)))
        c = '_';
    return name;
  });

// -- exact answers of interrupted calls ------------------------------------------

TEST_F(supervision_test, journal_crash_before_the_write_fails_the_apply) {
  auto store = open_at(5);
  ASSERT_TRUE(store);
  plan->arm("journal.append");
  EXPECT_CODE(apply(*store, 6), ec::actor_restarted);
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 0}));
  EXPECT_EQ(get(*store, k(6)), "");
  EXPECT_EQ(get(*store, k(0)), v(5));
  ASSERT_OK(apply(*store, 6));
  EXPECT_EQ(get(*store, k(6)), v(6));
}

TEST_F(supervision_test, blocks_a_restart_replays_are_held_for_a_checkpoint) {
  // Nothing reaches LevelDB before the crash (all within the lag). The
  // reopen replays blocks 1..5 without writing LevelDB; they are held like
  // any durable block: a revert within the lag needs no LevelDB write, and
  // the close checkpoints the rest.
  auto store = open_at(5);
  ASSERT_TRUE(store);
  plan->arm("journal.append");
  EXPECT_CODE(apply(*store, 6), ec::actor_restarted);
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 0}));
  ASSERT_EQ(store->revert_to(3), caf::error{});
  EXPECT_EQ(store->heights(), (store_heights{3, 3, 0}));
  EXPECT_EQ(get(*store, k(0)), v(3));
  EXPECT_EQ(get(*store, k(4)), "");
  ASSERT_OK(apply(*store, 4));
  ASSERT_FALSE(store->close());
  store.reset();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->heights(), (store_heights{4, 4, 4}));
  for (block_id h = 1; h <= 4; ++h)
    EXPECT_EQ(get(*store, k(h)), v(h));
  EXPECT_EQ(get(*store, k(5)), "");
  EXPECT_EQ(get(*store, k(0)), v(4));
}

TEST_F(supervision_test, journal_crash_after_the_write_keeps_the_block) {
  // The entry reached the file: the reopen replays it, so the interrupted
  // apply succeeds.
  auto store = open_at(5);
  ASSERT_TRUE(store);
  plan->arm("journal.appended");
  ASSERT_OK(apply(*store, 6));
  EXPECT_EQ(store->heights(), (store_heights{6, 6, 0}));
  EXPECT_EQ(get(*store, k(6)), v(6));
  EXPECT_CODE(apply(*store, 6), ec::block_id_not_increasing);
  EXPECT_EQ(store->metrics()->journal_restarts, 1u);
}

TEST_F(supervision_test, mutation_crash_after_install_drops_the_block) {
  // Installed in memory but never journaled: the rebuilt memory lacks it.
  auto store = open_at(5);
  ASSERT_TRUE(store);
  plan->arm("mutation.installed");
  EXPECT_CODE(apply(*store, 6), ec::actor_restarted);
  EXPECT_EQ(store->applied_height(), 5u);
  EXPECT_EQ(get(*store, k(6)), "");
  EXPECT_EQ(get(*store, k(0)), v(5));
  ASSERT_OK(apply(*store, 6));
  EXPECT_EQ(store->metrics()->mutation_restarts, 1u);
}

TEST_F(supervision_test, staged_block_is_lost_with_the_mutation_actor) {
  auto store = open();
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 3; ++h)
    ASSERT_OK(apply(*store, h));
  ASSERT_OK(store->start_block(4));
  ASSERT_OK(store->set(k(40), v(40)));
  plan->arm("mutation.set");
  EXPECT_CODE(store->set(k(41), v(41)), ec::actor_restarted);
  EXPECT_CODE(store->set(k(42), v(42)), ec::no_block_in_progress);
  EXPECT_CODE(store->end_block().error(), ec::no_block_in_progress);
  EXPECT_EQ(store->applied_height(), 3u);
  EXPECT_EQ(get(*store, k(40)), "");
  ASSERT_OK(store->start_block(4));
  ASSERT_OK(store->set(k(41), v(41)));
  EXPECT_EQ(*store->end_block(), 4u);
  EXPECT_EQ(get(*store, k(41)), v(41));
}

TEST_F(supervision_test, interrupted_revert_fails_and_changes_nothing) {
  auto store = open({.checkpoint_every_blocks = 1000});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 10; ++h)
    ASSERT_OK(apply(*store, h));
  // Within the checkpoint lag the revert only cuts the journal: the journal
  // dies before it does, so the reopen finds every block.
  plan->arm("journal.truncate");
  EXPECT_CODE(store->revert_to(5), ec::actor_restarted);
  EXPECT_EQ(plan->thrown(), 1);
  EXPECT_EQ(store->heights(), (store_heights{10, 10, 0}));
  EXPECT_EQ(get(*store, k(0)), v(10));
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->reverts, 0u); // it took no effect
  EXPECT_EQ(m->blocks_reverted, 0u);
  EXPECT_EQ(*store->flush(), 10u);
  // The reopen checkpointed block 10: this revert rewrites LevelDB.
  ASSERT_OK(store->revert_to(5));
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 0}));
  EXPECT_EQ(get(*store, k(0)), v(5));
  EXPECT_EQ(get(*store, k(6)), "");
  m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->reverts, 1u);
  EXPECT_EQ(m->blocks_reverted, 5u);
}

TEST_F(supervision_test, revert_past_its_marker_is_completed_by_the_reopen) {
  // LevelDB holds the target state and the revert marker when the journal
  // dies: recovery truncates the journal, so the revert succeeds.
  auto store = open_checkpointed_through_10();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->heights(), (store_heights{10, 10, 10}));
  plan->arm("journal.truncate");
  ASSERT_OK(store->revert_to(5));
  EXPECT_EQ(plan->thrown(), 1);
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 5}));
  EXPECT_EQ(get(*store, k(0)), v(5));
  EXPECT_EQ(get(*store, k(6)), "");
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->journal_restarts, 1u);
  // Counted once, with the five blocks it undid.
  EXPECT_EQ(m->reverts, 1u);
  EXPECT_EQ(m->blocks_reverted, 5u);
  EXPECT_EQ(m->revert_latency.count, 1u);
  EXPECT_CODE(apply(*store, 5), ec::block_id_not_increasing);
  ASSERT_OK(apply(*store, 6));
  store.reset();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->applied_height(), 6u);
  EXPECT_EQ(get(*store, k(7)), "");
  EXPECT_EQ(get(*store, k(0)), v(6));
}

TEST_F(supervision_test, interrupted_flush_and_policy_switch_are_retried) {
  auto store = open({.durability = durability_mode::synchronous(),
                     .checkpoint_every_blocks = 1000});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 4; ++h)
    ASSERT_OK(apply(*store, h));
  plan->arm("journal.sync");
  auto flushed = store->flush();
  ASSERT_TRUE(flushed) << describe(flushed.error());
  EXPECT_EQ(*flushed, 4u);
  // The reopen checkpointed what it replayed.
  EXPECT_EQ(store->heights(), (store_heights{4, 4, 0}));
  ASSERT_OK(apply(*store, 5));
  // A policy switch checkpoints everything first.
  plan->arm("persistence.flush");
  auto mode = store->set_relaxed(3);
  ASSERT_TRUE(mode) << describe(mode.error());
  EXPECT_EQ(*mode, durability_mode::synchronous_relaxed(3));
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 5}));
  EXPECT_EQ(store->metrics()->journal_restarts, 1u);
  EXPECT_EQ(store->metrics()->persistence_restarts, 1u);
  store.reset();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->metrics()->durability,
            durability_mode::synchronous_relaxed(3));
  EXPECT_EQ(store->applied_height(), 5u);
}

TEST_F(supervision_test, interrupted_shutdown_is_retried) {
  auto store = open({.durability = durability_mode::async(16),
                     .checkpoint_every_blocks = 1000});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 8; ++h)
    ASSERT_OK(apply(*store, h));
  // The shutdown's flush crashes persistence; the reopened store is closed
  // by the retried shutdown.
  plan->arm("persistence.flush");
  ASSERT_OK(store->close());
  EXPECT_EQ(plan->thrown(), 1);
  EXPECT_CODE(apply(*store, 9), ec::store_closed);
  store.reset();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->heights(), (store_heights{8, 8, 8}));
  EXPECT_EQ(get(*store, k(0)), v(8));
}

TEST_F(supervision_test, health_actor_is_just_respawned) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(apply(*store, 1));
  plan->arm("health.metrics");
  EXPECT_FALSE(store->metrics()); // the request died with the actor
  // Until the supervisor has seen the actor go down, requests forwarded to
  // it fail the same way (documented); then the new one answers.
  auto health = store->health();
  for (int i = 0; i < 500 && !health; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
    health = store->health();
  }
  ASSERT_TRUE(health) << describe(health.error());
  EXPECT_EQ(health->state, health_state::degraded);
  EXPECT_EQ(health->reason.rfind("restarted the health actor after it "
                                 "terminated: ",
                                 0),
            0u)
    << health->reason;
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->health_restarts, 1u);
  EXPECT_EQ(restarts(*m), 1u);
  ASSERT_OK(apply(*store, 2));
  EXPECT_EQ(get(*store, k(0)), v(2));
}

TEST_F(supervision_test, degraded_ends_with_the_restart_window) {
  auto store = open({.restart_window = std::chrono::seconds{1}});
  ASSERT_TRUE(store);
  plan->arm("journal.append");
  EXPECT_CODE(apply(*store, 1), ec::actor_restarted);
  auto during = store->health();
  ASSERT_TRUE(during);
  EXPECT_EQ(during->state, health_state::degraded);
  EXPECT_EQ(during->reason,
            "restarted the journal actor after it terminated: "
              + caf::to_string(
                caf::error{caf::exit_reason::unhandled_exception}));
  // Once the window has passed without another crash: serving again.
  std::this_thread::sleep_for(std::chrono::milliseconds{1100});
  auto after = store->health();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->state, health_state::serving);
  EXPECT_EQ(after->reason, "");
  EXPECT_EQ(store->metrics()->journal_restarts, 1u);
}

// -- the restart limit -------------------------------------------------------------

TEST_F(supervision_test, restart_loop_turns_fatal_with_the_limit_error) {
  auto store = open({.max_restarts = 2});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 3; ++h)
    ASSERT_OK(apply(*store, h));
  plan->arm("mutation.apply", 100);
  EXPECT_CODE(apply(*store, 4), ec::actor_restarted);
  EXPECT_CODE(apply(*store, 4), ec::actor_restarted);
  auto fatal = apply(*store, 4);
  EXPECT_CODE(fatal, ec::restart_limit_exceeded);
  EXPECT_EQ(message_of(fatal),
            "the mutation actor crashed (" + caf::to_string(caf::error{
              caf::exit_reason::unhandled_exception})
              + ") after 2 restarts within the last 60 s; the limit is 2");
  EXPECT_EQ(plan->thrown(), 3);
  // Every later call fails fast with the same error.
  EXPECT_EQ(apply(*store, 5), fatal);
  EXPECT_EQ(store->fetch(k(1)).error(), fatal);
  EXPECT_EQ(store->ensure_healthy(), fatal);
  EXPECT_EQ(store->flush().error(), fatal);
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->health, health_state::fatal);
  EXPECT_EQ(m->mutation_restarts, 3u);
  EXPECT_EQ(m->journal_restarts + m->persistence_restarts, 0u);
  store.reset();
  plan->disarm();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->applied_height(), 3u);
  EXPECT_EQ(get(*store, k(0)), v(3));
}

TEST_F(supervision_test, zero_restarts_makes_every_crash_fatal) {
  auto store = open({.max_restarts = 0});
  ASSERT_TRUE(store);
  ASSERT_OK(apply(*store, 1));
  plan->arm("journal.append");
  auto fatal = apply(*store, 2);
  EXPECT_CODE(fatal, ec::restart_limit_exceeded);
  EXPECT_EQ(store->ensure_healthy(), fatal);
  EXPECT_EQ(store->metrics()->journal_restarts, 1u);
}

// -- health and client errors ---------------------------------------------------------

TEST_F(supervision_test, bad_input_is_counted_and_health_stays_serving) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(apply(*store, 5));
  EXPECT_CODE(store->apply(6, {{key(7, 'x'), v(1)}}), ec::key_width_mismatch);
  EXPECT_CODE(store->apply(6, {{k(1), value(max_value_size + 1, 'x')}}),
              ec::value_too_large);
  EXPECT_CODE(apply(*store, 5), ec::block_id_not_increasing);
  EXPECT_CODE(apply(*store, 4), ec::block_id_not_increasing);
  EXPECT_CODE(store->revert_to(9), ec::rollback_target_ahead);
  EXPECT_CODE(store->fetch(key(9, 'x')).error(), ec::key_width_mismatch);
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->client_errors, 6u);
  EXPECT_EQ(m->health, health_state::serving);
  EXPECT_EQ(m->health_reason, "");
  EXPECT_EQ(restarts(*m), 0u);
  ASSERT_OK(store->ensure_healthy());
  ASSERT_OK(apply(*store, 6));
  EXPECT_EQ(store->applied_height(), 6u);
}

// -- the reverts metric across restarts ---------------------------------------------

TEST_F(supervision_test, revert_done_on_disk_when_the_mutation_crashes_is_counted) {
  // The revert's last step (memory) crashes: on disk it is complete (journal
  // cut, marker cleared), so the reopen finds no marker, comes back at the
  // target and the call succeeds, counted once.
  auto store = open({.checkpoint_every_blocks = 1000});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 10; ++h)
    ASSERT_OK(apply(*store, h));
  plan->arm("mutation.revert");
  ASSERT_OK(store->revert_to(5));
  EXPECT_EQ(plan->thrown(), 1);
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 0}));
  EXPECT_EQ(get(*store, k(0)), v(5));
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->mutation_restarts, 1u);
  EXPECT_EQ(m->reverts, 1u);
  EXPECT_EQ(m->blocks_reverted, 5u);
  EXPECT_EQ(m->revert_latency.count, 1u);
}

TEST_F(supervision_test, revert_counted_before_a_crash_is_not_counted_again) {
  auto store = open({.durability = durability_mode::synchronous(),
                     .checkpoint_every_blocks = 1000});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 10; ++h)
    ASSERT_OK(apply(*store, h));
  ASSERT_OK(store->revert_to(7));
  ASSERT_OK(apply(*store, 8));
  plan->arm("journal.append");
  EXPECT_CODE(apply(*store, 9), ec::actor_restarted);
  EXPECT_EQ(store->heights(), (store_heights{8, 8, 0}));
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->journal_restarts, 1u);
  EXPECT_EQ(m->reverts, 1u);
  EXPECT_EQ(m->blocks_reverted, 3u);
  EXPECT_EQ(m->revert_latency.count, 1u);
}

TEST_F(supervision_test, revert_marker_completed_at_open_is_not_counted) {
  // The store turns fatal (no restarts allowed) with LevelDB holding the
  // revert marker: the revert call fails, uncounted; the next open
  // completes the revert, which an earlier store instance started: not
  // counted there either.
  auto store = open({.checkpoint_every_blocks = 1000, .max_restarts = 0});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 10; ++h)
    ASSERT_OK(apply(*store, h));
  // A shutdown checkpoints everything: the revert must rewrite LevelDB.
  ASSERT_OK(store->close());
  store = open({.checkpoint_every_blocks = 1000, .max_restarts = 0});
  ASSERT_TRUE(store);
  plan->arm("journal.truncate");
  EXPECT_CODE(store->revert_to(5), ec::restart_limit_exceeded);
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->reverts, 0u);
  EXPECT_EQ(m->blocks_reverted, 0u);
  store.reset();
  plan->disarm();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 5}));
  EXPECT_EQ(get(*store, k(0)), v(5));
  m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->reverts, 0u);
  EXPECT_EQ(m->blocks_reverted, 0u);
}

// -- the directory lock during a restart --------------------------------------------

TEST_F(supervision_test, data_dir_stays_locked_during_a_restart) {
  auto store = open_at(3);
  ASSERT_TRUE(store);
  // The journal crashes; the restart waits before it recovers, with the
  // journal and LevelDB closed.
  plan->arm("journal.append");
  plan->pause_at("reopen.open");
  auto interrupted = std::async(std::launch::async,
                                [&] { return apply(*store, 4); });
  ASSERT_TRUE(plan->wait_paused());
  // Whatever fails below, the restart goes on (else the test would hang).
  std::shared_ptr<void> resume_on_exit{nullptr,
                                       [this](void*) { plan->resume(); }};
  auto data = dir.sub("data");
  auto pid = std::to_string(::getpid());
  // Another opener in this process...
  store_options other;
  other.data_dir = data;
  auto second = blocking_store::open(other);
  ASSERT_FALSE(second);
  EXPECT_EQ(code_of(second.error()), ec::data_dir_locked);
  EXPECT_EQ(message_of(second.error()),
            "data directory " + data + " is locked by this process (pid "
              + pid + "), which has it open already; stop that process or "
                      "use another directory");
  // ... and in another process.
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  auto child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipe_fds[0]);
    auto lock = storage::data_dir_lock::acquire(data);
    auto text = lock ? std::string{"acquired"}
                     : std::to_string(static_cast<int>(code_of(lock.error())))
                         + " " + message_of(lock.error());
    auto written = ::write(pipe_fds[1], text.data(), text.size());
    ::_exit(written == static_cast<ssize_t>(text.size()) ? 0 : 1);
  }
  ::close(pipe_fds[1]);
  std::string text;
  char buf[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof(buf))) > 0;)
    text.append(buf, static_cast<std::size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(text, std::to_string(static_cast<int>(ec::data_dir_locked))
                    + " data directory " + data
                    + " is locked by another process (pid " + pid
                    + "); stop that process or use another directory");
  plan->resume();
  ASSERT_EQ(interrupted.wait_for(std::chrono::seconds{10}),
            std::future_status::ready);
  EXPECT_CODE(interrupted.get(), ec::actor_restarted);
  EXPECT_EQ(store->heights(), (store_heights{3, 3, 0}));
  // Still held after the restart, released by the close.
  EXPECT_EQ(code_of(blocking_store::open(other).error()),
            ec::data_dir_locked);
  ASSERT_OK(apply(*store, 4));
  store.reset();
  auto reopened = blocking_store::open(other);
  ASSERT_TRUE(reopened) << describe(reopened.error());
  EXPECT_EQ((*reopened)->heights(), (store_heights{4, 4, 4}));
}

// -- exit messages ------------------------------------------------------------------

using exit_case = std::tuple<std::string, caf::exit_reason>;

class exit_test : public supervision_test,
                  public ::testing::WithParamInterface<exit_case> {};

TEST_P(exit_test, engine_actor_stopped_by_an_exit_message_is_restarted) {
  // An exit message with a reason outside the rollblock category stops the
  // actor like a crash: the engine is reopened from durable state.
  auto [actor, reason] = GetParam();
  auto store = open_at(5);
  ASSERT_TRUE(store);
  auto old = book->latest(actor);
  send_exit(old, reason);
  auto health = wait_for_health(*store, restarted(actor, reason));
  EXPECT_EQ(health.state, health_state::degraded);
  EXPECT_EQ(health.reason, restarted(actor, reason));
  // All three engine actors are new; health is the first one.
  for (auto name : {"mutation", "journal", "persistence"})
    EXPECT_EQ(book->spawned(name), 2u) << name;
  EXPECT_EQ(book->spawned("health"), 1u);
  EXPECT_NE(book->latest(actor), old);
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 0}));
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->mutation_restarts, actor == "mutation" ? 1u : 0u);
  EXPECT_EQ(m->journal_restarts, actor == "journal" ? 1u : 0u);
  EXPECT_EQ(m->persistence_restarts, actor == "persistence" ? 1u : 0u);
  EXPECT_EQ(m->health_restarts, 0u);
  ASSERT_OK(apply(*store, 6));
  EXPECT_EQ(*store->flush(), 6u);
  for (block_id h = 1; h <= 6; ++h)
    EXPECT_EQ(get(*store, k(h)), v(h));
}

INSTANTIATE_TEST_SUITE_P(
  supervision, exit_test,
  ::testing::Values(exit_case{"mutation", caf::exit_reason::kill},
                    exit_case{"journal", caf::exit_reason::user_shutdown},
                    exit_case{"persistence",
                              caf::exit_reason::unknown}),
  [](const ::testing::TestParamInfo<exit_case>& info) {
    return std::get<0>(info.param) + "_"
           + caf::to_string(std::get<1>(info.param));
  });

TEST_F(supervision_test, health_actor_stopped_by_an_exit_message_is_respawned) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_OK(apply(*store, 1));
  send_exit(book->latest("health"), caf::exit_reason::user_shutdown);
  auto health = wait_for_health(
    *store, restarted("health", caf::exit_reason::user_shutdown));
  EXPECT_EQ(health.state, health_state::degraded);
  EXPECT_EQ(book->spawned("health"), 2u);
  for (auto name : {"mutation", "journal", "persistence"})
    EXPECT_EQ(book->spawned(name), 1u) << name;
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->health_restarts, 1u);
  EXPECT_EQ(restarts(*m), 1u);
  ASSERT_OK(apply(*store, 2));
}

TEST_F(supervision_test, exit_message_with_a_store_error_is_fatal) {
  // A rollblock error as the exit reason is a store failure, not a crash:
  // no restart; the store turns fatal with that error, and the running call
  // (waiting on the dead actor) gets it too.
  auto store = open({.checkpoint_every_blocks = 1000});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 10; ++h)
    ASSERT_OK(apply(*store, h));
  // The revert stops at its journal truncation, LevelDB holding the marker;
  // persistence dies before the revert's next step needs it.
  plan->pause_at("journal.truncate");
  auto revert = std::async(std::launch::async,
                           [&] { return store->revert_to(5); });
  ASSERT_TRUE(plan->wait_paused());
  auto failure = make_error(ec::io_error, "persistence stopped by a test");
  send_exit(book->latest("persistence"), failure);
  auto answered = revert.wait_for(std::chrono::seconds{10});
  plan->resume();
  ASSERT_EQ(answered, std::future_status::ready);
  EXPECT_EQ(revert.get(), failure);
  EXPECT_EQ(store->fetch(k(1)).error(), failure);
  EXPECT_EQ(apply(*store, 11), failure);
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->health, health_state::fatal);
  EXPECT_EQ(m->health_reason, describe(failure));
  EXPECT_EQ(restarts(*m), 0u);
  EXPECT_EQ(m->reverts, 0u);
  EXPECT_EQ(book->spawned("persistence"), 1u);
  // The next open completes the revert from its marker.
  store.reset();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 0}));
  EXPECT_EQ(get(*store, k(0)), v(5));
}

// -- a second crash during a restart ---------------------------------------------

TEST_F(supervision_test, crashed_reopen_is_retried_and_counted) {
  // The journal dies after writing block 6; the first reopen actor crashes;
  // the second reopens: the apply gets its result, nothing is lost.
  auto store = open_at(5);
  ASSERT_TRUE(store);
  plan->arm("journal.appended");
  plan->arm("reopen.open");
  ASSERT_OK(apply(*store, 6));
  EXPECT_EQ(plan->thrown(), 2);
  EXPECT_EQ(store->heights(), (store_heights{6, 6, 0}));
  for (block_id h = 1; h <= 6; ++h)
    EXPECT_EQ(get(*store, k(h)), v(h));
  auto m = store->metrics();
  ASSERT_TRUE(m);
  // Counted as a second restart of the journal actor.
  EXPECT_EQ(m->journal_restarts, 2u);
  EXPECT_EQ(restarts(*m), 2u);
  EXPECT_EQ(m->health, health_state::degraded);
  EXPECT_EQ(m->health_reason,
            restarted("journal", caf::exit_reason::unhandled_exception));
  ASSERT_OK(apply(*store, 7));
  store.reset();
  plan->disarm();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->heights(), (store_heights{7, 7, 7}));
}

TEST_F(supervision_test, revert_completed_by_a_retried_reopen_is_counted_once) {
  auto store = open_checkpointed_through_10();
  ASSERT_TRUE(store);
  plan->arm("journal.truncate");
  plan->arm("reopen.open");
  ASSERT_OK(store->revert_to(5));
  EXPECT_EQ(plan->thrown(), 2);
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 5}));
  EXPECT_EQ(get(*store, k(0)), v(5));
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->journal_restarts, 2u);
  EXPECT_EQ(m->reverts, 1u);
  EXPECT_EQ(m->blocks_reverted, 5u);
}

TEST_F(supervision_test, crashed_reopen_past_the_limit_is_fatal) {
  auto store = open({.durability = durability_mode::synchronous(),
                     .max_restarts = 1});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 5; ++h)
    ASSERT_OK(apply(*store, h));
  plan->arm("journal.append");
  plan->arm("reopen.open");
  auto fatal = apply(*store, 6);
  EXPECT_CODE(fatal, ec::restart_limit_exceeded);
  EXPECT_EQ(message_of(fatal),
            "the reopen actor crashed ("
              + caf::to_string(
                caf::error{caf::exit_reason::unhandled_exception})
              + ") after 1 restarts within the last 60 s; the limit is 1");
  EXPECT_EQ(plan->thrown(), 2);
  EXPECT_EQ(apply(*store, 6), fatal);
  EXPECT_EQ(store->flush().error(), fatal);
  EXPECT_EQ(store->ensure_healthy(), fatal);
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->health, health_state::fatal);
  EXPECT_EQ(m->journal_restarts, 2u);
  // The close releases the directory; every acknowledged block is there.
  store.reset();
  plan->disarm();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 0}));
  for (block_id h = 1; h <= 5; ++h)
    EXPECT_EQ(get(*store, k(h)), v(h));
}

TEST_F(supervision_test, new_actor_dying_at_once_restarts_again) {
  // Persistence crashes in the checkpoint of a policy switch; the
  // persistence actor the restart spawns dies at once (an exit message
  // waiting in its mailbox): a second restart, and the switch is retried on
  // the third.
  auto store = open({.durability = durability_mode::synchronous(),
                     .checkpoint_every_blocks = 1000});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 4; ++h)
    ASSERT_OK(apply(*store, h));
  plan->arm("persistence.flush");
  book->stop_on_spawn("persistence", 2, caf::exit_reason::kill);
  auto switched = store->set_relaxed(2);
  ASSERT_TRUE(switched) << describe(switched.error());
  EXPECT_EQ(*switched, durability_mode::synchronous_relaxed(2));
  EXPECT_EQ(plan->thrown(), 1);
  EXPECT_EQ(book->spawned("persistence"), 3u);
  auto m = store->metrics();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->persistence_restarts, 2u);
  EXPECT_EQ(m->health_reason, restarted("persistence", caf::exit_reason::kill));
  EXPECT_EQ(store->heights(), (store_heights{4, 4, 4}));
  ASSERT_OK(apply(*store, 5));
  EXPECT_EQ(get(*store, k(0)), v(5));
}

TEST_F(supervision_test, new_actor_dying_past_the_limit_is_fatal) {
  auto store = open({.durability = durability_mode::synchronous(),
                     .checkpoint_every_blocks = 1000,
                     .max_restarts = 1});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 4; ++h)
    ASSERT_OK(apply(*store, h));
  plan->arm("persistence.flush");
  book->stop_on_spawn("persistence", 2, caf::exit_reason::kill);
  // A policy switch checkpoints everything first.
  auto flushed = store->set_relaxed(2);
  ASSERT_FALSE(flushed);
  EXPECT_CODE(flushed.error(), ec::restart_limit_exceeded);
  EXPECT_EQ(message_of(flushed.error()),
            "the persistence actor crashed ("
              + caf::to_string(caf::error{caf::exit_reason::kill})
              + ") after 1 restarts within the last 60 s; the limit is 1");
  EXPECT_EQ(store->metrics()->persistence_restarts, 2u);
  EXPECT_EQ(store->ensure_healthy(), flushed.error());
  store.reset();
  plan->disarm();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->heights(), (store_heights{4, 4, 0}));
  EXPECT_EQ(get(*store, k(0)), v(4));
}

} // namespace
