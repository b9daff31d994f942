#pragma once

#include "rollblock/actors/spawn_store.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/expected.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

/// The RESP front of rollblockd: any Redis client can talk to the store (see
/// "The sidecar protocol" in the design). One CAF io broker accepts the
/// connections, parses requests, answers reads inline from the store's
/// reader and sends writes to the store actor, replying in command order on
/// every connection.
namespace rollblock {

struct resp_server_options {
  /// The address to listen on; "" listens on every interface.
  std::string bind_address = "127.0.0.1";
  /// The TCP port; 0 picks a free one (see resp_server::port).
  std::uint16_t port = 6379;
  /// When set, clients must AUTH with it before any command but AUTH, PING
  /// and QUIT.
  std::optional<std::string> password{};
  /// Connections beyond this many get "-ERR max number of clients reached"
  /// and are closed.
  std::size_t max_clients = 10000;
  /// The most request bytes buffered per client; a request that needs more
  /// gets "-ERR Protocol error: ..." and its connection is closed.
  std::size_t max_buffer = 64ull << 20;
  /// The longest bulk string and the most array elements in one request.
  std::size_t max_bulk_length = 16ull << 20;
  std::size_t max_elements = 1ull << 20;
  /// When this many reply bytes wait for a slow client, the server stops
  /// reading its requests until they drain below a quarter of it.
  std::size_t max_output_buffer = 16ull << 20;
};

/// A running RESP server.
struct resp_server {
  /// The broker; answers the resp_atom messages below. To stop: request
  /// resp_atom::close_all, then send it an exit message.
  caf::actor actor;
  /// The port it listens on (the chosen one when options.port was 0).
  std::uint16_t port = 0;
};

/// The messages the server answers besides its network traffic.
namespace resp_atom {
/// (clients) -> std::uint64_t: the number of connected clients.
using clients = caf::atom_constant<caf::atom("rclients")>;
/// (close_all) -> caf::ok_atom: stops listening and closes every client
/// connection (pending replies are dropped); later connections are refused.
using close_all = caf::atom_constant<caf::atom("rcloseall")>;
} // namespace resp_atom

/// Spawns the RESP server for `store` in `sys` (which must have loaded
/// caf::io::middleman) and starts listening. Blocks until it listens; fails
/// when the address cannot be bound.
caf::expected<resp_server> spawn_resp_server(caf::actor_system& sys,
                                             store_handle store,
                                             resp_server_options opts);

} // namespace rollblock
