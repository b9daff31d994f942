#include "rollblock/actors/spawn_store.hpp"

#include "rollblock/actors/supervisor.hpp"
#include "rollblock/messages/error.hpp"
#include "rollblock/storage/recovery.hpp"

#include <caf/message.hpp>
#include <caf/stateful_actor.hpp>

#include "rollblock/storage/logger.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

namespace rollblock {

void configure_scheduler(caf::actor_system_config& cfg) {
  cfg.set("scheduler.max-threads",
          std::max<std::size_t>(2, std::thread::hardware_concurrency()));
  cfg.set("work-stealing.moderate-sleep-duration", caf::timespan{0});
}

void add_rollblock_types(caf::actor_system_config& cfg) {
  // The types of store_actor's messages, so that it works across a network
  // (each also registers std::vector<T>).
  cfg.add_message_type<operation>("rollblock.operation");
  cfg.add_message_type<store_heights>("rollblock.store_heights");
  cfg.add_message_type<durability_mode>("rollblock.durability_mode");
  cfg.add_message_type<latency_summary>("rollblock.latency_summary");
  cfg.add_message_type<metrics_snapshot>("rollblock.metrics_snapshot");
  cfg.add_message_type<health_report>("rollblock.health_report");
  cfg.add_error_category(error_category, [](std::uint8_t code, caf::atom_value,
                                           const caf::message& context) {
    auto err = caf::error{code, error_category, context};
    return describe(err);
  });
}

caf::expected<store_handle> spawn_store(caf::actor_system& sys,
                                        const store_options& opts) {
  auto recovered = storage::recover(opts);
  if (!recovered)
    return recovered.error();
  auto state = std::make_shared<storage::recovered_store>(
    std::move(*recovered));
  auto shared = std::make_shared<store_shared>(state->memory,
                                               state->meta.durability,
                                               state->heights);
  logger().info("opened {} at block {} ({} keys, {}-byte keys, {})",
               opts.data_dir, state->heights.applied, state->memory->size(),
               state->meta.key_width, to_string(state->meta.durability));
  auto actor = sys.spawn(supervisor, state, shared, opts);
  return store_handle{std::move(actor), store_reader{shared}};
}

} // namespace rollblock
