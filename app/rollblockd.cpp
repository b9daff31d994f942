// rollblockd: the rollblock sidecar daemon. Serves a store over RESP (any
// Redis client), optionally to CAF applications (remote_actor) and
// Prometheus (/metrics); SIGTERM or SIGINT flush, checkpoint and exit 0.

#include "daemon_options.hpp"
#include "metrics_endpoint.hpp"
#include "resp_server.hpp"

#include "rollblock/actors/spawn_store.hpp"
#include "rollblock/messages/error.hpp"
#include "rollblock/storage/logger.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <pthread.h>

namespace {

using namespace rollblock;

constexpr int exit_bad_usage = 2;
constexpr int exit_failure = 1;

/// Asks `hdl` something answered with ok and waits; returns the error.
template <class Handle, class... Ts>
caf::error ask(caf::actor_system& sys, const Handle& hdl, Ts&&... xs) {
  caf::scoped_actor self{sys};
  caf::error result;
  self->request(hdl, std::chrono::seconds{120}, std::forward<Ts>(xs)...)
    .receive([](caf::ok_atom) {}, [&](caf::error& err) { result = err; });
  return result;
}

int serve(const daemon_options& opts, const sigset_t& signals) {
  caf::actor_system_config cfg;
  add_rollblock_types(cfg);
  configure_scheduler(cfg);
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  store_options store_opts;
  store_opts.data_dir = opts.data_dir;
  store_opts.key_width = opts.key_bytes;
  store_opts.page_keys = opts.page_keys;
  store_opts.durability = opts.durability;
  store_opts.min_rollback_window = opts.min_rollback_window;
  store_opts.max_restarts = opts.max_restarts;
  store_opts.restart_window = std::chrono::seconds{opts.restart_window_seconds};
  store_opts.memory_budget = opts.memory_budget;
  store_opts.checkpoint_lag_blocks = opts.checkpoint_lag;
  auto store = spawn_store(sys, store_opts);
  if (!store) {
    logger().critical("cannot open the store: {}", describe(store.error()));
    return exit_failure;
  }
  auto close_store = [&] {
    if (auto err = ask(sys, store->actor, atom::shutdown::value))
      logger().error("closing the store failed: {}", describe(err));
  };
  resp_server_options resp_opts;
  resp_opts.bind_address = opts.bind;
  resp_opts.port = opts.port;
  resp_opts.password = opts.password;
  resp_opts.max_clients = opts.max_clients;
  auto resp = spawn_resp_server(sys, *store, resp_opts);
  if (!resp) {
    logger().critical("cannot serve RESP on {}:{}: {}", opts.bind, opts.port,
                     describe(resp.error()));
    close_store();
    return exit_failure;
  }
  logger().info("serving RESP on {}:{}", opts.bind, resp->port);
  if (opts.caf_port) {
    auto port = sys.middleman().publish(store->actor, *opts.caf_port,
                                        opts.bind.c_str(), true);
    if (!port) {
      logger().critical("cannot publish the store to CAF clients on {}:{}: {}",
                       opts.bind, *opts.caf_port, describe(port.error()));
      anon_send_exit(resp->actor, caf::exit_reason::user_shutdown);
      close_store();
      return exit_failure;
    }
    logger().info("serving CAF clients on {}:{}", opts.bind, *port);
  }
  std::unique_ptr<metrics_endpoint> metrics;
  if (opts.metrics_port) {
    auto clients = [&sys, server = resp->actor]() -> std::size_t {
      caf::scoped_actor self{sys};
      std::size_t result = 0;
      self->request(server, std::chrono::seconds{5}, resp_atom::clients::value)
        .receive([&](std::uint64_t n) { result = n; }, [](caf::error&) {});
      return result;
    };
    auto endpoint = metrics_endpoint::start(sys, store->actor, opts.bind,
                                            *opts.metrics_port, clients);
    if (!endpoint) {
      logger().critical("{}", describe(endpoint.error()));
      anon_send_exit(resp->actor, caf::exit_reason::user_shutdown);
      close_store();
      return exit_failure;
    }
    metrics = std::move(*endpoint);
  }
  int signal = 0;
  sigwait(&signals, &signal);
  logger().info("received {}: closing clients, flushing and checkpointing",
               signal == SIGTERM ? "SIGTERM" : "SIGINT");
  metrics.reset();
  if (auto err = ask(sys, resp->actor, resp_atom::close_all::value))
    logger().warn("closing RESP clients: {}", describe(err));
  anon_send_exit(resp->actor, caf::exit_reason::user_shutdown);
  if (opts.caf_port)
    sys.middleman().unpublish(store->actor, *opts.caf_port);
  if (auto err = ask(sys, store->actor, atom::shutdown::value)) {
    logger().critical("final flush failed: {}", describe(err));
    return exit_failure;
  }
  // Read after the shutdown: the writes RESP clients sent before close_all
  // were still queued at the store until then.
  auto heights = store->reader.heights();
  logger().info("stopped at block {} (all durable and checkpointed)",
               heights.applied);
  return EXIT_SUCCESS;
}

} // namespace

int main(int argc, char** argv) {
  auto opts = rollblock::parse_daemon_options(argc, argv);
  if (!opts) {
    std::cerr << "rollblockd: " << rollblock::message_of(opts.error())
              << " (see rollblockd --help)\n";
    return exit_bad_usage;
  }
  if (opts->help) {
    std::cout << rollblock::daemon_usage();
    return EXIT_SUCCESS;
  }
  if (opts->version) {
    std::cout << "rollblockd " << ROLLBLOCK_VERSION << '\n';
    return EXIT_SUCCESS;
  }
  spdlog::set_level(spdlog::level::from_str(opts->log_level));
  // Block the stop signals in every thread (the actor system's threads
  // inherit the mask) and take them with sigwait in serve().
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return serve(*opts, signals);
}
