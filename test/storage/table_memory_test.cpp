#include "rollblock/storage/table_memory.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

using namespace rollblock::storage;

namespace {

bool all_zero(const table_memory& m) {
  return std::all_of(m.data(), m.data() + m.size(),
                     [](std::byte b) { return b == std::byte{0}; });
}

} // namespace

TEST(table_memory, empty_region_has_no_memory) {
  table_memory m;
  EXPECT_EQ(m.data(), nullptr);
  EXPECT_EQ(m.size(), 0u);
  table_memory zero{0};
  EXPECT_EQ(zero.data(), nullptr);
}

TEST(table_memory, small_regions_come_zeroed_from_the_heap) {
  table_memory m{4096 + 13};
  ASSERT_NE(m.data(), nullptr);
  EXPECT_EQ(m.size(), 4096u + 13);
  EXPECT_FALSE(m.mapped());
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(m.data())
              % table_memory::cache_line_bytes,
            0u);
  EXPECT_TRUE(all_zero(m));
  // Held together, so that the heap cannot hand out one address again.
  std::vector<table_memory> held;
  for (std::size_t bytes = 1; bytes < 3000; bytes = bytes * 3 + 5)
    held.emplace_back(bytes);
  for (auto& r : held) {
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(r.data())
                % table_memory::cache_line_bytes,
              0u)
      << r.size();
    EXPECT_TRUE(all_zero(r));
  }
}

TEST(table_memory, large_regions_are_mapped_zeroed_at_a_huge_page_boundary) {
  auto bytes = 3 * table_memory::huge_page_bytes + 4096 + 7;
  table_memory m{bytes};
  ASSERT_NE(m.data(), nullptr);
  EXPECT_TRUE(m.mapped());
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(m.data())
              % table_memory::huge_page_bytes,
            0u);
  EXPECT_TRUE(all_zero(m));
  std::memset(m.data(), 0xab, bytes); // every byte writable
  // The kernel was asked for huge pages: the mapping is flagged "hg".
  auto flags = [&] {
    std::ifstream smaps{"/proc/self/smaps"};
    std::string line;
    auto addr = reinterpret_cast<std::uintptr_t>(m.data());
    bool inside = false;
    while (std::getline(smaps, line)) {
      unsigned long lo = 0;
      unsigned long hi = 0;
      char dash = 0;
      std::istringstream in{line};
      if (in >> std::hex >> lo >> dash >> hi && dash == '-') {
        inside = addr >= lo && addr < hi;
        continue;
      }
      if (inside && line.rfind("VmFlags:", 0) == 0)
        return line;
    }
    return std::string{};
  }();
  EXPECT_NE(flags.find(" hg"), std::string::npos) << flags;
}

TEST(table_memory, moves_hand_over_the_region) {
  table_memory a{table_memory::huge_page_bytes};
  auto* p = a.data();
  p[0] = std::byte{1};
  table_memory b{std::move(a)};
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.data()[0], std::byte{1});
  table_memory c{64};
  c = std::move(b); // frees c's heap block, takes b's mapping
  EXPECT_EQ(c.data(), p);
  EXPECT_EQ(b.data(), nullptr);
}
