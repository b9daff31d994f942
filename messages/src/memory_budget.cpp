#include "rollblock/messages/memory_budget.hpp"

#include "rollblock/messages/error.hpp"
#include "rollblock/messages/store_options.hpp"

#include <charconv>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

namespace rollblock {

caf::expected<std::optional<std::size_t>>
parse_memory_budget(std::string_view text) {
  auto bad = [text](const std::string& why) {
    return make_error(ec::invalid_argument,
                      "invalid memory budget '" + std::string{text} + "': "
                        + why);
  };
  if (text == "unlimited")
    return std::optional<std::size_t>{};
  std::uint64_t count = 0;
  auto [end, err] = std::from_chars(text.data(), text.data() + text.size(),
                                    count);
  if (end == text.data())
    return bad("expected a whole number of bytes with an optional unit (B, "
               "KiB, MiB, GiB, TiB), e.g. 512MiB, or 'unlimited'");
  if (err == std::errc::result_out_of_range)
    return bad("the number is too large");
  std::string_view unit{end, static_cast<std::size_t>(
                               text.data() + text.size() - end)};
  static constexpr std::pair<std::string_view, unsigned> units[] = {
    {"", 0}, {"B", 0}, {"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40},
  };
  for (auto [name, shift] : units) {
    if (unit != name)
      continue;
    if (count > (std::numeric_limits<std::size_t>::max() >> shift))
      return bad("the size is too large");
    auto bytes = static_cast<std::size_t>(count) << shift;
    if (bytes < min_memory_budget)
      return bad("the budget must be at least 64KiB ("
                 + std::to_string(min_memory_budget) + " bytes)");
    return std::optional<std::size_t>{bytes};
  }
  return bad("unknown unit '" + std::string{unit}
             + "' (expected B, KiB, MiB, GiB or TiB)");
}

} // namespace rollblock
