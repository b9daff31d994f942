#include "rollblock/actors/store_reader.hpp"

#include "rollblock/messages/error.hpp"

#include "rollblock/storage/logger.hpp"

#include <caf/exit_reason.hpp>

#include <spdlog/spdlog.h>

#include <cassert>
#include <chrono>
#include <stdexcept>

namespace rollblock {

store_shared::store_shared(std::shared_ptr<storage::memory_state> memory,
                           durability_mode mode, store_heights heights)
  : memory_(memory),
    key_width_(memory->key_width()),
    durable_(heights.durable),
    current_(heights.current),
    durability_(mode) {
  // nop
}

void store_shared::set_memory(std::shared_ptr<storage::memory_state> memory) {
  assert(memory->key_width() == key_width_);
  memory_.store(std::move(memory), std::memory_order_release);
}

void store_shared::set_fault_hook(std::function<void(std::string_view)> hook) {
  fault_hook_ = std::move(hook);
}

void store_shared::fault_point(std::string_view point) const {
  if (fault_hook_)
    fault_hook_(point);
}

void store_shared::set_restart(bool in_progress, std::string reason) {
  std::lock_guard guard{mu_};
  restarting_ = in_progress;
  last_restart_ = std::chrono::steady_clock::now();
  restart_reason_ = std::move(reason);
}

std::optional<std::string>
store_shared::restart_fault(std::chrono::steady_clock::duration window) const {
  std::lock_guard guard{mu_};
  if (restarting_)
    return restart_reason_;
  if (last_restart_ && std::chrono::steady_clock::now() - *last_restart_ < window)
    return restart_reason_;
  return std::nullopt;
}

store_heights store_shared::heights() const {
  // A height read from a store made after its count went odd (release
  // store, acquire load) shows that count to the second load below.
  for (;;) {
    auto before = heights_seq_.load(std::memory_order_acquire);
    auto durable = durable_.load(std::memory_order_acquire);
    auto current = current_.load(std::memory_order_acquire);
    if (before % 2 == 0
        && heights_seq_.load(std::memory_order_relaxed) == before)
      return {memory()->applied(), durable, current};
  }
}

void store_shared::publish_height(std::atomic<block_id>& height,
                                  block_id value) {
  auto seq = heights_seq_.load(std::memory_order_relaxed);
  heights_seq_.store(seq + 1, std::memory_order_relaxed);
  height.store(value, std::memory_order_release);
  heights_seq_.store(seq + 2, std::memory_order_release);
}

void store_shared::set_durable(block_id height) {
  publish_height(durable_, height);
}

void store_shared::set_current(block_id height) {
  publish_height(current_, height);
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

caf::error crash_exit_reason(std::string_view actor, std::exception_ptr& eptr) {
  try {
    std::rethrow_exception(eptr);
  } catch (const std::exception& e) {
    logger().error("the {} actor crashed: {}", actor, e.what());
  } catch (...) {
    logger().error("the {} actor crashed: an exception of unknown type",
                   actor);
  }
  return caf::exit_reason::unhandled_exception;
}

store_reader::store_reader(std::shared_ptr<store_shared> shared)
  : shared_(std::move(shared)) {
}

std::size_t store_reader::key_width() const {
  return shared_->key_width();
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
  auto result = shared_->memory()->get(k);
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
  auto result = shared_->memory()->get_many(keys);
  counters.lookups.fetch_add(keys.size(), std::memory_order_relaxed);
  counters.lookup_latency.record(elapsed_ns(start));
  return result;
}

store_heights store_reader::heights() const {
  return shared_->heights();
}

} // namespace rollblock
