#include "rollblock/messages/memory_budget.hpp"

#include "rollblock/messages/error.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace rollblock;

namespace {

std::string error_of(std::string_view text) {
  auto result = parse_memory_budget(text);
  EXPECT_FALSE(result) << text;
  if (result)
    return {};
  EXPECT_EQ(code_of(result.error()), ec::invalid_argument);
  return message_of(result.error());
}

std::size_t bytes_of(std::string_view text) {
  auto result = parse_memory_budget(text);
  EXPECT_TRUE(result) << describe(result.error());
  EXPECT_TRUE(result && *result) << text;
  return result && *result ? **result : 0;
}

} // namespace

TEST(memory_budget, units) {
  EXPECT_EQ(bytes_of("65536"), 65536u);
  EXPECT_EQ(bytes_of("1048576B"), 1048576u);
  EXPECT_EQ(bytes_of("64KiB"), 65536u);
  EXPECT_EQ(bytes_of("1024KiB"), 1048576u);
  EXPECT_EQ(bytes_of("512MiB"), 536870912u);
  EXPECT_EQ(bytes_of("2GiB"), 2147483648u);
  EXPECT_EQ(bytes_of("3TiB"), 3298534883328u);
  auto unlimited = parse_memory_budget("unlimited");
  ASSERT_TRUE(unlimited) << describe(unlimited.error());
  EXPECT_FALSE(*unlimited);
}

TEST(memory_budget, bad_text_gets_a_precise_error) {
  EXPECT_EQ(error_of(""),
            "invalid memory budget '': expected a whole number of bytes with "
            "an optional unit (B, KiB, MiB, GiB, TiB), e.g. 512MiB, or "
            "'unlimited'");
  EXPECT_EQ(error_of("MiB"),
            "invalid memory budget 'MiB': expected a whole number of bytes "
            "with an optional unit (B, KiB, MiB, GiB, TiB), e.g. 512MiB, or "
            "'unlimited'");
  EXPECT_EQ(error_of("-1GiB"),
            "invalid memory budget '-1GiB': expected a whole number of bytes "
            "with an optional unit (B, KiB, MiB, GiB, TiB), e.g. 512MiB, or "
            "'unlimited'");
  EXPECT_EQ(error_of("1.5GiB"), "invalid memory budget '1.5GiB': unknown "
                                "unit '.5GiB' (expected B, KiB, MiB, GiB or "
                                "TiB)");
  EXPECT_EQ(error_of("512 MiB"), "invalid memory budget '512 MiB': unknown "
                                 "unit ' MiB' (expected B, KiB, MiB, GiB or "
                                 "TiB)");
  EXPECT_EQ(error_of("2gib"), "invalid memory budget '2gib': unknown unit "
                              "'gib' (expected B, KiB, MiB, GiB or TiB)");
  EXPECT_EQ(error_of("63KiB"), "invalid memory budget '63KiB': the "
                               "budget must be at least 64KiB (65536 "
                               "bytes)");
  EXPECT_EQ(error_of("65535"), "invalid memory budget '65535': the budget "
                               "must be at least 64KiB (65536 bytes)");
  EXPECT_EQ(error_of("99999999999999999999"),
            "invalid memory budget '99999999999999999999': the number is too "
            "large");
  EXPECT_EQ(error_of("17179869184TiB"),
            "invalid memory budget '17179869184TiB': the size is too large");
}
