#pragma once

#include "rollblock/actors/store_reader.hpp"
#include "rollblock/messages/actor_interfaces.hpp"
#include "rollblock/storage/journal.hpp"

#include <caf/error.hpp>

#include <cstdint>
#include <memory>

namespace rollblock {

/// The journal actor's state: the journal files and the fsync policy.
struct journal_state {
  static inline const char* name = "rollblock.journal";

  std::unique_ptr<storage::journal> blocks;
  /// Where the journal's size is published for metrics.
  std::shared_ptr<store_shared> shared;
  /// fsync after this many appended blocks.
  std::uint32_t sync_every = 1;
  /// Blocks appended since the last fsync.
  std::uint32_t unsynced = 0;
  /// The newest fsynced height.
  block_id durable = 0;
  /// The first I/O failure; every later call fails with it (after a failed
  /// fsync the kernel may have dropped the data: nothing is durable again).
  caf::error failure;

  /// fsyncs when anything is unsynced.
  caf::error sync();
};

/// Appends blocks to the journal and makes them durable by policy.
/// Runs detached: every handler does blocking file I/O.
journal_actor::behavior_type
journal(journal_actor::stateful_pointer<journal_state> self,
        std::shared_ptr<std::unique_ptr<storage::journal>> blocks,
        std::uint32_t sync_every, block_id durable,
        std::shared_ptr<store_shared> shared);

} // namespace rollblock
