#include "rollblock/storage/worker_pair.hpp"

namespace rollblock::storage {

worker_pair::~worker_pair() {
  {
    std::lock_guard guard{mu_};
    stop_ = true;
  }
  start_.notify_one();
  if (thread_.joinable())
    thread_.join();
}

void worker_pair::run(const std::function<void(std::size_t)>& job) {
  {
    std::lock_guard guard{mu_};
    if (!thread_.joinable())
      thread_ = std::thread{[this] { serve(); }};
    job_ = &job;
    error_ = nullptr;
    ++round_;
  }
  start_.notify_one();
  std::exception_ptr mine;
  try {
    job(0);
  } catch (...) {
    mine = std::current_exception();
  }
  std::unique_lock guard{mu_};
  finish_.wait(guard, [this] { return done_ == round_; });
  job_ = nullptr;
  if (mine)
    std::rethrow_exception(mine);
  if (error_)
    std::rethrow_exception(error_);
}

void worker_pair::serve() {
  std::unique_lock guard{mu_};
  for (;;) {
    start_.wait(guard, [this] { return stop_ || done_ != round_; });
    if (stop_)
      return;
    auto* job = job_;
    guard.unlock();
    std::exception_ptr error;
    try {
      (*job)(1);
    } catch (...) {
      error = std::current_exception();
    }
    guard.lock();
    error_ = error;
    done_ = round_;
    finish_.notify_one();
  }
}

} // namespace rollblock::storage
