#pragma once

#include "rollblock/storage/file_system.hpp"
#include "support/fault_schedule.hpp"

#include <memory>

namespace rollblock::test {

/// A storage::file_system that runs every operation on the POSIX file system
/// and breaks the ones its schedule names: a failed call returns its errno
/// and changes nothing, a short write writes a prefix, a crash raises
/// SIGKILL (for crash-point tests in a child process).
class fault_file_system : public storage::file_system {
public:
  fault_file_system();

  /// The faults to inject; change it at any time.
  fault_schedule& schedule() {
    return schedule_;
  }

  std::error_code open(const std::filesystem::path& path,
                       storage::open_mode mode,
                       std::unique_ptr<storage::file>& out) override;
  std::error_code remove(const std::filesystem::path& path) override;
  std::error_code list(const std::filesystem::path& dir,
                       std::vector<std::string>& names) override;
  std::error_code
  create_directories(const std::filesystem::path& dir) override;
  std::error_code sync_directory(const std::filesystem::path& dir) override;

private:
  std::shared_ptr<storage::file_system> base_;
  fault_schedule schedule_;
};

} // namespace rollblock::test
