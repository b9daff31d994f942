#pragma once

#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <cstdint>
#include <string>

namespace rollblock {

/// The error category of every rollblock failure. A `caf::error` of this
/// category carries one code below and, as its context, one string that says
/// what happened in words a person can act on.
constexpr caf::atom_value error_category = caf::atom("rollblock");

/// Every failure the store reports. Client errors (bad input, wrong state)
/// change nothing; store faults (io_error, durability_failure, corruption) put
/// the store into its fatal state.
enum class ec : std::uint8_t {
  /// Not an error.
  none = 0,
  /// A key does not have the store's key width.
  key_width_mismatch,
  /// A value is longer than max_value_size bytes.
  value_too_large,
  /// A block height is not above the applied height.
  block_id_not_increasing,
  /// A revert target is above the applied height.
  rollback_target_ahead,
  /// A revert target is below the oldest height the journal can undo to.
  rollback_beyond_history,
  /// The call needs no staged block, but one is staged.
  block_in_progress,
  /// The call needs a staged block, but none is staged.
  no_block_in_progress,
  /// Another process holds the data directory.
  data_dir_locked,
  /// The options disagree with what the data directory was created with.
  config_mismatch,
  /// An option or argument is out of range.
  invalid_argument,
  /// A file or record has another format version than this build reads.
  format_version_mismatch,
  /// A journal entry in the middle of the journal fails its checks.
  journal_corrupt,
  /// LevelDB or the metadata it holds is damaged.
  state_corrupt,
  /// A read, write, sync or rename failed.
  io_error,
  /// The store lost the ability to make data durable; it refuses every call
  /// until it is reopened.
  durability_failure,
  /// The store was shut down.
  store_closed,
  /// A store actor crashed while the call ran; the supervisor restarted it
  /// from durable state and the call had no effect: retry it.
  actor_restarted,
  /// Store actors crashed more often than the restart limit allows (see
  /// store_options::max_restarts): the store is fatal until reopened.
  restart_limit_exceeded,
};

/// Returns the name of `x`, e.g. "block_id_not_increasing".
std::string to_string(ec x);

/// Returns an error of the rollblock category with a message for people.
caf::error make_error(ec code, std::string message);

/// Returns an error of the rollblock category without a message.
caf::error make_error(ec code);

/// Returns the rollblock code of `err`, or ec::none when `err` is empty, and
/// ec::io_error for errors of other categories.
ec code_of(const caf::error& err);

/// Returns the message of a rollblock error, or CAF's rendering of others.
std::string message_of(const caf::error& err);

/// Renders an error as "code: message".
std::string describe(const caf::error& err);

} // namespace rollblock
