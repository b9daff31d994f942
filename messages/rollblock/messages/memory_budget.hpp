#pragma once

#include <caf/expected.hpp>

#include <cstddef>
#include <optional>
#include <string_view>

namespace rollblock {

/// Parses a memory budget: "unlimited" (nullopt), or a whole number of bytes
/// with an optional binary unit: B, KiB, MiB, GiB or TiB, e.g. "512MiB",
/// "2GiB", "1048576". Nothing else is accepted (no spaces, fractions, signs
/// or decimal units). Returns ec::invalid_argument naming the text and what
/// is wrong: not a number, an unknown unit, an overflow, or a budget below
/// min_memory_budget.
caf::expected<std::optional<std::size_t>>
parse_memory_budget(std::string_view text);

} // namespace rollblock
