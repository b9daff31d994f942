#pragma once

#include "rollblock/actors/store_reader.hpp"
#include "rollblock/messages/actor_interfaces.hpp"

#include <chrono>
#include <memory>
#include <string>

namespace rollblock {

/// The health actor's state.
struct health_state_data {
  static inline const char* name = "rollblock.health";

  std::shared_ptr<store_shared> shared;
  /// How long a restart keeps the store degraded.
  std::chrono::seconds restart_window{60};
  /// The worst fault reported so far and why.
  health_state worst = health_state::serving;
  std::string reason;

  /// Returns the current health and why.
  health_report assess() const;
};

/// Reports figures and health. Client errors (bad input) are counted but
/// never change health; only store faults do: fatal when the store is fatal,
/// degraded while a store actor restarts and for `restart_window` after, or
/// after checksum errors or a reported fault; serving otherwise.
health_actor::behavior_type
health(health_actor::stateful_pointer<health_state_data> self,
       std::shared_ptr<store_shared> shared,
       std::chrono::seconds restart_window);

} // namespace rollblock
