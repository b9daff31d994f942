#pragma once

#include "rollblock/messages/actor_interfaces.hpp"
#include "rollblock/messages/metrics.hpp"

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
} // namespace httplib

namespace rollblock {

/// Renders a metrics snapshot in the Prometheus text exposition format
/// (version 0.0.4), `clients` being the connected RESP clients.
std::string prometheus_text(const metrics_snapshot& m, std::size_t clients);

/// The body of GET /health: the state, then (unless serving) a space and the
/// reason on the same line, e.g. "serving\n" or "degraded restarting the
/// journal actor after ...\n".
std::string health_body(const health_report& report);

/// An HTTP listener for supervisors and scrapers, in a thread of its own:
/// GET /metrics (Prometheus text) and GET /health (text/plain health_body;
/// status 200 when serving, 503 when degraded or fatal, so that a plain
/// HTTP check fails on anything but serving).
class metrics_endpoint {
public:
  /// Listens on `bind`:`port` (0: an ephemeral port, see port()).
  static caf::expected<std::unique_ptr<metrics_endpoint>>
  start(caf::actor_system& sys, store_actor store, const std::string& bind,
        std::uint16_t port, std::function<std::size_t()> connected_clients);

  /// Stops listening and joins the thread.
  ~metrics_endpoint();

  std::uint16_t port() const {
    return port_;
  }

private:
  metrics_endpoint() = default;

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

} // namespace rollblock
