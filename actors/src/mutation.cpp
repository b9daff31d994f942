#include "rollblock/actors/mutation.hpp"

#include "rollblock/messages/error.hpp"

namespace rollblock {

namespace {

caf::error no_block_staged() {
  return make_error(ec::no_block_in_progress, "no block is staged");
}

caf::error check_operation(const storage::memory_state& memory,
                           const operation& op, block_id height) {
  // plan() of a one-operation block checks exactly what set() must check.
  auto planned = memory.plan(height, operation_list{op});
  return planned ? caf::error{} : planned.error();
}

} // namespace

mutation_actor::behavior_type
mutation(mutation_actor::stateful_pointer<mutation_state> self,
         std::shared_ptr<store_shared> shared) {
  self->state.shared = std::move(shared);
  self->state.memory = self->state.shared->memory();
  self->set_exception_handler(
    [](caf::scheduled_actor*, std::exception_ptr& eptr) {
      return crash_exit_reason("mutation", eptr);
    });
  return {
    [self](atom::apply, block_id height,
           operation_list& ops) -> caf::result<block_record_ptr> {
      auto& st = self->state;
      auto& memory = *st.memory;
      st.shared->fault_point("mutation.apply");
      auto record = memory.apply(height, ops);
      if (!record)
        return record.error();
      st.shared->fault_point("mutation.installed");
      return *record;
    },
    [self](atom::revert, block_record_list& newest_first,
           block_id target) -> caf::result<atom::ok> {
      self->state.shared->fault_point("mutation.revert");
      self->state.memory->revert(newest_first, target);
      return atom::ok::value;
    },
    [self](atom::start, block_id height) -> caf::result<atom::ok> {
      auto& st = self->state;
      auto& memory = *st.memory;
      auto planned = memory.plan(height, {});
      if (!planned)
        return planned.error();
      st.staged_height = height;
      st.staged_ops.clear();
      memory.stage_begin();
      return atom::ok::value;
    },
    [self](atom::set, key& k, value& v) -> caf::result<atom::ok> {
      auto& st = self->state;
      if (!st.staged_height)
        return no_block_staged();
      st.shared->fault_point("mutation.set");
      auto& memory = *st.memory;
      operation op{std::move(k), std::move(v)};
      if (auto err = check_operation(memory, op, *st.staged_height))
        return err;
      memory.stage_set(op.k, op.v);
      st.staged_ops.push_back(std::move(op));
      return atom::ok::value;
    },
    [self](atom::pop, key& k) -> caf::result<value> {
      auto& st = self->state;
      if (!st.staged_height)
        return no_block_staged();
      auto& memory = *st.memory;
      operation op{std::move(k), {}};
      if (auto err = check_operation(memory, op, *st.staged_height))
        return err;
      auto before = memory.get(op.k);
      if (!before)
        return std::move(before.error());
      memory.stage_set(op.k, op.v);
      st.staged_ops.push_back(std::move(op));
      return std::move(*before);
    },
    [self](atom::end) -> caf::result<block_record_ptr> {
      auto& st = self->state;
      if (!st.staged_height)
        return no_block_staged();
      auto& memory = *st.memory;
      auto record = memory.apply(*st.staged_height, st.staged_ops);
      if (!record)
        return record.error();
      memory.stage_end();
      st.staged_height.reset();
      st.staged_ops.clear();
      return *record;
    },
  };
}

} // namespace rollblock
