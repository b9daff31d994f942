#include "rollblock/actors/reopen.hpp"

#include "rollblock/storage/recovery.hpp"

namespace rollblock {

reopen_actor::behavior_type
reopen(reopen_actor::stateful_pointer<reopen_state> self,
       store_options options) {
  self->state.options = std::move(options);
  return {
    [self](atom::open)
      -> caf::result<std::shared_ptr<storage::recovered_store>> {
      auto recovered = storage::recover(self->state.options);
      self->quit();
      if (!recovered)
        return recovered.error();
      return std::make_shared<storage::recovered_store>(
        std::move(*recovered));
    },
  };
}

} // namespace rollblock
