#pragma once

#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace rollblock {

/// How the store makes applied blocks durable.
///
/// - synchronous: every apply returns after its journal entry is fsynced.
/// - synchronous_relaxed: every apply returns after its journal entry is
///   written; the journal is fsynced every `sync_every` blocks.
/// - async: apply returns once the block is applied in memory and queued for
///   the journal; at most `max_pending` blocks wait (backpressure), and each is
///   fsynced when written.
/// - async_relaxed: async, fsyncing every `sync_every` blocks.
struct durability_mode {
  enum class kind : std::uint8_t {
    synchronous,
    synchronous_relaxed,
    async,
    async_relaxed,
  };

  kind mode = kind::synchronous;
  std::uint32_t max_pending = 1024;
  std::uint32_t sync_every = 1;

  static durability_mode synchronous();
  static durability_mode synchronous_relaxed(std::uint32_t sync_every);
  static durability_mode async(std::uint32_t max_pending = 1024);
  static durability_mode async_relaxed(std::uint32_t max_pending = 1024,
                                       std::uint32_t sync_every = 100);

  /// Returns whether apply waits for the journal.
  bool is_synchronous() const;

  /// Returns whether fsyncs are batched over several blocks.
  bool is_relaxed() const;

  /// Returns this mode with relaxed syncing every `n` blocks (n >= 1), keeping
  /// the synchronous/async choice.
  durability_mode relaxed(std::uint32_t n) const;

  /// Returns this mode with a sync per block, keeping synchronous/async.
  durability_mode strict() const;

  friend bool operator==(const durability_mode&,
                         const durability_mode&) = default;
};

/// Renders a mode in the form `parse_durability` reads: "sync",
/// "sync-relaxed:N", "async:P", "async-relaxed:P:N".
std::string to_string(const durability_mode& x);

/// Parses the form of `to_string`. Returns ec::invalid_argument naming the
/// offending text for anything else (including zero counts).
caf::expected<durability_mode> parse_durability(std::string_view text);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, durability_mode& x) {
  return f(caf::meta::type_name("rollblock.durability_mode"), x.mode,
           x.max_pending, x.sync_every);
}

} // namespace rollblock
