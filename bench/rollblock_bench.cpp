// rollblock-bench: the original's published workload against rollblock and
// two baselines.
//
// Each block inserts --inserts-per-block new sequential u64 keys (key and
// value: the number as 8 little-endian bytes) and then deletes the
// --deletes-per-block oldest live keys (FIFO). Defaults 10,000 + 9,000 =
// 19,000 operations per block, 1,000 more live keys per block.
//
// Timed: the apply loop for --blocks blocks (building each block's operation
// list included, as an embedder would) plus a final flush that makes
// everything durable. Then, timed separately: a revert of the last 100 blocks
// (revert_seconds; null for lmdb, which keeps no undo) and a close + reopen
// (recovery_seconds: the reopen). Progress goes to stderr; the last line on
// stdout is one JSON object.

#include "engines/engine.hpp"

#include "rollblock/messages/durability.hpp"
#include "rollblock/messages/error.hpp"
#include "rollblock/messages/memory_budget.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

using namespace rollblock;
using namespace rollblock::bench;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr std::uint64_t revert_blocks = 100;

struct config {
  std::uint64_t blocks = 1000;
  std::uint64_t inserts = 10000;
  std::uint64_t deletes = 9000;
  std::string mode = "async-relaxed";
  std::string engine = "rollblock";
  /// "sequential": key n is n as 8 little-endian bytes (the original's
  /// workload); "random": n scrambled by a bijection (hashes, ids).
  std::string keys = "sequential";
  std::string data_dir;
  std::optional<std::size_t> memory_budget;
  std::optional<std::size_t> page_keys;
  /// Blocks whose apply requests the client keeps in flight (rollblock).
  std::size_t in_flight = 1;
  bool keep = false;
};

[[noreturn]] void usage_error(const std::string& msg) {
  std::cerr << "rollblock-bench: " << msg << '\n';
  std::exit(2);
}

void print_help() {
  std::cout
    << "usage: rollblock-bench [options]\n"
       "  --blocks N               blocks to apply (default 1000)\n"
       "  --inserts-per-block N    new sequential keys per block (10000)\n"
       "  --deletes-per-block N    oldest live keys deleted per block (9000)\n"
       "  --mode M                 sync | sync-relaxed | async | "
       "async-relaxed\n"
       "                           (default async-relaxed; rollblock only)\n"
       "  --engine E               rollblock | lmdb | leveldb (default "
       "rollblock)\n"
       "  --keys K                 sequential | random: key n is n as 8\n"
       "                           little-endian bytes, or n scrambled by a\n"
       "                           bijection (default sequential)\n"
       "  --memory-budget B        e.g. 512MiB, 2GiB (default unlimited; "
       "rollblock only)\n"
       "  --page-keys N            keys per LevelDB state record, 1..64 "
       "(default 64;\n"
       "                           rollblock only)\n"
       "  --in-flight N            blocks whose apply requests the client\n"
       "                           keeps in flight, 1..64 (default 1: the\n"
       "                           blocking facade; rollblock only)\n"
       "  --data-dir DIR           must not exist (default: a new dir in "
       "$TMPDIR);\n"
       "                           deleted at the end unless --keep\n"
       "  --keep                   keep the data directory\n"
       "Prints progress on stderr and, as its last line on stdout, one JSON\n"
       "object: engine, mode, keys, in_flight, blocks, ops, seconds, ops_per_sec,\n"
       "memory_budget_bytes, run_peak_rss_bytes (apply loop and flush),\n"
       "peak_rss_bytes (whole process), state_table_bytes (the in-memory\n"
       "state's tables after the run; null for lmdb and leveldb), live_keys,\n"
       "revert_seconds, recovery_seconds.\n";
}

std::uint64_t parse_count(std::string_view flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  auto x = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || text[0] == '-' || *end != '\0' || errno != 0)
    usage_error(std::string{flag} + ": not a count: '" + text + "'");
  return x;
}

config parse(int argc, char** argv) {
  config cfg;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      print_help();
      std::exit(0);
    }
    if (arg == "--keep") {
      cfg.keep = true;
      continue;
    }
    std::string name{arg};
    std::string val;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      name = std::string{arg.substr(0, eq)};
      val = std::string{arg.substr(eq + 1)};
    } else if (arg.starts_with("--")) {
      if (i + 1 >= argc)
        usage_error(name + ": missing value");
      val = argv[++i];
    }
    if (name == "--blocks")
      cfg.blocks = parse_count(name, val);
    else if (name == "--inserts-per-block")
      cfg.inserts = parse_count(name, val);
    else if (name == "--deletes-per-block")
      cfg.deletes = parse_count(name, val);
    else if (name == "--mode")
      cfg.mode = val;
    else if (name == "--engine")
      cfg.engine = val;
    else if (name == "--keys")
      cfg.keys = val;
    else if (name == "--page-keys")
      cfg.page_keys = parse_count(name, val);
    else if (name == "--in-flight")
      cfg.in_flight = parse_count(name, val);
    else if (name == "--data-dir")
      cfg.data_dir = val;
    else if (name == "--memory-budget") {
      auto budget = parse_memory_budget(val);
      if (!budget)
        usage_error("--memory-budget: " + message_of(budget.error()));
      cfg.memory_budget = *budget;
    } else
      usage_error("unknown option '" + std::string{arg} +
                  "' (try --help)");
  }
  if (cfg.keys != "sequential" && cfg.keys != "random")
    usage_error("--keys: expected sequential or random, got '" + cfg.keys
                + "'");
  if (cfg.engine != "rollblock" && cfg.engine != "lmdb"
      && cfg.engine != "leveldb")
    usage_error("--engine: expected rollblock, lmdb or leveldb, got '"
                + cfg.engine + "'");
  if (cfg.mode != "sync" && cfg.mode != "sync-relaxed" && cfg.mode != "async"
      && cfg.mode != "async-relaxed")
    usage_error("--mode: expected sync, sync-relaxed, async or async-relaxed, "
                "got '" + cfg.mode + "'");
  if (cfg.blocks == 0)
    usage_error("--blocks: must be at least 1");
  if (cfg.memory_budget && cfg.engine != "rollblock")
    usage_error("--memory-budget: only the rollblock engine has a budget");
  if (cfg.page_keys && cfg.engine != "rollblock")
    usage_error("--page-keys: only the rollblock engine has pages");
  if (cfg.in_flight == 0 || cfg.in_flight > 64)
    usage_error("--in-flight: expected 1 to 64, got "
                + std::to_string(cfg.in_flight));
  if (cfg.in_flight != 1 && cfg.engine != "rollblock")
    usage_error("--in-flight: only the rollblock engine takes requests in "
                "flight");
  if (cfg.page_keys && !valid_page_keys(*cfg.page_keys))
    usage_error("--page-keys: expected a power of two from 1 to 64, got "
                + std::to_string(*cfg.page_keys));
  return cfg;
}

durability_mode to_mode(const std::string& m) {
  if (m == "sync")
    return durability_mode::synchronous();
  if (m == "sync-relaxed")
    return durability_mode::synchronous_relaxed(100);
  if (m == "async")
    return durability_mode::async(1024);
  return durability_mode::async_relaxed(1024, 100);
}

std::uint64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<std::uint64_t>(ru.ru_maxrss) * 1024;
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Progress on stderr: a \r-updated line on a terminal, else a line every
/// ~2 s.
class progress {
public:
  progress() : tty_(isatty(STDERR_FILENO) == 1) {
  }

  void update(std::uint64_t block, std::uint64_t blocks, std::uint64_t ops,
              clock_type::time_point t0) {
    auto now = clock_type::now();
    auto gap = tty_ ? std::chrono::milliseconds{250}
                    : std::chrono::milliseconds{2000};
    if (now - last_ < gap && block != blocks)
      return;
    last_ = now;
    double s = std::chrono::duration<double>(now - t0).count();
    char line[160];
    std::snprintf(line, sizeof line,
                  "block %llu/%llu  %.2f M ops  %.1f s  %.3f M ops/s",
                  static_cast<unsigned long long>(block),
                  static_cast<unsigned long long>(blocks), ops / 1e6, s,
                  s > 0 ? ops / s / 1e6 : 0.0);
    if (tty_)
      std::cerr << '\r' << line << "\033[K" << std::flush;
    else
      std::cerr << line << '\n';
  }

  void done() {
    if (tty_)
      std::cerr << '\n';
  }

private:
  bool tty_;
  clock_type::time_point last_{};
};

/// The key of the n-th inserted key: n, or n scrambled by splitmix64's
/// finalizer (a bijection, so keys stay distinct).
key key_of(const config& cfg, std::uint64_t n) {
  if (cfg.keys == "sequential")
    return key_from_u64(n);
  n = (n ^ (n >> 30)) * 0xbf58476d1ce4e5b9ull;
  n = (n ^ (n >> 27)) * 0x94d049bb133111ebull;
  return key_from_u64(n ^ (n >> 31));
}

void note(const std::string& msg) {
  std::cerr << msg << '\n';
}

std::string fmt_double(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", x);
  return buf;
}

} // namespace

int main(int argc, char** argv) {
  auto cfg = parse(argc, argv);
  namespace fs = std::filesystem;
  bool made_dir = cfg.data_dir.empty();
  if (made_dir) {
    auto tmpl = (fs::temp_directory_path() / "rollblock-bench.XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::cerr << "rollblock-bench: mkdtemp: " << std::strerror(errno) << '\n';
      return 1;
    }
    cfg.data_dir = tmpl + "/data";
  } else if (fs::exists(cfg.data_dir)) {
    usage_error("--data-dir: '" + cfg.data_dir
                + "' exists; give a new directory");
  }
  auto cleanup = [&] {
    if (cfg.keep)
      return;
    std::error_code ec;
    fs::remove_all(made_dir ? fs::path{cfg.data_dir}.parent_path()
                            : fs::path{cfg.data_dir},
                   ec);
  };
  std::string mode_label = cfg.engine == "rollblock" ? cfg.mode : "n/a";
  try {
    std::unique_ptr<engine> eng;
    if (cfg.engine == "rollblock") {
      store_options opts;
      opts.data_dir = cfg.data_dir;
      opts.key_width = default_key_width;
      opts.page_keys = cfg.page_keys;
      opts.durability = to_mode(cfg.mode);
      opts.memory_budget = cfg.memory_budget;
      eng = make_rollblock_engine(std::move(opts), cfg.in_flight);
    }
    else if (cfg.engine == "lmdb")
      eng = make_lmdb_engine(cfg.data_dir);
    else
      eng = make_leveldb_engine(cfg.data_dir, revert_blocks);
    note("rollblock-bench: engine " + cfg.engine + ", mode " + mode_label
         + ", " + cfg.keys + " keys, " + std::to_string(cfg.blocks)
         + " blocks of "
         + std::to_string(cfg.inserts) + " inserts + "
         + std::to_string(cfg.deletes) + " deletes, data dir "
         + cfg.data_dir);

    // -- the timed run ---------------------------------------------------------
    std::uint64_t next_key = 0; // the next key to insert
    std::uint64_t oldest = 0;   // the oldest live key
    std::uint64_t ops = 0;
    progress prog;
    auto t0 = clock_type::now();
    for (std::uint64_t h = 1; h <= cfg.blocks; ++h) {
      auto live = next_key + cfg.inserts - oldest;
      auto dels = std::min(cfg.deletes, live);
      operation_list block;
      block.reserve(cfg.inserts + dels);
      for (std::uint64_t i = 0; i < cfg.inserts; ++i, ++next_key)
        block.push_back({key_of(cfg, next_key), value_from_u64(next_key)});
      for (std::uint64_t i = 0; i < dels; ++i, ++oldest)
        block.push_back({key_of(cfg, oldest), value{}});
      ops += block.size();
      eng->apply(h, std::move(block));
      prog.update(h, cfg.blocks, ops, t0);
    }
    eng->flush();
    double seconds = seconds_since(t0);
    prog.done();
    note("applied and flushed in " + fmt_double(seconds) + " s");
    // The peak of the timed run alone (the revert and reopen below hold
    // their own working sets).
    auto run_peak_rss = peak_rss_bytes();
    // Tables never shrink: their size now is their largest.
    auto table_bytes = eng->state_table_bytes();

    // -- revert of the last 100 blocks -------------------------------------------
    std::optional<double> revert_seconds;
    auto expected_live = next_key - oldest;
    if (eng->can_revert()) {
      auto n = std::min(revert_blocks, cfg.blocks);
      auto target = cfg.blocks - n;
      auto t1 = clock_type::now();
      eng->revert_to(target);
      revert_seconds = seconds_since(t1);
      note("reverted " + std::to_string(n) + " blocks (to " +
           std::to_string(target) + ") in " + fmt_double(*revert_seconds)
           + " s");
      // Replay the FIFO model back to `target` for the expected count.
      std::uint64_t nk = 0, old = 0;
      for (std::uint64_t h = 1; h <= target; ++h) {
        nk += cfg.inserts;
        old += std::min(cfg.deletes, nk - old);
      }
      expected_live = nk - old;
    } else {
      note("revert: not supported by " + cfg.engine + " (no undo records)");
    }

    // -- close and recovery ------------------------------------------------------
    auto t2 = clock_type::now();
    eng->close();
    note("closed in " + fmt_double(seconds_since(t2)) + " s");
    auto t3 = clock_type::now();
    eng->reopen();
    double recovery_seconds = seconds_since(t3);
    note("reopened (recovery) in " + fmt_double(recovery_seconds) + " s");

    auto live_keys = eng->live_keys();
    if (live_keys != expected_live)
      note("WARNING: " + std::to_string(live_keys) + " live keys, expected "
           + std::to_string(expected_live));
    if (expected_live > 0) {
      // The newest surviving key must read back as its own value.
      std::uint64_t nk = 0, old = 0;
      auto last = eng->can_revert() ? cfg.blocks - std::min(revert_blocks,
                                                            cfg.blocks)
                                    : cfg.blocks;
      for (std::uint64_t h = 1; h <= last; ++h) {
        nk += cfg.inserts;
        old += std::min(cfg.deletes, nk - old);
      }
      if (nk > 0 && eng->get(key_of(cfg, nk - 1)) != value_from_u64(nk - 1))
        note("WARNING: key " + std::to_string(nk - 1) + " reads back wrong");
    }
    eng->close();
    eng.reset();

    double ops_per_sec = ops / seconds;
    std::cout << "{\"engine\":\"" << cfg.engine << "\",\"mode\":\""
              << mode_label << "\",\"keys\":\"" << cfg.keys
              << "\",\"in_flight\":" << cfg.in_flight
              << ",\"blocks\":" << cfg.blocks
              << ",\"ops\":" << ops << ",\"seconds\":" << fmt_double(seconds)
              << ",\"ops_per_sec\":" << static_cast<std::uint64_t>(ops_per_sec)
              << ",\"memory_budget_bytes\":"
              << (cfg.memory_budget ? std::to_string(*cfg.memory_budget)
                                    : "null")
              << ",\"run_peak_rss_bytes\":" << run_peak_rss
              << ",\"peak_rss_bytes\":" << peak_rss_bytes()
              << ",\"state_table_bytes\":"
              << (table_bytes ? std::to_string(*table_bytes) : "null")
              << ",\"live_keys\":" << live_keys << ",\"revert_seconds\":"
              << (revert_seconds ? fmt_double(*revert_seconds) : "null")
              << ",\"recovery_seconds\":" << fmt_double(recovery_seconds)
              << "}" << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "rollblock-bench: " << e.what() << '\n';
    cleanup();
    return 1;
  }
  cleanup();
  return 0;
}
