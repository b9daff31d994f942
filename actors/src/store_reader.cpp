#include "rollblock/actors/store_reader.hpp"

#include "rollblock/messages/error.hpp"

#include <chrono>

namespace rollblock {

store_shared::store_shared(std::shared_ptr<storage::memory_state> memory,
                           durability_mode mode, store_heights heights)
  : memory_(std::move(memory)),
    durable_(heights.durable),
    current_(heights.current),
    durability_(mode) {
  counters_.touch();
}

store_heights store_shared::heights() const {
  return {memory_->applied(), durable_.load(std::memory_order_acquire),
          current_.load(std::memory_order_acquire)};
}

void store_shared::set_durable(block_id height) {
  durable_.store(height, std::memory_order_release);
}

void store_shared::set_current(block_id height) {
  current_.store(height, std::memory_order_release);
}

durability_mode store_shared::durability() const {
  std::lock_guard guard{mu_};
  return durability_;
}

void store_shared::set_durability(durability_mode mode) {
  std::lock_guard guard{mu_};
  durability_ = mode;
}

caf::error store_shared::refusal() const {
  switch (status_.load(std::memory_order_acquire)) {
    case status::serving:
      return {};
    case status::closed:
      return make_error(ec::store_closed, "the store was shut down");
    case status::fatal:
      break;
  }
  std::lock_guard guard{mu_};
  return fatal_;
}

void store_shared::set_fatal(caf::error err) {
  std::lock_guard guard{mu_};
  if (status_.load() != status::serving)
    return;
  fatal_ = std::move(err);
  status_.store(status::fatal, std::memory_order_release);
}

void store_shared::set_closed() {
  std::lock_guard guard{mu_};
  if (status_.load() == status::serving)
    status_.store(status::closed, std::memory_order_release);
}

store_reader::store_reader(std::shared_ptr<store_shared> shared)
  : shared_(std::move(shared)) {
}

std::size_t store_reader::key_width() const {
  return shared_->memory().key_width();
}

caf::error store_reader::check_key(const key& k) const {
  if (k.size() == key_width())
    return {};
  return make_error(ec::key_width_mismatch,
                    "a " + std::to_string(k.size())
                      + "-byte key was given; this store's keys are "
                      + std::to_string(key_width()) + " bytes");
}

namespace {

std::uint64_t elapsed_ns(std::chrono::steady_clock::time_point start) {
  return static_cast<std::uint64_t>(
    std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::steady_clock::now() - start)
      .count());
}

} // namespace

caf::expected<value> store_reader::fetch(const key& k) const {
  if (auto err = shared_->refusal())
    return err;
  auto& counters = shared_->counters();
  if (auto err = check_key(k)) {
    counters.client_errors.fetch_add(1, std::memory_order_relaxed);
    return err;
  }
  auto start = std::chrono::steady_clock::now();
  auto result = shared_->memory().get(k);
  counters.lookups.fetch_add(1, std::memory_order_relaxed);
  counters.lookup_latency.record(elapsed_ns(start));
  return result;
}

caf::expected<std::vector<value>>
store_reader::fetch_many(const std::vector<key>& keys) const {
  if (auto err = shared_->refusal())
    return err;
  auto& counters = shared_->counters();
  for (auto& k : keys)
    if (auto err = check_key(k)) {
      counters.client_errors.fetch_add(1, std::memory_order_relaxed);
      return err;
    }
  auto start = std::chrono::steady_clock::now();
  auto result = shared_->memory().get_many(keys);
  counters.lookups.fetch_add(keys.size(), std::memory_order_relaxed);
  counters.lookup_latency.record(elapsed_ns(start));
  return result;
}

store_heights store_reader::heights() const {
  return shared_->heights();
}

} // namespace rollblock
