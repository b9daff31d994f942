// rollblock: the offline admin tool for a stopped data directory.
//
//   rollblock [--data-dir DIR] verify
//   rollblock [--data-dir DIR] info
//   rollblock [--data-dir DIR] dump --at HEIGHT [--format hex|raw]
//   rollblock health --port PORT [--host HOST] [--timeout SECONDS]
//
// health asks a running rollblockd (GET /health on its --metrics-port) and
// exits 0 serving, 1 degraded, 2 fatal, 3 unreachable; it takes no lock.
//
// Every command takes the data directory's lock first (a running rollblockd
// holds it) and never changes the journal. Exit codes: 0 success (verify:
// nothing corrupt; a torn journal tail, which opening the store repairs, is
// reported but still exits 0), 1 corruption or failure, 2 bad usage.

#include "data_dir_inspector.hpp"
#include "health_probe.hpp"

#include "rollblock/messages/error.hpp"

#include <boost/program_options.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

namespace po = boost::program_options;
using namespace rollblock;
using rollblock::admin::data_dir_inspector;
using rollblock::admin::severity;

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

constexpr const char* usage_text = R"(Usage: rollblock [--data-dir DIR] COMMAND [OPTIONS]

Offline admin tool for a stopped rollblock data directory. It takes the
directory's lock first (stop rollblockd before using it) and never changes the
journal.

Commands:
  verify              check the journal (every entry and its checksums, no
                      missing segment, the newest ones that a segment
                      trailer names included, the checkpoint's block
                      present) and
                      LevelDB (every record and table, checksums verified,
                      the format version), and that they agree; print the
                      recoverable heights and every problem naming file,
                      offset and height; exit 1 on corruption (a torn journal
                      tail above the checkpoint, which opening the store
                      repairs, is reported but exits 0)
  info                key width, format version, durability mode, rollback
                      window, heights, journal and LevelDB sizes, live keys
  dump --at HEIGHT    print the state as of HEIGHT (a recoverable height),
                      in key order (the first 8 bytes as a little-endian
                      number, then the rest), to stdout
  health --port PORT  ask a RUNNING rollblockd (GET /health on its
                      --metrics-port) and print its state; exit 0 serving,
                      1 degraded, 2 fatal, 3 unreachable (no lock taken)

)";

constexpr const char* format_text = R"(
Dump formats:
  hex   one line per key: "<hex key> <hex value>"
  raw   the key bytes, a tab, the value bytes, a newline; unambiguous only
        when keys and values hold no tab or newline bytes

Exit codes: 0 success, 1 corruption or failure, 2 bad usage; health: 0
serving, 1 degraded, 2 fatal (or bad usage), 3 unreachable.
)";

int usage_error(const std::string& what) {
  std::cerr << "rollblock: " << what << " (see rollblock --help)\n";
  return exit_usage;
}

int failure(const std::string& what) {
  std::cerr << "rollblock: " << what << "\n";
  return exit_failure;
}

std::string opt(const std::optional<block_id>& x) {
  return x ? std::to_string(*x) : std::string{"none"};
}

std::string plural(std::uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string range_text(const std::optional<admin::height_range>& r) {
  if (!r)
    return "none (the store holds no block)";
  return std::to_string(r->oldest) + ".." + std::to_string(r->newest);
}

// -- verify -------------------------------------------------------------------

int run_verify(data_dir_inspector& dd) {
  auto r = dd.verify();
  std::cout << "verifying data directory " << dd.dir().string() << "\n";
  if (r.meta) {
    auto& m = *r.meta;
    std::cout << "metadata: format version " << m.format_version
              << ", key width " << m.key_width << ", durability "
              << to_string(m.durability) << ", rollback window "
              << m.min_rollback_window << "\n";
    std::cout << "heights: checkpoint " << opt(m.checkpoint)
              << ", pruned through " << opt(m.pruned_through)
              << ", revert marker " << opt(m.revert_marker) << "\n";
  } else {
    std::cout << "metadata: not available\n";
  }
  if (r.journal_opened) {
    std::cout << "journal: " << plural(r.journal_entries, "entry", "entries")
              << " (" << plural(r.journal_changes, "change", "changes")
              << ") in "
              << plural(r.journal_report.segments, "segment", "segments");
    if (r.journal_first)
      std::cout << ", heights " << *r.journal_first << ".."
                << *r.journal_last;
    std::cout << ", " << r.journal_bytes << " bytes\n";
  } else {
    std::cout << "journal: not readable\n";
  }
  if (r.state_checked)
    std::cout << "state: " << plural(r.state_keys, "key", "keys")
              << " in the state database, checksums verified\n";
  else
    std::cout << "state: not readable\n";
  if (r.range)
    std::cout << "recoverable heights: " << range_text(r.range) << "\n";
  else if (r.meta && r.journal_opened && r.count(severity::problem) == 0)
    std::cout << "recoverable heights: " << range_text(std::nullopt) << "\n";
  else
    std::cout << "recoverable heights: unknown (see the problems below)\n";
  for (auto& f : r.findings)
    std::cout << (f.level == severity::problem ? "problem: " : "repairable: ")
              << f.text << "\n";
  auto problems = r.count(severity::problem);
  auto repairable = r.count(severity::repairable);
  if (problems > 0) {
    std::cout << "result: corrupt, "
              << plural(problems, "problem", "problems") << "\n";
    return exit_failure;
  }
  if (repairable > 0)
    std::cout << "result: clean, "
              << plural(repairable, "repairable issue", "repairable issues")
              << " (opening the store repairs it)\n";
  else
    std::cout << "result: clean\n";
  return exit_ok;
}

// -- info ---------------------------------------------------------------------

int run_info(data_dir_inspector& dd) {
  if (auto err = dd.open())
    return failure(message_of(err));
  auto& m = dd.meta();
  auto& j = dd.blocks();
  auto& rep = dd.journal_report();
  auto range = dd.recoverable();
  auto at_checkpoint = dd.count_state_keys();
  if (!at_checkpoint)
    return failure(message_of(at_checkpoint.error()));
  std::optional<std::uint64_t> at_newest;
  if (range) {
    auto n = dd.count_keys_at(range->newest);
    if (!n)
      return failure(message_of(n.error()));
    at_newest = *n;
  }
  auto& out = std::cout;
  out << "data directory: " << dd.dir().string() << "\n";
  out << "format version: " << m.format_version << "\n";
  out << "key width: " << m.key_width << "\n";
  out << "durability mode: " << to_string(m.durability) << "\n";
  out << "rollback window: " << m.min_rollback_window << "\n";
  out << "checkpoint height: " << opt(m.checkpoint) << "\n";
  out << "pruned through: " << opt(m.pruned_through) << "\n";
  out << "revert marker: " << opt(m.revert_marker) << "\n";
  out << "journal first height: "
      << opt(j.empty() ? std::nullopt : std::optional{j.first_height()})
      << "\n";
  out << "journal last height: "
      << opt(j.empty() ? std::nullopt : std::optional{j.last_height()})
      << "\n";
  out << "journal entries: " << j.index().size() << "\n";
  out << "journal segments: " << rep.segments << "\n";
  out << "journal bytes: " << j.size_bytes() << "\n";
  if (rep.truncated_bytes > 0)
    out << "journal torn tail: " << rep.truncated_bytes << " bytes at offset "
        << rep.truncated_offset << " of " << rep.truncated_file
        << " (cut when the store is opened)\n";
  else
    out << "journal torn tail: none\n";
  out << "leveldb bytes: " << dd.state_bytes() << "\n";
  out << "recoverable heights: " << range_text(range) << "\n";
  out << "live keys at the checkpoint: " << *at_checkpoint << "\n";
  if (range)
    out << "live keys at height " << range->newest << ": " << *at_newest
        << "\n";
  return exit_ok;
}

// -- dump ---------------------------------------------------------------------

int run_dump(data_dir_inspector& dd, block_id height, bool raw) {
  if (auto err = dd.open())
    return failure(message_of(err));
  // Large output: build lines in a buffer and write it in big pieces.
  std::string buf;
  buf.reserve(1 << 16);
  bool write_failed = false;
  auto flush = [&] {
    if (!buf.empty() && std::fwrite(buf.data(), 1, buf.size(), stdout)
                          != buf.size())
      write_failed = true;
    buf.clear();
  };
  auto err = dd.state_at(height, [&](const key& k, const value& v) {
    if (raw) {
      buf.append(k);
      buf.push_back('\t');
      buf.append(v);
    } else {
      buf.append(to_hex(k));
      buf.push_back(' ');
      buf.append(to_hex(v));
    }
    buf.push_back('\n');
    if (buf.size() >= (1 << 16))
      flush();
  });
  if (err)
    return failure(message_of(err));
  flush();
  if (std::fflush(stdout) != 0 || write_failed)
    return failure("writing the dump to stdout failed");
  return exit_ok;
}

/// Parses a block height: decimal digits only.
std::optional<block_id> parse_height(const std::string& text) {
  block_id x = 0;
  auto end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, x);
  if (text.empty() || ec != std::errc{} || ptr != end)
    return std::nullopt;
  return x;
}

// -- health -------------------------------------------------------------------

int run_health(const po::variables_map& vm) {
  if (!vm.count("port"))
    return usage_error("health needs option '--port PORT' (rollblockd's "
                       "--metrics-port)");
  auto port_text = vm["port"].as<std::string>();
  auto port = parse_height(port_text);
  if (!port || *port == 0 || *port > 65535)
    return usage_error("invalid value '" + port_text
                       + "' for option '--port': expected 1..65535");
  auto timeout_text = vm["timeout"].as<std::string>();
  auto timeout = parse_height(timeout_text);
  if (!timeout || *timeout == 0 || *timeout > 3600)
    return usage_error("invalid value '" + timeout_text
                       + "' for option '--timeout': expected 1..3600 seconds");
  auto result = probe_health(vm["host"].as<std::string>(),
                             static_cast<std::uint16_t>(*port),
                             std::chrono::seconds{*timeout});
  std::cout << result.line << '\n';
  return result.exit_code;
}

} // namespace

int main(int argc, char** argv) {
  // Logs (progress of long runs) go to stderr: stdout carries the output.
  auto logger = spdlog::stderr_color_mt("rollblock");
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
  po::options_description visible{"Options"};
  // clang-format off
  visible.add_options()
    ("help,h", "print this help and exit")
    ("data-dir", po::value<std::string>()->default_value("./data"),
     "the data directory of a stopped rollblockd")
    ("at", po::value<std::string>(), "dump: the height to dump (required)")
    ("format", po::value<std::string>()->default_value("hex"),
     "dump: hex or raw")
    ("host", po::value<std::string>()->default_value("127.0.0.1"),
     "health: rollblockd's metrics address")
    ("port", po::value<std::string>(), "health: rollblockd's --metrics-port")
    ("timeout", po::value<std::string>()->default_value("5"),
     "health: seconds to wait for the answer");
  // clang-format on
  po::options_description all;
  all.add(visible).add_options()(
    "command", po::value<std::vector<std::string>>(), "the command");
  po::positional_options_description positional;
  positional.add("command", -1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv)
                .options(all)
                .positional(positional)
                .style(po::command_line_style::unix_style
                       & ~po::command_line_style::allow_guessing)
                .run(),
              vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return usage_error(e.what());
  }
  if (vm.count("help")) {
    std::cout << usage_text << visible << format_text;
    return exit_ok;
  }
  std::vector<std::string> words;
  if (vm.count("command"))
    words = vm["command"].as<std::vector<std::string>>();
  if (words.empty())
    return usage_error("no command given: use verify, info, dump or health");
  if (words.size() > 1)
    return usage_error("unexpected argument '" + words[1] + "'");
  auto& command = words[0];
  if (command == "health")
    return run_health(vm);
  if (vm.count("port"))
    return usage_error("option '--port' only applies to health");
  if (!vm["host"].defaulted() || !vm["timeout"].defaulted())
    return usage_error("options '--host' and '--timeout' only apply to "
                       "health");
  if (command != "verify" && command != "info" && command != "dump")
    return usage_error("unknown command '" + command
                       + "': use verify, info or dump");
  bool dump = command == "dump";
  if (!dump && vm.count("at"))
    return usage_error("option '--at' only applies to dump");
  if (!dump && !vm["format"].defaulted())
    return usage_error("option '--format' only applies to dump");
  block_id height = 0;
  bool raw = false;
  if (dump) {
    if (!vm.count("at"))
      return usage_error("dump needs option '--at HEIGHT'");
    auto text = vm["at"].as<std::string>();
    auto h = parse_height(text);
    if (!h)
      return usage_error("invalid value '" + text
                         + "' for option '--at': expected a block height "
                           "(decimal, 0..18446744073709551615)");
    height = *h;
    auto format = vm["format"].as<std::string>();
    if (format != "hex" && format != "raw")
      return usage_error("invalid value '" + format
                         + "' for option '--format': expected hex or raw");
    raw = format == "raw";
  }
  auto dir = vm["data-dir"].as<std::string>();
  if (dir.empty())
    return usage_error("option '--data-dir' is empty");
  auto dd = data_dir_inspector::lock(dir);
  if (!dd)
    return failure(message_of(dd.error()));
  if (command == "verify")
    return run_verify(**dd);
  if (command == "info")
    return run_info(**dd);
  return run_dump(**dd, height, raw);
}
