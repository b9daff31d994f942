#pragma once

#include <caf/expected.hpp>

#include <filesystem>
#include <memory>

namespace rollblock::storage {

/// An exclusive lock on a data directory: a file `LOCK` inside it, held with
/// flock(2) for as long as the object lives, with the holder's pid written
/// into it. The kernel drops the lock when the process dies, even by SIGKILL.
class data_dir_lock {
public:
  /// Creates `dir` when missing and takes the lock. Returns ec::data_dir_locked
  /// naming the directory and the holder's pid when another process (or
  /// another open store in this process) holds it; ec::io_error otherwise.
  static caf::expected<std::unique_ptr<data_dir_lock>>
  acquire(const std::filesystem::path& dir);

  ~data_dir_lock();
  data_dir_lock(const data_dir_lock&) = delete;
  data_dir_lock& operator=(const data_dir_lock&) = delete;

  const std::filesystem::path& dir() const;

private:
  data_dir_lock(std::filesystem::path dir, int fd);
  std::filesystem::path dir_;
  int fd_;
};

} // namespace rollblock::storage
