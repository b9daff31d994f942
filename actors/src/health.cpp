#include "rollblock/actors/health.hpp"

#include "rollblock/messages/error.hpp"

namespace rollblock {

health_report health_state_data::assess() const {
  if (auto err = shared->refusal(); err && code_of(err) != ec::store_closed)
    return {health_state::fatal, describe(err)};
  if (auto restart = shared->restart_fault(restart_window))
    return {health_state::degraded, std::move(*restart)};
  if (worst == health_state::degraded)
    return {health_state::degraded, reason};
  auto checksum_errors = shared->counters().checksum_errors.load();
  if (checksum_errors > 0)
    return {health_state::degraded,
            std::to_string(checksum_errors) + " checksum errors"};
  return {health_state::serving, ""};
}

health_actor::behavior_type
health(health_actor::stateful_pointer<health_state_data> self,
       std::shared_ptr<store_shared> shared,
       std::chrono::seconds restart_window) {
  self->state.shared = std::move(shared);
  self->state.restart_window = restart_window;
  self->set_exception_handler(
    [](caf::scheduled_actor*, std::exception_ptr& eptr) {
      return crash_exit_reason("health", eptr);
    });
  return {
    [self](atom::fault, health_state state, std::string& reason) {
      auto& st = self->state;
      if (state > st.worst) {
        st.worst = state;
        st.reason = std::move(reason);
      }
    },
    [self](atom::metrics) -> caf::result<metrics_snapshot> {
      auto& st = self->state;
      st.shared->fault_point("health.metrics");
      auto& c = st.shared->counters();
      metrics_snapshot m;
      m.heights = st.shared->heights();
      m.durability = st.shared->durability();
      m.blocks_applied = c.blocks_applied.load();
      m.operations_applied = c.operations_applied.load();
      m.sets = c.sets.load();
      m.deletes = c.deletes.load();
      m.reverts = c.reverts.load();
      m.blocks_reverted = c.blocks_reverted.load();
      m.lookups = c.lookups.load();
      m.client_errors = c.client_errors.load();
      m.checksum_errors = c.checksum_errors.load();
      m.checkpoints = c.checkpoints.load();
      m.live_keys = st.shared->memory()->size();
      m.state_table_bytes = st.shared->memory()->table_bytes();
      m.journal_bytes = c.journal_bytes.load();
      m.held_blocks = c.held_blocks.load();
      m.held_bytes = c.held_bytes.load();
      m.apply_latency = c.apply_latency.summary();
      m.revert_latency = c.revert_latency.summary();
      m.lookup_latency = c.lookup_latency.summary();
      m.mutation_restarts = c.mutation_restarts.load();
      m.journal_restarts = c.journal_restarts.load();
      m.persistence_restarts = c.persistence_restarts.load();
      m.health_restarts = c.health_restarts.load();
      auto report = st.assess();
      m.health = report.state;
      m.health_reason = std::move(report.reason);
      return m;
    },
    [self](atom::health) -> caf::result<health_report> {
      return self->state.assess();
    },
  };
}

} // namespace rollblock
