#include "rollblock/actors/journal.hpp"

#include "rollblock/messages/error.hpp"

#include "rollblock/storage/logger.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace rollblock {

caf::error journal_state::sync() {
  if (failure)
    return failure;
  if (unsynced == 0)
    return {};
  if (auto err = blocks->sync()) {
    failure = make_error(ec::durability_failure,
                         "journal fsync failed; blocks above "
                           + std::to_string(durable)
                           + " may not be durable: " + describe(err));
    logger().critical("{}", describe(failure));
    return failure;
  }
  unsynced = 0;
  durable = blocks->empty() ? durable : blocks->last_height();
  return {};
}

journal_actor::behavior_type
journal(journal_actor::stateful_pointer<journal_state> self,
        std::shared_ptr<std::unique_ptr<storage::journal>> blocks,
        std::uint32_t sync_every, block_id durable,
        std::shared_ptr<store_shared> shared) {
  auto& st = self->state;
  st.shared = std::move(shared);
  st.blocks = std::move(*blocks);
  st.shared->counters().journal_bytes.store(st.blocks->size_bytes());
  st.sync_every = sync_every;
  st.durable = durable;
  self->set_exception_handler(
    [](caf::scheduled_actor*, std::exception_ptr& eptr) {
      return crash_exit_reason("journal", eptr);
    });
  return {
    [self](atom::append, block_record_ptr& record) -> caf::result<block_id> {
      auto& st = self->state;
      if (st.failure)
        return st.failure;
      st.shared->fault_point("journal.append");
      if (auto err = st.blocks->append(*record)) {
        st.failure = make_error(ec::durability_failure,
                                "journal append of block "
                                  + std::to_string(record->height)
                                  + " failed: " + describe(err));
        logger().critical("{}", describe(st.failure));
        return st.failure;
      }
      st.shared->counters().journal_bytes.store(st.blocks->size_bytes(),
                                                std::memory_order_relaxed);
      st.shared->fault_point("journal.appended");
      if (++st.unsynced >= st.sync_every)
        if (auto err = st.sync())
          return err;
      return st.durable;
    },
    [self](atom::sync) -> caf::result<block_id> {
      auto& st = self->state;
      st.shared->fault_point("journal.sync");
      if (auto err = st.sync())
        return err;
      return st.durable;
    },
    [self](atom::relaxed, std::uint32_t sync_every) -> caf::result<block_id> {
      auto& st = self->state;
      if (auto err = st.sync())
        return err;
      st.sync_every = std::max<std::uint32_t>(sync_every, 1);
      return st.durable;
    },
    [self](atom::read, block_id above) -> caf::result<block_record_list> {
      auto& st = self->state;
      if (st.failure)
        return st.failure;
      auto records = st.blocks->read_from(above + 1);
      if (!records)
        return records.error();
      std::reverse(records->begin(), records->end());
      return std::move(*records);
    },
    [self](atom::truncate, block_id height) -> caf::result<atom::ok> {
      auto& st = self->state;
      if (st.failure)
        return st.failure;
      st.shared->fault_point("journal.truncate");
      if (auto err = st.blocks->truncate_after(height)) {
        st.failure = err;
        return err;
      }
      st.unsynced = 0;
      st.durable = std::min(st.durable, height);
      return atom::ok::value;
    },
    [self](atom::prune, block_id keep_from) -> caf::result<block_id> {
      return self->state.blocks->prunable_through(keep_from).value_or(
        keep_from);
    },
    [self](atom::drop, block_id through) -> caf::result<atom::ok> {
      auto& st = self->state;
      if (st.failure)
        return st.failure;
      if (auto err = st.blocks->drop_through(through)) {
        st.failure = err;
        return err;
      }
      return atom::ok::value;
    },
  };
}

} // namespace rollblock
