#include "rollblock/actors/persistence.hpp"

#include "rollblock/messages/error.hpp"

#include "rollblock/storage/logger.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace rollblock {

caf::error persistence_state::fail(const caf::error& err,
                                   const std::string& what) {
  failure = make_error(ec::durability_failure,
                       what + " failed: " + describe(err));
  logger().critical("{}", describe(failure));
  return failure;
}

persistence_state::~persistence_state() {
  if (memory)
    memory->detach_state_of_record();
}

persistence_actor::behavior_type
persistence(persistence_actor::stateful_pointer<persistence_state> self,
            std::shared_ptr<std::unique_ptr<storage::state_store>> state,
            storage::store_metadata meta,
            std::shared_ptr<store_shared> shared) {
  self->state.shared = std::move(shared);
  self->state.state = std::move(*state);
  self->state.meta = std::move(meta);
  // The memory this LevelDB serves (a restart swaps the shared one only
  // after this actor is gone).
  self->state.memory = self->state.shared->memory();
  self->set_exception_handler(
    [](caf::scheduled_actor*, std::exception_ptr& eptr) {
      return crash_exit_reason("persistence", eptr);
    });
  return {
    [self](atom::checkpoint, block_record_ptr& record) {
      auto& st = self->state;
      st.shared->fault_point("persistence.checkpoint");
      st.held.push_back(std::move(record));
    },
    [self](atom::drop, block_id target) {
      auto& held = self->state.held;
      while (!held.empty() && held.back()->height > target)
        held.pop_back();
    },
    [self](atom::flush, block_id through) -> caf::result<block_id> {
      auto& st = self->state;
      if (st.failure)
        return st.failure;
      if (!st.held.empty() && st.held.front()->height <= through) {
        st.shared->fault_point("persistence.flush");
        auto last = std::find_if(st.held.begin(), st.held.end(),
                                 [through](const block_record_ptr& record) {
                                   return record->height > through;
                                 });
        storage::checkpoint_builder builder;
        std::size_t changes = 0;
        for (auto it = st.held.begin(); it != last; ++it)
          changes += (*it)->changes.size();
        builder.reserve(changes);
        for (auto it = st.held.begin(); it != last; ++it)
          builder.add(*it);
        auto height = (*std::prev(last))->height;
        if (auto err = st.state->write_checkpoint(builder.take(height)))
          return st.fail(err, "checkpoint of block " + std::to_string(height));
        st.held.erase(st.held.begin(), last);
        st.meta.checkpoint = height;
        st.meta.reverted_to.reset();
        st.memory->set_checkpointed(height);
      }
      return st.meta.checkpoint.value_or(0);
    },
    [self](atom::revert, block_record_list& newest_first,
           block_id target) -> caf::result<bool> {
      auto& st = self->state;
      if (st.failure)
        return st.failure;
      auto checkpoint = st.meta.checkpoint;
      auto above_target = [target](const block_record_ptr& record) {
        return record->height > target;
      };
      auto first_above = std::find_if(st.held.begin(), st.held.end(),
                                      above_target);
      // A revert to a held block within the lag never comes here: the
      // supervisor sends atom::drop instead. LevelDB keeps its state when it
      // holds the target itself.
      if (checkpoint == target) {
        st.held.erase(first_above, st.held.end());
        return false;
      }
      // Keys LevelDB is about to rewrite stay readable from memory until
      // memory reverts too.
      st.memory->make_resident(newest_first);
      // From the checkpoint: forward through the held blocks up to the
      // target, or back through the undo of the blocks LevelDB holds above
      // it (exactly one of the two has blocks).
      storage::checkpoint_builder builder;
      for (auto it = st.held.begin(); it != first_above; ++it)
        builder.add(*it);
      for (auto& record : newest_first)
        if (checkpoint && record->height <= *checkpoint)
          builder.add_undo(record);
      auto batch = builder.take(target);
      batch.revert_marker = target;
      if (auto err = st.state->write_checkpoint(std::move(batch)))
        return st.fail(err, "revert to block " + std::to_string(target));
      st.held.clear();
      st.meta.checkpoint = target;
      st.meta.reverted_to = target;
      st.marker_set = true;
      st.memory->set_checkpointed(target);
      return true;
    },
    [self](atom::clear) -> caf::result<atom::ok> {
      auto& st = self->state;
      if (st.failure)
        return st.failure;
      if (!st.marker_set)
        return atom::ok::value;
      if (auto err = st.state->clear_revert_marker())
        return st.fail(err, "clearing the revert marker");
      st.marker_set = false;
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
