#include "rollblock/actors/reopen.hpp"

#include "rollblock/actors/store_reader.hpp"
#include "rollblock/storage/recovery.hpp"

namespace rollblock {

reopen_actor::behavior_type
reopen(reopen_actor::stateful_pointer<reopen_state> self,
       store_options options, std::shared_ptr<storage::data_dir_lock> lock) {
  self->state.options = std::move(options);
  self->state.lock = std::move(lock);
  self->set_exception_handler(
    [](caf::scheduled_actor*, std::exception_ptr& eptr) {
      return crash_exit_reason("reopen", eptr);
    });
  return {
    // Recovers the data directory under the kept lock, answers, and quits.
    [self](atom::open)
      -> caf::result<std::shared_ptr<storage::recovered_store>> {
      auto& st = self->state;
      if (st.options.fault_hook)
        st.options.fault_hook("reopen.open");
      auto recovered = storage::recover(st.options, std::move(st.lock));
      self->quit();
      if (!recovered)
        return recovered.error();
      return std::make_shared<storage::recovered_store>(
        std::move(*recovered));
    },
  };
}

} // namespace rollblock
