#pragma once

#include "rollblock/messages/durability.hpp"
#include "rollblock/messages/metrics.hpp"
#include "rollblock/messages/store_options.hpp"
#include "rollblock/messages/types.hpp"
#include "rollblock/storage/memory_state.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rollblock {

/// What a running store shares between its actors and its readers: the
/// in-memory state, the counters, the heights the actors publish and the
/// fatal state. Everything here is safe to use from any thread.
class store_shared {
public:
  store_shared(std::shared_ptr<storage::memory_state> memory,
               durability_mode mode, store_heights heights);

  /// Returns the in-memory state. Hold the pointer for the duration of a
  /// read: a restart of the mutation actor replaces the state.
  std::shared_ptr<storage::memory_state> memory() const {
    return memory_.load(std::memory_order_acquire);
  }

  /// Replaces the in-memory state with one rebuilt from durable state.
  /// REQUIRES: no mutation actor uses the old one; the same key width.
  void set_memory(std::shared_ptr<storage::memory_state> memory);

  /// The store's key width (fixed at creation), without loading memory():
  /// every read checks its keys against it.
  std::size_t key_width() const {
    return key_width_;
  }

  store_counters& counters() {
    return counters_;
  }
  const store_counters& counters() const {
    return counters_;
  }

  /// Returns applied (from memory), durable and current: durable and
  /// current as the supervisor published them together (never a current
  /// above the durable it had then), applied read after them.
  store_heights heights() const;
  /// Publish durable or current. REQUIRES: one caller at a time (the
  /// supervisor).
  void set_durable(block_id height);
  void set_current(block_id height);

  durability_mode durability() const;
  void set_durability(durability_mode mode);

  /// Returns the error every call gets now: the fatal error, ec::store_closed
  /// after shutdown, or none while the store serves.
  caf::error refusal() const;

  /// Enters the fatal state with `err` (the first error sticks).
  void set_fatal(caf::error err);

  /// Marks the store closed.
  void set_closed();

  /// The options' fault hook (tests only): store actors call fault_point()
  /// at each named point; an exception thrown there crashes the actor.
  void set_fault_hook(std::function<void(std::string_view)> hook);
  void fault_point(std::string_view point) const;

  /// Records that a crashed store actor is being restarted (`in_progress`)
  /// or was restarted, and why.
  void set_restart(bool in_progress, std::string reason);

  /// Returns degraded (with why) while a restart runs and for `window`
  /// after the last one finished; nullopt otherwise.
  std::optional<std::string>
  restart_fault(std::chrono::steady_clock::duration window) const;

private:
  enum class status : int { serving, fatal, closed };

  std::atomic<std::shared_ptr<storage::memory_state>> memory_;
  const std::size_t key_width_;
  store_counters counters_;
  std::function<void(std::string_view)> fault_hook_; // set before spawning
  /// Sets one of durable_ and current_ inside a change of heights_seq_.
  void publish_height(std::atomic<block_id>& height, block_id value);

  std::atomic<block_id> durable_;
  std::atomic<block_id> current_;
  /// Counts changes of durable_ and current_, odd while one is changing
  /// (a sequence lock with one writer): heights() reads both again when it
  /// moved in between, since two loads with both heights raised between
  /// them would pair an old durable with a new current.
  std::atomic<std::uint64_t> heights_seq_{0};
  std::atomic<status> status_{status::serving};
  mutable std::mutex mu_; // guards the five below
  caf::error fatal_;
  durability_mode durability_;
  bool restarting_ = false;
  std::optional<std::chrono::steady_clock::time_point> last_restart_;
  std::string restart_reason_;
};

/// The exception handler of every store actor: logs the exception that
/// escaped one of `actor`'s handlers at error level and returns
/// caf::exit_reason::unhandled_exception, the exit reason on which the
/// supervisor restarts the actor.
caf::error crash_exit_reason(std::string_view actor, std::exception_ptr& eptr);

/// Reads a store from any thread without an actor round trip. Copyable;
/// all copies read the same store.
class store_reader {
public:
  explicit store_reader(std::shared_ptr<store_shared> shared);

  /// Returns the value of `k` (empty when absent). Errors:
  /// ec::key_width_mismatch, or the store's refusal (fatal or closed).
  caf::expected<value> fetch(const key& k) const;

  /// Returns the values of `keys` in order, all read at one height.
  caf::expected<std::vector<value>>
  fetch_many(const std::vector<key>& keys) const;

  /// Returns the applied, durable and current heights.
  store_heights heights() const;

  /// Returns the store's key width in bytes.
  std::size_t key_width() const;

  /// Returns ec::key_width_mismatch naming `k`'s width if it is wrong.
  caf::error check_key(const key& k) const;

private:
  std::shared_ptr<store_shared> shared_;
};

} // namespace rollblock
