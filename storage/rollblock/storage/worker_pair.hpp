#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace rollblock::storage {

/// Two threads for one job: the caller and a worker thread that waits,
/// parked, between jobs. memory_state's writer splits the table work of a
/// large block (its lookups, its install, a large revert) in two halves of
/// the shards with it, so that a block takes both cores of a 2-core
/// machine while the client that sends blocks waits for its reply.
///
/// The worker thread starts at the first run() and stops with the object.
class worker_pair {
public:
  worker_pair() = default;
  ~worker_pair();
  worker_pair(const worker_pair&) = delete;
  worker_pair& operator=(const worker_pair&) = delete;

  /// Calls job(0) on the calling thread and job(1) on the worker, and
  /// returns once both have returned. An exception of either call is
  /// rethrown here after both have ended (the caller's first).
  /// REQUIRES: one run() at a time; job(0) and job(1) may run concurrently.
  void run(const std::function<void(std::size_t)>& job);

private:
  /// The worker thread: runs job_(1) once per round.
  void serve();

  std::mutex mu_;
  std::condition_variable start_;
  std::condition_variable finish_;
  const std::function<void(std::size_t)>* job_ = nullptr;
  /// Counts run() calls; the worker runs each round once.
  std::uint64_t round_ = 0;
  /// The last round the worker finished.
  std::uint64_t done_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

} // namespace rollblock::storage
