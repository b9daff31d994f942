// Runs the real `rollblock` admin tool against data directories built with
// the storage pieces (exact heights, checkpoint and pruning) or with the
// blocking store, and checks its output lines and exit codes.

#include "rollblock/actors/blocking_store.hpp"
#include "rollblock/messages/error.hpp"
#include "rollblock/storage/data_dir_lock.hpp"
#include "rollblock/storage/journal.hpp"
#include "rollblock/storage/key_order.hpp"
#include "rollblock/storage/state_store.hpp"
#include "support/file_bytes.hpp"
#include "support/temp_dir.hpp"
#include "support/truncation_record.hpp"

#include <gtest/gtest.h>
#include <leveldb/db.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

using namespace rollblock;
namespace fs = std::filesystem;

namespace {

// -- running the tool -----------------------------------------------------------

struct run_result {
  int code = -1;
  std::string out;
  std::string err;
};

using rollblock::test::read_bytes;
using rollblock::test::write_bytes;

/// Runs `rollblock args...` with stdout and stderr captured in files.
run_result run_tool(const std::vector<std::string>& args) {
  rollblock::test::temp_dir io;
  auto out_path = io.sub("stdout");
  auto err_path = io.sub("stderr");
  std::vector<std::string> all{ADMIN_TOOL};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  run_result r;
  int rc = posix_spawn(&pid, ADMIN_TOOL, &actions, nullptr, argv.data(),
                       environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    ADD_FAILURE() << "posix_spawn of " << ADMIN_TOOL << " failed: " << rc;
    return r;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_bytes(out_path);
  r.err = read_bytes(err_path);
  return r;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

bool has_line_starting(const std::string& text, const std::string& prefix) {
  auto lines = lines_of(text);
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) {
    return l.starts_with(prefix);
  });
}

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

// -- building data directories --------------------------------------------------

/// In the store's key order (the dump's order).
using state_map = std::map<key, value, storage::key_order_less>;

/// The state after every applied height.
struct model {
  std::map<block_id, state_map> after;

  state_map at(block_id h) const {
    auto it = after.upper_bound(h);
    if (it == after.begin())
      return {};
    return std::prev(it)->second;
  }
};

std::string hex_dump(const state_map& s) {
  std::string out;
  for (auto& [k, v] : s)
    out += hex(k) + " " + hex(v) + "\n";
  return out;
}

struct block_spec {
  block_id height;
  std::vector<std::pair<key, value>> writes; // distinct keys; "" deletes
};

/// Blocks at `heights`, each writing three of twelve keys (some deletes,
/// values of varying length), the same on every run. The keys are
/// 200, 400, ..., 2400, whose key order is not their bytewise order.
std::vector<block_spec> make_blocks(const std::vector<block_id>& heights,
                                    std::uint32_t seed = 7) {
  std::mt19937 rng{seed};
  std::vector<block_spec> blocks;
  for (auto h : heights) {
    block_spec b{h, {}};
    std::vector<int> used;
    while (used.size() < 3) {
      int k = static_cast<int>(rng() % 12);
      if (std::find(used.begin(), used.end(), k) != used.end())
        continue;
      used.push_back(k);
      value v;
      if (rng() % 5 != 0)
        v = "v" + std::to_string(h) + "-" + std::to_string(k)
            + std::string(rng() % 20, 'x');
      b.writes.emplace_back(
        key_from_u64((static_cast<std::uint64_t>(k) + 1) * 200), v);
    }
    blocks.push_back(std::move(b));
  }
  return blocks;
}

std::vector<block_id> heights_from(block_id first, block_id last,
                                   std::vector<block_id> skip = {}) {
  std::vector<block_id> hs;
  for (auto h = first; h <= last; ++h)
    if (std::find(skip.begin(), skip.end(), h) == skip.end())
      hs.push_back(h);
  return hs;
}

struct build_spec {
  std::vector<block_spec> blocks;
  std::optional<block_id> checkpoint;
  /// Prune whole segments below this height (after the checkpoint).
  std::optional<block_id> prune_keep_from;
  std::uint64_t segment_bytes = 64ull << 20;
};

struct built {
  model m;
  std::optional<block_id> pruned_through;
  std::vector<storage::journal_position> index;
};

/// Builds a data directory in `dir` with the storage pieces: the journal of
/// `spec.blocks`, LevelDB at the checkpoint, and the pruned segments gone.
built build_store(const fs::path& dir, const build_spec& spec) {
  built b;
  auto state = storage::state_store::open({dir / "state"});
  EXPECT_TRUE(state) << describe(state.error());
  storage::store_metadata meta;
  EXPECT_FALSE((*state)->write_config(meta));
  storage::journal::options jo;
  jo.dir = dir / "journal";
  jo.segment_bytes = spec.segment_bytes;
  auto j = storage::journal::open(jo);
  EXPECT_TRUE(j) << describe(j.error());
  state_map cur;
  for (auto& blk : spec.blocks) {
    block_record r;
    r.height = blk.height;
    for (auto& [k, v] : blk.writes) {
      auto it = cur.find(k);
      r.changes.push_back({k, v, it == cur.end() ? value{} : it->second});
      if (v.empty())
        cur.erase(k);
      else
        cur[k] = v;
    }
    EXPECT_FALSE((*j)->append(r));
    b.m.after[blk.height] = cur;
  }
  EXPECT_FALSE((*j)->sync());
  if (spec.checkpoint) {
    storage::checkpoint_batch batch;
    batch.height = *spec.checkpoint;
    for (auto& kv : b.m.at(*spec.checkpoint))
      batch.put(kv.first, kv.second);
    EXPECT_FALSE((*state)->write_checkpoint(batch));
  }
  if (spec.prune_keep_from) {
    auto through = (*j)->prunable_through(*spec.prune_keep_from);
    EXPECT_TRUE(through);
    if (through) {
      EXPECT_FALSE((*state)->write_pruned_through(*through));
      EXPECT_FALSE((*j)->drop_through(*through));
      b.pruned_through = through;
    }
  }
  b.index = (*j)->index();
  return b;
}

std::string segment_name(std::uint64_t seq) {
  char name[32];
  std::snprintf(name, sizeof(name), "%06llu.rbj",
                static_cast<unsigned long long>(seq));
  return name;
}

std::uint64_t journal_bytes(const fs::path& dir) {
  std::uint64_t n = 0;
  for (auto& e : fs::directory_iterator{dir / "journal"})
    n += e.file_size();
  return n;
}

std::size_t changes_of(const std::vector<block_spec>& blocks) {
  std::size_t n = 0;
  for (auto& b : blocks)
    n += b.writes.size();
  return n;
}

/// Blocks 1..24 without 5, 10, 15 and 20, checkpoint at 12: one segment.
struct small_store {
  rollblock::test::temp_dir tmp;
  fs::path dir = tmp.path() / "data";
  build_spec spec{make_blocks(heights_from(1, 24, {5, 10, 15, 20})), 12,
                  std::nullopt};
  built b = build_store(dir, spec);
};

/// Blocks 1..40 in 4 KiB segments, checkpoint at 30, pruned below 20.
struct pruned_store {
  rollblock::test::temp_dir tmp;
  fs::path dir = tmp.path() / "data";
  build_spec spec{make_blocks(heights_from(1, 40, {33}), 11), 30, 20, 1024};
  built b = build_store(dir, spec);
};

} // namespace

// -- verify ---------------------------------------------------------------------

TEST(admin_tool, verify_clean_store) {
  small_store s;
  auto r = run_tool({"--data-dir", s.dir.string(), "verify"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.err, "");
  auto seg = s.dir / "journal" / segment_name(1);
  EXPECT_EQ(
    lines_of(r.out),
    (std::vector<std::string>{
      "verifying data directory " + s.dir.string(),
      "metadata: format version 3, key width 8, durability sync, rollback "
      "window 100",
      "heights: checkpoint 12, pruned through none, revert marker none",
      "journal: 20 entries (" + std::to_string(changes_of(s.spec.blocks))
        + " changes) in 1 segment, heights 1..24, "
        + std::to_string(fs::file_size(seg)) + " bytes",
      "state: " + std::to_string(s.b.m.at(12).size())
        + " keys in the state database, checksums verified",
      "recoverable heights: 0..24",
      "result: clean",
    }));
}

TEST(admin_tool, verify_pruned_store_across_segments) {
  pruned_store s;
  ASSERT_TRUE(s.b.pruned_through);
  auto p = *s.b.pruned_through;
  auto r = run_tool({"--data-dir", s.dir.string(), "verify"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  auto lines = lines_of(r.out);
  ASSERT_GE(lines.size(), 7u) << r.out;
  EXPECT_EQ(lines[2], "heights: checkpoint 30, pruned through "
                        + std::to_string(p) + ", revert marker none");
  EXPECT_EQ(lines[5], "recoverable heights: " + std::to_string(p) + "..40");
  EXPECT_EQ(lines.back(), "result: clean");
}

TEST(admin_tool, verify_flipped_byte_in_middle_entry_is_corrupt) {
  small_store s;
  auto seg = s.dir / "journal" / segment_name(1);
  auto middle = s.b.index[5];
  auto bytes = read_bytes(seg);
  bytes[middle.offset + 40 + 2] ^= 0x20; // A payload byte.
  write_bytes(seg, bytes);
  auto r = run_tool({"--data-dir", s.dir.string(), "verify"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_TRUE(has_line_starting(
    r.out, "problem: journal " + seg.string() + " is corrupt at offset "
             + std::to_string(middle.offset)
             + " (payload checksum mismatch; last good height "
             + std::to_string(s.b.index[4].height) + ")"))
    << r.out;
  EXPECT_TRUE(has_line_starting(r.out, "recoverable heights: unknown"))
    << r.out;
  EXPECT_EQ(lines_of(r.out).back(), "result: corrupt, 1 problem");
  EXPECT_EQ(read_bytes(seg), bytes); // Nothing repaired.
}

TEST(admin_tool, verify_torn_tail_is_repairable_and_left_alone) {
  small_store s;
  auto seg = s.dir / "journal" / segment_name(1);
  auto last = s.b.index.back();
  fs::resize_file(seg, last.offset + last.size - 5);
  auto bytes = read_bytes(seg);
  auto r = run_tool({"--data-dir", s.dir.string(), "verify"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 8u) << r.out;
  EXPECT_EQ(lines[3], "journal: 19 entries (57 changes) in 1 segment, "
                      "heights 1..23, "
                        + std::to_string(bytes.size()) + " bytes");
  EXPECT_EQ(lines[5], "recoverable heights: 0..23");
  EXPECT_EQ(lines[6], "repairable: journal " + seg.string()
                        + ": a torn tail of " + std::to_string(last.size - 5)
                        + " bytes at offset " + std::to_string(last.offset)
                        + " would be cut when the store is opened (last good "
                          "height 23)");
  EXPECT_EQ(lines[7],
            "result: clean, 1 repairable issue (opening the store repairs it)");
  EXPECT_EQ(read_bytes(seg), bytes);
}

TEST(admin_tool, verify_finds_state_that_disagrees_with_the_journal) {
  small_store s;
  // A key whose value at the checkpoint 12 the journal knows.
  auto at12 = s.b.m.at(12);
  ASSERT_FALSE(at12.empty());
  auto k = at12.begin()->first;
  {
    auto state = storage::state_store::open({s.dir / "state"});
    ASSERT_TRUE(state);
    storage::checkpoint_batch batch;
    batch.height = 12;
    batch.put(k, "bogus");
    ASSERT_FALSE((*state)->write_checkpoint(batch));
  }
  auto r = run_tool({"--data-dir", s.dir.string(), "verify"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_TRUE(has_line_starting(r.out, "problem: key " + hex(k) + " holds "
                                         + hex("bogus")
                                         + " at the checkpoint 12 but the "
                                           "journal says "
                                         + hex(at12.begin()->second)))
    << r.out;
  EXPECT_EQ(lines_of(r.out).back(), "result: corrupt, 1 problem");
}

TEST(admin_tool, verify_and_dump_report_a_malformed_state_page) {
  small_store s;
  // A page far from the store's keys whose only entry has an empty value.
  auto page = key_from_u64(1ull << 40);
  {
    leveldb::Options opts;
    opts.comparator = &storage::state_key_comparator();
    leveldb::DB* raw = nullptr;
    auto st = leveldb::DB::Open(opts, (s.dir / "state").string(), &raw);
    ASSERT_TRUE(st.ok()) << st.ToString();
    std::unique_ptr<leveldb::DB> db{raw};
    leveldb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db->Put(wo, "s" + page, std::string{"\x05\x00", 2}).ok());
  }
  auto why = "entry at byte 0: slot 5 holds an empty value (deletes are "
             "never stored)";
  auto r = run_tool({"--data-dir", s.dir.string(), "verify"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_TRUE(has_line_starting(r.out, "problem: state page " + hex(page)
                                         + " is malformed: " + why))
    << r.out;
  EXPECT_EQ(lines_of(r.out).back(), "result: corrupt, 1 problem");
  auto dump = run_tool({"--data-dir", s.dir.string(), "dump", "--at", "12"});
  EXPECT_EQ(dump.code, 1);
  EXPECT_NE(dump.err.find("the state page " + hex(page)
                          + " in the state database at "
                          + (s.dir / "state").string() + " is malformed: "
                          + why),
            std::string::npos)
    << dump.err;
}

// -- info -----------------------------------------------------------------------

TEST(admin_tool, info_reports_the_figures) {
  pruned_store s;
  ASSERT_TRUE(s.b.pruned_through);
  auto p = *s.b.pruned_through;
  auto r = run_tool({"info", "--data-dir", s.dir.string()});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.err, "");
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 18u) << r.out;
  std::size_t segments = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator{s.dir / "journal"})
    ++segments;
  // The line with the LevelDB size varies with LevelDB's files.
  ASSERT_TRUE(lines[14].starts_with("leveldb bytes: ")) << r.out;
  EXPECT_GT(std::stoull(lines[14].substr(15)), 0u);
  lines.erase(lines.begin() + 14);
  EXPECT_EQ(lines,
            (std::vector<std::string>{
              "data directory: " + s.dir.string(),
              "format version: 3",
              "key width: 8",
              "durability mode: sync",
              "rollback window: 100",
              "checkpoint height: 30",
              "pruned through: " + std::to_string(p),
              "revert marker: none",
              "journal first height: " + std::to_string(s.b.index[0].height),
              "journal last height: 40",
              "journal entries: " + std::to_string(s.b.index.size()),
              "journal segments: " + std::to_string(segments),
              "journal bytes: " + std::to_string(journal_bytes(s.dir)),
              "journal torn tail: none",
              "recoverable heights: " + std::to_string(p) + "..40",
              "live keys at the checkpoint: "
                + std::to_string(s.b.m.at(30).size()),
              "live keys at height 40: " + std::to_string(s.b.m.at(40).size()),
            }));
  EXPECT_GT(p, 0u);
  EXPECT_EQ(s.b.index[0].height, p + 1);
}

// -- dump -----------------------------------------------------------------------

TEST(admin_tool, dump_at_heights_above_at_and_below_the_checkpoint) {
  pruned_store s;
  ASSERT_TRUE(s.b.pruned_through);
  auto p = *s.b.pruned_through;
  // 33 was never applied: its state is the state at 32.
  std::vector<block_id> heights{40, 35, 33, 31, 30, 29, 25, p + 1, p};
  for (auto h : heights) {
    SCOPED_TRACE("height " + std::to_string(h));
    auto r = run_tool(
      {"--data-dir", s.dir.string(), "dump", "--at", std::to_string(h)});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(r.out, hex_dump(s.b.m.at(h)));
    EXPECT_FALSE(r.out.empty());
  }
  // Raw: key bytes, a tab, value bytes, a newline.
  auto r = run_tool(
    {"--data-dir", s.dir.string(), "dump", "--at", "27", "--format", "raw"});
  EXPECT_EQ(r.code, 0) << r.err;
  std::string raw;
  for (auto& [k, v] : s.b.m.at(27))
    raw += k + "\t" + v + "\n";
  EXPECT_EQ(r.out, raw);
}

TEST(admin_tool, dump_refuses_heights_outside_the_recoverable_range) {
  pruned_store s;
  ASSERT_TRUE(s.b.pruned_through);
  auto p = *s.b.pruned_through;
  auto span = std::to_string(p) + "..40";
  auto below = run_tool({"--data-dir", s.dir.string(), "dump", "--at",
                         std::to_string(p - 1)});
  EXPECT_EQ(below.code, 1);
  EXPECT_EQ(below.out, "");
  EXPECT_EQ(below.err, "rollblock: height " + std::to_string(p - 1)
                         + " is not reachable: the journal was pruned through "
                           "block "
                         + std::to_string(p)
                         + ", so the recoverable heights are " + span + "\n");
  auto above = run_tool({"--data-dir", s.dir.string(), "dump", "--at", "41"});
  EXPECT_EQ(above.code, 1);
  EXPECT_EQ(above.out, "");
  EXPECT_EQ(above.err, "rollblock: height 41 is above the newest height 40 "
                       "of the store; the recoverable heights are "
                         + span + "\n");
}

TEST(admin_tool, dump_without_a_checkpoint_replays_the_journal) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path() / "data";
  build_spec spec{make_blocks(heights_from(0, 9, {4}), 3), std::nullopt,
                  std::nullopt};
  auto b = build_store(dir, spec);
  for (block_id h : {0, 3, 4, 9}) {
    SCOPED_TRACE("height " + std::to_string(h));
    auto r = run_tool({"--data-dir", dir.string(), "dump", "--at",
                       std::to_string(h)});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, hex_dump(b.m.at(h)));
  }
  auto r = run_tool({"--data-dir", dir.string(), "verify"});
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has_line_starting(r.out, "heights: checkpoint none,")) << r.out;
  EXPECT_TRUE(has_line_starting(r.out, "recoverable heights: 0..9")) << r.out;
}

TEST(admin_tool, dump_of_a_store_with_a_torn_tail_ends_before_it) {
  small_store s;
  auto seg = s.dir / "journal" / segment_name(1);
  auto last = s.b.index.back();
  fs::resize_file(seg, last.offset + 3);
  auto r = run_tool({"--data-dir", s.dir.string(), "dump", "--at", "23"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, hex_dump(s.b.m.at(23)));
  auto at24 = run_tool({"--data-dir", s.dir.string(), "dump", "--at", "24"});
  EXPECT_EQ(at24.code, 1);
  EXPECT_EQ(fs::file_size(seg), last.offset + 3);
}

// -- a store written by the actors ----------------------------------------------

TEST(admin_tool, store_written_by_blocking_store_verifies_and_dumps) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path() / "data";
  store_options opts;
  opts.data_dir = dir.string();
  opts.journal_segment_bytes = 4096;
  opts.checkpoint_every_blocks = 4;
  opts.min_rollback_window = 5;
  model m;
  {
    auto store = blocking_store::open(opts);
    ASSERT_TRUE(store) << describe(store.error());
    state_map cur;
    auto apply = [&](const block_spec& blk) {
      operation_list ops;
      for (auto& [k, v] : blk.writes) {
        ops.push_back({k, v});
        if (v.empty())
          cur.erase(k);
        else
          cur[k] = v;
      }
      ASSERT_FALSE((*store)->apply(blk.height, ops));
      m.after[blk.height] = cur;
    };
    for (auto& blk : make_blocks(heights_from(1, 40), 5))
      apply(blk);
    ASSERT_FALSE((*store)->revert_to(30)) << "revert";
    m.after.erase(m.after.upper_bound(30), m.after.end());
    cur = m.at(30);
    for (auto& blk : make_blocks(heights_from(31, 36), 9))
      apply(blk);
    ASSERT_FALSE((*store)->close());
  }
  auto v = run_tool({"--data-dir", dir.string(), "verify"});
  EXPECT_EQ(v.code, 0) << v.out << v.err;
  EXPECT_EQ(lines_of(v.out).back(), "result: clean") << v.out;
  auto info = run_tool({"--data-dir", dir.string(), "info"});
  ASSERT_EQ(info.code, 0) << info.err;
  std::string range;
  for (auto& line : lines_of(info.out))
    if (line.starts_with("recoverable heights: "))
      range = line.substr(21);
  auto dots = range.find("..");
  ASSERT_NE(dots, std::string::npos) << info.out;
  auto oldest = std::stoull(range.substr(0, dots));
  auto newest = std::stoull(range.substr(dots + 2));
  EXPECT_EQ(newest, 36u);
  EXPECT_LE(oldest, 36u);
  for (auto h = oldest; h <= newest; ++h) {
    SCOPED_TRACE("height " + std::to_string(h));
    auto r = run_tool(
      {"--data-dir", dir.string(), "dump", "--at", std::to_string(h)});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, hex_dump(m.at(h)));
  }
  if (oldest > 0) {
    auto r = run_tool({"--data-dir", dir.string(), "dump", "--at",
                       std::to_string(oldest - 1)});
    EXPECT_EQ(r.code, 1);
  }
}

// -- usage and locking ----------------------------------------------------------

TEST(admin_tool, bad_usage_is_one_line_naming_the_flag_and_exit_2) {
  struct bad_case {
    std::vector<std::string> args;
    std::string named;
  };
  std::vector<bad_case> cases{
    {{"--frobnicate", "verify"}, "'--frobnicate'"},
    {{"verify", "--data-dir"}, "'--data-dir'"},
    {{"dump"}, "'--at HEIGHT'"},
    {{"dump", "--at", "twelve"}, "'--at'"},
    {{"dump", "--at=-1"}, "'--at'"},
    {{"dump", "--at", "3", "--format", "xml"}, "'--format'"},
    {{"verify", "--at", "3"}, "'--at'"},
    {{"info", "--format", "raw"}, "'--format'"},
    {{"frob"}, "'frob'"},
    {{"verify", "info"}, "'info'"},
    {{}, "no command"},
  };
  for (auto& c : cases) {
    std::string joined;
    for (auto& a : c.args)
      joined += a + " ";
    SCOPED_TRACE(joined);
    auto r = run_tool(c.args);
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(r.out, "");
    EXPECT_TRUE(r.err.starts_with("rollblock: ")) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(c.named), std::string::npos) << r.err;
  }
}

TEST(admin_tool, help_prints_usage_and_exits_0) {
  auto r = run_tool({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(r.out.starts_with("Usage: rollblock")) << r.out;
  EXPECT_NE(r.out.find("--data-dir"), std::string::npos);
  EXPECT_NE(r.out.find("--format"), std::string::npos);
  EXPECT_EQ(r.err, "");
}

TEST(admin_tool, locked_data_directory_is_refused) {
  small_store s;
  auto lock = storage::data_dir_lock::acquire(s.dir);
  ASSERT_TRUE(lock);
  for (auto cmd : {"verify", "info"}) {
    auto r = run_tool({"--data-dir", s.dir.string(), cmd});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, "rollblock: data directory " + s.dir.string()
                       + " is locked by another process (pid "
                       + std::to_string(::getpid())
                       + "); stop that process or use another directory\n");
  }
  lock->reset();
  auto r = run_tool({"--data-dir", s.dir.string(), "verify"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
}

TEST(admin_tool, missing_data_directory_is_refused_and_not_created) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path() / "nothing";
  auto r = run_tool({"--data-dir", dir.string(), "info"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err,
            "rollblock: data directory " + dir.string() + " does not exist\n");
  EXPECT_FALSE(fs::exists(dir));
}

// -- verify: every kind of damage --------------------------------------------------

namespace {

/// Runs verify and expects exit 1, a problem line containing `text`, and a
/// corrupt result.
void expect_corrupt(const fs::path& dir, const std::string& text) {
  auto r = run_tool({"--data-dir", dir.string(), "verify"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  auto lines = lines_of(r.out);
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(),
                          [&](const std::string& l) {
                            return l.starts_with("problem: ")
                                   && l.find(text) != std::string::npos;
                          }))
    << "no problem line with '" << text << "' in:\n"
    << r.out;
  ASSERT_FALSE(lines.empty());
  EXPECT_TRUE(lines.back().starts_with("result: corrupt")) << r.out;
}

void flip_byte(const fs::path& file, std::uint64_t offset) {
  auto bytes = read_bytes(file);
  bytes[offset] ^= 0x04;
  write_bytes(file, bytes);
}

} // namespace

TEST(admin_tool, verify_flipped_header_byte_in_first_entry_is_corrupt) {
  small_store s;
  auto seg = s.dir / "journal" / segment_name(1);
  flip_byte(seg, 12); // The height field of the first entry.
  expect_corrupt(s.dir, "journal " + seg.string()
                          + " is corrupt at offset 0 (header checksum "
                            "mismatch; last good height none");
}

TEST(admin_tool, verify_flipped_byte_in_last_entry_at_the_checkpoint_is_corrupt) {
  small_store s;
  auto seg = s.dir / "journal" / segment_name(1);
  // The journal ends with the checkpoint's entry (12), which is damaged: no
  // torn tail can explain that, since block 12 was fsynced.
  auto at12 = *std::find_if(s.b.index.begin(), s.b.index.end(),
                            [](auto& p) { return p.height == 12; });
  fs::resize_file(seg, at12.offset + at12.size);
  flip_byte(seg, at12.offset + at12.size - 1);
  auto bytes = read_bytes(seg);
  expect_corrupt(s.dir, "holds no entry at height 12, which was fsynced "
                        "before it was checkpointed (it is damaged at "
                          + seg.string() + " offset "
                          + std::to_string(at12.offset)
                          + ": payload checksum mismatch)");
  EXPECT_EQ(read_bytes(seg), bytes);
}

TEST(admin_tool, verify_flipped_byte_in_last_entry_above_the_checkpoint_is_repairable) {
  small_store s;
  auto seg = s.dir / "journal" / segment_name(1);
  auto last = s.b.index.back();
  flip_byte(seg, last.offset + 41);
  auto r = run_tool({"--data-dir", s.dir.string(), "verify"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(has_line_starting(
    r.out, "repairable: journal " + seg.string() + ": a torn tail of "
             + std::to_string(last.size) + " bytes at offset "
             + std::to_string(last.offset)))
    << r.out;
}

TEST(admin_tool, verify_journal_truncated_below_the_checkpoint_is_corrupt) {
  small_store s;
  auto seg = s.dir / "journal" / segment_name(1);
  auto cut = s.b.index[3]; // Height 4, below the checkpoint 12.
  fs::resize_file(seg, cut.offset + 7);
  expect_corrupt(s.dir, "holds no entry at height 12");
  expect_corrupt(s.dir, "the journal ends with height 3 at " + seg.string()
                          + " offset " + std::to_string(s.b.index[2].offset));
}

TEST(admin_tool, verify_missing_journal_segment_is_corrupt) {
  pruned_store s;
  auto first = s.b.index.front().segment;
  auto missing = s.dir / "journal" / segment_name(first + 1);
  ASSERT_TRUE(fs::exists(missing));
  fs::remove(missing);
  expect_corrupt(s.dir, "journal segment " + missing.string() + " is missing");
}

namespace {

/// The last journal entry of segment `seq`.
storage::journal_position last_in_segment(const built& b, std::uint64_t seq) {
  storage::journal_position last;
  for (auto& p : b.index)
    if (p.segment == seq)
      last = p;
  return last;
}

} // namespace

TEST(admin_tool, verify_missing_newest_journal_segments_are_corrupt) {
  pruned_store s;
  auto at30 = *std::find_if(s.b.index.begin(), s.b.index.end(),
                            [](auto& p) { return p.height == 30; });
  ASSERT_GT(at30.segment, s.b.index.front().segment);
  for (auto seq = at30.segment; seq <= s.b.index.back().segment; ++seq)
    fs::remove(s.dir / "journal" / segment_name(seq));
  // The trailer of the segment before names the first one deleted.
  auto end = last_in_segment(s.b, at30.segment - 1);
  expect_corrupt(s.dir, "journal segment "
                          + (s.dir / "journal" / segment_name(at30.segment))
                              .string()
                          + " is missing: segment "
                          + segment_name(at30.segment - 1)
                          + " ends with a trailer at offset "
                          + std::to_string(end.offset + end.size)
                          + " naming it as the next segment (last good "
                            "height "
                          + std::to_string(end.height) + ")");
}

TEST(admin_tool, verify_missing_newest_segment_above_the_checkpoint_is_corrupt) {
  pruned_store s;
  auto at30 = *std::find_if(s.b.index.begin(), s.b.index.end(),
                            [](auto& p) { return p.height == 30; });
  auto newest = s.b.index.back().segment;
  ASSERT_GT(newest, at30.segment);
  // Only the newest segment goes: every block in it is above the
  // checkpoint, so the checkpoint's entry alone cannot tell.
  auto missing = s.dir / "journal" / segment_name(newest);
  fs::remove(missing);
  auto before = journal_bytes(s.dir);
  auto end = last_in_segment(s.b, newest - 1);
  auto r = run_tool({"--data-dir", s.dir.string(), "verify"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  auto lines = lines_of(r.out);
  ASSERT_GE(lines.size(), 2u) << r.out;
  EXPECT_TRUE(has_line_starting(
    r.out, "problem: journal segment " + missing.string()
             + " is missing: segment " + segment_name(newest - 1)
             + " ends with a trailer at offset "
             + std::to_string(end.offset + end.size)
             + " naming it as the next segment (last good height "
             + std::to_string(end.height) + ")"))
    << r.out;
  EXPECT_TRUE(has_line_starting(r.out, "recoverable heights: unknown"))
    << r.out;
  EXPECT_EQ(lines.back(), "result: corrupt, 1 problem");
  EXPECT_FALSE(fs::exists(missing));
  EXPECT_EQ(journal_bytes(s.dir), before);
  // info and dump refuse it too, pointing at verify.
  auto info = run_tool({"--data-dir", s.dir.string(), "info"});
  EXPECT_EQ(info.code, 1) << info.out << info.err;
  EXPECT_NE(info.err.find(missing.string() + " is missing"), std::string::npos)
    << info.err;
}

TEST(admin_tool, verify_deleted_journal_of_a_store_without_a_checkpoint_is_corrupt) {
  // Every block is within the checkpoint lag: no checkpoint names a block
  // the journal must hold, but the metadata says the journal existed.
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path() / "data";
  build_spec spec{make_blocks(heights_from(1, 6, {})), std::nullopt,
                  std::nullopt};
  build_store(dir, spec);
  for (auto& entry : fs::directory_iterator(dir / "journal"))
    fs::remove(entry.path());
  auto r = run_tool({"--data-dir", dir.string(), "verify"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_TRUE(has_line_starting(
    r.out, "problem: journal directory " + (dir / "journal").string()
             + " holds no segment file, but its store was created before"))
    << r.out;
  EXPECT_EQ(lines_of(r.out).back(), "result: corrupt, 1 problem") << r.out;
  EXPECT_TRUE(fs::is_empty(dir / "journal"));
}

TEST(admin_tool, verify_empty_segment_left_by_an_interrupted_roll_is_repairable) {
  small_store s;
  auto leftover = s.dir / "journal" / segment_name(2);
  write_bytes(leftover, "");
  auto r = run_tool({"--data-dir", s.dir.string(), "verify"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 8u) << r.out;
  EXPECT_EQ(lines[3].substr(0, lines[3].find(" segment")),
            "journal: 20 entries (" + std::to_string(changes_of(s.spec.blocks))
              + " changes) in 1");
  EXPECT_EQ(lines[6], "repairable: journal segment " + leftover.string()
                        + " is empty and follows a segment that ends without "
                          "a trailer (a crash interrupted a roll or a "
                          "revert); it would be removed when the store is "
                          "opened");
  EXPECT_EQ(lines[7],
            "result: clean, 1 repairable issue (opening the store repairs it)");
  EXPECT_TRUE(fs::exists(leftover));
}

TEST(admin_tool, verify_interrupted_journal_cut_is_repairable) {
  small_store s;
  auto record = s.dir / "journal" / "truncation.rbt";
  write_bytes(record, rollblock::test::truncation_record(16));
  auto before = read_bytes(s.dir / "journal" / segment_name(1));
  auto r = run_tool({"--data-dir", s.dir.string(), "verify"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(has_line_starting(
    r.out, "repairable: journal " + (s.dir / "journal").string()
             + ": a revert interrupted while it cut the journal after block "
               "16 would be completed when the store is opened"))
    << r.out;
  EXPECT_EQ(lines_of(r.out).back(),
            "result: clean, 1 repairable issue (opening the store repairs it)")
    << r.out;
  EXPECT_TRUE(fs::exists(record));
  EXPECT_EQ(read_bytes(s.dir / "journal" / segment_name(1)), before);
}

TEST(admin_tool, verify_damaged_leveldb_table_is_corrupt_naming_it) {
  small_store s;
  {
    // Reopening folds LevelDB's log into a table file.
    auto state = storage::state_store::open({s.dir / "state"});
    ASSERT_TRUE(state) << describe(state.error());
  }
  std::vector<fs::path> tables;
  for (auto& e : fs::directory_iterator{s.dir / "state"})
    if (e.path().extension() == ".ldb")
      tables.push_back(e.path());
  ASSERT_EQ(tables.size(), 1u);
  flip_byte(tables[0], 30);
  expect_corrupt(s.dir, "table file " + tables[0].string()
                          + ": Corruption: block checksum mismatch");
}

TEST(admin_tool, verify_metadata_of_another_format_version_is_corrupt) {
  small_store s;
  {
    auto state = storage::state_store::open({s.dir / "state"});
    ASSERT_TRUE(state) << describe(state.error());
    storage::store_metadata meta;
    meta.format_version = storage::format_version + 1;
    ASSERT_FALSE((*state)->write_config(meta));
  }
  expect_corrupt(s.dir, "data directory was written by format version "
                          + std::to_string(storage::format_version + 1)
                          + "; this build reads version "
                          + std::to_string(storage::format_version));
}
