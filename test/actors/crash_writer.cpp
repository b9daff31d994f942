// The crash test's child process (not a gtest): applies blocks to a store
// until it is killed.
//
//   crash_writer <data dir> <durability mode> <seed> <key width>
//
// Opens the store with the given durability mode, then runs
// crash::plan(seed, applied height, fresh) forever. After each acknowledged
// apply it writes "<height> <durable>" and after each completed revert
// "revert <target> <durable>" to stdout, one line each, flushed at once.
// Everything else (the store's log) goes to stderr. Exits non-zero on any
// error.

#include "actors/crash_plan.hpp"
#include "rollblock/actors/blocking_store.hpp"
#include "rollblock/messages/error.hpp"

#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace rollblock;

namespace {

[[noreturn]] void die(int code, const std::string& what) {
  std::fprintf(stderr, "crash_writer: %s\n", what.c_str());
  std::fflush(stderr);
  std::_Exit(code);
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6)
    die(64, "usage: crash_writer <data dir> <durability mode> <seed> "
            "<key width> [<memory budget bytes>]");
  // The protocol goes to the original stdout; the log (spdlog writes to
  // stdout) goes to stderr.
  int out_fd = ::dup(STDOUT_FILENO);
  if (out_fd < 0 || ::dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
    die(70, "cannot redirect stdout");
  FILE* out = ::fdopen(out_fd, "w");
  if (out == nullptr)
    die(70, "cannot open the protocol stream");
  auto mode = parse_durability(argv[2]);
  if (!mode)
    die(64, describe(mode.error()));
  auto seed = std::strtoull(argv[3], nullptr, 10);
  auto width = static_cast<std::size_t>(std::strtoull(argv[4], nullptr, 10));
  auto budget = argc == 6 ? static_cast<std::size_t>(
                              std::strtoull(argv[5], nullptr, 10))
                          : std::size_t{0};
  auto opts = crash::options(argv[1], width, budget);
  opts.durability = *mode;
  auto opened = blocking_store::open(opts);
  if (!opened)
    die(10, "open: " + describe(opened.error()));
  auto& store = **opened;
  // A store at height 0 without keys never had a block (the genesis block
  // writes key 0).
  auto applied = store.heights().applied;
  bool fresh = false;
  if (applied == 0) {
    std::vector<key> keys;
    for (std::uint64_t i = 0; i < crash::key_space; ++i)
      keys.push_back(crash::key_of(i, width));
    auto values = store.fetch_many(keys);
    if (!values)
      die(11, "fetch_many: " + describe(values.error()));
    fresh = std::all_of(values->begin(), values->end(),
                        [](const value& v) { return v.empty(); });
  }
  crash::plan plan{seed, applied, fresh};
  for (;;) {
    auto a = plan.next();
    if (a.kind == crash::action::apply) {
      if (auto err = store.apply(a.height,
                                 crash::block_ops(seed, a.height, width)))
        die(12, "apply " + std::to_string(a.height) + ": " + describe(err));
      std::fprintf(out, "%" PRIu64 " %" PRIu64 "\n", a.height,
                   store.heights().durable);
    } else {
      if (auto err = store.revert_to(a.height))
        die(13, "revert to " + std::to_string(a.height) + ": "
                  + describe(err));
      std::fprintf(out, "revert %" PRIu64 " %" PRIu64 "\n", a.height,
                   store.heights().durable);
    }
    if (std::fflush(out) != 0)
      die(14, "writing to stdout failed");
  }
}
