#pragma once

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

namespace rollblock::test {

/// The operations a fault-injecting file layer counts and can break.
enum class fault_op {
  write,          ///< Writing bytes (pwrite, WritableFile::Append).
  sync,           ///< fsync / fdatasync of a file.
  truncate,       ///< Setting a file's size.
  remove,         ///< Deleting a file (unlink).
  create,         ///< Creating a file.
  sync_directory, ///< fsync of a directory.
};

/// Kills the process the way a power cut kills a writer (the crash of a
/// fault_action).
[[noreturn]] inline void crash_process() {
  std::raise(SIGKILL);
  std::abort(); // Not reached.
}

/// What a fault-injecting layer does with one call.
struct fault_action {
  enum kind_type {
    proceed, ///< Run the call as usual.
    fail,    ///< Fail with `error` and change nothing more.
    shorten, ///< A write: write only `bytes` bytes and report that.
    crash,   ///< raise(SIGKILL), a write after writing `bytes` of it.
  };
  kind_type kind = proceed;
  int error = 0;
  std::size_t bytes = 0;
};

/// Which calls fail, write short or crash: the shared logic of
/// fault_file_system and fault_env. Counts every call per operation.
/// Thread-safe (the journal and LevelDB run on threads of their own).
class fault_schedule {
public:
  /// The `nth` call of `op` from now (1 = the next one) fails with `error`,
  /// and so does every later call of `op` when `sticky`.
  void fail_at(fault_op op, std::uint64_t nth, int error,
               bool sticky = false) {
    std::lock_guard guard{mu_};
    faults_.push_back({op, count_[op] + nth, sticky,
                       {fault_action::fail, error, 0}});
  }

  /// Writes fail with ENOSPC once `bytes` more bytes have been written: the
  /// write that crosses the limit writes up to it and reports a short write,
  /// and every later write fails (a full disk).
  void fail_writes_after(std::uint64_t bytes, int error = ENOSPC) {
    std::lock_guard guard{mu_};
    bytes_left_ = bytes;
    full_error_ = error;
  }

  /// The `nth` write from now writes only `bytes` bytes (fewer than asked)
  /// and reports that, without an error.
  void short_write_at(std::uint64_t nth, std::size_t bytes) {
    std::lock_guard guard{mu_};
    faults_.push_back({fault_op::write, count_[fault_op::write] + nth, false,
                       {fault_action::shorten, 0, bytes}});
  }

  /// The `nth` call of `op` from now kills the process with SIGKILL; a write
  /// writes `keep` bytes of its data first (a torn write).
  void crash_at(fault_op op, std::uint64_t nth, std::size_t keep = 0) {
    std::lock_guard guard{mu_};
    faults_.push_back({op, count_[op] + nth, false,
                       {fault_action::crash, 0, keep}});
  }

  /// Removes every fault: later calls all proceed.
  void heal() {
    std::lock_guard guard{mu_};
    faults_.clear();
    bytes_left_.reset();
  }

  /// How many calls of `op` ran so far.
  std::uint64_t calls(fault_op op) const {
    std::lock_guard guard{mu_};
    auto i = count_.find(op);
    return i == count_.end() ? 0 : i->second;
  }

  /// Counts a call of `op` (a write of `size` bytes) and says what to do.
  fault_action next(fault_op op, std::size_t size = 0) {
    std::lock_guard guard{mu_};
    auto n = ++count_[op];
    for (auto& f : faults_)
      if (f.op == op && (f.at == n || (f.sticky && n > f.at))) {
        auto act = f.action;
        if (act.kind == fault_action::shorten || act.kind == fault_action::crash)
          act.bytes = std::min(act.bytes, size);
        return act;
      }
    if (op == fault_op::write && bytes_left_) {
      if (*bytes_left_ == 0)
        return {fault_action::fail, full_error_, 0};
      if (size > *bytes_left_) {
        auto part = static_cast<std::size_t>(*bytes_left_);
        *bytes_left_ = 0;
        return {fault_action::shorten, 0, part};
      }
      *bytes_left_ -= size;
    }
    return {};
  }

private:
  struct fault {
    fault_op op;
    std::uint64_t at;
    bool sticky;
    fault_action action;
  };

  mutable std::mutex mu_;
  std::map<fault_op, std::uint64_t> count_;
  std::vector<fault> faults_;
  std::optional<std::uint64_t> bytes_left_;
  int full_error_ = ENOSPC;
};

} // namespace rollblock::test
