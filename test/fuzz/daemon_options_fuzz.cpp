// libFuzzer target: rollblockd's option parsing (parse_daemon_options in
// app/daemon_options.hpp), from the command line and from a config file.
//
// Input: up to three parts separated by two zero bytes: the command-line
// arguments (separated by one zero byte), the text of a config file, and the
// text of a password file. The files are written into this process's own
// directory, which is the working directory, as "rollblockd.conf" and "pw"; a
// config part adds "--config rollblockd.conf" to the arguments. Inputs with
// a '/' are skipped, so that no argument names a file elsewhere (a FIFO or
// /dev/zero would block or never end).
//
// Checked: parsing never throws and ends in options or in
// ec::invalid_argument with a one-line message; parsed options hold the
// documented ranges (ports, key width 8..64, max clients 1..1,000,000, a
// known log level, a non-empty data dir, a password whenever the address is
// not loopback, a non-empty password without '\n').

#include "daemon_options.hpp"

#include "rollblock/messages/error.hpp"
#include "rollblock/messages/types.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

using namespace rollblock;
namespace fs = std::filesystem;

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "daemon_options_fuzz: invariant violated: %s\n",
                 what);
    std::abort();
  }
}

std::vector<std::string_view> split(std::string_view text,
                                    std::string_view sep) {
  std::vector<std::string_view> parts;
  for (;;) {
    auto at = text.find(sep);
    if (at == std::string_view::npos) {
      parts.push_back(text);
      return parts;
    }
    parts.push_back(text.substr(0, at));
    text.remove_prefix(at + sep.size());
  }
}

} // namespace

/// A directory of this process's own, the working directory until exit.
struct scratch_dir {
  fs::path base = fs::temp_directory_path()
                  / ("rollblock-options-fuzz-" + std::to_string(::getpid()));
  fs::path previous = fs::current_path();
  scratch_dir() {
    fs::remove_all(base);
    fs::create_directories(base);
    fs::current_path(base);
  }
  ~scratch_dir() {
    std::error_code ignored;
    fs::current_path(previous, ignored);
    fs::remove_all(base, ignored);
  }
};

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  static const scratch_dir scratch;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  std::string_view input{reinterpret_cast<const char*>(data), size};
  if (input.find('/') != std::string_view::npos)
    return 0;
  auto parts = split(input, std::string_view{"\0\0", 2});
  std::vector<std::string> args{"rollblockd"};
  if (!parts[0].empty())
    for (auto arg : split(parts[0], std::string_view{"\0", 1}))
      args.emplace_back(arg);
  fs::remove("rollblockd.conf");
  fs::remove("pw");
  if (parts.size() > 1) {
    std::ofstream{"rollblockd.conf", std::ios::binary} << parts[1];
    args.emplace_back("--config");
    args.emplace_back("rollblockd.conf");
  }
  if (parts.size() > 2)
    std::ofstream{"pw", std::ios::binary} << parts[2];
  std::vector<const char*> argv;
  for (auto& arg : args)
    argv.push_back(arg.c_str());
  argv.push_back(nullptr);
  auto parsed = parse_daemon_options(static_cast<int>(args.size()),
                                     argv.data());
  if (!parsed) {
    check(code_of(parsed.error()) == ec::invalid_argument,
          "an error other than invalid_argument");
    auto text = message_of(parsed.error());
    check(!text.empty(), "an error without a message");
    return 0;
  }
  auto& opts = *parsed;
  check(!opts.data_dir.empty(), "an empty data dir");
  if (opts.key_bytes)
    check(*opts.key_bytes >= min_key_width && *opts.key_bytes <= max_key_width,
          "a key width outside 8..64");
  check(opts.max_clients >= 1 && opts.max_clients <= 1000000,
        "max clients outside 1..1,000,000");
  static const char* levels[] = {"trace", "debug",    "info", "warn",
                                 "error", "critical", "off"};
  bool known = false;
  for (auto level : levels)
    known = known || opts.log_level == level;
  check(known, "an unknown log level");
  check(is_loopback(opts.bind) || opts.password.has_value(),
        "a non-loopback address without a password");
  if (opts.password)
    check(!opts.password->empty()
            && opts.password->find('\n') == std::string::npos,
          "an empty password or one with a line break");
  if (opts.durability) {
    auto again = parse_durability(to_string(*opts.durability));
    check(again && *again == *opts.durability,
          "a durability mode that does not round-trip");
  }
  return 0;
}
