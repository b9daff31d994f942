#pragma once

#include <csignal>
#include <sys/resource.h>

namespace rollblock::test {

/// Limits the size of files this process may write (RLIMIT_FSIZE), with
/// SIGXFSZ ignored, so that a write past the limit fails with EFBIG: a real
/// I/O failure for fault tests. Restores both on destruction.
class file_size_limit {
public:
  explicit file_size_limit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &old_);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim = old_;
    lim.rlim_cur = bytes;
    ok_ = setrlimit(RLIMIT_FSIZE, &lim) == 0;
  }

  ~file_size_limit() {
    setrlimit(RLIMIT_FSIZE, &old_);
    std::signal(SIGXFSZ, old_handler_);
  }

  file_size_limit(const file_size_limit&) = delete;
  file_size_limit& operator=(const file_size_limit&) = delete;

  bool ok() const {
    return ok_;
  }

private:
  rlimit old_{};
  void (*old_handler_)(int) = nullptr;
  bool ok_ = false;
};

} // namespace rollblock::test
