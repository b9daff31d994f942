#include "rollblock/storage/checkpoint_builder.hpp"

#include "rollblock/storage/key_order.hpp"

#include <limits>
#include <stdexcept>

namespace rollblock::storage {

void checkpoint_builder::hold(block_record_ptr record, bool undo) {
  auto& changes = record->changes;
  if (held_.size() >= std::numeric_limits<std::uint32_t>::max())
    throw std::length_error("checkpoint_builder: too many blocks");
  auto block = static_cast<std::uint32_t>(held_.size());
  // change_list limits a block to 4 GiB of payload, so its change count
  // fits 32 bits.
  for (std::uint32_t i = 0; i < changes.size(); ++i)
    changes_.push_back({key_prefix(changes[i].k), block, i});
  held_.push_back(std::move(record));
  undo_.push_back(undo);
}

void checkpoint_builder::reserve(std::size_t changes) {
  changes_.reserve(changes_.size() + changes);
}

void checkpoint_builder::add(block_record_ptr record) {
  hold(std::move(record), false);
}

void checkpoint_builder::add_undo(block_record_ptr record) {
  hold(std::move(record), true);
}

checkpoint_batch checkpoint_builder::take(block_id height) {
  auto change = [this](const change_ref& ref) {
    return held_[ref.block]->changes[ref.change];
  };
  sort_in_key_order(changes_,
                    [&](const change_ref& ref) { return change(ref).k; });
  checkpoint_batch result;
  result.height = height;
  // At most one write per change (a million for a typical checkpoint):
  // sized once rather than grown by doubling.
  result.writes.reserve(changes_.size());
  // Each key's run of changes, oldest added first: its value in LevelDB is
  // what the first one found, its new value what the last one left. The
  // walk jumps between the records: it loads changes a few keys ahead.
  constexpr std::size_t ahead = 8;
  for (std::size_t i = 0, n = changes_.size(); i < n;) {
    if (i + ahead < n) {
      auto& next = changes_[i + ahead];
      held_[next.block]->changes.prefetch(next.change);
    }
    auto first = change(changes_[i]);
    auto j = i + 1;
    while (j < n && changes_[j].prefix == changes_[i].prefix
           && (first.k.size() == sizeof(std::uint64_t)
               || change(changes_[j]).k == first.k))
      ++j;
    auto last = changes_[j - 1];
    auto stored = undo_[changes_[i].block] ? first.after : first.before;
    auto newest = change(last);
    auto v = undo_[last.block] ? newest.before : newest.after;
    if (v != stored)
      result.writes.push_back({first.k, v});
    i = j;
  }
  // The writes view the records. The notes (16 bytes per change) are
  // released: the batch is written while the builder still exists.
  result.records = std::move(held_);
  std::vector<change_ref>{}.swap(changes_);
  held_.clear();
  undo_.clear();
  return result;
}

} // namespace rollblock::storage
