// The rollblock engine: the blocking facade over the store's actors.

#include "engines/engine.hpp"

#include "rollblock/actors/blocking_store.hpp"
#include "rollblock/messages/error.hpp"

namespace rollblock::bench {

namespace {

class rollblock_engine final : public engine {
public:
  explicit rollblock_engine(store_options opts) : opts_(std::move(opts)) {
    reopen();
  }

  void apply(block_id height, operation_list ops) override {
    check(store_->apply(height, std::move(ops)), "apply");
  }

  void flush() override {
    auto res = store_->flush();
    if (!res)
      check(res.error(), "flush");
  }

  bool can_revert() const override {
    return true;
  }

  void revert_to(block_id target) override {
    check(store_->revert_to(target), "revert_to");
  }

  void close() override {
    check(store_->close(), "close");
    store_.reset();
  }

  void reopen() override {
    auto res = blocking_store::open(opts_);
    if (!res)
      check(res.error(), "open");
    store_ = std::move(*res);
  }

  std::uint64_t live_keys() override {
    auto m = store_->metrics();
    if (!m)
      check(m.error(), "metrics");
    return m->live_keys;
  }

  value get(const key& k) override {
    auto res = store_->fetch(k);
    if (!res)
      check(res.error(), "fetch");
    return *res;
  }

private:
  static void check(const caf::error& err, const char* what) {
    if (err)
      throw engine_error(std::string{what} + ": " + describe(err));
  }

  store_options opts_;
  std::unique_ptr<blocking_store> store_;
};

} // namespace

std::unique_ptr<engine>
make_rollblock_engine(store_options opts) {
  return std::make_unique<rollblock_engine>(std::move(opts));
}

} // namespace rollblock::bench
