#pragma once

#include "rollblock/messages/atoms.hpp"
#include "rollblock/messages/block_record.hpp"
#include "rollblock/messages/durability.hpp"
#include "rollblock/messages/metrics.hpp"
#include "rollblock/messages/operation.hpp"
#include "rollblock/messages/store_options.hpp"
#include "rollblock/messages/types.hpp"

#include <caf/replies_to.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rollblock::storage {
struct recovered_store;
} // namespace rollblock::storage

/// A data directory opened by storage::recover, handed between actors of
/// one process (never across a network).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<rollblock::storage::recovered_store>)

/// Every typed actor interface of rollblock, declared once. Each handler has
/// a one-line comment saying what it does.
namespace rollblock {

/// The status protocol: composed into every actor that reports figures.
using status_protocol = caf::typed_actor<
  // Returns a copy of the store's figures.
  caf::replies_to<atom::metrics>::with<metrics_snapshot>,
  // Returns the health state and, unless serving, why.
  caf::replies_to<atom::health>::with<health_report>>;

/// The store: the public interface of the supervisor. Writes, reverts,
/// flushes and policy switches are serialized here.
using store_actor = caf::typed_actor<
  // Applies a block of operations at a height; replies with the height.
  caf::replies_to<atom::apply, block_id, operation_list>::with<block_id>,
  // Reverts to the state at a height; replies with it once durable.
  caf::replies_to<atom::revert, block_id>::with<block_id>,
  // Reads one key (empty when absent).
  caf::replies_to<atom::fetch, key>::with<value>,
  // Reads many keys at one height, in order.
  caf::replies_to<atom::fetch, std::vector<key>>::with<std::vector<value>>,
  // Commits a block at a height deleting one key; replies the old value.
  caf::replies_to<atom::pop, block_id, key>::with<value>,
  // Starts staging a block at a height.
  caf::replies_to<atom::start, block_id>::with<atom::ok>,
  // Stages one write (empty value deletes) into the staged block.
  caf::replies_to<atom::set, key, value>::with<atom::ok>,
  // Stages a delete; replies with the value it had, staged writes included.
  caf::replies_to<atom::pop, key>::with<value>,
  // Commits the staged block; replies with its height.
  caf::replies_to<atom::end>::with<block_id>,
  // Returns the applied, durable and current heights.
  caf::replies_to<atom::heights>::with<store_heights>,
  // Makes everything applied durable and checkpointed; replies durable height.
  caf::replies_to<atom::flush>::with<block_id>,
  // Flushes, writes a final checkpoint and closes; later calls fail.
  caf::replies_to<atom::shutdown>::with<atom::ok>,
  // Fails with the fatal error if the store is in its fatal state.
  caf::replies_to<atom::healthy>::with<atom::ok>,
  // Switches to relaxed syncing every n blocks (flushes first).
  caf::replies_to<atom::relaxed, std::uint32_t>::with<durability_mode>,
  // Switches to a sync per block (flushes first).
  caf::replies_to<atom::strict>::with<durability_mode>>::
  extend_with<status_protocol>;

/// The mutation actor: owns the in-memory state's writer side and the
/// height rules.
using mutation_actor = caf::typed_actor<
  // Validates and installs a block; replies with its record (changes + undo).
  caf::replies_to<atom::apply, block_id, operation_list>::with<
    block_record_ptr>,
  // Undoes the given records (newest first) down to a target height.
  caf::replies_to<atom::revert, block_record_list, block_id>::with<atom::ok>,
  // Starts staging a block at a height (checks the height rule).
  caf::replies_to<atom::start, block_id>::with<atom::ok>,
  // Validates and stages one write.
  caf::replies_to<atom::set, key, value>::with<atom::ok>,
  // Stages a delete; replies with the value the key had.
  caf::replies_to<atom::pop, key>::with<value>,
  // Installs the staged block; replies with its record.
  caf::replies_to<atom::end>::with<block_record_ptr>>;

/// The journal actor (detached: blocking file I/O): owns the journal files
/// and the fsync policy.
using journal_actor = caf::typed_actor<
  // Appends a block's entry; replies with the durable height afterwards.
  caf::replies_to<atom::append, block_record_ptr>::with<block_id>,
  // fsyncs everything appended; replies with the durable height.
  caf::replies_to<atom::sync>::with<block_id>,
  // Sets the fsync policy to every n blocks; replies the durable height.
  caf::replies_to<atom::relaxed, std::uint32_t>::with<block_id>,
  // Reads the records of every block above a height, newest first.
  caf::replies_to<atom::read, block_id>::with<block_record_list>,
  // Removes every entry above a height, durably.
  caf::replies_to<atom::truncate, block_id>::with<atom::ok>,
  // Replies the newest height prunable while keeping a height, or the
  // keep height itself when nothing is prunable.
  caf::replies_to<atom::prune, block_id>::with<block_id>,
  // Deletes the whole segments through a height.
  caf::replies_to<atom::drop, block_id>::with<atom::ok>>;

/// The persistence actor (detached: blocking LevelDB I/O): owns the state of
/// record and the metadata.
using persistence_actor = caf::typed_actor<
  // Holds a durable block's changes until a checkpoint writes them.
  caf::reacts_to<atom::checkpoint, block_record_ptr>,
  // Forgets the held blocks above a held block (a revert within the
  // checkpoint lag: LevelDB keeps its state).
  caf::reacts_to<atom::drop, block_id>,
  // Writes the held blocks at or below a height in one WriteBatch; replies
  // the checkpoint height.
  caf::replies_to<atom::flush, block_id>::with<block_id>,
  // Forgets the held blocks above a height; when LevelDB holds a state
  // above it, or the height is not a held block, writes the state at the
  // height with the revert marker in one WriteBatch (from the undo of the
  // records above it, newest first). Replies whether it wrote.
  caf::replies_to<atom::revert, block_record_list, block_id>::with<bool>,
  // Clears the revert marker.
  caf::replies_to<atom::clear>::with<atom::ok>,
  // Records the newest pruned journal height.
  caf::replies_to<atom::prune, block_id>::with<atom::ok>,
  // Persists a durability mode.
  caf::replies_to<atom::config, durability_mode>::with<atom::ok>>;

/// The health actor: turns counters and faults into the health state.
using health_actor = caf::typed_actor<
  // Records a store fault (the store turned fatal or repaired damage).
  caf::reacts_to<atom::fault, health_state, std::string>>::
  extend_with<status_protocol>;

/// The reopen actor (detached, one call: blocking recovery): opens the data
/// directory again after a store actor crashed.
using reopen_actor = caf::typed_actor<
  // Recovers the data directory (storage::recover) and replies with it.
  caf::replies_to<atom::open>::with<
    std::shared_ptr<storage::recovered_store>>>;

} // namespace rollblock
