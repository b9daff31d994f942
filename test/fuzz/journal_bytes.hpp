#pragma once

// Helpers of the journal fuzz targets: byte-level access to journal entries
// (blocks and segment trailers alike) as storage/src/journal.cpp documents
// their format (40-byte header: magic at 0, kind at 6, key width at 7,
// payload length at 20, payload checksum at 24, header checksum at 32;
// XXH3-64 checksums).

#include <xxhash.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace rollblock::fuzz {

constexpr std::uint32_t journal_magic = 0x4C4A4252;
constexpr std::size_t journal_header_size = 40;

inline std::uint32_t load_u32(const char* p) {
  std::uint32_t x;
  std::memcpy(&x, p, sizeof x);
  return x;
}

inline void store_u64(char* p, std::uint64_t x) {
  std::memcpy(p, &x, sizeof x);
}

/// Rewrites the checksums of the entries `bytes` starts with, so that a
/// fuzzer's mutations reach the checks behind them (versions, widths,
/// lengths, payload layout, height order). Walks entry by entry from offset
/// 0 while a magic starts an entry whose payload fits; stops at the first
/// that does not. Returns the number of entries fixed.
inline std::size_t fix_journal_checksums(std::string& bytes) {
  std::size_t off = 0;
  std::size_t fixed = 0;
  while (bytes.size() - off >= journal_header_size
         && load_u32(bytes.data() + off) == journal_magic) {
    char* h = bytes.data() + off;
    std::uint64_t payload = load_u32(h + 20);
    if (payload > bytes.size() - off - journal_header_size)
      break;
    store_u64(h + 24, XXH3_64bits(h + journal_header_size, payload));
    store_u64(h + 32, XXH3_64bits(h, 32));
    off += journal_header_size + payload;
    ++fixed;
  }
  return fixed;
}

} // namespace rollblock::fuzz
