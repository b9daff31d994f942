#include "rollblock/storage/file_system.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace rollblock::storage {

file::~file() = default;

file_system::~file_system() = default;

namespace {

std::error_code last_error() {
  return {errno, std::generic_category()};
}

/// A POSIX file descriptor, closed with the object.
class posix_file final : public file {
public:
  explicit posix_file(int fd) : fd_(fd) {
  }

  ~posix_file() override {
    ::close(fd_);
  }

  io_result read_at(std::uint64_t offset, char* data,
                    std::size_t size) override {
    io_result res;
    while (res.bytes < size) {
      auto n = ::pread(fd_, data + res.bytes, size - res.bytes,
                       static_cast<off_t>(offset + res.bytes));
      if (n < 0) {
        if (errno == EINTR)
          continue;
        res.error = last_error();
        return res;
      }
      if (n == 0)
        break;
      res.bytes += static_cast<std::size_t>(n);
    }
    return res;
  }

  io_result write_at(std::uint64_t offset, const char* data,
                     std::size_t size) override {
    for (;;) {
      auto n = ::pwrite(fd_, data, size, static_cast<off_t>(offset));
      if (n >= 0)
        return {static_cast<std::size_t>(n), {}};
      if (errno != EINTR)
        return {0, last_error()};
    }
  }

  std::error_code sync_data() override {
    return ::fdatasync(fd_) == 0 ? std::error_code{} : last_error();
  }

  std::error_code sync() override {
    return ::fsync(fd_) == 0 ? std::error_code{} : last_error();
  }

  std::error_code truncate(std::uint64_t size) override {
    return ::ftruncate(fd_, static_cast<off_t>(size)) == 0 ? std::error_code{}
                                                           : last_error();
  }

  std::error_code size(std::uint64_t& size) override {
    struct stat st;
    if (::fstat(fd_, &st) != 0)
      return last_error();
    size = static_cast<std::uint64_t>(st.st_size);
    return {};
  }

private:
  int fd_;
};

class posix_fs final : public file_system {
public:
  std::error_code open(const std::filesystem::path& path, open_mode mode,
                       std::unique_ptr<file>& out) override {
    int flags = O_CLOEXEC;
    switch (mode) {
      case open_mode::read_only:
        flags |= O_RDONLY;
        break;
      case open_mode::read_write:
        flags |= O_RDWR;
        break;
      case open_mode::create_new:
        flags |= O_RDWR | O_CREAT | O_EXCL;
        break;
    }
    int fd = ::open(path.c_str(), flags, 0644);
    if (fd < 0)
      return last_error();
    out = std::make_unique<posix_file>(fd);
    return {};
  }

  std::error_code remove(const std::filesystem::path& path) override {
    return ::unlink(path.c_str()) == 0 ? std::error_code{} : last_error();
  }

  std::error_code list(const std::filesystem::path& dir,
                       std::vector<std::string>& names) override {
    std::error_code err;
    std::filesystem::directory_iterator it{dir, err};
    for (; !err && it != std::filesystem::directory_iterator{};
         it.increment(err)) {
      std::error_code type_err;
      if (it->is_regular_file(type_err))
        names.push_back(it->path().filename().string());
    }
    return err;
  }

  std::error_code
  create_directories(const std::filesystem::path& dir) override {
    std::error_code err;
    std::filesystem::create_directories(dir, err);
    return err;
  }

  std::error_code sync_directory(const std::filesystem::path& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
      return last_error();
    auto err = ::fsync(fd) == 0 ? std::error_code{} : last_error();
    ::close(fd);
    return err;
  }
};

} // namespace

std::shared_ptr<file_system> posix_file_system() {
  static auto instance = std::make_shared<posix_fs>();
  return instance;
}

} // namespace rollblock::storage
