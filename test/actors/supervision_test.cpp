// Supervision inside the store: a store actor that crashes (an exception
// thrown by the fault hook at a named fault point, as a bug would) is
// restarted from durable state; the call it interrupted gets the answer the
// table at the top of actors/src/supervisor.cpp documents; nothing
// acknowledged as durable is lost; durable never regresses; a restart loop
// turns fatal; restarts are counted; bad input leaves health alone.

#include "rollblock/actors/blocking_store.hpp"
#include "rollblock/messages/error.hpp"
#include "support/error_assertions.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>

using namespace rollblock;

namespace {

key k(std::uint64_t x) {
  return key_from_u64(x);
}

value v(std::uint64_t x) {
  return value_from_u64(x);
}

/// Decides when the store's fault hook throws: at the nth next pass of one
/// fault point, `times` passes in a row. Thread-safe (the actors call it).
class fault_plan {
public:
  void arm(std::string point, int times = 1) {
    std::lock_guard guard{mu_};
    point_ = std::move(point);
    remaining_ = times;
  }

  void disarm() {
    arm("", 0);
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
    std::lock_guard guard{mu_};
    if (remaining_ == 0 || point != point_)
      return;
    --remaining_;
    ++thrown_;
    throw std::runtime_error("injected crash at " + std::string{point});
  }

  mutable std::mutex mu_;
  std::string point_;
  int remaining_ = 0;
  int thrown_ = 0;
};

class supervision_test : public ::testing::Test {
protected:
  std::unique_ptr<blocking_store> open(store_options opts = {}) {
    opts.data_dir = dir.sub("data");
    opts.fault_hook = fault_plan::hook(plan);
    auto store = blocking_store::open(opts);
    EXPECT_TRUE(store) << describe(store.error());
    return store ? std::move(*store) : nullptr;
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

  test::temp_dir dir;
  std::shared_ptr<fault_plan> plan = std::make_shared<fault_plan>();
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
  auto [point, mode] = GetParam();
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
  auto store = open({.durability = durability_mode::synchronous()});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 5; ++h)
    ASSERT_OK(apply(*store, h));
  plan->arm("journal.append");
  EXPECT_CODE(apply(*store, 6), ec::actor_restarted);
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 5}));
  EXPECT_EQ(get(*store, k(6)), "");
  EXPECT_EQ(get(*store, k(0)), v(5));
  ASSERT_OK(apply(*store, 6));
  EXPECT_EQ(get(*store, k(6)), v(6));
}

TEST_F(supervision_test, journal_crash_after_the_write_keeps_the_block) {
  // The entry reached the file: the reopen replays it, so the interrupted
  // apply succeeds.
  auto store = open({.durability = durability_mode::synchronous()});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 5; ++h)
    ASSERT_OK(apply(*store, h));
  plan->arm("journal.appended");
  ASSERT_OK(apply(*store, 6));
  EXPECT_EQ(store->heights(), (store_heights{6, 6, 6}));
  EXPECT_EQ(get(*store, k(6)), v(6));
  EXPECT_CODE(apply(*store, 6), ec::block_id_not_increasing);
  EXPECT_EQ(store->metrics()->journal_restarts, 1u);
}

TEST_F(supervision_test, mutation_crash_after_install_drops_the_block) {
  // Installed in memory but never journaled: the rebuilt memory lacks it.
  auto store = open({.durability = durability_mode::synchronous()});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 5; ++h)
    ASSERT_OK(apply(*store, h));
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
  EXPECT_EQ(store->heights(), (store_heights{10, 10, 10}));
  EXPECT_EQ(get(*store, k(0)), v(10));
  EXPECT_EQ(*store->flush(), 10u);
  // The reopen checkpointed block 10: this revert rewrites LevelDB.
  ASSERT_OK(store->revert_to(5));
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 5}));
  EXPECT_EQ(get(*store, k(0)), v(5));
  EXPECT_EQ(get(*store, k(6)), "");
}

TEST_F(supervision_test, revert_past_its_marker_is_completed_by_the_reopen) {
  // LevelDB holds the target state and the revert marker when the journal
  // dies: recovery truncates the journal, so the revert succeeds.
  auto store = open({.checkpoint_every_blocks = 1000});
  ASSERT_TRUE(store);
  for (block_id h = 1; h <= 10; ++h)
    ASSERT_OK(apply(*store, h));
  // A shutdown checkpoints everything: the revert must rewrite LevelDB.
  ASSERT_OK(store->close());
  store = open({.checkpoint_every_blocks = 1000});
  ASSERT_TRUE(store);
  EXPECT_EQ(store->heights(), (store_heights{10, 10, 10}));
  plan->arm("journal.truncate");
  ASSERT_OK(store->revert_to(5));
  EXPECT_EQ(plan->thrown(), 1);
  EXPECT_EQ(store->heights(), (store_heights{5, 5, 5}));
  EXPECT_EQ(get(*store, k(0)), v(5));
  EXPECT_EQ(get(*store, k(6)), "");
  EXPECT_EQ(store->metrics()->journal_restarts, 1u);
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
  EXPECT_EQ(store->heights(), (store_heights{4, 4, 4}));
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

} // namespace
