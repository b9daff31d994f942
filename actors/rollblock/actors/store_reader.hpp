#pragma once

#include "rollblock/messages/durability.hpp"
#include "rollblock/messages/metrics.hpp"
#include "rollblock/messages/store_options.hpp"
#include "rollblock/messages/types.hpp"
#include "rollblock/storage/memory_state.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

namespace rollblock {

/// What a running store shares between its actors and its readers: the
/// in-memory state, the counters, the heights the actors publish and the
/// fatal state. Everything here is safe to use from any thread.
class store_shared {
public:
  store_shared(std::shared_ptr<storage::memory_state> memory,
               durability_mode mode, store_heights heights);

  storage::memory_state& memory() {
    return *memory_;
  }
  const storage::memory_state& memory() const {
    return *memory_;
  }

  store_counters& counters() {
    return counters_;
  }
  const store_counters& counters() const {
    return counters_;
  }

  /// Returns applied (from memory), durable and current.
  store_heights heights() const;
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

private:
  enum class status : int { serving, fatal, closed };

  std::shared_ptr<storage::memory_state> memory_;
  store_counters counters_;
  std::atomic<block_id> durable_;
  std::atomic<block_id> current_;
  std::atomic<status> status_{status::serving};
  mutable std::mutex mu_; // guards the two below
  caf::error fatal_;
  durability_mode durability_;
};

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
