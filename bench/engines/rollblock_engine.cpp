// The rollblock engine: the blocking facade over the store's actors, or,
// with more than one block in flight, an actor client that sends the next
// block's apply request before the previous reply arrives (the store still
// applies them one by one, in order).

#include "engines/engine.hpp"

#include "rollblock/actors/blocking_store.hpp"
#include "rollblock/messages/atoms.hpp"
#include "rollblock/messages/error.hpp"

#include <caf/scoped_actor.hpp>

#include <deque>
#include <optional>
#include <utility>

namespace rollblock::bench {

namespace {

class rollblock_engine final : public engine {
public:
  rollblock_engine(store_options opts, std::size_t in_flight)
    : opts_(std::move(opts)), in_flight_(in_flight) {
    reopen();
  }

  ~rollblock_engine() override {
    try {
      settle();
    } catch (const engine_error&) {
      // The driver is already failing; the store's destructor closes it.
    }
  }

  void apply(block_id height, operation_list ops) override {
    if (in_flight_ <= 1) {
      check(store_->apply(height, std::move(ops)), "apply");
      return;
    }
    pending_.push_back((*client_)->request(store_->actor(), caf::infinite,
                                           atom::apply::value, height,
                                           std::move(ops)));
    if (pending_.size() >= in_flight_)
      await_oldest();
  }

  void flush() override {
    settle();
    auto res = store_->flush();
    if (!res)
      check(res.error(), "flush");
  }

  bool can_revert() const override {
    return true;
  }

  void revert_to(block_id target) override {
    settle();
    check(store_->revert_to(target), "revert_to");
  }

  void close() override {
    settle();
    client_.reset();
    check(store_->close(), "close");
    store_.reset();
  }

  void reopen() override {
    auto res = blocking_store::open(opts_);
    if (!res)
      check(res.error(), "open");
    store_ = std::move(*res);
    if (in_flight_ > 1)
      client_.emplace(store_->system());
  }

  std::uint64_t live_keys() override {
    settle();
    auto m = store_->metrics();
    if (!m)
      check(m.error(), "metrics");
    return m->live_keys;
  }

  std::optional<std::uint64_t> state_table_bytes() override {
    settle();
    auto m = store_->metrics();
    if (!m)
      check(m.error(), "metrics");
    return m->state_table_bytes;
  }

  value get(const key& k) override {
    settle();
    auto res = store_->fetch(k);
    if (!res)
      check(res.error(), "fetch");
    return *res;
  }

private:
  using pending_apply = decltype(std::declval<caf::scoped_actor&>()->request(
    std::declval<const store_actor&>(), caf::infinite, atom::apply::value,
    block_id{}, operation_list{}));

  static void check(const caf::error& err, const char* what) {
    if (err)
      throw engine_error(std::string{what} + ": " + describe(err));
  }

  /// Waits for the reply to the oldest apply in flight.
  void await_oldest() {
    caf::error err;
    pending_.front().receive([](block_id) {},
                             [&](caf::error& x) { err = std::move(x); });
    pending_.pop_front();
    check(err, "apply");
  }

  /// Waits for every apply in flight.
  void settle() {
    while (!pending_.empty())
      await_oldest();
  }

  store_options opts_;
  std::size_t in_flight_;
  std::unique_ptr<blocking_store> store_;
  /// With more than one block in flight: the client and its requests.
  std::optional<caf::scoped_actor> client_;
  std::deque<pending_apply> pending_;
};

} // namespace

std::unique_ptr<engine>
make_rollblock_engine(store_options opts, std::size_t in_flight) {
  return std::make_unique<rollblock_engine>(std::move(opts), in_flight);
}

} // namespace rollblock::bench
