// The CAF remote test's client (not a gtest): talks to a running rollblockd
// through remote_actor<store_actor>, the way a CAF application would.
//
//   caf_remote_client <host> <port> <height> [read-key ...]
//
// Steps, each printed as one line on stdout for the test to check:
//   heights_before <applied> <durable> <current>
//   apply <height> -> <replied height>
//   fetch caf-key1 -> "caf-value-1"
//   fetch_many -> "caf-value-1" "caf-value-2" <absent> [read keys ...]
//   reapply <height> -> error <describe(error)>
//   heights_after <applied> <durable> <current>
//   done
// The block applied at <height> sets caf-key1 and caf-key2 (8-byte keys).
// Keys read are zero-padded to 8 bytes; values print in double quotes
// (printable ASCII only, other bytes as \xHH) and absent ones as <absent>.
// Exits 0 when every step got the reply it should, 1 otherwise, 2 on bad
// usage. The store's log does not go here (this process has no store).

#include "rollblock/actors/spawn_store.hpp"
#include "rollblock/messages/error.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

using namespace rollblock;

namespace {

constexpr auto timeout = std::chrono::seconds{20};
constexpr std::size_t width = 8;

std::string quoted(const value& v) {
  if (v.empty())
    return "<absent>";
  std::string out = "\"";
  for (unsigned char c : v) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  out += '"';
  return out;
}

key padded(std::string raw) {
  if (raw.size() < width)
    raw.resize(width, '\0');
  return raw;
}

int fail(const std::string& what) {
  std::cout << "FAILED " << what << std::endl;
  return 1;
}

int run(caf::actor_system& sys, const std::string& host, std::uint16_t port,
        block_id height, const std::vector<std::string>& read_keys) {
  auto store = sys.middleman().remote_actor<store_actor>(host, port);
  if (!store)
    return fail("remote_actor: " + sys.render(store.error()));
  caf::scoped_actor self{sys};
  bool ok = true;
  std::string error_text;
  auto on_error = [&](caf::error& err) {
    ok = false;
    error_text = describe(err);
  };
  auto print_heights = [&](const char* label) {
    self->request(*store, timeout, atom::heights::value)
      .receive(
        [&](const store_heights& h) {
          std::cout << label << ' ' << h.applied << ' ' << h.durable << ' '
                    << h.current << std::endl;
        },
        on_error);
  };
  print_heights("heights_before");
  if (!ok)
    return fail("heights: " + error_text);
  operation_list ops{{padded("caf-key1"), "caf-value-1"},
                     {padded("caf-key2"), "caf-value-2"}};
  self->request(*store, timeout, atom::apply::value, height, ops)
    .receive(
      [&](block_id h) {
        std::cout << "apply " << height << " -> " << h << std::endl;
        if (h != height)
          ok = false;
      },
      on_error);
  if (!ok)
    return fail("apply: " + error_text);
  self->request(*store, timeout, atom::fetch::value, padded("caf-key1"))
    .receive(
      [&](const value& v) {
        std::cout << "fetch caf-key1 -> " << quoted(v) << std::endl;
      },
      on_error);
  if (!ok)
    return fail("fetch: " + error_text);
  std::vector<key> keys{padded("caf-key1"), padded("caf-key2"),
                        padded("caf-none")};
  for (auto& k : read_keys)
    keys.push_back(padded(k));
  self->request(*store, timeout, atom::fetch::value, keys)
    .receive(
      [&](const std::vector<value>& vs) {
        std::cout << "fetch_many ->";
        for (auto& v : vs)
          std::cout << ' ' << quoted(v);
        std::cout << std::endl;
        if (vs.size() != keys.size())
          ok = false;
      },
      on_error);
  if (!ok)
    return fail("fetch_many: " + error_text);
  // The same height again must be refused, and the error must cross the
  // network with its category and message.
  bool refused = false;
  self->request(*store, timeout, atom::apply::value, height, ops)
    .receive([&](block_id) {},
             [&](caf::error& err) {
               refused = true;
               std::cout << "reapply " << height << " -> error "
                         << describe(err) << std::endl;
             });
  if (!refused)
    return fail("reapply: the store accepted block " + std::to_string(height)
                + " twice");
  print_heights("heights_after");
  if (!ok)
    return fail("heights: " + error_text);
  std::cout << "done" << std::endl;
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: caf_remote_client <host> <port> <height> "
                 "[read-key ...]\n";
    return 2;
  }
  std::string host = argv[1];
  char* end = nullptr;
  auto port = std::strtoul(argv[2], &end, 10);
  if (*end != '\0' || port == 0 || port > 65535) {
    std::cerr << "caf_remote_client: bad port " << argv[2] << '\n';
    return 2;
  }
  auto height = std::strtoull(argv[3], &end, 10);
  if (*end != '\0') {
    std::cerr << "caf_remote_client: bad height " << argv[3] << '\n';
    return 2;
  }
  std::vector<std::string> read_keys{argv + 4, argv + argc};
  caf::actor_system_config cfg;
  add_rollblock_types(cfg);
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  return run(sys, host, static_cast<std::uint16_t>(port), height, read_keys);
}
