#pragma once

#include "rollblock/actors/spawn_store.hpp"
#include "rollblock/messages/durability.hpp"
#include "rollblock/messages/metrics.hpp"
#include "rollblock/messages/operation.hpp"
#include "rollblock/messages/store_options.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace rollblock {

/// The store for code that is not an actor: every operation as a blocking
/// call returning an error value. Reads go straight to the in-memory state
/// (no actor round trip); writes and admin calls are requests to the
/// supervisor. Thread-safe: calls from several threads are serialized in
/// arrival order by the supervisor.
class blocking_store {
public:
  /// Opens a store in an actor system of its own.
  static caf::expected<std::unique_ptr<blocking_store>>
  open(const store_options& opts);

  /// Opens a store in the caller's actor system. REQUIRES: `sys` outlives
  /// the returned object.
  static caf::expected<std::unique_ptr<blocking_store>>
  open(caf::actor_system& sys, const store_options& opts);

  /// Closes the store if still open (errors are logged).
  ~blocking_store();
  blocking_store(const blocking_store&) = delete;
  blocking_store& operator=(const blocking_store&) = delete;

  /// Applies `ops` as block `height`.
  caf::error apply(block_id height, operation_list ops);

  /// Reverts to the state at `target`; durable when it returns.
  caf::error revert_to(block_id target);

  /// Reads one key; empty when absent.
  caf::expected<value> fetch(const key& k) const;

  /// Reads many keys at one height, in order.
  caf::expected<std::vector<value>> fetch_many(const std::vector<key>& keys) const;

  /// Commits block `height` deleting `k`; returns the value it had.
  caf::expected<value> pop(block_id height, const key& k);

  /// Starts staging block `height`.
  caf::error start_block(block_id height);
  /// Stages a write (an empty value deletes).
  caf::error set(const key& k, const value& v);
  /// Stages a delete; returns the value the key had (staged writes included).
  caf::expected<value> pop(const key& k);
  /// Commits the staged block; returns its height.
  caf::expected<block_id> end_block();

  /// The applied, durable and current heights.
  store_heights heights() const;
  block_id applied_height() const;
  block_id durable_height() const;
  block_id current_height() const;

  /// Makes everything applied durable and checkpointed; returns the durable
  /// height.
  caf::expected<block_id> flush();

  /// Flushes, writes a final checkpoint and releases the data directory.
  /// Later calls fail with ec::store_closed.
  caf::error close();

  /// Fails with the fatal error if the store is fatal.
  caf::error ensure_healthy();

  /// Switches to relaxed syncing every `n` blocks (flushes first).
  caf::expected<durability_mode> set_relaxed(std::uint32_t n);
  /// Switches to a sync per block (flushes first).
  caf::expected<durability_mode> set_strict();

  caf::expected<metrics_snapshot> metrics();
  caf::expected<health_report> health();

  /// The store's key width in bytes.
  std::size_t key_width() const;

  /// The typed actor, for use from actors.
  const store_actor& actor() const {
    return handle_.actor;
  }

  /// The actor system the store runs in (its own or the caller's), for
  /// clients that talk to actor() directly, e.g. a scoped_actor keeping
  /// several requests in flight.
  caf::actor_system& system() const {
    return sys_;
  }

private:
  blocking_store(std::shared_ptr<void> own, caf::actor_system& sys,
                 store_handle handle);

  /// Sends a request and waits for its reply.
  template <class Result, class... Ts>
  caf::expected<Result> call(Ts&&... xs);

  /// The actor system this object created, if any (declared first: it goes
  /// last, after the scoped actor).
  std::shared_ptr<void> own_system_;
  caf::actor_system& sys_;
  store_handle handle_;
  std::mutex call_mu_; // guards self_: a scoped actor serves one thread
  caf::scoped_actor self_;
  std::atomic<bool> closed_{false};
};

} // namespace rollblock
