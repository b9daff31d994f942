#pragma once

#include <spdlog/logger.h>

namespace rollblock {

/// Returns the logger every part of rollblock writes to: the spdlog logger
/// named "rollblock" when the application registered one, else one that
/// writes to stderr (standard output stays the application's).
spdlog::logger& logger();

} // namespace rollblock
