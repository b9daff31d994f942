#include "rollblock/messages/error.hpp"

#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace rollblock {

std::string to_string(ec x) {
  switch (x) {
    case ec::none:
      return "none";
    case ec::key_width_mismatch:
      return "key_width_mismatch";
    case ec::value_too_large:
      return "value_too_large";
    case ec::block_id_not_increasing:
      return "block_id_not_increasing";
    case ec::rollback_target_ahead:
      return "rollback_target_ahead";
    case ec::rollback_beyond_history:
      return "rollback_beyond_history";
    case ec::block_in_progress:
      return "block_in_progress";
    case ec::no_block_in_progress:
      return "no_block_in_progress";
    case ec::data_dir_locked:
      return "data_dir_locked";
    case ec::config_mismatch:
      return "config_mismatch";
    case ec::invalid_argument:
      return "invalid_argument";
    case ec::format_version_mismatch:
      return "format_version_mismatch";
    case ec::journal_corrupt:
      return "journal_corrupt";
    case ec::state_corrupt:
      return "state_corrupt";
    case ec::io_error:
      return "io_error";
    case ec::durability_failure:
      return "durability_failure";
    case ec::store_closed:
      return "store_closed";
    case ec::actor_restarted:
      return "actor_restarted";
    case ec::restart_limit_exceeded:
      return "restart_limit_exceeded";
  }
  return "unknown_error_code";
}

caf::error make_error(ec code, std::string message) {
  return caf::error{static_cast<std::uint8_t>(code), error_category,
                    caf::make_message(std::move(message))};
}

caf::error make_error(ec code) {
  return caf::error{static_cast<std::uint8_t>(code), error_category};
}

ec code_of(const caf::error& err) {
  if (!err)
    return ec::none;
  if (err.category() != error_category)
    return ec::io_error;
  return static_cast<ec>(err.code());
}

std::string message_of(const caf::error& err) {
  if (!err)
    return {};
  if (err.category() == error_category) {
    auto& ctx = err.context();
    if (ctx.size() == 1 && ctx.match_element<std::string>(0))
      return ctx.get_as<std::string>(0);
    return to_string(static_cast<ec>(err.code()));
  }
  return caf::to_string(err);
}

std::string describe(const caf::error& err) {
  if (!err)
    return "none";
  if (err.category() != error_category)
    return caf::to_string(err);
  return to_string(static_cast<ec>(err.code())) + ": " + message_of(err);
}

} // namespace rollblock
