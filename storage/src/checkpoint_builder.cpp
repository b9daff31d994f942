#include "rollblock/storage/checkpoint_builder.hpp"

#include <algorithm>
#include <cassert>

namespace rollblock::storage {

void checkpoint_builder::put(std::string_view k, std::string_view stored,
                             std::string_view v) {
  if (position_.key_width() != k.size()) {
    // A store's keys all have one width: this is the first key.
    assert(position_.empty());
    position_ = flat_key_map<std::size_t>{k.size()};
  }
  auto [position, added] = position_.try_emplace(k);
  if (added) {
    *position = batch_.writes.size();
    batch_.writes.push_back({k, v});
    stored_.push_back(stored);
  } else {
    batch_.writes[*position].v = v;
  }
}

void checkpoint_builder::add(block_record_ptr record) {
  for (auto change : record->changes)
    put(change.k, change.before, change.after);
  held_.push_back(std::move(record));
}

void checkpoint_builder::add_undo(block_record_ptr record) {
  for (auto change : record->changes)
    put(change.k, change.after, change.before);
  held_.push_back(std::move(record));
}

checkpoint_batch checkpoint_builder::take(block_id height) {
  auto result = std::move(batch_);
  result.height = height;
  // Keep only the writes that change LevelDB, in first-touched order.
  std::size_t kept = 0;
  for (std::size_t i = 0; i < result.writes.size(); ++i) {
    if (result.writes[i].v == stored_[i])
      continue;
    result.writes[kept++] = result.writes[i];
  }
  result.writes.resize(kept);
  // The writes view the records.
  result.records = std::move(held_);
  batch_ = checkpoint_batch{};
  stored_.clear();
  position_.clear();
  held_.clear();
  return result;
}

} // namespace rollblock::storage
