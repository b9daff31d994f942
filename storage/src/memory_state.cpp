#include "rollblock/storage/memory_state.hpp"

#include "rollblock/messages/error.hpp"
#include "rollblock/storage/logger.hpp"
#include "rollblock/storage/state_store.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <stdexcept>
#include <string>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#  include <immintrin.h>
#endif

namespace rollblock::storage {

memory_state::memory_state(std::size_t key_width, std::size_t shard_count,
                           std::size_t optimistic_attempts,
                           stamp_type stamp_limit)
  : key_width_(key_width),
    optimistic_attempts_(optimistic_attempts),
    stamp_limit_(stamp_limit) {
  shards_.reserve(shard_count);
  for (std::size_t i = 0; i < shard_count; ++i) {
    shards_.push_back(std::make_unique<shard>(key_width));
    // Growth phases spread over [0, 1): the shards grow one after another
    // and their tables together hold 1.65 slots per entry at every size
    // (flat_key_map), where tables doubling in step would swing between
    // 1.14 and 2.29.
    shards_.back()->map.set_growth_phase(static_cast<double>(i)
                                         / static_cast<double>(shard_count));
  }
  slot_bytes_ = shards_.front()->map.slot_bytes();
  if (std::has_single_bit(shard_count))
    shard_mask_ = shard_count - 1;
}

memory_state::~memory_state() = default;

namespace {

/// What the allocator adds to every block it hands out (glibc: the chunk
/// header, rounded).
constexpr std::size_t malloc_overhead = 16;

/// How many keys ahead the loops over a block's keys prefetch table slots
/// (prefetch_ahead: tags twice as far ahead, then the slot the tags point
/// to): the tables are far larger than the caches, so each lookup would
/// wait for memory twice (the tag, then the slot with key and value)
/// without it.
constexpr std::size_t prefetch_distance = 8;

/// How many of a block's updates the writer makes to a shard before it lets
/// waiting readers in. A block's whole share of a shard (~300 updates with
/// the published workload, tens of microseconds) put a reader beside a
/// writer to sleep on the shard lock once every few hundred reads
/// (bench/RESULTS.md section 16); 32 updates take about a microsecond.
constexpr std::size_t updates_per_lock = 32;

/// How often a thread tries a shard lock, pausing in between, before it
/// blocks on it: a writer's 32 updates or a reader's read end sooner than a
/// sleep on the lock and the wake-up would. 1,024 pauses are ~16 us
/// (~16 ns each on the benchmark machine): 32 updates that miss the cache
/// hold a shard for several microseconds, longer than the 64 tries of
/// before (~1 us): a reader then went to sleep on the lock, and a writer
/// that did the same behind a reader had to be woken by the reader's
/// unlock, each a futex call and a context switch (perf: a third of a
/// reader's samples beside a writer, bench/RESULTS.md section 25).
constexpr int lock_tries = 1024;

void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// Takes `lock` (a std::unique_lock or std::shared_lock of a shard's
/// mutex), trying lock_tries times before blocking.
template <class Lock>
void lock_trying_first(Lock& lock) {
  for (int i = 0; i < lock_tries; ++i) {
    if (lock.try_lock())
      return;
    spin_pause();
  }
  lock.lock();
}

/// What a loop does with every key it visits (for_each_of_part,
/// update_by_shard): the same use for each.
struct every_key {
  probe_for use;

  probe_for operator()(std::size_t) const noexcept {
    return use;
  }
};

/// The error of a read of the state of record after the store closed.
caf::error store_closed() {
  return make_error(ec::store_closed, "the store is closed: its state "
                                      "database is no longer readable");
}

/// The key_hash of every change of `record`.
std::vector<std::uint64_t> hashes_of(const block_record& record) {
  std::vector<std::uint64_t> hashes;
  hashes.reserve(record.changes.size());
  for (auto change : record.changes)
    hashes.push_back(key_hash(change.k));
  return hashes;
}

} // namespace

std::size_t memory_state::entry_bytes(const compact_value& v) const {
  auto heap = v.heap_bytes();
  // Tables run 7/16 to 7/8 full, or 1/4 to 1/2 with a budget (see
  // attach_state_of_record).
  std::size_t slots = entry_budget_ > 0 ? 3 : 2;
  return slots * slot_bytes_
         + (heap > 0 ? heap + malloc_overhead : 0);
}

void memory_state::emplace_entry(shard& s, std::string_view k,
                                 std::uint64_t hash, std::string_view v,
                                 stamp_type stamp) {
  set_new_entry(s, *s.map.try_emplace(k, hash).first, v, stamp);
}

void memory_state::set_new_entry(shard& s, entry& e, std::string_view v,
                                 stamp_type stamp) {
  e.v.assign_to_empty(v);
  e.stamp = stamp;
  add_resident_bytes(s, static_cast<std::ptrdiff_t>(entry_bytes(e.v)));
}

void memory_state::assign_entry(shard& s, entry& e, std::string_view v,
                                stamp_type stamp) {
  auto old_bytes = entry_bytes(e.v);
  e.v.assign(v);
  e.stamp = stamp;
  add_resident_bytes(s, static_cast<std::ptrdiff_t>(entry_bytes(e.v))
                          - static_cast<std::ptrdiff_t>(old_bytes));
}

void memory_state::erase_entry(shard& s, entry* found) {
  add_resident_bytes(s, -static_cast<std::ptrdiff_t>(entry_bytes(found->v)));
  s.map.erase_found(found);
}

void memory_state::add_resident_bytes(shard& s, std::ptrdiff_t delta) noexcept {
  s.resident_bytes.store(s.resident_bytes.load(std::memory_order_relaxed)
                           + static_cast<std::size_t>(delta),
                         std::memory_order_relaxed);
}

std::size_t memory_state::resident_bytes() const {
  std::size_t result = 0;
  for (auto& s : shards_)
    result += s->resident_bytes.load(std::memory_order_relaxed);
  return result;
}

std::size_t memory_state::resident_entries() const {
  std::size_t result = 0;
  for (auto& s : shards_) {
    std::shared_lock guard{s->mu};
    result += s->map.size();
  }
  return result;
}

std::size_t memory_state::table_bytes() const {
  std::size_t result = 0;
  for (auto& s : shards_) {
    std::shared_lock guard{s->mu};
    result += s->map.capacity() * s->map.slot_bytes();
  }
  return result;
}

// -- writer ------------------------------------------------------------------

void memory_state::load(const key& k, const value& v) {
  auto hash = key_hash(k);
  auto& s = *shards_[shard_of_hash(hash)];
  std::unique_lock guard{s.mu};
  if (load_entry(s, k, hash, v))
    live_.fetch_add(1, std::memory_order_relaxed);
}

void memory_state::load_many(
  const std::vector<std::pair<key, value>>& batch) {
  std::vector<std::uint64_t> hashes;
  hashes.reserve(batch.size());
  for (auto& entry : batch)
    hashes.push_back(key_hash(entry.first));
  // Shard by shard, each lock taken once per run of updates: a lock and an
  // unlock per key wait for the stores of the entries before them.
  std::size_t added = 0;
  update_by_shard(hashes, 0, 1, every_key{probe_for::insert},
                  [](std::size_t) { return true; },
                  [&](shard& s, std::size_t i) {
                    added += load_entry(s, batch[i].first, hashes[i],
                                        batch[i].second);
                  });
  live_.fetch_add(added, std::memory_order_relaxed);
}

bool memory_state::load_entry(shard& s, std::string_view k,
                              std::uint64_t hash, std::string_view v) {
  auto [e, added] = s.map.try_emplace(k, hash);
  if (added)
    set_new_entry(s, *e, v, 0);
  else
    assign_entry(s, *e, v, 0);
  return added;
}

void memory_state::replay(const block_record& record) {
  std::ptrdiff_t live_delta = 0;
  auto hashes = hashes_of(record);
  update_by_shard(hashes, 0, 1,
                  [&](std::size_t i) {
                    return record.changes[i].after.empty()
                             ? probe_for::erase
                             : probe_for::insert;
                  },
                  [](std::size_t) { return true; },
                  [&](shard& s, std::size_t i) {
                    auto change = record.changes[i];
                    if (!change.after.empty()) {
                      live_delta +=
                        load_entry(s, change.k, hashes[i], change.after);
                    } else if (auto* found = s.map.find(change.k, hashes[i])) {
                      live_delta -= 1;
                      erase_entry(s, found);
                    }
                  });
  live_.fetch_add(static_cast<std::size_t>(live_delta),
                  std::memory_order_relaxed);
  set_applied(record.height, false);
}

void memory_state::set_applied(block_id height, bool fresh) {
  publish_applied(applied_seq_.load(std::memory_order_relaxed), height);
  fresh_.store(fresh, std::memory_order_release);
}

void memory_state::publish_applied(block_seq seq, block_id height) {
  // The height first: a reader that sees the number sees its height.
  // Release: a reader that sees this height (of a later number sharing the
  // slot) sees that number published too, and retries (applied()).
  heights_[seq % heights_.size()].store(height, std::memory_order_release);
  applied_seq_.store(seq, std::memory_order_release);
}

block_id memory_state::applied() const {
  for (;;) {
    auto seq = applied_seq_.load(std::memory_order_acquire);
    auto height =
      heights_[seq % heights_.size()].load(std::memory_order_acquire);
    // Numbers never repeat: the same number twice means the slot still held
    // its height in between.
    if (applied_seq_.load(std::memory_order_acquire) == seq)
      return height;
  }
}

void memory_state::set_live_keys(std::size_t count) {
  live_.store(count, std::memory_order_relaxed);
}

void memory_state::attach_state_of_record(const state_store& store,
                                          std::size_t entry_budget_bytes) {
  std::unique_lock guard{state_of_record_mu_};
  state_of_record_ = &store;
  entry_budget_ = entry_budget_bytes;
  // The clock evicts a window of slots at a time: tables at most half full
  // keep the probes ahead of the hand short (tables 60% full on average ran
  // the 512 MiB benchmark 5x slower: bench/RESULTS.md section 15). A table
  // is then 1/4 to 1/2 full: an entry costs 2 to 4 slots.
  for (auto& s : shards_)
    s->map.set_max_fill(4);
}

void memory_state::detach_state_of_record() {
  std::unique_lock guard{state_of_record_mu_};
  state_of_record_ = nullptr;
}

void memory_state::set_checkpointed(block_id height) {
  if (entry_budget_ == 0)
    return; // only eviction asks what is checkpointed
  std::lock_guard guard{seqs_mu_};
  checkpoint_end_.store(seq_at_or_below(height) + 1,
                        std::memory_order_release);
  trim_seqs();
}

memory_state::block_seq memory_state::seq_at_or_below(block_id height) const {
  // Heights increase along seqs_ (a revert drops the blocks above it).
  auto above = std::upper_bound(
    seqs_.begin(), seqs_.end(), height,
    [](block_id h, const std::pair<block_id, block_seq>& installed) {
      return h < installed.first;
    });
  return above == seqs_.begin() ? 0 : std::prev(above)->second;
}

void memory_state::trim_seqs() {
  auto checkpoint_end = checkpoint_end_.load(std::memory_order_acquire);
  auto floor = floor_.load(std::memory_order_acquire);
  // Keep the newest trimmable one: seq_at_or_below answers with it for
  // heights between it and the next block.
  while (seqs_.size() > 1 && seqs_[1].second < checkpoint_end
         && seqs_[1].second <= floor)
    seqs_.pop_front();
}

memory_state::block_seq memory_state::next_seq() {
  auto seq = last_seq_ + 1;
  if (seq - stamp_base_.load(std::memory_order_relaxed) >= stamp_limit_) {
    rebase();
    if (seq - stamp_base_.load(std::memory_order_relaxed) >= stamp_limit_)
      throw std::length_error{
        "memory_state: the checkpoint is " + std::to_string(stamp_limit_)
        + " or more blocks behind; entry stamps cannot count further"};
  }
  last_seq_ = seq;
  return seq;
}

void memory_state::rebase() {
  // A rebase makes every reader start over, at the applied state's number
  // or above: an entry at or below it reads the same as stamp 0 to each.
  // With a budget one at or below the checkpoint is clean either way, and
  // the base stays there so that dirty entries stay dirty.
  auto base = last_seq_;
  if (entry_budget_ > 0) {
    auto checkpoint_end = checkpoint_end_.load(std::memory_order_acquire);
    base = std::min(base, checkpoint_end == 0 ? 0 : checkpoint_end - 1);
  }
  auto old_base = stamp_base_.load(std::memory_order_relaxed);
  if (base <= old_base)
    return;
  epoch_.fetch_add(1, std::memory_order_acq_rel); // odd: readers wait
  std::vector<std::unique_lock<std::shared_mutex>> guards;
  guards.reserve(shards_.size());
  for (auto& s : shards_)
    guards.emplace_back(s->mu);
  for (auto& s : shards_)
    s->map.for_each([&](std::string_view, entry& e) {
      if (e.stamp != 0)
        e.stamp = old_base + e.stamp <= base
                    ? 0
                    : static_cast<stamp_type>(old_base + e.stamp - base);
    });
  stamp_base_.store(base, std::memory_order_relaxed);
  guards.clear();
  epoch_.fetch_add(1, std::memory_order_acq_rel); // even: readers go on
  logger().debug("memory_state: entry stamps now count from state {}", base);
}

caf::expected<value>
memory_state::read_state_of_record(std::string_view k) const {
  std::shared_lock guard{state_of_record_mu_};
  if (state_of_record_ == nullptr)
    return store_closed();
  return state_of_record_->get(k);
}

caf::expected<std::vector<value>> memory_state::read_state_of_record(
  const std::vector<std::string_view>& keys) const {
  std::shared_lock guard{state_of_record_mu_};
  if (state_of_record_ == nullptr)
    return store_closed();
  return state_of_record_->get_many(keys);
}

void memory_state::make_resident(const block_record_list& newest_first) {
  if (entry_budget_ == 0)
    return;
  for (auto& record : newest_first) {
    // A block no longer listed is checkpointed and below the floor: stamp
    // 0 reads the same to every reader that can succeed.
    stamp_type stamp;
    {
      std::lock_guard guard{seqs_mu_};
      auto found = std::find_if(
        seqs_.begin(), seqs_.end(),
        [&](const std::pair<block_id, block_seq>& installed) {
          return installed.first == record->height;
        });
      stamp = found == seqs_.end() ? 0 : stamp_of(found->second);
    }
    for (auto change : record->changes) {
      auto hash = key_hash(change.k);
      auto& s = *shards_[shard_of_hash(hash)];
      std::unique_lock guard{s.mu};
      // The first record met is the newest change: its after is current.
      if (!s.map.find(change.k, hash))
        emplace_entry(s, change.k, hash, change.after, stamp);
    }
  }
}

caf::expected<memory_state::planned_block>
memory_state::plan_block(block_id height, const operation_list& ops) const {
  if (height > max_height)
    return make_error(ec::invalid_argument,
                      "block " + std::to_string(height)
                        + " is above the highest height a store accepts, "
                        + std::to_string(max_height));
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
  bool split = ops.size() >= parallel_block_changes;
  std::vector<std::uint64_t> op_hashes;
  op_hashes.reserve(ops.size());
  // Per part (below): its operations and their values' bytes, to reserve
  // what each part builds exactly.
  std::array<std::size_t, 2> part_ops{};
  std::array<std::size_t, 2> part_bytes{};
  for (auto& op : ops) {
    auto hash = key_hash(op.k);
    op_hashes.push_back(hash);
    auto part = split ? shard_of_hash(hash) & 1 : 0;
    ++part_ops[part];
    part_bytes[part] += op.v.size();
  }
  // A large block is planned on two threads, each for the keys of half of
  // the shards (shard index % 2): each finds its keys' entries and builds
  // the changes and undo index of its keys, in operation order, from the
  // entries in its own core's cache; the record is half 0's changes, then
  // half 1's. Each half builds in locals, moved out when it ends: writes
  // into shared arrays would move their cache lines between the cores.
  bool budget = entry_budget_ > 0;
  struct part_plan {
    /// With a budget, the part's operations (indexes into ops) in order,
    /// and per operation its key's entry (nullptr if not resident) and its
    /// stored value's index in `stored` (when not resident).
    std::vector<std::uint32_t> ops;
    std::vector<const entry*> resident;
    std::vector<std::uint32_t> stored_of_op;
    /// One change per distinct key, in first-touched order, encoded when
    /// the key is first met; per change its entry's seq, its key's hash
    /// and its last operation, and the index from key to change. A key met
    /// again only moves its last operation, which sets `after`: such parts
    /// are re-encoded at the end (coalesced).
    change_list changes;
    std::vector<block_seq> before_seqs;
    std::vector<std::uint64_t> hashes;
    std::vector<std::uint32_t> last_op;
    std::optional<flat_key_map<std::uint32_t>> index;
    bool coalesced = false;

    /// Prepares to build the changes of `n` operations carrying
    /// `value_bytes` bytes of values.
    void start(std::size_t key_width, std::size_t n, std::size_t value_bytes) {
      changes.reserve(n, n * change_list::encoded_size(key_width, 0, 0)
                           + 2 * value_bytes);
      index.emplace(key_width);
      index->reserve(n);
      before_seqs.reserve(n);
      hashes.reserve(n);
      last_op.reserve(n);
    }

    /// Adds operation `i` (`op`, its key's hash `hash`), whose key's entry
    /// has seq `found_seq` and whose value before the block is `before`.
    void add(std::size_t i, const operation& op, std::uint64_t hash,
             block_seq found_seq, std::string_view before) {
      auto [slot, added] = index->try_emplace(op.k, hash);
      if (!added) {
        last_op[*slot] = static_cast<std::uint32_t>(i);
        coalesced = true;
        return;
      }
      *slot = static_cast<std::uint32_t>(last_op.size());
      changes.push_back({op.k, op.v, before});
      last_op.push_back(static_cast<std::uint32_t>(i));
      before_seqs.push_back(found_seq);
      hashes.push_back(hash);
    }

    /// Ends the building: each change takes its key's last operation.
    void finish(const operation_list& all) {
      if (!coalesced)
        return;
      change_list last_wins;
      last_wins.reserve(changes.size(), changes.payload().size());
      for (std::size_t u = 0; u < changes.size(); ++u) {
        auto c = changes[u];
        last_wins.push_back({c.k, all[last_op[u]].v, c.before});
      }
      changes = std::move(last_wins);
    }
  };
  std::array<part_plan, 2> plans;
  // Without a budget each operation's change is built as soon as its key
  // is looked up, while its entry is in the cache. With one, the lookups
  // come first, then the before values of keys that are not resident from
  // the state of record, read in one pass in key order (new keys counted
  // up cost one LevelDB seek per block instead of one read each), then the
  // changes.
  run_in_parts(split, [&](std::size_t part, std::size_t parts) {
    part_plan mine;
    auto n = part_ops[part];
    if (budget) {
      mine.ops.reserve(n);
      mine.resident.reserve(n);
    } else {
      mine.start(key_width_, n, part_bytes[part]);
    }
    for_each_of_part(
      op_hashes, part, parts, every_key{probe_for::lookup},
      [&](std::size_t i) {
        auto* found = shards_[shard_of_hash(op_hashes[i])]->map.find(
          ops[i].k, op_hashes[i]);
        if (budget) {
          mine.ops.push_back(static_cast<std::uint32_t>(i));
          mine.resident.push_back(found);
        } else {
          mine.add(i, ops[i], op_hashes[i], before_seq_of(found),
                   found ? found->v.view() : std::string_view{});
        }
      });
    if (!budget)
      mine.finish(ops);
    plans[part] = std::move(mine);
  });
  if (budget) {
    std::vector<std::string_view> missing;
    for (auto& plan : plans) {
      plan.stored_of_op.assign(plan.ops.size(), 0);
      for (std::size_t m = 0; m < plan.ops.size(); ++m) {
        if (plan.resident[m] == nullptr) {
          plan.stored_of_op[m] = static_cast<std::uint32_t>(missing.size());
          missing.push_back(ops[plan.ops[m]].k);
        }
      }
    }
    auto values = read_state_of_record(missing);
    if (!values)
      return std::move(values.error());
    auto& stored = *values;
    run_in_parts(split, [&](std::size_t part, std::size_t) {
      auto& plan = plans[part];
      auto n = plan.ops.size();
      part_plan mine;
      mine.start(key_width_, n, part_bytes[part]);
      for (std::size_t m = 0; m < n; ++m) {
        // The entries ahead (their before values) may have left the cache
        // since the lookups.
        if (m + prefetch_distance < n)
          if (auto* ahead = plan.resident[m + prefetch_distance]) {
            __builtin_prefetch(ahead);
            __builtin_prefetch(reinterpret_cast<const char*>(ahead)
                               + sizeof(entry) - 1);
          }
        auto i = plan.ops[m];
        auto* found = plan.resident[m];
        mine.add(i, ops[i], op_hashes[i], before_seq_of(found),
                 found ? found->v.view()
                       : std::string_view{stored[plan.stored_of_op[m]]});
      }
      mine.finish(ops);
      plan = std::move(mine);
    });
  }
  planned_block planned;
  planned.undo = std::make_shared<block_undo>(key_width_);
  auto& undo = *planned.undo;
  auto record = std::make_shared<block_record>();
  record->height = height;
  record->changes = std::move(plans[0].changes);
  undo.before_seqs = std::move(plans[0].before_seqs);
  undo.hashes = std::move(plans[0].hashes);
  undo.index[0] = std::move(*plans[0].index);
  if (split) {
    undo.second_half_base = static_cast<std::uint32_t>(record->changes.size());
    record->changes.append(plans[1].changes);
    undo.before_seqs.insert(undo.before_seqs.end(),
                            plans[1].before_seqs.begin(),
                            plans[1].before_seqs.end());
    undo.hashes.insert(undo.hashes.end(), plans[1].hashes.begin(),
                       plans[1].hashes.end());
    undo.index[1] = std::move(*plans[1].index);
  }
  undo.record = std::move(record);
  return planned;
}

caf::expected<block_record_ptr>
memory_state::plan(block_id height, const operation_list& ops) const {
  auto planned = plan_block(height, ops);
  if (!planned)
    return std::move(planned.error());
  return planned->undo->record;
}

caf::expected<block_record_ptr>
memory_state::apply(block_id height, const operation_list& ops) {
  auto planned = plan_block(height, ops);
  if (!planned)
    return std::move(planned.error());
  auto record = planned->undo->record;
  install_planned(std::move(*planned));
  return record;
}

memory_state::planned_block
memory_state::prepare(block_record_ptr record) const {
  planned_block planned;
  planned.undo = std::make_shared<block_undo>(key_width_);
  auto& undo = *planned.undo;
  auto& changes = record->changes;
  undo.before_seqs.reserve(changes.size());
  undo.index[0].reserve(changes.size());
  undo.hashes = hashes_of(*record);
  for (std::size_t i = 0; i < changes.size(); ++i) {
    prefetch_ahead(i, changes.size(), undo.hashes,
                   [](std::size_t j) { return j; },
                   every_key{probe_for::lookup});
    auto change = changes[i];
    auto hash = undo.hashes[i];
    undo.before_seqs.push_back(
      before_seq_of(shards_[shard_of_hash(hash)]->map.find(change.k, hash)));
    *undo.index[0].try_emplace(change.k, hash).first
      = static_cast<std::uint32_t>(i);
  }
  undo.record = std::move(record);
  return planned;
}

void memory_state::install(block_record_ptr record) {
  install_planned(prepare(std::move(record)));
}

template <class Job>
void memory_state::run_in_parts(bool split, Job job) const {
  if (split)
    halves_.run([&](std::size_t half) { job(half, std::size_t{2}); });
  else
    job(std::size_t{0}, std::size_t{1});
}

template <class IndexAt, class UseOf>
void memory_state::prefetch_ahead(std::size_t m, std::size_t count,
                                  const std::vector<std::uint64_t>& hashes,
                                  IndexAt index_at,
                                  UseOf use_of) const noexcept {
  if (m + 2 * prefetch_distance < count) {
    auto hash = hashes[index_at(m + 2 * prefetch_distance)];
    shards_[shard_of_hash(hash)]->map.prefetch_tags(hash);
  }
  if (m + prefetch_distance < count) {
    auto i = index_at(m + prefetch_distance);
    auto hash = hashes[i];
    shards_[shard_of_hash(hash)]->map.prefetch_slot(hash, use_of(i));
  }
}

template <class UseOf, class F>
void memory_state::for_each_of_part(const std::vector<std::uint64_t>& hashes,
                                    std::size_t part, std::size_t parts,
                                    UseOf use_of, F f) const {
  // With two parts, this part's indexes first, so that the prefetch looks
  // ahead among them (another part's slots would be loaded for nothing).
  std::vector<std::uint32_t> mine;
  if (parts > 1) {
    mine.reserve(hashes.size() / parts + hashes.size() / 16);
    for (std::size_t i = 0; i < hashes.size(); ++i)
      if ((shard_of_hash(hashes[i]) & (parts - 1)) == part)
        mine.push_back(static_cast<std::uint32_t>(i));
  }
  auto count = parts == 1 ? hashes.size() : mine.size();
  auto index_at = [&](std::size_t m) -> std::size_t {
    return parts == 1 ? m : mine[m];
  };
  for (std::size_t m = 0; m < count; ++m) {
    prefetch_ahead(m, count, hashes, index_at, use_of);
    f(index_at(m));
  }
}

template <class UseOf, class Wanted, class Update>
void memory_state::update_by_shard(const std::vector<std::uint64_t>& hashes,
                                   std::size_t part, std::size_t parts,
                                   UseOf use_of, Wanted wanted,
                                   Update update) {
  std::vector<std::vector<std::uint32_t>> by_shard(shards_.size());
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    auto shard_index = shard_of_hash(hashes[i]);
    if ((shard_index & (parts - 1)) == part && wanted(i))
      by_shard[shard_index].push_back(static_cast<std::uint32_t>(i));
  }
  for (std::size_t shard_index = part; shard_index < shards_.size();
       shard_index += parts) {
    auto& indexes = by_shard[shard_index];
    if (indexes.empty())
      continue;
    auto& s = *shards_[shard_index];
    // Readers see each update whole; between chunks they may read the
    // shard (entries of a block being installed are above their position).
    std::unique_lock guard{s.mu, std::defer_lock};
    lock_trying_first(guard);
    for (std::size_t j = 0; j < indexes.size(); ++j) {
      if (j > 0 && j % updates_per_lock == 0) {
        guard.unlock();
        lock_trying_first(guard);
      }
      prefetch_ahead(j, indexes.size(), hashes,
                     [&](std::size_t k) { return indexes[k]; }, use_of);
      update(s, indexes[j]);
    }
  }
}

void memory_state::install_planned(planned_block planned) {
  auto seq = next_seq(); // before any lock: a rebase takes them all
  planned.undo->seq = seq;
  auto& record = planned.undo->record;
  auto& changes = record->changes;
  auto& hashes = planned.undo->hashes;
  auto height = record->height;
  if (entry_budget_ > 0) {
    std::lock_guard guard{seqs_mu_};
    seqs_.emplace_back(height, seq);
  }
  block_undo_ptr undo = std::move(planned.undo);
  // Publish the undo before any entry of this block changes.
  block_undo_ptr expired;
  {
    std::unique_lock guard{undo_mu_};
    if (undo_.size() == undo_depth) {
      expired = std::move(undo_.front());
      undo_.erase(undo_.begin());
      // Readers below it can no longer be answered from the undo. Set under
      // the lock: a reader that misses the undo sees the floor (read_before).
      floor_.store(expired->seq, std::memory_order_release);
    }
    undo_.push_back(std::move(undo));
    newest_undo_seq_.store(seq, std::memory_order_release);
  }
  if (expired)
    expire_undo(expired);
  auto stamp = stamp_of(seq);
  std::array<std::ptrdiff_t, 2> live_deltas{};
  auto install_part = [&](std::size_t part, std::size_t parts) {
    // Counted in a local: the halves' slots of live_deltas share a cache
    // line, which a write per change would move between the cores.
    std::ptrdiff_t live_delta = 0;
    update_by_shard(
      hashes, part, parts,
      [&](std::size_t i) {
        return install_erases(changes[i]) ? probe_for::erase
                                          : probe_for::insert;
      },
      [](std::size_t) { return true; },
      [&](shard& s, std::size_t i) {
        live_delta += install_change(s, changes[i], hashes[i], stamp);
      });
    live_deltas[part] = live_delta;
  };
  run_in_parts(changes.size() >= parallel_block_changes, install_part);
  live_.fetch_add(static_cast<std::size_t>(live_deltas[0] + live_deltas[1]),
                  std::memory_order_relaxed);
  publish_applied(seq, height);
  fresh_.store(false, std::memory_order_release);
  evict_over_budget();
}

std::ptrdiff_t memory_state::install_change(shard& s, key_change_view change,
                                           std::uint64_t hash,
                                           stamp_type stamp) {
  if (install_erases(change)) {
    // No tombstone: readers below this block find the key's value in its
    // undo (read_before).
    auto* deleted = s.map.find(change.k, hash);
    if (!deleted)
      return 0;
    erase_entry(s, deleted);
    return -1;
  }
  entry* found;
  if (change.after.empty() && change.before.empty()) {
    // With a budget, deleting an absent key: nothing to show or undo,
    // unless it has a resident tombstone.
    found = s.map.find(change.k, hash);
    if (!found)
      return 0;
  } else {
    // One probe whether the key is resident or not.
    auto [slot, added] = s.map.try_emplace(change.k, hash);
    if (added) {
      // Not resident: absent, or (with a budget) in the state of record
      // with `before` as its value. A delete of a stored key leaves a
      // tombstone until the checkpoint that writes it.
      set_new_entry(s, *slot, change.after, stamp);
      return static_cast<std::ptrdiff_t>(!change.after.empty())
             - static_cast<std::ptrdiff_t>(!change.before.empty());
    }
    found = slot;
  }
  auto was_live = !found->v.empty();
  assign_entry(s, *found, change.after, stamp);
  return static_cast<std::ptrdiff_t>(!change.after.empty())
         - static_cast<std::ptrdiff_t>(was_live);
}

std::size_t memory_state::sweep(shard& s, block_seq ceiling, std::size_t goal,
                                std::size_t max_slots) {
  std::unique_lock guard{s.mu};
  auto slots = s.map.capacity();
  if (slots == 0)
    return 0;
  std::size_t freed = 0;
  auto from = s.hand % slots;
  auto count = std::min(max_slots, slots);
  s.map.erase_in(from, count, [&](std::string_view, entry& e,
                                  bool& referenced) {
    if (freed >= goal)
      return false;
    if (seq_of(e) > ceiling)
      return false; // dirty, or a reader may need it
    if (referenced) {
      referenced = false; // read since the last sweep: a second chance
      return false;
    }
    freed += entry_bytes(e.v);
    return true;
  });
  s.hand = (from + count) % slots;
  add_resident_bytes(s, -static_cast<std::ptrdiff_t>(freed));
  return freed;
}

void memory_state::evict_over_budget() {
  if (entry_budget_ == 0)
    return;
  auto bytes = resident_bytes();
  if (bytes <= entry_budget_)
    return;
  // Clean: the state of record holds the value and no reader can need an
  // older one.
  auto checkpoint_end = checkpoint_end_.load(std::memory_order_acquire);
  if (checkpoint_end == 0)
    return; // nothing was ever checkpointed: every entry is dirty
  auto ceiling =
    std::min(checkpoint_end - 1, floor_.load(std::memory_order_acquire));
  if (stalled_ceiling_ == ceiling)
    return; // nothing became clean since the last fruitless sweep
  // Free a little more than the excess, so that not every block sweeps.
  auto need = bytes - (entry_budget_ - entry_budget_ / 16);
  // Each shard in turn frees its share; two clock turns over every slot
  // (one clears the referenced bits) find every clean entry.
  constexpr std::size_t slots_per_visit = 4096;
  std::size_t total_slots = 0;
  for (auto& s : shards_)
    total_slots += s->map.capacity(); // the writer owns the maps
  auto share = std::max<std::size_t>(need / shards_.size(), 4096);
  std::size_t freed = 0;
  std::size_t swept = 0;
  while (freed < need && swept < 2 * total_slots) {
    auto& s = *shards_[hand_shard_];
    hand_shard_ = (hand_shard_ + 1) % shards_.size();
    freed += sweep(s, ceiling, std::min(share, need - freed),
                   slots_per_visit);
    swept += std::min(slots_per_visit, s.map.capacity());
  }
  if (freed < need)
    stalled_ceiling_ = ceiling;
  else
    stalled_ceiling_.reset();
}

void memory_state::expire_undo(const block_undo_ptr& oldest) {
  if (entry_budget_ == 0)
    return; // no tombstones to purge
  auto seq = oldest->seq;
  {
    std::lock_guard guard{seqs_mu_};
    trim_seqs();
  }
  // A tombstone stays until the state of record has the delete too (then
  // the eviction clock takes it).
  if (checkpoint_end_.load(std::memory_order_acquire) <= seq)
    return;
  // The tombstones this block wrote.
  auto& changes = oldest->record->changes;
  auto& hashes = oldest->hashes;
  update_by_shard(
    hashes, 0, 1, every_key{probe_for::erase},
    [&](std::size_t i) { return changes[i].after.empty(); },
    [&](shard& s, std::size_t i) {
      auto* found = s.map.find(changes[i].k, hashes[i]);
      // Stamp 0: this block's tombstone rebased, or one just as old (no
      // reader at or above the floor tells them from absent keys).
      if (found && found->v.empty()
          && (found->stamp == 0 || seq_of(*found) == seq)) {
        erase_entry(s, found);
      }
    });
}

std::ptrdiff_t
memory_state::revert_shards(const block_record_list& newest_first,
                            std::size_t part, std::size_t parts) {
  std::ptrdiff_t live_delta = 0;
  for (auto& record : newest_first) {
    auto hashes = hashes_of(*record);
    for_each_of_part(
      hashes, part, parts,
      [&](std::size_t i) {
        return revert_erases(record->changes[i]) ? probe_for::erase
                                                 : probe_for::insert;
      },
      [&](std::size_t i) {
        auto change = record->changes[i];
        auto hash = hashes[i];
        auto& s = *shards_[shard_of_hash(hash)];
        auto* found = s.map.find(change.k, hash);
        // Not resident (a budget without make_resident): its current value is
        // this newest change's after.
        auto was_live = found ? !found->v.empty() : !change.after.empty();
        if (revert_erases(change)) {
          if (found)
            erase_entry(s, found);
        } else if (found) {
          // With a budget an absent key keeps a tombstone: the state of record
          // may hold it until it is rewritten.
          assign_entry(s, *found, change.before, 0);
        } else {
          emplace_entry(s, change.k, hash, change.before, 0);
        }
        live_delta += static_cast<std::ptrdiff_t>(!change.before.empty())
                      - static_cast<std::ptrdiff_t>(was_live);
      });
  }
  return live_delta;
}

void memory_state::revert(const block_record_list& newest_first,
                          block_id target) {
  // The state left gets a number of its own (before any lock: a rebase
  // takes them all): the reverted blocks' numbers are never used again.
  auto seq = next_seq();
  epoch_.fetch_add(1, std::memory_order_acq_rel); // odd: readers wait
  std::vector<std::unique_lock<std::shared_mutex>> guards;
  guards.reserve(shards_.size());
  for (auto& s : shards_)
    guards.emplace_back(s->mu);
  std::size_t changes = 0;
  for (auto& record : newest_first)
    changes += record->changes.size();
  std::array<std::ptrdiff_t, 2> deltas{};
  run_in_parts(changes >= parallel_revert_changes,
               [&](std::size_t part, std::size_t parts) {
                 deltas[part] = revert_shards(newest_first, part, parts);
               });
  auto live_delta = deltas[0] + deltas[1];
  {
    std::unique_lock guard{undo_mu_};
    std::erase_if(undo_, [&](const block_undo_ptr& undo) {
      return undo->record->height > target;
    });
  }
  if (entry_budget_ > 0) {
    std::lock_guard guard{seqs_mu_};
    while (!seqs_.empty() && seqs_.back().first > target)
      seqs_.pop_back();
    // A checkpoint at the target's block holds the state left (so does one
    // above it: REQUIRES), which now has this number.
    auto checkpoint_end = checkpoint_end_.load(std::memory_order_acquire);
    if (checkpoint_end > 0 && checkpoint_end - 1 >= seq_at_or_below(target))
      checkpoint_end_.store(seq + 1, std::memory_order_release);
    seqs_.emplace_back(target, seq);
  }
  live_.fetch_add(static_cast<std::size_t>(live_delta),
                  std::memory_order_relaxed);
  publish_applied(seq, target);
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

memory_state::block_undo_ptr memory_state::find_undo(block_seq seq) const {
  std::shared_lock guard{undo_mu_};
  for (auto& undo : undo_)
    if (undo->seq == seq)
      return undo;
  return nullptr;
}

void memory_state::mark_referenced(const shard& s, const entry& e) const {
  if (entry_budget_ > 0)
    s.map.mark(&e);
}

bool memory_state::read_at(std::string_view k, std::uint64_t hash,
                           block_seq at, value& out, caf::error& err,
                           bool locked) const {
  auto& s = *shards_[shard_of_hash(hash)];
  block_seq seq = 0;
  std::optional<value> stored; // read from the state of record
  for (;;) {
    {
      std::shared_lock guard{s.mu, std::defer_lock};
      if (!locked)
        lock_trying_first(guard);
      if (auto* found = s.map.find(k, hash)) {
        auto& e = *found;
        mark_referenced(s, e);
        seq = seq_of(e);
        if (seq <= at) {
          out.assign(e.v.view());
          return true;
        }
        break; // written above our number: walk back its undo
      }
      if (entry_budget_ == 0)
        return read_before(k, hash, at, no_bound, out);
      if (stored) {
        // Still not resident after the read: the key was not written since
        // the state of record's height (see the class comment).
        out = std::move(*stored);
        return true;
      }
    }
    auto x = read_state_of_record(k);
    if (!x) {
      err = std::move(x.error());
      out.clear();
      return true;
    }
    stored = std::move(*x);
  }
  // The entry was written by a block above our number: walk back its undo.
  while (seq > at) {
    auto undo = find_undo(seq);
    if (!undo)
      return false;
    auto i = change_of(*undo, k, hash);
    if (!i)
      return false; // cannot happen for a consistent undo; start over
    if (undo->before_seqs[*i] == absent_before)
      return read_before(k, hash, at, seq, out);
    seq = undo->before_seqs[*i];
    if (seq <= at) {
      out = undo->record->changes[*i].before;
      return true;
    }
  }
  return false;
}

std::optional<std::uint32_t>
memory_state::change_of(const block_undo& undo, std::string_view k,
                        std::uint64_t hash) const {
  // Only a block planned in halves has keys in index[1].
  auto half = undo.index[1].empty() ? 0 : shard_of_hash(hash) & 1;
  if (auto* i = undo.index[half].find(k, hash))
    return *i + (half == 1 ? undo.second_half_base : 0);
  return std::nullopt;
}

bool memory_state::read_before(std::string_view k, std::uint64_t hash,
                               block_seq at, block_seq below,
                               value& out) const {
  // No block above `at` yet: no change made the key absent since.
  if (newest_undo_seq_.load(std::memory_order_acquire) <= at) {
    out.clear();
    return true;
  }
  std::shared_lock guard{undo_mu_};
  if (floor_.load(std::memory_order_acquire) > at)
    return false; // a block above `at` may be gone
  for (auto& undo : undo_) { // oldest first
    if (undo->seq <= at)
      continue;
    if (undo->seq >= below)
      break;
    if (auto i = change_of(*undo, k, hash)) {
      out = undo->record->changes[*i].before;
      return true;
    }
  }
  out.clear();
  return true;
}

template <class Read>
void memory_state::read_consistent(Read read) const {
  for (std::size_t attempt = 0; attempt < optimistic_attempts_; ++attempt) {
    auto epoch = epoch_.load(std::memory_order_acquire);
    if (epoch % 2 == 1) {
      std::this_thread::yield(); // a revert runs: it holds every shard anyway
      continue;
    }
    auto at = read_seq();
    if (read(at, false) && epoch_.load(std::memory_order_acquire) == epoch
        && floor_.load(std::memory_order_acquire) <= at)
      return;
  }
  // Hold every shard (in the order reverts take them): no revert can run and
  // no entry can change. Entries of a block being installed are above the
  // read number (block 0's too: a fresh state reads at number 0), and
  // that block's undo is the newest one kept.
  std::vector<std::shared_lock<std::shared_mutex>> guards;
  guards.reserve(shards_.size());
  for (auto& s : shards_)
    guards.emplace_back(s->mu);
  if (!read(read_seq(), true))
    logger().critical("memory_state: a locked read found no undo for an "
                      "entry above the applied height; the in-memory state "
                      "is inconsistent");
}

caf::expected<value> memory_state::get(const key& k) const {
  value result;
  caf::error err;
  auto hash = key_hash(k);
  read_consistent([&](block_seq at, bool locked) {
    return read_at(k, hash, at, result, err, locked);
  });
  if (err)
    return err;
  if (staging_.load(std::memory_order_acquire)) {
    std::lock_guard guard{stage_mu_};
    if (auto found = staged_.find(k); found != staged_.end())
      result = found->second;
  }
  return result;
}

caf::expected<value> memory_state::get_after(const key& k,
                                             block_id height) const {
  auto hash = key_hash(k);
  // read_at fails when an undo it needs went away meanwhile (expired or
  // reverted): the next round sees whether block `height`'s is still kept.
  // One that stays kept and keeps failing does not explain the entries.
  constexpr int attempts = 16;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    std::optional<block_seq> at;
    {
      std::shared_lock guard{undo_mu_};
      for (auto& undo : undo_)
        if (undo->record->height == height)
          at = undo->seq;
    }
    if (!at)
      return make_error(ec::rollback_beyond_history,
                        "the state after block " + std::to_string(height)
                          + " is not kept (the undo of the "
                          + std::to_string(undo_depth)
                          + " newest blocks is)");
    value result;
    caf::error err;
    if (read_at(k, hash, *at, result, err)) {
      if (err)
        return err;
      return result;
    }
  }
  return make_error(ec::state_corrupt,
                    "the undo kept for block " + std::to_string(height)
                      + " does not explain the entries above it");
}

caf::expected<std::vector<value>>
memory_state::get_many(const std::vector<key>& keys) const {
  std::vector<value> result(keys.size());
  std::vector<std::uint64_t> hashes(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i)
    hashes[i] = key_hash(keys[i]);
  // The keys shard by shard (a counting sort), so that a read takes each
  // shard's lock once and loads the slots of the keys ahead under it.
  std::vector<std::size_t> shard_end(shards_.size() + 1, 0);
  for (auto hash : hashes)
    ++shard_end[shard_of_hash(hash) + 1];
  for (std::size_t s = 1; s < shard_end.size(); ++s)
    shard_end[s] += shard_end[s - 1];
  std::vector<std::size_t> by_shard(keys.size());
  {
    auto next = shard_end;
    for (std::size_t i = 0; i < keys.size(); ++i)
      by_shard[next[shard_of_hash(hashes[i])]++] = i;
  }
  caf::error err;
  std::vector<std::size_t> slow;
  read_consistent([&](block_seq at, bool locked) {
    for (std::size_t shard_index = 0; shard_index < shards_.size();
         ++shard_index) {
      auto from = shard_end[shard_index];
      auto to = shard_end[shard_index + 1];
      if (from == to)
        continue;
      auto& s = *shards_[shard_index];
      // Under the lock: the entries at or below the read number, and the
      // keys absent without a budget. The rest (undo walks, reads of the
      // state of record) go through read_at, without this lock.
      slow.clear();
      {
        std::shared_lock guard{s.mu, std::defer_lock};
        if (!locked)
          lock_trying_first(guard);
        // Read after the lock: a key this shard lost to a delete above `at`
        // shows that block's undo (install publishes it first).
        bool absent_is_absent =
          entry_budget_ == 0
          && newest_undo_seq_.load(std::memory_order_acquire) <= at;
        for (auto j = from; j < to; ++j) {
          prefetch_ahead(j, to, hashes,
                         [&](std::size_t k) { return by_shard[k]; },
                         every_key{probe_for::lookup});
          auto i = by_shard[j];
          auto* found = s.map.find(keys[i], hashes[i]);
          if (found != nullptr && seq_of(*found) <= at) {
            mark_referenced(s, *found);
            result[i].assign(found->v.view());
          } else if (found == nullptr && absent_is_absent) {
            result[i].clear();
          } else {
            slow.push_back(i);
          }
        }
      }
      for (auto i : slow) {
        if (!read_at(keys[i], hashes[i], at, result[i], err, locked))
          return false;
        if (err)
          return true;
      }
    }
    return true;
  });
  if (err)
    return err;
  if (staging_.load(std::memory_order_acquire)) {
    std::lock_guard guard{stage_mu_};
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (auto found = staged_.find(keys[i]); found != staged_.end())
        result[i] = found->second;
  }
  return result;
}

caf::expected<std::vector<std::pair<key, value>>>
memory_state::snapshot() const {
  std::vector<std::pair<key, value>> result;
  for (auto& s : shards_) {
    std::shared_lock guard{s->mu};
    s->map.for_each([&](std::string_view k, const entry& e) {
      if (!e.v.empty())
        result.emplace_back(key{k}, e.v.str());
    });
  }
  if (entry_budget_ > 0) {
    // Resident entries (tombstones included) win over the state of record.
    std::shared_lock guard{state_of_record_mu_};
    if (state_of_record_ == nullptr)
      return store_closed();
    auto err = state_of_record_->for_each([&](const key& k, const value& v) {
      auto hash = key_hash(k);
      auto& s = *shards_[shard_of_hash(hash)];
      std::shared_lock shard_guard{s.mu};
      if (!s.map.find(k, hash))
        result.emplace_back(k, v);
    });
    if (err)
      return err;
  }
  std::sort(result.begin(), result.end());
  return result;
}

} // namespace rollblock::storage
