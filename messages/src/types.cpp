#include "rollblock/messages/types.hpp"

#include <cstring>

namespace rollblock {

key key_from_u64(std::uint64_t x, std::size_t width) {
  key result(width, '\0');
  for (std::size_t i = 0; i < 8; ++i)
    result[i] = static_cast<char>((x >> (8 * i)) & 0xff);
  return result;
}

key key_from_prefix(std::string_view prefix, std::size_t width) {
  key result(width, '\0');
  std::memcpy(result.data(), prefix.data(), prefix.size());
  return result;
}

value value_from_u64(std::uint64_t x) {
  return key_from_u64(x, 8);
}

std::uint64_t u64_from_bytes(std::string_view x) {
  std::uint64_t result = 0;
  for (std::size_t i = 0; i < 8; ++i)
    result |= static_cast<std::uint64_t>(static_cast<unsigned char>(x[i]))
              << (8 * i);
  return result;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

} // namespace rollblock
