#include "rollblock/storage/logger.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace rollblock {

spdlog::logger& logger() {
  static auto instance = [] {
    if (auto registered = spdlog::get("rollblock"))
      return registered;
    return spdlog::stderr_color_mt("rollblock");
  }();
  return *instance;
}

} // namespace rollblock
