#include "metrics_endpoint.hpp"

#include "rollblock/messages/error.hpp"

#include <caf/scoped_actor.hpp>

#include <httplib.h>
#include "rollblock/storage/logger.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>
#include <utility>

namespace rollblock {

namespace {

void counter(std::ostringstream& out, const char* name, const char* help,
             std::uint64_t value) {
  out << "# HELP rollblock_" << name << ' ' << help << "\n# TYPE rollblock_"
      << name << " counter\nrollblock_" << name << ' ' << value << '\n';
}

void gauge(std::ostringstream& out, const char* name, const char* help,
           std::uint64_t value) {
  out << "# HELP rollblock_" << name << ' ' << help << "\n# TYPE rollblock_"
      << name << " gauge\nrollblock_" << name << ' ' << value << '\n';
}

void latency(std::ostringstream& out, const char* name, const char* help,
             const latency_summary& s) {
  auto full = std::string{"rollblock_"} + name + "_latency_seconds";
  out << "# HELP " << full << ' ' << help << "\n# TYPE " << full
      << " summary\n";
  out << full << "{quantile=\"0.5\"} " << s.p50_us / 1e6 << '\n';
  out << full << "{quantile=\"0.95\"} " << s.p95_us / 1e6 << '\n';
  out << full << "{quantile=\"0.99\"} " << s.p99_us / 1e6 << '\n';
  out << full << "_sum " << s.avg_us * static_cast<double>(s.count) / 1e6
      << '\n';
  out << full << "_count " << s.count << '\n';
}

} // namespace

std::string health_body(const health_report& report) {
  auto reason = report.reason;
  std::replace(reason.begin(), reason.end(), '\n', ' ');
  return to_string(report.state) + (reason.empty() ? "" : " " + reason)
         + "\n";
}

std::string prometheus_text(const metrics_snapshot& m, std::size_t clients) {
  std::ostringstream out;
  gauge(out, "applied_height", "Newest block applied in memory.",
        m.heights.applied);
  gauge(out, "durable_height", "Newest block fsynced in the journal.",
        m.heights.durable);
  gauge(out, "current_height", "Newest block checkpointed into LevelDB.",
        m.heights.current);
  counter(out, "blocks_applied_total", "Blocks applied.", m.blocks_applied);
  counter(out, "operations_applied_total",
          "Key changes applied (after coalescing within a block).",
          m.operations_applied);
  counter(out, "sets_total", "Key changes that set a value.", m.sets);
  counter(out, "deletes_total", "Key changes that deleted a key.", m.deletes);
  counter(out, "reverts_total", "Reverts that undid at least one block.",
          m.reverts);
  counter(out, "blocks_reverted_total", "Blocks undone by reverts.",
          m.blocks_reverted);
  counter(out, "lookups_total", "Keys read.", m.lookups);
  counter(out, "client_errors_total",
          "Calls refused for bad input or wrong state.", m.client_errors);
  counter(out, "checksum_errors_total", "Checksum failures seen.",
          m.checksum_errors);
  counter(out, "checkpoints_total", "Checkpoints written into LevelDB.",
          m.checkpoints);
  gauge(out, "live_keys", "Keys with a value.", m.live_keys);
  gauge(out, "state_table_bytes",
        "Bytes of the tables holding the state in memory.",
        m.state_table_bytes);
  gauge(out, "journal_bytes", "Size of the journal files.", m.journal_bytes);
  gauge(out, "held_blocks",
        "Durable blocks held in memory until checkpointed.", m.held_blocks);
  gauge(out, "held_bytes", "Bytes of the held blocks' records.",
        m.held_bytes);
  gauge(out, "connected_clients", "Connected RESP clients.", clients);
  latency(out, "apply", "Block apply latency.", m.apply_latency);
  latency(out, "revert", "Revert latency.", m.revert_latency);
  latency(out, "lookup", "Read call latency.", m.lookup_latency);
  out << "# HELP rollblock_actor_restarts_total Crashed store actors "
         "restarted by the supervisor.\n"
         "# TYPE rollblock_actor_restarts_total counter\n";
  for (auto [actor, n] : {std::pair{"mutation", m.mutation_restarts},
                          std::pair{"journal", m.journal_restarts},
                          std::pair{"persistence", m.persistence_restarts},
                          std::pair{"health", m.health_restarts}})
    out << "rollblock_actor_restarts_total{actor=\"" << actor << "\"} " << n
        << '\n';
  out << "# HELP rollblock_health Health: 1 for the current state.\n"
         "# TYPE rollblock_health gauge\n";
  for (auto state :
       {health_state::serving, health_state::degraded, health_state::fatal})
    out << "rollblock_health{state=\"" << to_string(state) << "\"} "
        << (m.health == state ? 1 : 0) << '\n';
  return out.str();
}

caf::expected<std::unique_ptr<metrics_endpoint>>
metrics_endpoint::start(caf::actor_system& sys, store_actor store,
                        const std::string& bind, std::uint16_t port,
                        std::function<std::size_t()> connected_clients) {
  std::unique_ptr<metrics_endpoint> result{new metrics_endpoint};
  result->server_ = std::make_unique<httplib::Server>();
  auto& server = *result->server_;
  auto fetch = [&sys, store]() -> caf::expected<metrics_snapshot> {
    caf::scoped_actor self{sys};
    caf::expected<metrics_snapshot> snapshot{caf::error{}};
    self->request(store, std::chrono::seconds{5}, atom::metrics::value)
      .receive([&](metrics_snapshot& m) { snapshot = std::move(m); },
               [&](caf::error& err) { snapshot = std::move(err); });
    return snapshot;
  };
  server.Get("/metrics", [fetch, connected_clients](const httplib::Request&,
                                                    httplib::Response& res) {
    auto m = fetch();
    if (!m) {
      res.status = 503;
      res.set_content(describe(m.error()) + "\n", "text/plain");
      return;
    }
    auto clients = connected_clients ? connected_clients() : 0;
    res.set_content(prometheus_text(*m, clients),
                    "text/plain; version=0.0.4");
  });
  server.Get("/health", [&sys, store](const httplib::Request&,
                                      httplib::Response& res) {
    caf::scoped_actor self{sys};
    health_report report;
    self->request(store, std::chrono::seconds{5}, atom::health::value)
      .receive([&](health_report& r) { report = std::move(r); },
               [&](caf::error& err) {
                 // E.g. the health actor is being restarted.
                 report = {health_state::degraded,
                           "no health report: " + describe(err)};
               });
    res.status = report.state == health_state::serving ? 200 : 503;
    res.set_content(health_body(report), "text/plain");
  });
  int bound = port == 0 ? server.bind_to_any_port(bind)
                        : (server.bind_to_port(bind, port) ? port : -1);
  if (bound <= 0)
    return make_error(ec::io_error, "cannot listen for /metrics on " + bind
                                      + ":" + std::to_string(port));
  result->port_ = static_cast<std::uint16_t>(bound);
  result->thread_ = std::thread{[&server] { server.listen_after_bind(); }};
  logger().info("serving /metrics and /health on {}:{}", bind, result->port_);
  return result;
}

metrics_endpoint::~metrics_endpoint() {
  if (server_)
    server_->stop();
  if (thread_.joinable())
    thread_.join();
}

} // namespace rollblock
