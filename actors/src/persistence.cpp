#include "rollblock/actors/persistence.hpp"

#include "rollblock/messages/error.hpp"

#include "rollblock/storage/logger.hpp"

#include <spdlog/spdlog.h>

namespace rollblock {

caf::error persistence_state::fail(const caf::error& err,
                                   const std::string& what) {
  failure = make_error(ec::durability_failure,
                       what + " failed: " + describe(err));
  logger().critical("{}", describe(failure));
  return failure;
}

persistence_actor::behavior_type
persistence(persistence_actor::stateful_pointer<persistence_state> self,
            std::shared_ptr<std::unique_ptr<storage::state_store>> state,
            storage::store_metadata meta,
            std::shared_ptr<store_shared> shared) {
  self->state.shared = std::move(shared);
  self->state.state = std::move(*state);
  self->state.meta = std::move(meta);
  self->set_exception_handler(
    [](caf::scheduled_actor*, std::exception_ptr& eptr) {
      return crash_exit_reason("persistence", eptr);
    });
  return {
    [self](atom::checkpoint, block_record_ptr& record) {
      auto& st = self->state;
      st.shared->fault_point("persistence.checkpoint");
      st.pending_height = record->height;
      st.pending.add(std::move(record));
    },
    [self](atom::flush) -> caf::result<block_id> {
      auto& st = self->state;
      if (st.failure)
        return st.failure;
      if (st.pending.blocks() > 0) {
        st.shared->fault_point("persistence.flush");
        auto height = st.pending_height;
        if (auto err = st.state->write_checkpoint(st.pending.take(height)))
          return st.fail(err, "checkpoint of block " + std::to_string(height));
        st.meta.checkpoint = height;
      }
      return st.meta.checkpoint.value_or(0);
    },
    [self](atom::revert, block_record_list& newest_first,
           block_id target) -> caf::result<atom::ok> {
      auto& st = self->state;
      if (st.failure)
        return st.failure;
      // Blocks still queued are above the target: the revert drops them.
      st.pending.take(target);
      for (auto& record : newest_first)
        st.pending.add_undo(record);
      auto batch = st.pending.take(target);
      batch.revert_marker = target;
      if (auto err = st.state->write_checkpoint(batch))
        return st.fail(err, "revert to block " + std::to_string(target));
      st.meta.checkpoint = target;
      return atom::ok::value;
    },
    [self](atom::clear) -> caf::result<atom::ok> {
      auto& st = self->state;
      if (st.failure)
        return st.failure;
      if (auto err = st.state->clear_revert_marker())
        return st.fail(err, "clearing the revert marker");
      return atom::ok::value;
    },
    [self](atom::prune, block_id through) -> caf::result<atom::ok> {
      auto& st = self->state;
      if (st.failure)
        return st.failure;
      if (auto err = st.state->write_pruned_through(through))
        return st.fail(err, "recording the pruned height");
      st.meta.pruned_through = through;
      return atom::ok::value;
    },
    [self](atom::config, durability_mode mode) -> caf::result<atom::ok> {
      auto& st = self->state;
      if (st.failure)
        return st.failure;
      st.meta.durability = mode;
      if (auto err = st.state->write_config(st.meta))
        return st.fail(err, "persisting the durability mode");
      return atom::ok::value;
    },
  };
}

} // namespace rollblock
