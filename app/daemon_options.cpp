#include "daemon_options.hpp"

#include "rollblock/messages/error.hpp"
#include "rollblock/messages/memory_budget.hpp"
#include "rollblock/messages/types.hpp"

#include <boost/program_options.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <limits>
#include <sstream>

namespace po = boost::program_options;

namespace rollblock {

namespace {

po::options_description describe_options() {
  po::options_description opts{"rollblockd options"};
  // clang-format off
  opts.add_options()
    ("help,h", "print this help and exit")
    ("version", "print the version and exit")
    ("config", po::value<std::string>(),
     "read options from this file (name = value lines); flags win")
    ("data-dir", po::value<std::string>(),
     "data directory (default ./data)")
    ("bind", po::value<std::string>(),
     "address to listen on (default 127.0.0.1)")
    ("port", po::value<std::string>(), "RESP port (default 7390)")
    ("caf-port", po::value<std::string>(),
     "publish the store actor to CAF clients on this port (default off)")
    ("metrics-port", po::value<std::string>(),
     "serve Prometheus /metrics on this port (default off)")
    ("key-bytes", po::value<std::string>(),
     "key width of a new store, 8..64 (default 8)")
    ("page-keys", po::value<std::string>(),
     "keys per LevelDB state record of a new store: 1, 2, 4 ... 64 (default "
     "64 for 8-byte keys, 1 for wider; 1 suits hashes)")
    ("durability", po::value<std::string>(),
     "sync | sync-relaxed:N | async:P | async-relaxed:P:N (default: stored, "
     "or sync)")
    ("min-rollback-window", po::value<std::string>(),
     "blocks the journal keeps below the checkpoint (default 100)")
    ("checkpoint-lag", po::value<std::string>(),
     "newest durable blocks kept out of LevelDB, so that reverts to them "
     "only cut the journal (default 100; 0 with --memory-budget)")
    ("memory-budget", po::value<std::string>(),
     "memory the store may use, e.g. 512MiB or 2GiB (units B, KiB, MiB, "
     "GiB, TiB; at least 64KiB); cold keys are read from LevelDB (default "
     "unlimited)")
    ("password-file", po::value<std::string>(),
     "require AUTH with the password in this file")
    ("max-restarts", po::value<std::string>(),
     "crashed store actors restarted within --restart-window before the "
     "store turns fatal (default 3; 0: every crash is fatal)")
    ("restart-window", po::value<std::string>(),
     "seconds over which --max-restarts counts (default 60)")
    ("max-clients", po::value<std::string>(),
     "most concurrent RESP clients (default 10000)")
    ("log-level", po::value<std::string>(),
     "trace | debug | info | warn | error | critical | off (default info)");
  // clang-format on
  return opts;
}

caf::error bad(const std::string& what) {
  return make_error(ec::invalid_argument, what);
}

/// The type a flag's value is parsed into: T itself or T of optional<T>.
template <class T>
struct value_of {
  using type = T;
};

template <class T>
struct value_of<std::optional<T>> {
  using type = T;
};

/// Parses the value of --flag as a whole number in [min, max].
template <class T>
caf::expected<T> parse_number(const po::variables_map& vm,
                              const std::string& flag, std::uint64_t min,
                              std::uint64_t max) {
  auto text = vm[flag].as<std::string>();
  std::uint64_t x = 0;
  auto [ptr, err] = std::from_chars(text.data(), text.data() + text.size(), x);
  if (err != std::errc{} || ptr != text.data() + text.size() || x < min
      || x > max)
    return bad("--" + flag + ": invalid value '" + text + "' (expected a "
               + "whole number from " + std::to_string(min) + " to "
               + std::to_string(max) + ")");
  return static_cast<T>(x);
}

/// Returns the first "%name%" (a name of lowercase letters and '_') in
/// `text`, or "" when there is none. Boost.Program_options 1.74 renders its
/// error messages by replacing such placeholders until none is left, so an
/// error about a token that holds one never ends: such text is refused before
/// Boost sees it.
std::string placeholder_in(std::string_view text) {
  for (auto open = text.find('%'); open != std::string_view::npos;
       open = text.find('%', open + 1)) {
    auto close = text.find('%', open + 1);
    if (close == std::string_view::npos)
      return {};
    auto name = text.substr(open + 1, close - open - 1);
    if (!name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || c == '_';
        }))
      return std::string{text.substr(open, close - open + 1)};
  }
  return {};
}

} // namespace

std::string daemon_usage() {
  std::ostringstream out;
  out << "usage: rollblockd [options]\n\n" << describe_options();
  return out.str();
}

bool is_loopback(const std::string& address) {
  if (address == "localhost" || address == "::1")
    return true;
  in_addr v4{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;
  return false;
}

caf::expected<daemon_options> parse_daemon_options(int argc,
                                                   const char* const* argv) {
  auto desc = describe_options();
  for (int i = 1; i < argc; ++i)
    if (auto p = placeholder_in(argv[i]); !p.empty())
      return bad("argument " + std::to_string(i) + " holds '" + p
                 + "', which no option takes");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("config")) {
      auto path = vm["config"].as<std::string>();
      std::ifstream file{path};
      if (!file)
        return bad("cannot read config file " + path);
      std::stringstream text;
      text << file.rdbuf();
      if (auto p = placeholder_in(text.str()); !p.empty())
        return bad("config file " + path + " holds '" + p
                   + "', which no option takes");
      try {
        po::store(po::parse_config_file(text, desc), vm);
      } catch (const po::error& e) {
        return bad("config file " + path + ": " + e.what());
      }
    }
    po::notify(vm);
  } catch (const po::error& e) {
    return bad(e.what());
  }
  daemon_options result;
  result.help = vm.count("help") > 0;
  result.version = vm.count("version") > 0;
  if (vm.count("config"))
    result.config = vm["config"].as<std::string>();
  if (vm.count("data-dir"))
    result.data_dir = vm["data-dir"].as<std::string>();
  if (result.data_dir.empty())
    return bad("--data-dir: the data directory must not be empty");
  if (vm.count("bind"))
    result.bind = vm["bind"].as<std::string>();
  auto number = [&](const char* flag, auto& out, std::uint64_t min,
                    std::uint64_t max) -> caf::error {
    using U = typename value_of<std::decay_t<decltype(out)>>::type;
    if (!vm.count(flag))
      return {};
    auto x = parse_number<U>(vm, flag, min, max);
    if (!x)
      return x.error();
    out = *x;
    return {};
  };
  constexpr std::uint64_t u64_max = std::numeric_limits<std::uint64_t>::max();
  if (auto err = number("port", result.port, 0, 65535))
    return err;
  if (auto err = number("caf-port", result.caf_port, 0, 65535))
    return err;
  if (auto err = number("metrics-port", result.metrics_port, 0, 65535))
    return err;
  if (auto err = number("key-bytes", result.key_bytes, min_key_width,
                        max_key_width))
    return err;
  if (auto err = number("page-keys", result.page_keys, 1,
                        max_page_keys))
    return err;
  if (result.page_keys && !valid_page_keys(*result.page_keys))
    return bad("--page-keys: invalid value '"
               + std::to_string(*result.page_keys)
               + "' (expected a power of two from 1 to 64)");
  if (auto err = number("min-rollback-window", result.min_rollback_window, 0,
                        u64_max))
    return err;
  if (auto err = number("checkpoint-lag", result.checkpoint_lag, 0, 1000000))
    return err;
  if (auto err = number("max-clients", result.max_clients, 1, 1000000))
    return err;
  if (auto err = number("max-restarts", result.max_restarts, 0, 1000000))
    return err;
  if (auto err = number("restart-window", result.restart_window_seconds, 1,
                        86400 * 365))
    return err;
  if (vm.count("durability")) {
    auto mode = parse_durability(vm["durability"].as<std::string>());
    if (!mode)
      return bad("--durability: " + message_of(mode.error()));
    result.durability = *mode;
  }
  if (vm.count("memory-budget")) {
    auto budget = parse_memory_budget(vm["memory-budget"].as<std::string>());
    if (!budget)
      return bad("--memory-budget: " + message_of(budget.error()));
    result.memory_budget = *budget;
  }
  if (vm.count("log-level")) {
    result.log_level = vm["log-level"].as<std::string>();
    static const char* levels[] = {"trace", "debug",    "info", "warn",
                                   "error", "critical", "off"};
    if (std::find(std::begin(levels), std::end(levels), result.log_level)
        == std::end(levels))
      return bad("--log-level: unknown level '" + result.log_level
                 + "' (trace, debug, info, warn, error, critical, off)");
  }
  if (vm.count("password-file")) {
    auto path = vm["password-file"].as<std::string>();
    std::ifstream file{path};
    if (!file)
      return bad("--password-file: cannot read " + path);
    std::string password;
    std::getline(file, password);
    if (!password.empty() && password.back() == '\r')
      password.pop_back();
    if (password.empty())
      return bad("--password-file: " + path + " holds an empty password");
    result.password_file = path;
    result.password = std::move(password);
  }
  if (!is_loopback(result.bind) && !result.password)
    return bad("--bind: refusing to listen on " + result.bind
               + " without --password-file (only loopback addresses may go "
                 "without a password)");
  return result;
}

} // namespace rollblock
