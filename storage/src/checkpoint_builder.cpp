#include "rollblock/storage/checkpoint_builder.hpp"

namespace rollblock::storage {

void checkpoint_builder::put(const key& k, const value& v) {
  auto [it, added] = position_.try_emplace(k, batch_.writes.size());
  if (added)
    batch_.writes.emplace_back(k, v);
  else
    batch_.writes[it->second].second = v;
}

void checkpoint_builder::add(block_record_ptr record) {
  for (auto& change : record->changes)
    put(change.k, change.after);
  held_.push_back(std::move(record));
}

void checkpoint_builder::add_undo(block_record_ptr record) {
  for (auto& change : record->changes)
    put(change.k, change.before);
  held_.push_back(std::move(record));
}

checkpoint_batch checkpoint_builder::take(block_id height) {
  auto result = std::move(batch_);
  result.height = height;
  batch_ = checkpoint_batch{};
  position_.clear();
  held_.clear();
  return result;
}

} // namespace rollblock::storage
