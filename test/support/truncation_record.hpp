#pragma once

#include "rollblock/messages/types.hpp"

#include <xxhash.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace rollblock::test {

/// The bytes of the journal's truncation record ("truncation.rbt") of a
/// truncate_after(height) in progress, as storage/src/journal.cpp documents
/// and writes it (little-endian hosts).
inline std::string truncation_record(block_id height,
                                     std::uint16_t version = 1) {
  std::string bytes(24, '\0');
  std::uint32_t magic = 0x544A4252;
  std::memcpy(bytes.data(), &magic, 4);
  std::memcpy(bytes.data() + 4, &version, 2);
  std::uint64_t h = height;
  std::memcpy(bytes.data() + 8, &h, 8);
  std::uint64_t sum = XXH3_64bits(bytes.data(), 16);
  std::memcpy(bytes.data() + 16, &sum, 8);
  return bytes;
}

} // namespace rollblock::test
