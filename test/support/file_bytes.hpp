#pragma once

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

namespace rollblock::test {

/// Returns the whole content of `path` (empty when it cannot be read).
inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in{path, std::ios::binary};
  return std::string{std::istreambuf_iterator<char>{in}, {}};
}

/// Replaces the content of `path` with `bytes`: for damaging files in tests.
inline void write_bytes(const std::filesystem::path& path,
                        std::string_view bytes) {
  std::ofstream out{path, std::ios::binary | std::ios::trunc};
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

} // namespace rollblock::test
