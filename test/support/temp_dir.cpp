#include "support/temp_dir.hpp"

#include <cstdlib>
#include <stdexcept>

namespace rollblock::test {

temp_dir::temp_dir() {
  auto pattern = (std::filesystem::temp_directory_path() / "rollblock-XXXXXX")
                   .string();
  if (mkdtemp(pattern.data()) == nullptr)
    throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

temp_dir::~temp_dir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

} // namespace rollblock::test
