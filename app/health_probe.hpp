#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace rollblock {

/// What `rollblock health` learned from a running rollblockd.
struct health_probe_result {
  /// The process exit code: 0 serving, 1 degraded, 2 fatal, 3 unreachable
  /// (no connection, no answer in time, or an answer that is not a health
  /// report).
  int exit_code = 3;
  /// One line for people: the /health body, or why there is none.
  std::string line;
};

/// Asks rollblockd's GET /health on `host`:`port` (its --metrics-port) and
/// classifies the answer: 200 "serving", 503 "degraded ..." or "fatal ...".
health_probe_result probe_health(const std::string& host, std::uint16_t port,
                                 std::chrono::seconds timeout);

} // namespace rollblock
