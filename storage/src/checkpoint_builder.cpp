#include "rollblock/storage/checkpoint_builder.hpp"

#include "rollblock/storage/key_order.hpp"

#include <algorithm>
#include <bit>
#include <limits>
#include <stdexcept>

namespace rollblock::storage {

void checkpoint_builder::hold(block_record_ptr record, bool undo) {
  auto& changes = record->changes;
  if (held_.size() >= std::numeric_limits<std::uint32_t>::max())
    throw std::length_error("checkpoint_builder: too many blocks");
  // change_list limits a block to 4 GiB of payload, so its change count
  // fits 32 bits.
  for (std::size_t i = 0; i < changes.size(); ++i) {
    auto k = changes[i].k;
    narrow_keys_ = narrow_keys_ && k.size() == sizeof(std::uint64_t);
    prefixes_.push_back(key_prefix(k));
  }
  held_.push_back(std::move(record));
  undo_.push_back(undo);
}

void checkpoint_builder::reserve(std::size_t changes) {
  prefixes_.reserve(prefixes_.size() + changes);
}

void checkpoint_builder::add(block_record_ptr record) {
  hold(std::move(record), false);
}

void checkpoint_builder::add_undo(block_record_ptr record) {
  hold(std::move(record), true);
}

template <class RefAt>
void checkpoint_builder::fold(std::size_t n, RefAt ref_at,
                              checkpoint_batch& batch) const {
  auto change = [this](const change_ref& ref) {
    return held_[ref.block]->changes[ref.change];
  };
  // At most one write per change (a million for a typical checkpoint):
  // sized once rather than grown by doubling.
  batch.writes.reserve(n);
  // Each key's run of changes, oldest added first: its value in LevelDB is
  // what the first one found, its new value what the last one left. The
  // walk jumps between the records: it loads changes a few keys ahead.
  constexpr std::size_t ahead = 8;
  for (std::size_t i = 0; i < n;) {
    if (i + ahead < n) {
      auto next = ref_at(i + ahead);
      held_[next.block]->changes.prefetch(next.change);
    }
    auto first_ref = ref_at(i);
    auto first = change(first_ref);
    auto j = i + 1;
    change_ref last = first_ref;
    for (; j < n; ++j) {
      auto ref = ref_at(j);
      if (ref.prefix != first_ref.prefix
          || (first.k.size() != sizeof(std::uint64_t)
              && change(ref).k != first.k))
        break;
      last = ref;
    }
    auto stored = undo_[first_ref.block] ? first.after : first.before;
    auto newest = change(last);
    auto v = undo_[last.block] ? newest.before : newest.after;
    if (v != stored)
      batch.writes.push_back({first.k, v});
    i = j;
  }
}

checkpoint_batch checkpoint_builder::take(block_id height) {
  checkpoint_batch result;
  result.height = height;
  auto n = prefixes_.size();
  std::uint64_t varying = 0;
  for (auto prefix : prefixes_)
    varying |= prefix ^ prefixes_.front();
  // Bits enough for the largest block index and change index (sizes fit
  // 32 bits: hold).
  auto key_bits = static_cast<unsigned>(std::bit_width(varying));
  auto block_bits = static_cast<unsigned>(std::bit_width(held_.size()));
  std::size_t most_changes = 0;
  for (auto& record : held_)
    most_changes = std::max(most_changes, record->changes.size());
  auto change_bits = static_cast<unsigned>(std::bit_width(most_changes));
  auto position_bits = block_bits + change_bits;
  if (narrow_keys_ && position_bits < 64 && key_bits + position_bits <= 64) {
    // Each change as one number: its key's varying bits (the bits above
    // are the same in every key), then its block, then its index.
    std::vector<std::uint64_t> numbered;
    numbered.reserve(n);
    auto key_mask = key_bits == 0 ? 0 : ~std::uint64_t{0} >> (64 - key_bits);
    auto shared_bits = n == 0 ? 0 : prefixes_.front() & ~key_mask;
    std::size_t g = 0;
    for (std::uint64_t block = 0; block < held_.size(); ++block) {
      auto changes = held_[block]->changes.size();
      for (std::uint64_t c = 0; c < changes; ++c, ++g)
        numbered.push_back(((prefixes_[g] & key_mask) << position_bits)
                           | (block << change_bits) | c);
    }
    std::vector<std::uint64_t>{}.swap(prefixes_);
    radix_sort(numbered,
               [position_bits](std::uint64_t x) { return x >> position_bits; });
    auto block_mask = (std::uint64_t{1} << block_bits) - 1;
    auto change_mask = (std::uint64_t{1} << change_bits) - 1;
    fold(
      n,
      [&](std::size_t i) {
        auto x = numbered[i];
        return change_ref{
          shared_bits | x >> position_bits,
          static_cast<std::uint32_t>((x >> change_bits) & block_mask),
          static_cast<std::uint32_t>(x & change_mask)};
      },
      result);
  } else {
    std::vector<change_ref> refs;
    refs.reserve(n);
    std::size_t g = 0;
    for (std::uint32_t block = 0; block < held_.size(); ++block) {
      auto changes = held_[block]->changes.size();
      for (std::uint32_t c = 0; c < changes; ++c, ++g)
        refs.push_back({prefixes_[g], block, c});
    }
    std::vector<std::uint64_t>{}.swap(prefixes_);
    sort_in_key_order(refs, [&](const change_ref& ref) {
      return held_[ref.block]->changes[ref.change].k;
    });
    fold(n, [&](std::size_t i) { return refs[i]; }, result);
  }
  // The writes view the records. The notes are released above: the batch
  // is written while the builder still exists.
  result.records = std::move(held_);
  held_.clear();
  undo_.clear();
  narrow_keys_ = true;
  return result;
}

} // namespace rollblock::storage
