// Micro benchmarks (Google Benchmark) of rollblock's hot paths: fetch (hit,
// miss), fetch_many of 1,000 keys, apply of one 19,000-op block (the
// workload of rollblock-bench), revert of one such block, journal append +
// fdatasync, recovery replay, a rebase of the entries' stamps, an apply to
// the in-memory state alone and a revert of 100 blocks there, a checkpoint's
// sort and fold of 64 blocks, and the reads again while a writer applies
// blocks to the same store.
//
// The read store holds 1,000,000 keys (100 blocks of 10,000 inserts). Every
// store lives in a fresh directory under $TMPDIR, removed at exit.

#include "rollblock/actors/blocking_store.hpp"
#include "rollblock/messages/error.hpp"
#include "rollblock/storage/checkpoint_builder.hpp"
#include "rollblock/storage/journal.hpp"
#include "rollblock/storage/logger.hpp"
#include "rollblock/storage/recovery.hpp"

#include <benchmark/benchmark.h>
#include <spdlog/logger.h>

#include <stdlib.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <thread>

using namespace rollblock;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t read_keys = 1'000'000;
constexpr std::uint64_t block_inserts = 10'000;
constexpr std::uint64_t block_deletes = 9'000;
constexpr std::uint64_t writer_base = std::uint64_t{1} << 40;

fs::path root_dir;

[[noreturn]] void die(const std::string& what, const caf::error& err) {
  std::cerr << "micro_bench: " << what << ": " << describe(err) << '\n';
  std::exit(1);
}

std::unique_ptr<blocking_store> open_store(const std::string& name,
                                           durability_mode mode) {
  store_options opts;
  opts.data_dir = (root_dir / name).string();
  opts.durability = mode;
  auto res = blocking_store::open(opts);
  if (!res)
    die("open " + name, res.error());
  return std::move(*res);
}

void check(const caf::error& err, const char* what) {
  if (err)
    die(what, err);
}

/// The workload's FIFO block generator.
struct fifo_workload {
  std::uint64_t next_key;
  std::uint64_t oldest;

  explicit fifo_workload(std::uint64_t base) : next_key(base), oldest(base) {
  }

  operation_list next_block() {
    operation_list ops;
    ops.reserve(block_inserts + block_deletes);
    for (std::uint64_t i = 0; i < block_inserts; ++i, ++next_key)
      ops.push_back({key_from_u64(next_key), value_from_u64(next_key)});
    auto dels = std::min(block_deletes, next_key - oldest);
    for (std::uint64_t i = 0; i < dels; ++i, ++oldest)
      ops.push_back({key_from_u64(oldest), value{}});
    return ops;
  }
};

// -- the read store -------------------------------------------------------------

struct read_fixture {
  std::unique_ptr<blocking_store> store;
  std::vector<key> hits;   // random present keys
  std::vector<key> misses; // random absent keys
  block_id height = 0;
  fifo_workload writer_load{writer_base};

  read_fixture() {
    store = open_store("read", durability_mode::async_relaxed(1024, 100));
    std::uint64_t k = 0;
    for (block_id h = 1; h <= read_keys / block_inserts; ++h) {
      operation_list ops;
      ops.reserve(block_inserts);
      for (std::uint64_t i = 0; i < block_inserts; ++i, ++k)
        ops.push_back({key_from_u64(k), value_from_u64(k)});
      check(store->apply(h, std::move(ops)), "populate");
      height = h;
    }
    if (auto res = store->flush(); !res)
      die("flush", res.error());
    std::mt19937_64 rng{42};
    for (int i = 0; i < (1 << 16); ++i) {
      hits.push_back(key_from_u64(rng() % read_keys));
      misses.push_back(key_from_u64(read_keys + 1 + rng() % (1ull << 39)));
    }
  }
};

std::unique_ptr<read_fixture> g_reads;

read_fixture& reads() {
  if (!g_reads)
    g_reads = std::make_unique<read_fixture>();
  return *g_reads;
}

/// Applies workload blocks (keys above writer_base, so the readers' keys stay)
/// to the read store until stopped.
class background_writer {
public:
  background_writer() : thread_([this] { run(); }) {
  }

  ~background_writer() {
    stop_ = true;
    thread_.join();
  }

  std::uint64_t blocks() const {
    return blocks_;
  }

private:
  void run() {
    auto& f = reads();
    while (!stop_) {
      check(f.store->apply(++f.height, f.writer_load.next_block()),
            "writer apply");
      ++blocks_;
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> blocks_{0};
  std::thread thread_;
};

void fetch_loop(benchmark::State& state, const std::vector<key>& keys) {
  auto& store = *reads().store;
  std::size_t i = 0;
  for (auto _ : state) {
    auto v = store.fetch(keys[i++ & (keys.size() - 1)]);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}

void fetch_many_loop(benchmark::State& state) {
  auto& f = reads();
  auto n = static_cast<std::size_t>(state.range(0));
  std::vector<std::vector<key>> batches;
  for (std::size_t b = 0; b < 16; ++b)
    batches.emplace_back(f.hits.begin() + b * n, f.hits.begin() + (b + 1) * n);
  std::size_t i = 0;
  for (auto _ : state) {
    auto v = f.store->fetch_many(batches[i++ & 15]);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_fetch_hit(benchmark::State& state) {
  fetch_loop(state, reads().hits);
}

void BM_fetch_miss(benchmark::State& state) {
  fetch_loop(state, reads().misses);
}

void BM_fetch_many(benchmark::State& state) {
  fetch_many_loop(state);
}

void BM_fetch_hit_while_writing(benchmark::State& state) {
  reads();
  background_writer writer;
  fetch_loop(state, reads().hits);
  state.counters["writer_blocks"] = static_cast<double>(writer.blocks());
}

void BM_fetch_many_while_writing(benchmark::State& state) {
  reads();
  background_writer writer;
  fetch_many_loop(state);
  state.counters["writer_blocks"] = static_cast<double>(writer.blocks());
}

// -- apply and revert -------------------------------------------------------------

struct write_fixture {
  std::unique_ptr<blocking_store> store;
  fifo_workload load{0};
  block_id height = 0;
};

std::map<int, write_fixture> g_writes;

write_fixture& writes(int mode) {
  auto& f = g_writes[mode];
  if (!f.store) {
    auto m = mode == 0   ? durability_mode::synchronous()
             : mode == 1 ? durability_mode::synchronous_relaxed(100)
             : mode == 2 ? durability_mode::async(1024)
                         : durability_mode::async_relaxed(1024, 100);
    f.store = open_store("apply-" + std::to_string(mode), m);
  }
  return f;
}

/// arg 0: 0 sync, 1 sync-relaxed, 2 async, 3 async-relaxed. In the async
/// modes apply returns once the block is applied in memory and queued; the
/// time includes backpressure once 1,024 blocks wait.
void BM_apply_block(benchmark::State& state) {
  auto& f = writes(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    state.PauseTiming();
    auto ops = f.load.next_block();
    state.ResumeTiming();
    check(f.store->apply(++f.height, std::move(ops)), "apply");
  }
  state.SetItemsProcessed(state.iterations()
                          * (block_inserts + block_deletes));
}

/// Applies one 19,000-op block (not timed), then reverts it (timed). A revert
/// is durable when it returns (fsync included).
std::unique_ptr<blocking_store> g_revert_store;

void BM_revert_block(benchmark::State& state) {
  auto& store = g_revert_store;
  static block_id height = 0;
  static std::uint64_t next_key = 0;
  if (!store) {
    store = open_store("revert", durability_mode::async_relaxed(1024, 100));
    operation_list ops;
    for (; next_key < block_deletes; ++next_key)
      ops.push_back({key_from_u64(next_key), value_from_u64(next_key)});
    check(store->apply(++height, std::move(ops)), "populate");
  }
  for (auto _ : state) {
    state.PauseTiming();
    operation_list ops;
    ops.reserve(block_inserts + block_deletes);
    for (std::uint64_t i = 0; i < block_inserts; ++i, ++next_key)
      ops.push_back({key_from_u64(next_key), value_from_u64(next_key)});
    for (std::uint64_t k = 0; k < block_deletes; ++k)
      ops.push_back({key_from_u64(k), value{}});
    auto h = height + 1;
    check(store->apply(h, std::move(ops)), "apply");
    state.ResumeTiming();
    check(store->revert_to(h - 1), "revert");
    height = h; // the next block goes above h: h - 1 is applied now
  }
  state.SetItemsProcessed(state.iterations()
                          * (block_inserts + block_deletes));
}

// -- journal ------------------------------------------------------------------------

block_record workload_record(block_id height, std::uint64_t base,
                             std::size_t changes) {
  block_record rec;
  rec.height = height;
  auto inserts = std::min<std::size_t>(changes, block_inserts);
  for (std::size_t i = 0; i < inserts; ++i)
    rec.changes.push_back(
      {key_from_u64(base + block_inserts + i),
       value_from_u64(base + block_inserts + i), value{}});
  for (std::size_t i = 0; i + inserts < changes; ++i)
    rec.changes.push_back(
      {key_from_u64(base + i), value{}, value_from_u64(base + i)});
  return rec;
}

/// arg 0: changes per entry (1 or 19,000). One append + fdatasync each.
void BM_journal_append_fsync(benchmark::State& state) {
  auto changes = static_cast<std::size_t>(state.range(0));
  auto dir = root_dir / ("journal-" + std::to_string(changes));
  fs::remove_all(dir);
  auto j = storage::journal::open({.dir = dir});
  if (!j)
    die("journal open", j.error());
  auto rec = workload_record(1, 0, changes);
  std::uint64_t bytes = 0;
  for (auto _ : state) {
    check((*j)->append(rec), "append");
    check((*j)->sync(), "sync");
    bytes += changes * 24;
    ++rec.height;
    if (rec.height % 256 == 0) {
      state.PauseTiming();
      if (auto h = (*j)->prunable_through(rec.height - 8))
        check((*j)->drop_through(*h), "drop");
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations() * changes);
  j->reset();
  fs::remove_all(dir);
}

// -- recovery replay --------------------------------------------------------------

/// Recovery of a data directory whose journal holds 100 workload blocks
/// (1.9 M changes) above an empty checkpoint: load, replay, one checkpoint.
void BM_recovery_replay(benchmark::State& state) {
  constexpr block_id blocks = 100;
  auto src = root_dir / "replay-src";
  static bool built = false;
  if (!built) {
    store_options opts;
    opts.data_dir = src.string();
    {
      auto rec = storage::recover(opts);
      if (!rec)
        die("recover", rec.error());
    }
    auto j = storage::journal::open({.dir = src / "journal"});
    if (!j)
      die("journal open", j.error());
    fifo_workload load{0};
    for (block_id h = 1; h <= blocks; ++h) {
      auto ops = load.next_block();
      block_record rec;
      rec.height = h;
      for (auto& op : ops)
        rec.changes.push_back({op.k, op.v, op.v.empty() ? op.k : value{}});
      // (the before of a delete is the key's value, which is the key bytes)
      check((*j)->append(rec), "append");
    }
    check((*j)->sync(), "sync");
    built = true;
  }
  std::size_t changes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto dst = root_dir / "replay-dst";
    fs::remove_all(dst);
    fs::copy(src, dst, fs::copy_options::recursive);
    store_options opts;
    opts.data_dir = dst.string();
    state.ResumeTiming();
    auto rec = storage::recover(opts);
    if (!rec)
      die("recover", rec.error());
    state.PauseTiming();
    changes += rec->replayed_changes;
    rec = caf::error{};
    fs::remove_all(dst);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(changes));
}

// -- the in-memory state alone ------------------------------------------------

/// memory_state::apply of one workload block (10,000 new keys, the 9,000
/// oldest deleted) on a state of 4,900,000 keys, the size a 5,000-block
/// rollblock-bench run reaches: the mutation actor's share of an apply,
/// without the actors, the journal or the checkpoints (the block is built
/// untimed). The state is loaded once and grows by 1,000 keys a block.
struct state_fixture {
  static constexpr std::uint64_t live = 4'900'000;
  storage::memory_state ms{8};
  fifo_workload load{0};
  block_id height = 0;

  state_fixture() {
    std::vector<std::pair<key, value>> batch;
    for (std::uint64_t k = 0; k < live; k += batch.size()) {
      batch.clear();
      for (auto i = k; i < std::min(live, k + 100'000); ++i)
        batch.emplace_back(key_from_u64(i), value_from_u64(i));
      ms.load_many(batch);
    }
    ms.set_applied(0, false);
    load.next_key = live;
  }
};

std::unique_ptr<state_fixture> g_state;

state_fixture& in_memory() {
  if (!g_state)
    g_state = std::make_unique<state_fixture>();
  return *g_state;
}

void BM_state_apply(benchmark::State& state) {
  auto& f = in_memory();
  for (auto _ : state) {
    state.PauseTiming();
    auto ops = f.load.next_block();
    state.ResumeTiming();
    if (auto installed = f.ms.apply(++f.height, ops); !installed)
      die("apply", installed.error());
  }
  state.SetItemsProcessed(state.iterations()
                          * (block_inserts + block_deletes));
}

/// memory_state::revert of the 100 newest blocks (1.9 M changes) on the
/// state of BM_state_apply, the in-memory part of rollblock-bench's timed
/// revert; the blocks are applied untimed before each revert, the same
/// blocks every time.
void BM_state_revert(benchmark::State& state) {
  auto& f = in_memory();
  for (auto _ : state) {
    state.PauseTiming();
    auto target = f.height;
    auto load = f.load;
    block_record_list newest_first;
    for (int b = 0; b < 100; ++b) {
      auto installed = f.ms.apply(++f.height, f.load.next_block());
      if (!installed)
        die("apply", installed.error());
      newest_first.insert(newest_first.begin(), *installed);
    }
    state.ResumeTiming();
    f.ms.revert(newest_first, target);
    state.PauseTiming();
    f.load = load;
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * 100
                          * (block_inserts + block_deletes));
}

/// checkpoint_builder::take of 64 workload blocks (a checkpoint at the
/// default checkpoint_every_blocks: 1.2 M changes sorted into key order and
/// folded into writes), the blocks applied to BM_state_apply's state once.
void BM_checkpoint_take(benchmark::State& state) {
  auto& f = in_memory();
  std::vector<block_record_ptr> records;
  for (int b = 0; b < 64; ++b) {
    auto installed = f.ms.apply(++f.height, f.load.next_block());
    if (!installed)
      die("apply", installed.error());
    records.push_back(*installed);
  }
  std::size_t writes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    storage::checkpoint_builder builder;
    builder.reserve(64 * (block_inserts + block_deletes));
    for (auto& r : records)
      builder.add(r);
    state.ResumeTiming();
    writes = builder.take(f.height).writes.size();
  }
  state.counters["writes"] = static_cast<double>(writes);
  state.SetItemsProcessed(state.iterations() * 64
                          * (block_inserts + block_deletes));
}

// -- rebase ------------------------------------------------------------------

/// A rebase of the entries' stamps over 1,000,000 entries (memory_state
/// rebases once every 65,535 installed blocks and reverts, with readers
/// waiting): a memory_state whose stamps count to 2 rebases at each block
/// it installs, each block setting one key. Every slot is visited; the
/// stamps of entries written since the base are rewritten.
void BM_rebase(benchmark::State& state) {
  storage::memory_state ms{
    8, 64, storage::memory_state::default_optimistic_attempts, 2};
  for (std::uint64_t i = 0; i < read_keys; ++i)
    ms.load(key_from_u64(i, 8), key_from_u64(i, 8));
  ms.set_applied(0, false);
  block_id height = 0;
  for (auto _ : state) {
    ++height;
    auto installed =
      ms.apply(height, {{key_from_u64(height % read_keys, 8), "x"}});
    if (!installed)
      die("apply", installed.error());
  }
  state.SetItemsProcessed(state.iterations()
                          * static_cast<std::int64_t>(read_keys));
}

} // namespace

// Reads are timed in real time, like the reads under a writer they are
// compared with.
BENCHMARK(BM_fetch_hit)->UseRealTime();
BENCHMARK(BM_fetch_miss)->UseRealTime();
BENCHMARK(BM_fetch_many)->Arg(1000)->UseRealTime();
BENCHMARK(BM_fetch_hit_while_writing)->UseRealTime();
BENCHMARK(BM_fetch_many_while_writing)->Arg(1000)->UseRealTime();
BENCHMARK(BM_apply_block)
  ->ArgName("mode")
  ->Arg(0)
  ->Arg(3)
  ->Unit(benchmark::kMillisecond)
  ->UseRealTime();
BENCHMARK(BM_revert_block)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_journal_append_fsync)
  ->ArgName("changes")
  ->Arg(1)
  ->Arg(19000)
  ->Unit(benchmark::kMicrosecond)
  ->UseRealTime();
BENCHMARK(BM_state_apply)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_state_revert)
  ->Unit(benchmark::kMillisecond)
  ->UseRealTime()
  ->Iterations(5);
BENCHMARK(BM_checkpoint_take)
  ->Unit(benchmark::kMillisecond)
  ->UseRealTime()
  ->Iterations(20);
BENCHMARK(BM_rebase)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_recovery_replay)
  ->Unit(benchmark::kMillisecond)
  ->UseRealTime()
  ->Iterations(3);

int main(int argc, char** argv) {
  rollblock::logger().set_level(spdlog::level::warn);
  auto tmpl = (fs::temp_directory_path() / "rollblock-micro.XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  root_dir = tmpl;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  // Close every store before removing their directories.
  g_reads.reset();
  g_writes.clear();
  g_revert_store.reset();
  std::error_code ec;
  fs::remove_all(root_dir, ec);
  return 0;
}
