#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace rollblock::storage {

/// The outcome of one read or write: the bytes moved and the error, if any.
struct io_result {
  std::size_t bytes = 0;
  std::error_code error;
};

/// One open file of a file_system. Not thread-safe.
class file {
public:
  virtual ~file();

  /// Reads up to `size` bytes at `offset` into `data`; fewer bytes (and no
  /// error) only at the end of the file.
  virtual io_result read_at(std::uint64_t offset, char* data,
                            std::size_t size) = 0;

  /// Writes `size` bytes at `offset`. May write fewer bytes without an error
  /// (a short write, as pwrite may): the caller writes the rest again.
  virtual io_result write_at(std::uint64_t offset, const char* data,
                             std::size_t size) = 0;

  /// Makes the file's data durable (fdatasync).
  virtual std::error_code sync_data() = 0;

  /// Makes the file's data and metadata, e.g. its size, durable (fsync).
  virtual std::error_code sync() = 0;

  /// Sets the file's size to `size` bytes.
  virtual std::error_code truncate(std::uint64_t size) = 0;

  /// Stores the file's size in bytes in `size`.
  virtual std::error_code size(std::uint64_t& size) = 0;
};

/// How file_system::open opens a file.
enum class open_mode {
  read_only,
  read_write,
  create_new, ///< Read-write; fails with EEXIST when the file exists.
};

/// Every file operation of the journal, so that tests can make them fail
/// (test/support/fault_file_system.hpp). posix_file_system() is the real one.
/// Thread-safe: files opened from several threads are independent.
class file_system {
public:
  virtual ~file_system();

  /// Opens `path`; on success `out` holds the open file.
  virtual std::error_code open(const std::filesystem::path& path,
                               open_mode mode, std::unique_ptr<file>& out)
    = 0;

  /// Deletes the file `path`.
  virtual std::error_code remove(const std::filesystem::path& path) = 0;

  /// Stores the names of the regular files in `dir` in `names` (unordered).
  virtual std::error_code list(const std::filesystem::path& dir,
                               std::vector<std::string>& names)
    = 0;

  /// Creates the directory `dir` and its missing parents.
  virtual std::error_code create_directories(const std::filesystem::path& dir)
    = 0;

  /// fsyncs the directory `dir`, making creations and deletions in it
  /// durable.
  virtual std::error_code sync_directory(const std::filesystem::path& dir)
    = 0;
};

/// The POSIX file system (open, pread, pwrite, fdatasync, ...), shared.
std::shared_ptr<file_system> posix_file_system();

} // namespace rollblock::storage
