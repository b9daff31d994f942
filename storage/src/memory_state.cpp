#include "rollblock/storage/memory_state.hpp"

#include "rollblock/messages/error.hpp"
#include "rollblock/storage/logger.hpp"

#include <algorithm>
#include <thread>

namespace rollblock::storage {

memory_state::memory_state(std::size_t key_width, std::size_t shard_count,
                           std::size_t optimistic_attempts)
  : key_width_(key_width), optimistic_attempts_(optimistic_attempts) {
  shards_.reserve(shard_count);
  for (std::size_t i = 0; i < shard_count; ++i)
    shards_.push_back(std::make_unique<shard>(key_width));
}

memory_state::~memory_state() = default;

// -- writer ------------------------------------------------------------------

void memory_state::load(const key& k, value v) {
  auto hash = key_hash(k);
  auto& s = *shards_[shard_of_hash(hash)];
  std::unique_lock guard{s.mu};
  auto [e, added] = s.map.try_emplace(k, hash);
  e->v.assign(v);
  e->height = 0;
  if (added)
    live_.fetch_add(1, std::memory_order_relaxed);
}

void memory_state::set_applied(block_id height, bool fresh) {
  applied_.store(height, std::memory_order_release);
  fresh_.store(fresh, std::memory_order_release);
}

caf::expected<block_record_ptr>
memory_state::plan(block_id height, const operation_list& ops) const {
  if (!fresh() && height <= applied())
    return make_error(ec::block_id_not_increasing,
                      "block " + std::to_string(height)
                        + " is not above the applied height "
                        + std::to_string(applied()));
  for (std::size_t i = 0; i < ops.size(); ++i) {
    auto& op = ops[i];
    if (op.k.size() != key_width_)
      return make_error(ec::key_width_mismatch,
                        "operation " + std::to_string(i) + " of block "
                          + std::to_string(height) + " has a "
                          + std::to_string(op.k.size())
                          + "-byte key; this store's keys are "
                          + std::to_string(key_width_) + " bytes");
    if (op.v.size() > max_value_size)
      return make_error(ec::value_too_large,
                        "operation " + std::to_string(i) + " of block "
                          + std::to_string(height) + " has a "
                          + std::to_string(op.v.size())
                          + "-byte value; the limit is "
                          + std::to_string(max_value_size) + " bytes");
  }
  auto record = std::make_shared<block_record>();
  record->height = height;
  record->changes.reserve(ops.size());
  flat_key_map<std::size_t> position{key_width_};
  position.reserve(ops.size());
  for (auto& op : ops) {
    auto hash = key_hash(op.k);
    auto [index, added] = position.try_emplace(op.k, hash);
    if (!added) {
      record->changes[*index].after = op.v;
      continue;
    }
    *index = record->changes.size();
    // The writer is the only thread that changes the maps: no lock needed to
    // read them here.
    auto& s = *shards_[shard_of_hash(hash)];
    auto* found = s.map.find(op.k, hash);
    record->changes.push_back(
      key_change{op.k, op.v, found ? found->v.str() : value{}});
  }
  return block_record_ptr{std::move(record)};
}

void memory_state::install(block_record_ptr record) {
  auto undo = std::make_shared<block_undo>(key_width_);
  undo->record = record;
  auto& changes = record->changes;
  undo->before_heights.reserve(changes.size());
  undo->index.reserve(changes.size());
  std::vector<std::uint64_t> hashes;
  hashes.reserve(changes.size());
  std::vector<std::vector<std::uint32_t>> by_shard(shards_.size());
  for (std::size_t i = 0; i < changes.size(); ++i) {
    auto& change = changes[i];
    auto hash = key_hash(change.k);
    hashes.push_back(hash);
    auto shard_index = shard_of_hash(hash);
    auto* found = shards_[shard_index]->map.find(change.k, hash);
    undo->before_heights.push_back(found ? found->height : 0);
    *undo->index.try_emplace(change.k, hash).first
      = static_cast<std::uint32_t>(i);
    by_shard[shard_index].push_back(static_cast<std::uint32_t>(i));
  }
  // Publish the undo before any entry of this block becomes visible.
  block_undo_ptr expired;
  {
    std::unique_lock guard{undo_mu_};
    if (undo_.size() == undo_depth) {
      expired = std::move(undo_.front());
      undo_.erase(undo_.begin());
    }
    undo_.push_back(std::move(undo));
  }
  if (expired)
    expire_undo(expired);
  auto height = record->height;
  std::ptrdiff_t live_delta = 0;
  for (std::size_t shard_index = 0; shard_index < shards_.size();
       ++shard_index) {
    auto& indexes = by_shard[shard_index];
    if (indexes.empty())
      continue;
    auto& s = *shards_[shard_index];
    std::unique_lock guard{s.mu};
    for (auto i : indexes) {
      auto& change = changes[i];
      auto* found = s.map.find(change.k, hashes[i]);
      if (!found) {
        if (change.after.empty())
          continue; // deleting an absent key: nothing to show or undo
        auto* e = s.map.try_emplace(change.k, hashes[i]).first;
        e->v.assign(change.after);
        e->height = height;
        ++live_delta;
        continue;
      }
      auto was_live = !found->v.empty();
      found->v.assign(change.after);
      found->height = height;
      live_delta += static_cast<std::ptrdiff_t>(!change.after.empty())
                    - static_cast<std::ptrdiff_t>(was_live);
    }
  }
  live_.fetch_add(static_cast<std::size_t>(live_delta),
                  std::memory_order_relaxed);
  applied_.store(height, std::memory_order_release);
  fresh_.store(false, std::memory_order_release);
}

void memory_state::expire_undo(const block_undo_ptr& oldest) {
  auto height = oldest->record->height;
  // Readers below this height can no longer be answered from the undo.
  floor_.store(height, std::memory_order_release);
  for (auto& change : oldest->record->changes) {
    if (!change.after.empty())
      continue;
    auto hash = key_hash(change.k);
    auto& s = *shards_[shard_of_hash(hash)];
    std::unique_lock guard{s.mu};
    auto* found = s.map.find(change.k, hash);
    if (found && found->height == height && found->v.empty())
      s.map.erase(change.k, hash);
  }
}

void memory_state::revert(const block_record_list& newest_first,
                          block_id target) {
  epoch_.fetch_add(1, std::memory_order_acq_rel); // odd: readers wait
  std::vector<std::unique_lock<std::shared_mutex>> guards;
  guards.reserve(shards_.size());
  for (auto& s : shards_)
    guards.emplace_back(s->mu);
  std::ptrdiff_t live_delta = 0;
  for (auto& record : newest_first) {
    for (auto& change : record->changes) {
      auto hash = key_hash(change.k);
      auto& s = *shards_[shard_of_hash(hash)];
      auto* found = s.map.find(change.k, hash);
      auto was_live = found && !found->v.empty();
      if (change.before.empty()) {
        if (found)
          s.map.erase(change.k, hash);
      } else {
        auto* e = found ? found : s.map.try_emplace(change.k, hash).first;
        e->v.assign(change.before);
        e->height = 0;
      }
      live_delta += static_cast<std::ptrdiff_t>(!change.before.empty())
                    - static_cast<std::ptrdiff_t>(was_live);
    }
  }
  {
    std::unique_lock guard{undo_mu_};
    std::erase_if(undo_, [&](const block_undo_ptr& undo) {
      return undo->record->height > target;
    });
  }
  live_.fetch_add(static_cast<std::size_t>(live_delta),
                  std::memory_order_relaxed);
  if (floor_.load(std::memory_order_relaxed) > target)
    floor_.store(target, std::memory_order_release);
  applied_.store(target, std::memory_order_release);
  fresh_.store(false, std::memory_order_release);
  guards.clear();
  epoch_.fetch_add(1, std::memory_order_acq_rel); // even: readers go on
}

void memory_state::stage_begin() {
  std::lock_guard guard{stage_mu_};
  staged_.clear();
  staging_.store(true, std::memory_order_release);
}

void memory_state::stage_set(const key& k, const value& v) {
  std::lock_guard guard{stage_mu_};
  staged_.insert_or_assign(k, v);
}

void memory_state::stage_end() {
  std::lock_guard guard{stage_mu_};
  staging_.store(false, std::memory_order_release);
  staged_.clear();
}

// -- readers -----------------------------------------------------------------

memory_state::block_undo_ptr memory_state::find_undo(block_id height) const {
  std::shared_lock guard{undo_mu_};
  for (auto& undo : undo_)
    if (undo->record->height == height)
      return undo;
  return nullptr;
}

bool memory_state::read_at(std::string_view k, std::uint64_t hash,
                           block_id at, value& out, bool locked) const {
  auto& s = *shards_[shard_of_hash(hash)];
  block_id height = 0;
  {
    std::shared_lock guard{s.mu, std::defer_lock};
    if (!locked)
      guard.lock();
    auto* found = s.map.find(k, hash);
    if (!found) {
      out.clear();
      return true;
    }
    height = found->height;
    if (height <= at) {
      out.assign(found->v.view());
      return true;
    }
  }
  // The entry was written by a block above our height: walk back its undo.
  while (height > at) {
    auto undo = find_undo(height);
    if (!undo)
      return false;
    auto* i = undo->index.find(k, hash);
    if (!i)
      return false; // cannot happen for a consistent undo; start over
    height = undo->before_heights[*i];
    if (height <= at) {
      out = undo->record->changes[*i].before;
      return true;
    }
  }
  return false;
}

template <class Read>
void memory_state::read_consistent(Read read) const {
  for (std::size_t attempt = 0; attempt < optimistic_attempts_; ++attempt) {
    auto epoch = epoch_.load(std::memory_order_acquire);
    if (epoch % 2 == 1) {
      std::this_thread::yield(); // a revert runs: it holds every shard anyway
      continue;
    }
    auto at = applied_.load(std::memory_order_acquire);
    if (read(at, false) && epoch_.load(std::memory_order_acquire) == epoch
        && floor_.load(std::memory_order_acquire) <= at)
      return;
  }
  // Hold every shard (in the order reverts take them): no revert can run and
  // no entry can change. Entries of a block being installed are newer than
  // the applied height, and that block's undo is the newest one kept.
  std::vector<std::shared_lock<std::shared_mutex>> guards;
  guards.reserve(shards_.size());
  for (auto& s : shards_)
    guards.emplace_back(s->mu);
  if (!read(applied_.load(std::memory_order_acquire), true))
    logger().critical("memory_state: a locked read found no undo for an "
                      "entry above the applied height; the in-memory state "
                      "is inconsistent");
}

value memory_state::get(const key& k) const {
  value result;
  auto hash = key_hash(k);
  read_consistent([&](block_id at, bool locked) {
    return read_at(k, hash, at, result, locked);
  });
  if (staging_.load(std::memory_order_acquire)) {
    std::lock_guard guard{stage_mu_};
    if (auto found = staged_.find(k); found != staged_.end())
      result = found->second;
  }
  return result;
}

std::vector<value> memory_state::get_many(const std::vector<key>& keys) const {
  std::vector<value> result(keys.size());
  std::vector<std::uint64_t> hashes(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i)
    hashes[i] = key_hash(keys[i]);
  read_consistent([&](block_id at, bool locked) {
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (!read_at(keys[i], hashes[i], at, result[i], locked))
        return false;
    return true;
  });
  if (staging_.load(std::memory_order_acquire)) {
    std::lock_guard guard{stage_mu_};
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (auto found = staged_.find(keys[i]); found != staged_.end())
        result[i] = found->second;
  }
  return result;
}

std::vector<std::pair<key, value>> memory_state::snapshot() const {
  std::vector<std::pair<key, value>> result;
  for (auto& s : shards_) {
    std::shared_lock guard{s->mu};
    s->map.for_each([&](std::string_view k, const entry& e) {
      if (!e.v.empty())
        result.emplace_back(key{k}, e.v.str());
    });
  }
  std::sort(result.begin(), result.end());
  return result;
}

} // namespace rollblock::storage
