#pragma once

#include "rollblock/messages/durability.hpp"

#include <caf/expected.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace rollblock {

/// Everything rollblockd is started with, from flags and an optional config
/// file (flags win).
struct daemon_options {
  std::string data_dir = "./data";
  std::string bind = "127.0.0.1";
  std::uint16_t port = 7390;
  /// Publishes the store actor to CAF clients on this port, when set.
  std::optional<std::uint16_t> caf_port;
  /// Serves /metrics (Prometheus text) on this port, when set.
  std::optional<std::uint16_t> metrics_port;
  /// Key width for a new store; ignored (checked) for an existing one.
  std::optional<std::size_t> key_bytes;
  /// Keys per state page for a new store; checked for an existing one.
  std::optional<std::size_t> page_keys;
  std::optional<durability_mode> durability;
  std::optional<std::uint64_t> min_rollback_window;
  /// The store's memory budget in bytes; unset: unlimited.
  std::optional<std::size_t> memory_budget;
  /// store_options::checkpoint_lag_blocks; unset: the store's default.
  std::optional<std::uint64_t> checkpoint_lag;
  std::optional<std::string> password_file;
  /// The password read from password_file.
  std::optional<std::string> password;
  std::size_t max_clients = 10000;
  /// Store actor restarts allowed within restart_window_seconds before the
  /// store turns fatal (store_options::max_restarts).
  std::uint32_t max_restarts = 3;
  std::uint32_t restart_window_seconds = 60;
  std::string log_level = "info";
  std::optional<std::string> config;
  bool help = false;
  bool version = false;
};

/// Parses the command line and, with --config, the config file (lines of
/// `name = value`, `#` comments; the same names as the flags without
/// dashes). Values on the command line win over the file. Reads the
/// password file. Returns ec::invalid_argument with a one-line message
/// naming the flag or file for anything bad, before anything else happens.
caf::expected<daemon_options> parse_daemon_options(int argc,
                                                   const char* const* argv);

/// The --help text.
std::string daemon_usage();

/// Returns whether `address` is a loopback address (127.0.0.0/8, ::1,
/// localhost).
bool is_loopback(const std::string& address);

} // namespace rollblock
