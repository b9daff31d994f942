#pragma once

// The small interface the workload driver runs every engine through: the
// rollblock store and the two baselines (LMDB as the original benchmarked it,
// and the naive LevelDB design with undo records beside the state).

#include "rollblock/messages/durability.hpp"
#include "rollblock/messages/operation.hpp"
#include "rollblock/messages/store_options.hpp"
#include "rollblock/messages/types.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace rollblock::bench {

/// Thrown by an engine on any failure; the driver prints it and exits 1.
struct engine_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class engine {
public:
  virtual ~engine() = default;

  /// Applies `ops` as block `height` (an empty value deletes).
  virtual void apply(block_id height, operation_list ops) = 0;

  /// Makes everything applied durable (end of the timed run).
  virtual void flush() = 0;

  /// Whether revert_to works (LMDB keeps no undo).
  virtual bool can_revert() const = 0;

  /// Returns to the state at `target`.
  virtual void revert_to(block_id target) = 0;

  /// Closes the store (everything durable) without reopening it.
  virtual void close() = 0;

  /// Opens the closed store again (the recovery the driver times).
  virtual void reopen() = 0;

  /// Counts the live keys (may be slow; not timed).
  virtual std::uint64_t live_keys() = 0;

  /// Returns the bytes of the tables that hold the state in memory, where
  /// the engine has them (not timed).
  virtual std::optional<std::uint64_t> state_table_bytes() {
    return std::nullopt;
  }

  /// Reads one key; empty when absent (a sanity check, not timed).
  virtual value get(const key& k) = 0;
};

/// The store opened (and reopened) with `opts`. With `in_flight` > 1 an
/// actor client sends up to that many blocks' apply requests before it waits
/// for the oldest reply (it builds the next block while the store applies
/// the previous one); 1: the blocking facade, one block at a time.
std::unique_ptr<engine> make_rollblock_engine(store_options opts,
                                              std::size_t in_flight = 1);
std::unique_ptr<engine> make_lmdb_engine(const std::string& dir);
std::unique_ptr<engine> make_leveldb_engine(const std::string& dir,
                                            std::uint64_t undo_window);

} // namespace rollblock::bench
