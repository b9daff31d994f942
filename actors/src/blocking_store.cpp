#include "rollblock/actors/blocking_store.hpp"

#include "rollblock/messages/error.hpp"

#include <caf/send.hpp>

#include "rollblock/storage/logger.hpp"

#include <spdlog/spdlog.h>

namespace rollblock {

namespace {

/// An actor system and the config it refers to, which must outlive it.
struct owned_system {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;

  owned_system() {
    add_rollblock_types(cfg);
    configure_scheduler(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
  }
};

} // namespace

caf::expected<std::unique_ptr<blocking_store>>
blocking_store::open(const store_options& opts) {
  auto own = std::make_shared<owned_system>();
  auto handle = spawn_store(*own->sys, opts);
  if (!handle)
    return handle.error();
  auto& sys = *own->sys;
  return std::unique_ptr<blocking_store>{
    new blocking_store(std::move(own), sys, std::move(*handle))};
}

caf::expected<std::unique_ptr<blocking_store>>
blocking_store::open(caf::actor_system& sys, const store_options& opts) {
  auto handle = spawn_store(sys, opts);
  if (!handle)
    return handle.error();
  return std::unique_ptr<blocking_store>{
    new blocking_store(nullptr, sys, std::move(*handle))};
}

blocking_store::blocking_store(std::shared_ptr<void> own,
                               caf::actor_system& sys, store_handle handle)
  : own_system_(std::move(own)),
    sys_(sys),
    handle_(std::move(handle)),
    self_(sys_) {
}

blocking_store::~blocking_store() {
  auto err = close();
  if (!err || code_of(err) == ec::store_closed)
    return;
  logger().error("closing the store failed: {}", describe(err));
  if (!closed_) // e.g. a staged block: stop the actors without a flush
    caf::anon_send_exit(handle_.actor, caf::exit_reason::user_shutdown);
}

template <class Result, class... Ts>
caf::expected<Result> blocking_store::call(Ts&&... xs) {
  std::lock_guard guard{call_mu_};
  if (closed_)
    return make_error(ec::store_closed, "the store was shut down");
  caf::expected<Result> result{caf::error{}};
  self_->request(handle_.actor, caf::infinite, std::forward<Ts>(xs)...)
    .receive([&](Result& x) { result = std::move(x); },
             [&](caf::error& err) { result = std::move(err); });
  return result;
}

caf::error blocking_store::apply(block_id height, operation_list ops) {
  auto result = call<block_id>(atom::apply::value, height, std::move(ops));
  return result ? caf::error{} : result.error();
}

caf::error blocking_store::revert_to(block_id target) {
  auto result = call<block_id>(atom::revert::value, target);
  return result ? caf::error{} : result.error();
}

caf::expected<value> blocking_store::fetch(const key& k) const {
  return handle_.reader.fetch(k);
}

caf::expected<std::vector<value>>
blocking_store::fetch_many(const std::vector<key>& keys) const {
  return handle_.reader.fetch_many(keys);
}

caf::expected<value> blocking_store::pop(block_id height, const key& k) {
  return call<value>(atom::pop::value, height, k);
}

caf::error blocking_store::start_block(block_id height) {
  auto result = call<atom::ok>(atom::start::value, height);
  return result ? caf::error{} : result.error();
}

caf::error blocking_store::set(const key& k, const value& v) {
  auto result = call<atom::ok>(atom::set::value, k, v);
  return result ? caf::error{} : result.error();
}

caf::expected<value> blocking_store::pop(const key& k) {
  return call<value>(atom::pop::value, k);
}

caf::expected<block_id> blocking_store::end_block() {
  return call<block_id>(atom::end::value);
}

store_heights blocking_store::heights() const {
  return handle_.reader.heights();
}

block_id blocking_store::applied_height() const {
  return heights().applied;
}

block_id blocking_store::durable_height() const {
  return heights().durable;
}

block_id blocking_store::current_height() const {
  return heights().current;
}

caf::expected<block_id> blocking_store::flush() {
  return call<block_id>(atom::flush::value);
}

caf::error blocking_store::close() {
  auto result = call<atom::ok>(atom::shutdown::value);
  if (!result && code_of(result.error()) == ec::store_closed)
    return result.error();
  if (!result && code_of(result.error()) == ec::block_in_progress)
    return result.error();
  closed_ = true;
  return result ? caf::error{} : result.error();
}

caf::error blocking_store::ensure_healthy() {
  auto result = call<atom::ok>(atom::healthy::value);
  return result ? caf::error{} : result.error();
}

caf::expected<durability_mode> blocking_store::set_relaxed(std::uint32_t n) {
  return call<durability_mode>(atom::relaxed::value, n);
}

caf::expected<durability_mode> blocking_store::set_strict() {
  return call<durability_mode>(atom::strict::value);
}

caf::expected<metrics_snapshot> blocking_store::metrics() {
  return call<metrics_snapshot>(atom::metrics::value);
}

caf::expected<health_report> blocking_store::health() {
  return call<health_report>(atom::health::value);
}

std::size_t blocking_store::key_width() const {
  return handle_.reader.key_width();
}

} // namespace rollblock
