#include "rollblock/storage/data_dir_lock.hpp"

#include "rollblock/messages/error.hpp"

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace rollblock::storage {

namespace {

std::string errno_text(int err) {
  return std::error_code{err, std::generic_category()}.message();
}

/// Reads the pid that the holder wrote into the lock file; 0 when unknown
/// (e.g. the holder has not written it yet).
long read_pid(int fd) {
  char buf[32];
  ssize_t n;
  do {
    n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n <= 0)
    return 0;
  long pid = 0;
  for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) {
    pid = pid * 10 + (buf[i] - '0');
    if (pid > 1'000'000'000)
      return 0;
  }
  return pid;
}

} // namespace

caf::expected<std::unique_ptr<data_dir_lock>>
data_dir_lock::acquire(const std::filesystem::path& dir) {
  std::error_code err;
  std::filesystem::create_directories(dir, err);
  if (err)
    return make_error(ec::io_error, "cannot create data directory "
                                      + dir.string() + ": " + err.message());
  auto file = dir / "LOCK";
  int fd;
  do {
    fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0)
    return make_error(ec::io_error, "cannot open lock file " + file.string()
                                      + ": " + errno_text(errno));
  int rc;
  do {
    rc = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    auto code = errno;
    if (code == EWOULDBLOCK) {
      auto pid = read_pid(fd);
      ::close(fd);
      std::string holder;
      if (pid == 0)
        holder = "another process (pid unknown)";
      else if (pid == static_cast<long>(::getpid()))
        holder = "this process (pid " + std::to_string(pid)
                 + "), which has it open already";
      else
        holder = "another process (pid " + std::to_string(pid) + ")";
      return make_error(ec::data_dir_locked,
                        "data directory " + dir.string() + " is locked by "
                          + holder
                          + "; stop that process or use another directory");
    }
    ::close(fd);
    return make_error(ec::io_error, "cannot lock " + file.string() + ": "
                                      + errno_text(code));
  }
  auto text = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0) {
    auto code = errno;
    ::close(fd);
    return make_error(ec::io_error, "cannot truncate lock file "
                                      + file.string() + ": "
                                      + errno_text(code));
  }
  std::size_t written = 0;
  while (written < text.size()) {
    auto n = ::pwrite(fd, text.data() + written, text.size() - written,
                      static_cast<off_t>(written));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      auto code = n < 0 ? errno : EIO;
      ::close(fd);
      return make_error(ec::io_error, "cannot write the pid into lock file "
                                        + file.string() + ": "
                                        + errno_text(code));
    }
    written += static_cast<std::size_t>(n);
  }
  return std::unique_ptr<data_dir_lock>{new data_dir_lock(dir, fd)};
}

data_dir_lock::data_dir_lock(std::filesystem::path dir, int fd)
  : dir_(std::move(dir)), fd_(fd) {
  // nop
}

data_dir_lock::~data_dir_lock() {
  // Closing the only descriptor of the open file description drops the lock.
  ::close(fd_);
}

const std::filesystem::path& data_dir_lock::dir() const {
  return dir_;
}

} // namespace rollblock::storage
