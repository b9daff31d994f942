// Supervision: restarting a crashed store actor.
//
// A child that goes down with a reason outside the rollblock error category
// is restarted: an exception escaping a handler (unhandled_exception), or an
// exit message from anyone holding its address (kill, user_shutdown or any
// other non-rollblock reason; an exit message with exit_reason::normal is
// ignored by CAF and the child keeps running). A rollblock reason (an exit
// message carrying a store error) is a store failure, not a crash: the store
// turns fatal with that error, without a restart, and the running call gets
// it. A crash beyond the restart limit (store_options::max_restarts within
// restart_window) makes the store fatal with ec::restart_limit_exceeded.
// Restarts are logged at error level and counted per actor in the metrics;
// health is degraded while one runs and for restart_window after it.
//
// - health: respawned alone; nothing else changes.
// - mutation, journal, persistence: the store is reopened from durable state
//   the way spawn_store opens it. Mutating calls wait in the queue; the
//   surviving two are stopped; once all three are down (journal and LevelDB
//   closed) a detached reopen actor runs storage::recover under the data
//   directory's lock, which the supervisor holds throughout (never released
//   between the crash and the reopen: another opener gets
//   ec::data_dir_locked all along): the journal's torn
//   tail (if the journal died mid-append) is cut, an interrupted revert is
//   completed, LevelDB is loaded into a fresh in-memory state and every
//   journal entry above its checkpoint (appended blocks, fsynced or not, are
//   in the file) is replayed, checkpointed and fsynced. The fresh state
//   replaces the old in store_shared (readers switch over at once) and three
//   new children are spawned on it. The store is then exactly at some height
//   between the durable and the applied height before the crash: durable
//   never regresses, blocks acknowledged as durable are there, a block only
//   installed in memory (mutation died before the journal saw it) is gone.
//   Replies of the old children that arrive later are ignored (generation).
//
// A second crash during a restart counts toward the same limit:
// - the reopen actor crashes: counted as another restart of the child whose
//   crash began the restart, and a fresh reopen actor tries again; past the
//   limit the store turns fatal (restart_limit_exceeded naming the reopen
//   actor). A recovery error (rollblock category) is fatal at once.
// - a newly spawned child dies (at once, or while running the retried
//   call): an ordinary crash, restarted again; a retried call is retried
//   again, an answered one stays answered.
// Either way the interrupted call is answered exactly once, after the last
// reopen, per the table below; nothing acknowledged as durable is lost,
// since every reopen recovers from the same durable files.
//
// The call that was running when the engine child died (at most one: calls
// run one at a time) is answered as follows; queued calls then run as usual.
//
//   call                      | answer after the restart
//   --------------------------+-----------------------------------------------
//   apply, pop(height, key),  | the result when the block is in the reopened
//   end (synchronous modes)   | store (applied height >= its height), else
//                             | ec::actor_restarted (nothing applied: retry)
//   apply, pop, end (async)   | already answered when installed; the block
//                             | survives if its journal entry reached the file
//   start, set, pop(key)      | ec::actor_restarted; the staged block is gone
//                             | (later set/end: ec::no_block_in_progress)
//   revert(t)                 | t when the reopened store is at t (the revert
//                             | got far enough to be completed by recovery,
//                             | or was done on disk), counted then in the
//                             | reverts metric; else ec::actor_restarted
//                             | (retry), uncounted
//   flush                     | retried: the durable height after the reopen
//   relaxed, strict           | retried after the reopen
//   shutdown                  | retried after the reopen
//   fetch, heights, healthy   | answered inline: unaffected; until the
//                             | reopened state replaces the old one, reads
//                             | see the old (it may hold the interrupted,
//                             | unacknowledged block)
//   metrics, health           | forwarded to the health actor: when that one
//                             | dies, the caller gets CAF's error
//                             | (sec::request_receiver_down): retry
//
// When the restart ends in the fatal state (limit reached, recovery
// failed, or a child went down with a rollblock error), the running call
// gets the fatal error like every later call (a retried call gets it when
// it runs again).

#include "rollblock/actors/supervisor.hpp"

#include "rollblock/actors/health.hpp"
#include "rollblock/actors/journal.hpp"
#include "rollblock/actors/mutation.hpp"
#include "rollblock/actors/persistence.hpp"
#include "rollblock/actors/reopen.hpp"
#include "rollblock/messages/error.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "rollblock/storage/logger.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace rollblock {

namespace {

using self_ptr = store_actor::stateful_pointer<supervisor_state>;
using clock_type = std::chrono::steady_clock;

std::uint64_t elapsed_ns(clock_type::time_point start) {
  return static_cast<std::uint64_t>(
    std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now()
                                                         - start)
      .count());
}

// -- call ordering -----------------------------------------------------------

/// Runs queued calls until one is in progress.
void run_queue(self_ptr self) {
  auto& st = self->state;
  if (st.draining_queue)
    return;
  st.draining_queue = true;
  while (!st.busy && !st.restarting && !st.queue.empty()) {
    auto call = std::move(st.queue.front());
    st.queue.pop_front();
    st.busy = true;
    call();
  }
  st.draining_queue = false;
}

/// Queues a mutating call; it runs after every call queued before it.
void enqueue(self_ptr self, std::function<void()> call) {
  self->state.queue.push_back(std::move(call));
  run_queue(self);
}

/// Ends the running call and starts the next.
void finish(self_ptr self) {
  self->state.busy = false;
  self->state.on_restart = nullptr;
  self->state.revert_blocks.reset();
  run_queue(self);
}

/// Returns whether `err` says that a child died (any category but ours)
/// rather than that it failed a step: the restart deals with the call.
bool child_died(const caf::error& err) {
  return err.category() != error_category;
}

/// The error of a call that a child's crash interrupted.
caf::error interrupted() {
  return make_error(ec::actor_restarted,
                    "a store actor crashed during the call and was "
                    "restarted from durable state; the call had no effect, "
                    "retry it");
}

/// Makes a restart run `call` again, first in the queue, instead of
/// answering the running call (for calls that are safe to repeat).
void retry_after_restart(self_ptr self, std::function<void()> call) {
  self->state.on_restart =
    [self, call](const caf::expected<store_heights>&) {
      // Once fatal, the retried call answers with the fatal error itself.
      self->state.queue.push_front(call);
    };
}

/// Requests `xs` from the child `dest` and calls `on_ok` with its result of
/// type R or `on_err` with its error; neither when a child restarted since
/// the request was sent, nor on the error of a dead child: the restart
/// answers the running call (see the table at the top).
template <class R, class Dest, class OnOk, class OnErr, class... Ts>
void ask(self_ptr self, const Dest& dest, OnOk on_ok, OnErr on_err,
         Ts&&... xs) {
  auto generation = self->state.generation;
  self->request(dest, caf::infinite, std::forward<Ts>(xs)...)
    .then(
      [self, generation, on_ok](R& result) mutable {
        if (self->state.generation == generation)
          on_ok(result);
      },
      [self, generation, on_err](caf::error& err) mutable {
        if (self->state.generation == generation && !child_died(err))
          on_err(err);
      });
}

/// Runs `f` once no journal append is in flight.
void when_drained(self_ptr self, std::function<void()> f) {
  if (self->state.in_flight == 0)
    f();
  else
    self->state.on_drained.push_back(std::move(f));
}

// -- faults ------------------------------------------------------------------

/// Counts a refused call (bad input or wrong state): health is unaffected.
caf::error client_error(self_ptr self, caf::error err) {
  self->state.shared->counters().client_errors.fetch_add(1);
  return err;
}

/// Enters the fatal state: every later call fails fast with `err`. Blocks
/// applied in memory but not durable are reverted in memory, so that reads
/// never show what a reopen would not find.
void enter_fatal(self_ptr self, const caf::error& err) {
  auto& st = self->state;
  if (st.shared->refusal())
    return;
  logger().critical("rollblock store is now fatal: {}", describe(err));
  st.shared->set_fatal(err);
  self->send(st.health, atom::fault::value, health_state::fatal,
             describe(err));
  if (st.appended.empty())
    return;
  block_record_list newest_first(st.appended.rbegin(), st.appended.rend());
  auto durable = st.shared->heights().durable;
  st.appended.clear();
  ask<atom::ok>(
    self, st.mutation, [](atom::ok) {},
    [](caf::error& revert_err) {
      logger().critical("reverting undurable blocks in memory failed: {}",
                        describe(revert_err));
    },
    atom::revert::value, std::move(newest_first), durable);
}

/// Returns the error for a failed store step: the fatal error once fatal.
caf::error fault(self_ptr self, const caf::error& err) {
  enter_fatal(self, err);
  return self->state.shared->refusal();
}

// -- the write pipeline --------------------------------------------------------

void checkpoint(self_ptr self, block_id through);

/// Returns how many held blocks a periodic checkpoint may write: those
/// older than the newest checkpoint_lag.
std::size_t checkpointable(const supervisor_state& st) {
  return st.held.size() > st.checkpoint_lag ? st.held.size() - st.checkpoint_lag
                                            : 0;
}

/// Returns whether persistence holds so many blocks that applies wait for a
/// checkpoint (the backpressure of the checkpoint pipeline): four
/// checkpoints' worth, or held records of more than
/// store_options::checkpoint_backlog_bytes (with a memory budget, or 1/8 of
/// it if less) while some of them may be checkpointed, or, with a memory
/// budget, memory_state::max_uncheckpointed_blocks held or in flight.
bool persistence_backlogged(const supervisor_state& st) {
  auto byte_limit = st.options.checkpoint_backlog_bytes;
  if (auto& budget = st.options.memory_budget)
    byte_limit = std::min(byte_limit, *budget / 8);
  return checkpointable(st) >= 4 * st.options.checkpoint_every_blocks
         || (checkpointable(st) > 0 && st.held_bytes > byte_limit)
         || (st.options.memory_budget
             && st.held.size() + st.in_flight
                  >= storage::memory_state::max_uncheckpointed_blocks);
}

/// Shows the held blocks and their bytes in the metrics.
void count_held(supervisor_state& st) {
  auto& c = st.shared->counters();
  c.held_blocks.store(st.held.size(), std::memory_order_relaxed);
  c.held_bytes.store(st.held_bytes, std::memory_order_relaxed);
}

/// Stops holding every block: LevelDB got a state at or above them (a revert
/// beyond the lag), or a restart's recovery replays and holds them anew.
void release_all_held(supervisor_state& st) {
  st.held.clear();
  st.held_bytes = 0;
  count_held(st);
}

/// Returns the bytes a record holds.
std::size_t record_bytes(const block_record& record) {
  return sizeof(block_record) + record.changes.memory_bytes();
}

/// Resumes an apply held back by backpressure once there is room.
void resume_when_capacity(self_ptr self) {
  auto& st = self->state;
  if (st.on_capacity && st.in_flight < st.mode.max_pending
      && !persistence_backlogged(st)) {
    auto resume = std::move(st.on_capacity);
    st.on_capacity = nullptr;
    resume();
  }
}

/// Starts a checkpoint of the blocks older than the lag when
/// checkpoint_every_blocks of them wait or checkpoint_interval passed. One
/// checkpoint writes at most checkpoint_every_blocks blocks (a backlog
/// drains in several), so that a revert or flush queued behind it waits
/// for one bounded WriteBatch.
void checkpoint_when_due(self_ptr self) {
  auto& st = self->state;
  auto count = checkpointable(st);
  if (st.checkpointing || st.barrier || count == 0)
    return;
  auto every = st.options.checkpoint_every_blocks;
  if (count >= every || persistence_backlogged(st)
      || clock_type::now() - st.last_checkpoint
           >= st.options.checkpoint_interval)
    checkpoint(self,
               st.held[std::min<std::size_t>(count, every) - 1].height());
}

/// Holds a durable block for a checkpoint and hands it to persistence.
void hold(self_ptr self, block_record_ptr record) {
  auto& st = self->state;
  auto bytes = record_bytes(*record);
  st.held.push_back({record, bytes});
  st.held_bytes += bytes;
  count_held(st);
  self->send(st.persistence, atom::checkpoint::value, std::move(record));
}

/// Stops holding the blocks above `target`; returns their records, newest
/// first.
block_record_list release_held_above(supervisor_state& st, block_id target) {
  block_record_list newest_first;
  while (!st.held.empty() && st.held.back().height() > target) {
    newest_first.push_back(std::move(st.held.back().record));
    st.held_bytes -= st.held.back().bytes;
    st.held.pop_back();
  }
  count_held(st);
  return newest_first;
}

/// Hands blocks up to `durable` to persistence; checkpoints when due.
void advance_durable(self_ptr self, block_id durable) {
  auto& st = self->state;
  st.shared->set_durable(durable);
  while (!st.appended.empty() && st.appended.front()->height <= durable) {
    hold(self, std::move(st.appended.front()));
    st.appended.pop_front();
  }
  checkpoint_when_due(self);
}

/// Records that LevelDB holds the state at `current`.
void checkpointed(self_ptr self, block_id current) {
  auto& st = self->state;
  st.shared->set_current(current);
  while (!st.held.empty() && st.held.front().height() <= current) {
    st.held_bytes -= st.held.front().bytes;
    st.held.pop_front();
  }
  count_held(st);
}

/// Sends a block to the journal; `then` runs with the outcome of the append.
void append(self_ptr self, block_record_ptr record,
            std::function<void(const caf::error&)> then) {
  auto& st = self->state;
  ++st.in_flight;
  st.appended.push_back(record);
  auto settle = [self] {
    auto& st = self->state;
    --st.in_flight;
    resume_when_capacity(self);
    if (st.in_flight == 0) {
      auto waiting = std::move(st.on_drained);
      st.on_drained.clear();
      for (auto& f : waiting)
        f();
    }
  };
  ask<block_id>(
    self, st.journal,
    [self, then, settle](block_id durable) {
      advance_durable(self, durable);
      if (then)
        then({});
      settle();
    },
    [self, then, settle](caf::error& err) {
      auto refusal = fault(self, err);
      if (then)
        then(refusal);
      settle();
    },
    atom::append::value, record);
}

/// Ends an answered apply, or holds the next call back (backpressure) while
/// max_pending blocks wait for the journal or persistence is backlogged.
void finish_when_capacity(self_ptr self) {
  auto& st = self->state;
  // Answered: a restart from here on has nothing to tell this caller.
  st.on_restart = nullptr;
  if (st.in_flight >= st.mode.max_pending || persistence_backlogged(st))
    st.on_capacity = [self] { finish(self); };
  else
    finish(self);
}

/// Counts a block, journals it and answers the caller per durability mode:
/// synchronous modes reply after the journal append (and its fsync by
/// policy); async modes reply at once, holding the next call back while
/// max_pending blocks wait for the journal.
void commit(self_ptr self, block_record_ptr record,
            clock_type::time_point start,
            std::function<void(const caf::error&)> respond) {
  auto& st = self->state;
  auto& c = st.shared->counters();
  c.blocks_applied.fetch_add(1, std::memory_order_relaxed);
  std::uint64_t deletes = 0;
  for (auto change : record->changes)
    deletes += change.after.empty() ? 1 : 0;
  c.operations_applied.fetch_add(record->changes.size(),
                                 std::memory_order_relaxed);
  c.deletes.fetch_add(deletes, std::memory_order_relaxed);
  c.sets.fetch_add(record->changes.size() - deletes, std::memory_order_relaxed);
  if (st.mode.is_synchronous()) {
    append(self, std::move(record),
           [self, start, respond](const caf::error& err) {
             self->state.shared->counters().apply_latency.record(
               elapsed_ns(start));
             respond(err);
             finish_when_capacity(self);
           });
    return;
  }
  append(self, std::move(record), nullptr);
  c.apply_latency.record(elapsed_ns(start));
  respond({});
  finish_when_capacity(self);
}

/// Runs a mutating call in order: refuses at once while fatal or closed,
/// else queues `call(promise)`, which must end with finish().
template <class T, class Call>
caf::result<T> queued(self_ptr self, Call call) {
  if (auto err = self->state.shared->refusal())
    return err;
  auto promise = self->make_response_promise<T>();
  enqueue(self, [self, call = std::move(call), promise]() mutable {
    if (auto err = self->state.shared->refusal()) {
      promise.deliver(err);
      return finish(self);
    }
    call(std::move(promise));
  });
  return promise;
}

/// Commits a planned block and answers `answer` once commit() succeeds, or
/// its error. Should a child crash from here on, the restart answers
/// `answer` when the reopened store holds the block and interrupted()
/// otherwise (the block may have reached the journal before the crash).
template <class T>
void commit_and_answer(self_ptr self, block_record_ptr record,
                       clock_type::time_point start,
                       caf::typed_response_promise<T> promise, T answer) {
  self->state.on_restart =
    [promise, answer, height = record->height](
      const caf::expected<store_heights>& reopened) mutable {
      if (!reopened)
        promise.deliver(reopened.error());
      else if (reopened->applied >= height)
        promise.deliver(answer);
      else
        promise.deliver(interrupted());
    };
  commit(self, std::move(record), start,
         [promise, answer](const caf::error& err) mutable {
           if (err)
             promise.deliver(err);
           else
             promise.deliver(answer);
         });
}

/// Applies a block (a queued call): the mutation actor checks and installs
/// it, then commit() journals it. `reply` makes the answer from the record.
template <class T, class Reply>
void apply_block(self_ptr self, block_id height, operation_list ops,
                 caf::typed_response_promise<T> promise, Reply reply) {
  auto& st = self->state;
  if (st.staged) {
    promise.deliver(client_error(
      self, make_error(ec::block_in_progress,
                       "cannot apply block " + std::to_string(height)
                         + " while a block is staged")));
    return finish(self);
  }
  auto start = clock_type::now();
  st.on_restart = [promise](const caf::expected<store_heights>& reopened) mutable {
    promise.deliver(reopened ? interrupted() : reopened.error());
  };
  ask<block_record_ptr>(
    self, st.mutation,
    [self, start, promise, reply](block_record_ptr& record) mutable {
      T answer = reply(*record);
      commit_and_answer(self, std::move(record), start, promise,
                        std::move(answer));
    },
    [self, promise](caf::error& err) mutable {
      promise.deliver(client_error(self, err));
      finish(self);
    },
    atom::apply::value, height, std::move(ops));
}

/// Forwards a staged-block call to the mutation actor (a queued call) and
/// answers with `reply` applied to its result of type R.
template <class R, class T, class Reply, class... Ts>
void stage(self_ptr self, caf::typed_response_promise<T> promise, Reply reply,
           Ts&&... xs) {
  self->state.on_restart =
    [promise](const caf::expected<store_heights>& reopened) mutable {
      promise.deliver(reopened ? interrupted() : reopened.error());
    };
  ask<R>(
    self, self->state.mutation,
    [self, promise, reply](R& result) mutable {
      promise.deliver(reply(result));
      finish(self);
    },
    [self, promise](caf::error& err) mutable {
      promise.deliver(client_error(self, err));
      finish(self);
    },
    std::forward<Ts>(xs)...);
}

/// Writes the held blocks through `through` as one checkpoint, then prunes
/// the journal below checkpoint - rollback window.
void checkpoint(self_ptr self, block_id through) {
  auto& st = self->state;
  st.checkpointing = true;
  st.checkpoint_through = through;
  st.last_checkpoint = clock_type::now();
  auto done = [self] {
    auto& st = self->state;
    st.checkpointing = false;
    st.checkpoint_through.reset();
    auto waiting = std::move(st.on_checkpointed);
    st.on_checkpointed.clear();
    for (auto& f : waiting)
      f();
    resume_when_capacity(self);
    checkpoint_when_due(self);
  };
  auto failed = [self, done](caf::error& err) {
    enter_fatal(self, err);
    done();
  };
  ask<block_id>(
    self, st.persistence,
    [self, done, failed](block_id current) {
      auto& st = self->state;
      checkpointed(self, current);
      st.shared->counters().checkpoints.fetch_add(1);
      if (st.barrier || current < st.rollback_window) {
        done();
        return;
      }
      auto keep_from = current - st.rollback_window;
      ask<block_id>(
        self, st.journal,
        [self, keep_from, done, failed](block_id through) {
          auto& st = self->state;
          if (through >= keep_from || st.barrier) {
            done();
            return;
          }
          // Reverts below `through` are refused from now on, before the
          // files go.
          st.pruned_through = through;
          ask<atom::ok>(
            self, st.persistence,
            [self, through, done, failed](atom::ok) {
              ask<atom::ok>(
                self, self->state.journal, [done](atom::ok) { done(); },
                failed, atom::drop::value, through);
            },
            failed, atom::prune::value, through);
        },
        failed, atom::prune::value, keep_from);
    },
    failed, atom::flush::value, through);
}

/// Makes everything applied durable (fsynced in the journal and handed to
/// persistence), then calls `then` with the durable height or the error.
void sync_all(self_ptr self,
              std::function<void(caf::expected<block_id>)> then) {
  when_drained(self, [self, then] {
    ask<block_id>(
      self, self->state.journal,
      [self, then](block_id durable) {
        advance_durable(self, durable);
        then(durable);
      },
      [self, then](caf::error& err) { then(fault(self, err)); },
      atom::sync::value);
  });
}

/// Makes everything applied durable and checkpointed (no lag), then calls
/// `then` with the durable height or the error.
void flush_all(self_ptr self,
               std::function<void(caf::expected<block_id>)> then) {
  sync_all(self, [self, then](caf::expected<block_id> durable) {
    if (!durable)
      return then(durable);
    ask<block_id>(
      self, self->state.persistence,
      [self, then, durable](block_id current) {
        checkpointed(self, current);
        then(durable);
      },
      [self, then](caf::error& err) { then(fault(self, err)); },
      atom::flush::value, *durable);
  });
}

// -- revert ------------------------------------------------------------------

/// Counts a revert that took effect, once, when its call is answered with
/// its target (see store_counters::reverts).
void count_revert(self_ptr self, std::size_t blocks,
                  clock_type::time_point start) {
  auto& c = self->state.shared->counters();
  c.reverts.fetch_add(1);
  c.blocks_reverted.fetch_add(blocks);
  c.revert_latency.record(elapsed_ns(start));
}

/// The revert barrier, step by step. Every step runs after the previous one
/// succeeded; the first failure makes the store fatal.
struct revert_call {
  self_ptr self;
  block_id target;
  clock_type::time_point start;
  caf::typed_response_promise<block_id> promise;
  /// Whether LevelDB may hold the revert marker (not within the lag).
  bool marker = true;

  void fail(const caf::error& err) {
    auto refusal = fault(self, err);
    self->state.barrier = false;
    promise.deliver(refusal);
    finish(self);
  }

  /// 1. Everything applied becomes durable.
  void run() {
    auto call = *this;
    sync_all(self, [call](caf::expected<block_id> durable) mutable {
      if (!durable)
        return call.fail(durable.error());
      if (call.within_lag())
        return call.forget_held();
      call.read_undo();
    });
  }

  /// Returns whether the target is a held block at or above the checkpoint
  /// in progress, so that LevelDB keeps its state (without a memory budget,
  /// whose reverted keys are read from LevelDB).
  bool within_lag() const {
    auto& st = self->state;
    return !st.options.memory_budget
           && (!st.checkpoint_through || target >= *st.checkpoint_through)
           && std::any_of(st.held.begin(), st.held.end(),
                          [this](auto& block) {
                            return block.height() == target;
                          });
  }

  /// 2-3 within the lag: the held records above the target are the undo
  /// (everything applied is durable, so held); persistence is told to
  /// forget them, without waiting behind its checkpoint in progress.
  void forget_held() {
    auto& st = self->state;
    auto newest_first = release_held_above(st, target);
    st.revert_blocks = newest_first.size();
    self->send(st.persistence, atom::drop::value, target);
    marker = false;
    truncate_journal(std::move(newest_first));
  }

  /// 2. Read the records of the blocks above the target.
  void read_undo() {
    auto call = *this;
    ask<block_record_list>(
      self, self->state.journal,
      [call](block_record_list& newest_first) mutable {
        call.self->state.revert_blocks = newest_first.size();
        call.write_state(std::move(newest_first));
      },
      [call](caf::error& err) mutable { call.fail(err); }, atom::read::value,
      target);
  }

  /// 3. Persistence forgets the blocks above the target. When LevelDB
  ///    holds a state above the target (a revert beyond the checkpoint
  ///    lag), or the target is no block the journal holds, LevelDB gets the
  ///    state at the target with the revert marker, in one WriteBatch.
  void write_state(block_record_list newest_first) {
    auto call = *this;
    ask<bool>(
      self, self->state.persistence,
      [call, newest_first](bool wrote) mutable {
        auto& st = call.self->state;
        if (wrote) {
          release_all_held(st);
          st.shared->set_current(call.target);
        }
        release_held_above(st, call.target);
        call.truncate_journal(std::move(newest_first));
      },
      [call](caf::error& err) mutable { call.fail(err); },
      atom::revert::value, newest_first, target);
  }

  /// 4. The journal loses the entries above the target, durably.
  void truncate_journal(block_record_list newest_first) {
    auto call = *this;
    ask<atom::ok>(
      self, self->state.journal,
      [call, newest_first](atom::ok) mutable {
        // Within the lag no marker was written: memory follows at once,
        // without waiting behind persistence's checkpoint in progress.
        if (call.marker)
          call.clear_marker(std::move(newest_first));
        else
          call.revert_memory(std::move(newest_first));
      },
      [call](caf::error& err) mutable { call.fail(err); },
      atom::truncate::value, target);
  }

  /// 5. The marker goes: a crash from here on reopens at the target.
  void clear_marker(block_record_list newest_first) {
    auto call = *this;
    ask<atom::ok>(
      self, self->state.persistence,
      [call, newest_first](atom::ok) mutable {
        call.revert_memory(std::move(newest_first));
      },
      [call](caf::error& err) mutable { call.fail(err); },
      atom::clear::value);
  }

  /// 6. Memory follows; readers see the target state from now on.
  void revert_memory(block_record_list newest_first) {
    auto call = *this;
    auto blocks = newest_first.size();
    ask<atom::ok>(
      self, self->state.mutation,
        [call, blocks](atom::ok) mutable {
          auto& st = call.self->state;
          st.shared->set_durable(call.target);
          count_revert(call.self, blocks, call.start);
          st.barrier = false;
          call.promise.deliver(call.target);
          finish(call.self);
        },
        [call](caf::error& err) mutable { call.fail(err); },
      atom::revert::value, std::move(newest_first), target);
  }
};

void start_revert(self_ptr self, block_id target,
                  caf::typed_response_promise<block_id> promise) {
  auto& st = self->state;
  auto respond_error = [&](caf::error err) {
    promise.deliver(client_error(self, std::move(err)));
    finish(self);
  };
  if (auto err = st.shared->refusal()) {
    promise.deliver(err);
    finish(self);
    return;
  }
  if (st.staged)
    return respond_error(make_error(ec::block_in_progress,
                                    "cannot revert while a block is staged"));
  auto applied = st.shared->memory()->applied();
  if (target > applied)
    return respond_error(
      make_error(ec::rollback_target_ahead,
                 "cannot revert to block " + std::to_string(target)
                   + ": it is above the applied height "
                   + std::to_string(applied)));
  if (target == applied) {
    promise.deliver(target);
    finish(self);
    return;
  }
  if (st.pruned_through && target < *st.pruned_through)
    return respond_error(make_error(
      ec::rollback_beyond_history,
      "cannot revert to block " + std::to_string(target)
        + ": the journal was pruned through block "
        + std::to_string(*st.pruned_through)
        + ", so the oldest reachable height is "
        + std::to_string(*st.pruned_through)));
  st.barrier = true;
  st.revert_blocks.reset();
  auto start = clock_type::now();
  st.on_restart = [self, promise, target, start](
                    const caf::expected<store_heights>& reopened) mutable {
    if (!reopened) {
      promise.deliver(reopened.error());
    } else if (reopened->applied == target) {
      // Everything was durable before the revert read its blocks: a store
      // reopened at the target means the revert took effect (recovery
      // completed it from its marker, or it was done on disk before the
      // crash). Counted here, once: the call ends without reaching step 6.
      if (auto blocks = self->state.revert_blocks)
        count_revert(self, *blocks, start);
      promise.deliver(target);
    } else {
      promise.deliver(interrupted());
    }
  };
  revert_call{self, target, start, std::move(promise)}.run();
}

// -- policy ------------------------------------------------------------------

void switch_policy(self_ptr self, durability_mode mode,
                   caf::typed_response_promise<durability_mode> promise) {
  if (auto err = self->state.shared->refusal()) {
    promise.deliver(err);
    finish(self);
    return;
  }
  auto failed = [self, promise](caf::error& err) mutable {
    promise.deliver(fault(self, err));
    finish(self);
  };
  retry_after_restart(self, [self, mode, promise] {
    switch_policy(self, mode, promise);
  });
  flush_all(self, [self, mode, promise,
                   failed](caf::expected<block_id> durable) mutable {
    if (!durable) {
      promise.deliver(durable.error());
      finish(self);
      return;
    }
    ask<block_id>(
      self, self->state.journal,
      [self, mode, promise, failed](block_id) mutable {
        ask<atom::ok>(
          self, self->state.persistence,
          [self, mode, promise](atom::ok) mutable {
            auto& st = self->state;
            st.mode = mode;
            st.shared->set_durability(mode);
            logger().info("durability mode is now {}", to_string(mode));
            promise.deliver(mode);
            finish(self);
          },
          failed, atom::config::value, mode);
      },
      failed, atom::relaxed::value, mode.sync_every);
  });
}

// -- supervision -------------------------------------------------------------

/// Answers the shutdown once every child is down (the children closed the
/// journal and LevelDB): releases the directory before the caller learns
/// that the store is closed.
void close_when_children_down(self_ptr self) {
  auto& st = self->state;
  if (!st.shutdown_promise || st.children_alive > 0)
    return;
  st.lock.reset();
  st.shutdown_promise->deliver(atom::ok::value);
  st.shutdown_promise.reset();
  self->quit();
}

/// Spawns mutation, journal and persistence on a recovered data directory.
void spawn_engine(self_ptr self, storage::recovered_store& recovered) {
  auto& st = self->state;
  st.mutation = self->spawn<caf::monitored>(mutation, st.shared);
  st.journal = self->spawn<caf::detached + caf::monitored>(
    journal, std::make_shared<std::unique_ptr<storage::journal>>(
               std::move(recovered.blocks)),
    st.mode.sync_every, recovered.heights.durable, st.shared);
  st.persistence = self->spawn<caf::detached + caf::monitored>(
    persistence,
    std::make_shared<std::unique_ptr<storage::state_store>>(
      std::move(recovered.state)),
    recovered.meta, st.shared);
  // The blocks recovery replayed: durable, held for a checkpoint as if
  // they had just become durable.
  for (auto& record : recovered.replayed)
    hold(self, std::move(record));
  recovered.replayed.clear();
  checkpoint_when_due(self);
  st.spawned->push_back(st.mutation.address());
  st.spawned->push_back(st.journal.address());
  st.spawned->push_back(st.persistence.address());
  st.children_alive += 3;
  if (auto& hook = st.options.spawn_hook) {
    hook("mutation", st.mutation.address());
    hook("journal", st.journal.address());
    hook("persistence", st.persistence.address());
  }
}

void spawn_health(self_ptr self) {
  auto& st = self->state;
  st.health = self->spawn<caf::monitored>(health, st.shared,
                                          st.options.restart_window);
  st.spawned->push_back(st.health.address());
  ++st.children_alive;
  if (auto& hook = st.options.spawn_hook)
    hook("health", st.health.address());
}

/// Answers the call that a crash interrupted with the reopened heights or
/// the fatal error (see the table at the top), then runs the queue.
void settle_interrupted(self_ptr self,
                        const caf::expected<store_heights>& reopened) {
  auto& st = self->state;
  st.on_capacity = nullptr;
  if (!st.busy)
    return run_queue(self);
  auto answer = std::move(st.on_restart);
  st.on_restart = nullptr;
  if (answer)
    answer(reopened);
  finish(self);
}

/// Takes over a data directory reopened after a crash: fresh memory, fresh
/// children, a clean write pipeline.
void adopt(self_ptr self, storage::recovered_store& recovered) {
  auto& st = self->state;
  // The same lock, held throughout.
  st.lock = std::move(recovered.lock);
  if (recovered.completed_revert)
    logger().warn("the reopen completed the interrupted revert to block {}",
                  *recovered.completed_revert);
  st.shared->set_memory(recovered.memory);
  st.shared->set_durable(recovered.heights.durable);
  st.shared->set_current(recovered.heights.current);
  st.mode = recovered.meta.durability;
  st.shared->set_durability(st.mode);
  st.rollback_window = recovered.meta.min_rollback_window;
  st.pruned_through = recovered.meta.pruned_through;
  st.appended.clear();
  st.in_flight = 0;
  st.on_drained.clear();
  release_all_held(st);
  st.last_checkpoint = clock_type::now();
  st.checkpointing = false;
  st.checkpoint_through.reset();
  st.on_checkpointed.clear();
  st.barrier = false;
  st.staged = false;
  spawn_engine(self, recovered);
  st.restarting = false;
  st.shared->set_restart(false, "restarted the " + st.restart_cause);
  logger().warn("restarted the store actors at block {}: the {}",
                recovered.heights.applied, st.restart_cause);
  settle_interrupted(self, recovered.heights);
}

/// Returns the name of the child at `source`, or nullptr for a stranger.
const char* child_name(self_ptr self, const caf::actor_addr& source) {
  auto& st = self->state;
  if (source == st.mutation.address())
    return "mutation";
  if (source == st.journal.address())
    return "journal";
  if (source == st.persistence.address())
    return "persistence";
  if (source == st.health.address())
    return "health";
  return nullptr;
}

/// Counts a restart in the counter of the child `counted_as` and returns
/// the fatal error naming `name` (the actor that crashed) and `why` when it
/// exceeds the restart limit.
caf::error count_restart(self_ptr self, const std::string& counted_as,
                         const std::string& name, const std::string& why) {
  auto& st = self->state;
  auto& c = st.shared->counters();
  auto& counter = counted_as == "mutation"      ? c.mutation_restarts
                  : counted_as == "journal"     ? c.journal_restarts
                  : counted_as == "persistence" ? c.persistence_restarts
                                                : c.health_restarts;
  counter.fetch_add(1);
  auto now = clock_type::now();
  while (!st.restart_times.empty()
         && now - st.restart_times.front() >= st.options.restart_window)
    st.restart_times.pop_front();
  if (st.restart_times.size() >= st.options.max_restarts)
    return make_error(
      ec::restart_limit_exceeded,
      "the " + name + " actor crashed (" + why + ") after "
        + std::to_string(st.restart_times.size())
        + " restarts within the last "
        + std::to_string(st.options.restart_window.count())
        + " s; the limit is " + std::to_string(st.options.max_restarts));
  st.restart_times.push_back(now);
  return {};
}

/// Ends a restart in the fatal state: the interrupted call gets the fatal
/// error (retried calls get it when they run), like every later call.
void restart_failed(self_ptr self, const caf::error& err) {
  auto& st = self->state;
  st.restarting = false;
  enter_fatal(self, err);
  settle_interrupted(self, st.shared->refusal());
}

/// Reopens the data directory once every engine child is down, under the
/// lock the store keeps (it is never released during a restart). A crash of
/// the reopen actor counts as another restart of the child whose crash
/// began this one and is retried with a fresh reopen actor, up to the
/// restart limit; a recovery error (rollblock category) is fatal.
void reopen_store(self_ptr self) {
  auto& st = self->state;
  auto opener = self->spawn<caf::detached>(reopen, st.options, st.lock);
  self->request(opener, caf::infinite, atom::open::value)
    .then(
      // The directory is back: adopt it, unless the store turned fatal in
      // the meantime (then the recovered store is closed, the lock kept).
      [self](std::shared_ptr<storage::recovered_store>& recovered) {
        auto& st = self->state;
        if (auto err = st.shared->refusal()) {
          st.restarting = false;
          settle_interrupted(self, err);
          return;
        }
        adopt(self, *recovered);
      },
      // Recovery failed (fatal) or the reopen actor crashed (retried).
      [self](caf::error& err) {
        auto& st = self->state;
        if (st.shared->refusal()) {
          st.restarting = false;
          settle_interrupted(self, st.shared->refusal());
          return;
        }
        if (!child_died(err))
          return restart_failed(self, err);
        auto why = caf::to_string(err);
        logger().error("the reopen actor terminated ({}) while restarting "
                       "the {}; reopening again",
                       why, st.restart_cause);
        if (auto limit = count_restart(self, st.restart_actor, "reopen", why))
          return restart_failed(self, limit);
        reopen_store(self);
      });
}

/// A child went down while the store serves: restarts it, or turns the
/// store fatal on a rollblock reason or past the restart limit (see the top).
void on_child_down(self_ptr self, const caf::down_msg& msg) {
  auto& st = self->state;
  auto stopped = std::find(st.stopping.begin(), st.stopping.end(), msg.source);
  if (stopped != st.stopping.end()) {
    // One of the children this restart stopped.
    st.stopping.erase(stopped);
    --st.children_alive;
    if (st.stopping.empty())
      reopen_store(self);
    return;
  }
  auto name = child_name(self, msg.source);
  if (name == nullptr)
    return;
  --st.children_alive;
  if (st.shared->refusal())
    return;
  auto why = caf::to_string(msg.reason);
  if (msg.reason.category() == error_category) {
    // A store failure, not a crash: fatal. The running call may wait on the
    // dead child; it gets the fatal error now, and late replies are stale.
    logger().error("the {} actor terminated with a store error ({})", name,
                   describe(msg.reason));
    ++st.generation;
    enter_fatal(self, msg.reason);
    settle_interrupted(self, st.shared->refusal());
    return;
  }
  logger().error("the {} actor terminated ({}); restarting it", name, why);
  if (auto err = count_restart(self, name, name, why)) {
    ++st.generation;
    enter_fatal(self, err);
    settle_interrupted(self, err);
    return;
  }
  if (std::string_view{name} == "health") {
    spawn_health(self);
    st.shared->set_restart(false, "restarted the health actor after it "
                                  "terminated: " + why);
    return;
  }
  // Replies of the old children are stale from here on.
  ++st.generation;
  st.restarting = true;
  st.restart_actor = name;
  st.restart_cause = std::string{name} + " actor after it terminated: " + why;
  st.shared->set_restart(true, "restarting the " + st.restart_cause);
  auto stop = [&](const caf::actor_addr& child) {
    if (child == msg.source)
      return;
    st.stopping.push_back(child);
    caf::anon_send_exit(child, caf::exit_reason::user_shutdown);
  };
  stop(st.mutation.address());
  stop(st.journal.address());
  stop(st.persistence.address());
}

// -- flush and shutdown ------------------------------------------------------

/// Runs `f` once no checkpoint is in progress.
void when_checkpointed(self_ptr self, std::function<void()> f) {
  if (self->state.checkpointing)
    self->state.on_checkpointed.push_back(std::move(f));
  else
    f();
}

void flush_call(self_ptr self, caf::typed_response_promise<block_id> promise) {
  if (auto err = self->state.shared->refusal()) {
    promise.deliver(err);
    return finish(self);
  }
  retry_after_restart(self, [self, promise] { flush_call(self, promise); });
  sync_all(self, [self, promise](caf::expected<block_id> durable) mutable {
    if (!durable) {
      promise.deliver(durable.error());
      return finish(self);
    }
    // A checkpoint in progress ends first, so that its failure is this
    // flush's error.
    when_checkpointed(self, [self, promise, durable]() mutable {
      if (auto err = self->state.shared->refusal())
        promise.deliver(err);
      else
        promise.deliver(*durable);
      finish(self);
    });
  });
}

void close_store(self_ptr self, caf::typed_response_promise<atom::ok> promise) {
  auto& st = self->state;
  if (st.staged) {
    promise.deliver(client_error(
      self, make_error(ec::block_in_progress,
                       "cannot close while a block is staged")));
    return finish(self);
  }
  auto close = [self, promise](caf::error err) mutable {
    auto& st = self->state;
    if (err)
      logger().error("closing after a failure: {}", describe(err));
    st.shared->set_closed();
    st.shutdown_promise = promise;
    self->send_exit(st.mutation, caf::exit_reason::user_shutdown);
    self->send_exit(st.journal, caf::exit_reason::user_shutdown);
    self->send_exit(st.persistence, caf::exit_reason::user_shutdown);
    self->send_exit(st.health, caf::exit_reason::user_shutdown);
    // Calls queued behind the shutdown get store_closed when they run.
    finish(self);
    close_when_children_down(self);
  };
  if (st.shared->refusal())
    return close({});
  retry_after_restart(self, [self, promise] { close_store(self, promise); });
  flush_all(self, [close](caf::expected<block_id> durable) mutable {
    close(durable ? caf::error{} : durable.error());
  });
}

} // namespace

store_actor::behavior_type
supervisor(store_actor::stateful_pointer<supervisor_state> self,
           std::shared_ptr<storage::recovered_store> recovered,
           std::shared_ptr<store_shared> shared, store_options options) {
  auto& st = self->state;
  st.shared = shared;
  st.options = options;
  st.mode = recovered->meta.durability;
  st.rollback_window = recovered->meta.min_rollback_window;
  st.pruned_through = recovered->meta.pruned_through;
  st.checkpoint_lag = options.checkpoint_lag_blocks.value_or(
    options.memory_budget ? 0 : 100);
  st.lock = std::move(recovered->lock);
  st.last_checkpoint = clock_type::now();
  auto heights = recovered->heights;
  shared->set_fault_hook(options.fault_hook);
  st.spawned = std::make_shared<std::vector<caf::actor_addr>>();
  spawn_engine(self, *recovered);
  spawn_health(self);
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    if (st.shutdown_promise) {
      --st.children_alive;
      close_when_children_down(self);
      return;
    }
    on_child_down(self, msg);
  });
  // Children die with the supervisor, whatever ends it. (The state is gone
  // when attached functors run: capture the list, which restarts extend.)
  self->attach_functor([spawned = st.spawned] {
    for (auto& child : *spawned)
      caf::anon_send_exit(child, caf::exit_reason::user_shutdown);
  });
  logger().debug("store serving at block {}", heights.applied);
  return {
    [self](atom::apply, block_id height,
           operation_list& ops) -> caf::result<block_id> {
      return queued<block_id>(
        self, [self, height, ops = std::move(ops)](auto promise) mutable {
          apply_block(self, height, std::move(ops), std::move(promise),
                      [](const block_record& record) { return record.height; });
        });
    },
    [self](atom::revert, block_id target) -> caf::result<block_id> {
      return queued<block_id>(self, [self, target](auto promise) {
        start_revert(self, target, std::move(promise));
      });
    },
    [self](atom::fetch, const key& k) -> caf::result<value> {
      auto result = store_reader{self->state.shared}.fetch(k);
      if (!result)
        return result.error();
      return std::move(*result);
    },
    [self](atom::fetch,
           const std::vector<key>& keys) -> caf::result<std::vector<value>> {
      auto result = store_reader{self->state.shared}.fetch_many(keys);
      if (!result)
        return result.error();
      return std::move(*result);
    },
    [self](atom::pop, block_id height, key& k) -> caf::result<value> {
      return queued<value>(
        self, [self, height, k = std::move(k)](auto promise) mutable {
          operation_list ops{operation{std::move(k), {}}};
          apply_block(self, height, std::move(ops), std::move(promise),
                      [](const block_record& record) {
                        return value{record.changes.front().before};
                      });
        });
    },
    [self](atom::start, block_id height) -> caf::result<atom::ok> {
      return queued<atom::ok>(self, [self, height](auto promise) {
        if (self->state.staged) {
          promise.deliver(client_error(
            self, make_error(ec::block_in_progress,
                             "cannot start block " + std::to_string(height)
                               + ": a block is staged already")));
          return finish(self);
        }
        stage<atom::ok>(self, std::move(promise), [self](atom::ok) {
          self->state.staged = true;
          return atom::ok::value;
        }, atom::start::value, height);
      });
    },
    [self](atom::set, key& k, value& v) -> caf::result<atom::ok> {
      return queued<atom::ok>(
        self, [self, k = std::move(k), v = std::move(v)](auto promise) mutable {
          stage<atom::ok>(self, std::move(promise),
                          [](atom::ok) { return atom::ok::value; },
                atom::set::value, std::move(k), std::move(v));
        });
    },
    [self](atom::pop, key& k) -> caf::result<value> {
      return queued<value>(self, [self, k = std::move(k)](auto promise) mutable {
        stage<value>(self, std::move(promise),
                     [](value& before) { return before; },
              atom::pop::value, std::move(k));
      });
    },
    [self](atom::end) -> caf::result<block_id> {
      return queued<block_id>(self, [self](auto promise) mutable {
        auto start = clock_type::now();
        self->state.on_restart =
          [promise](const caf::expected<store_heights>& reopened) mutable {
            promise.deliver(reopened ? interrupted() : reopened.error());
          };
        ask<block_record_ptr>(
          self, self->state.mutation,
          [self, start, promise](block_record_ptr& record) mutable {
            self->state.staged = false;
            auto height = record->height;
            commit_and_answer(self, std::move(record), start, promise,
                              height);
          },
          [self, promise](caf::error& err) mutable {
            promise.deliver(client_error(self, err));
            finish(self);
          },
          atom::end::value);
      });
    },
    [self](atom::heights) -> caf::result<store_heights> {
      return self->state.shared->heights();
    },
    [self](atom::flush) -> caf::result<block_id> {
      return queued<block_id>(self, [self](auto promise) mutable {
        flush_call(self, std::move(promise));
      });
    },
    [self](atom::shutdown) -> caf::result<atom::ok> {
      auto promise = self->make_response_promise<atom::ok>();
      enqueue(self, [self, promise] { close_store(self, promise); });
      return promise;
    },
    [self](atom::healthy) -> caf::result<atom::ok> {
      if (auto err = self->state.shared->refusal())
        return err;
      return atom::ok::value;
    },
    [self](atom::relaxed, std::uint32_t n) -> caf::result<durability_mode> {
      if (n == 0)
        return client_error(self,
                            make_error(ec::invalid_argument,
                                       "relaxed mode needs a sync interval "
                                       "of at least 1 block"));
      return queued<durability_mode>(self, [self, n](auto promise) {
        switch_policy(self, self->state.mode.relaxed(n), std::move(promise));
      });
    },
    [self](atom::strict) -> caf::result<durability_mode> {
      return queued<durability_mode>(self, [self](auto promise) {
        switch_policy(self, self->state.mode.strict(), std::move(promise));
      });
    },
    [self](atom::metrics) -> caf::result<metrics_snapshot> {
      return self->delegate(self->state.health, atom::metrics::value);
    },
    [self](atom::health) -> caf::result<health_report> {
      return self->delegate(self->state.health, atom::health::value);
    },
  };
}

} // namespace rollblock
