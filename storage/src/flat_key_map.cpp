#include "rollblock/storage/flat_key_map.hpp"

#include <xxhash.h>

namespace rollblock::storage {

std::uint64_t key_hash(std::string_view k) noexcept {
  return XXH3_64bits(k.data(), k.size());
}

} // namespace rollblock::storage
