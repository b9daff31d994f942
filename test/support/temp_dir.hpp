#pragma once

#include <filesystem>
#include <string>

namespace rollblock::test {

/// A fresh directory under the system temp dir, removed with its contents
/// when the object dies.
class temp_dir {
public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::filesystem::path& path() const {
    return path_;
  }

  /// Returns path() / name as a string.
  std::string sub(const std::string& name) const {
    return (path_ / name).string();
  }

private:
  std::filesystem::path path_;
};

} // namespace rollblock::test
