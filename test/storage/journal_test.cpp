#include "rollblock/storage/journal.hpp"

#include "rollblock/messages/error.hpp"
#include "support/file_size_limit.hpp"
#include "support/fault_file_system.hpp"
#include "support/file_bytes.hpp"
#include "support/temp_dir.hpp"
#include "support/truncation_record.hpp"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>

#include <csignal>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace rollblock;
using namespace rollblock::storage;
namespace fs = std::filesystem;

namespace {

constexpr std::size_t header_size = 40;
constexpr std::size_t trailer_size = 48;

// -- records ------------------------------------------------------------------

/// A record at `height` with `n` changes whose contents depend on both.
block_record make_record(block_id height, std::size_t n,
                         std::size_t key_width = 8) {
  block_record r;
  r.height = height;
  for (std::size_t i = 0; i < n; ++i) {
    key_change c;
    c.k = key_from_u64(height * 1000 + i, key_width);
    c.after = value_from_u64(height * 7 + i);
    if (i % 3 == 0)
      c.before = ""; // The key was absent.
    else
      c.before = value_from_u64(height * 11 + i) + std::string(i % 5, 'b');
    if (i % 4 == 1)
      c.after = ""; // The block deleted the key.
    r.changes.push_back(std::move(c));
  }
  return r;
}

/// A record whose changes hold values of every interesting size.
block_record make_mixed_record(block_id height, std::size_t key_width) {
  block_record r;
  r.height = height;
  r.changes.push_back({key_from_prefix("a", key_width), "", ""});
  r.changes.push_back(
    {key_from_prefix("b", key_width), std::string(65535, 'x'), ""});
  r.changes.push_back(
    {key_from_prefix("c", key_width), "", std::string(65535, 'y')});
  r.changes.push_back({key_from_prefix("d", key_width), "1", "22"});
  std::string all_bytes;
  for (int i = 0; i < 256; ++i)
    all_bytes.push_back(static_cast<char>(i));
  r.changes.push_back(
    {key_from_prefix(std::string(key_width, '\xff'), key_width), all_bytes,
     all_bytes + all_bytes});
  return r;
}

std::uint64_t entry_size_of(const block_record& r, std::size_t key_width) {
  std::uint64_t n = header_size;
  for (auto c : r.changes)
    n += key_width + 4 + c.after.size() + c.before.size();
  return n;
}

// -- files --------------------------------------------------------------------

using rollblock::test::read_bytes;
using rollblock::test::truncation_record;
using rollblock::test::write_bytes;

fs::path segment_path(const fs::path& dir, std::uint64_t seq) {
  char name[32];
  std::snprintf(name, sizeof(name), "%06llu.rbj",
                static_cast<unsigned long long>(seq));
  return dir / name;
}

/// The names of the regular files in `dir`, sorted.
std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator{dir})
    if (e.is_regular_file())
      names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// -- journals -----------------------------------------------------------------

journal::options opts_for(const fs::path& dir, std::size_t key_width = 8,
                          std::uint64_t segment_bytes = 64ull << 20) {
  journal::options o;
  o.dir = dir;
  o.key_width = key_width;
  o.segment_bytes = segment_bytes;
  return o;
}

std::unique_ptr<journal> open_ok(const journal::options& o,
                                 journal_open_report* rep = nullptr) {
  auto j = journal::open(o, rep);
  EXPECT_TRUE(j) << describe(j.error());
  if (!j)
    return nullptr;
  return std::move(*j);
}

/// Reads every record above `h` as plain values.
std::vector<block_record> read_all_above(const journal& j, block_id h) {
  auto list = j.read_from(h + 1);
  EXPECT_TRUE(list) << describe(list.error());
  std::vector<block_record> out;
  if (list)
    for (auto& p : *list)
      out.push_back(*p);
  return out;
}

void append_ok(journal& j, const block_record& r) {
  auto err = j.append(r);
  ASSERT_FALSE(err) << describe(err);
}

void expect_contains(const caf::error& err, const std::string& text) {
  EXPECT_NE(message_of(err).find(text), std::string::npos)
    << "'" << text << "' not in: " << message_of(err);
}

/// Appends records at heights 1..n with `changes` changes each.
std::vector<block_record> fill(journal& j, block_id n, std::size_t changes,
                               std::size_t key_width = 8) {
  std::vector<block_record> recs;
  for (block_id h = 1; h <= n; ++h) {
    recs.push_back(make_record(h, changes, key_width));
    append_ok(j, recs.back());
  }
  return recs;
}

/// The segment count a journal must have after entries of `sizes` bytes with
/// `segment_bytes` per segment.
std::size_t expected_segments(const std::vector<std::uint64_t>& sizes,
                              std::uint64_t segment_bytes) {
  std::size_t segments = 1;
  std::uint64_t cur = 0;
  for (auto s : sizes) {
    if (cur > 0 && cur >= segment_bytes) {
      ++segments;
      cur = 0;
    }
    cur += s;
  }
  return segments;
}

} // namespace

// -- encoding -----------------------------------------------------------------

TEST(journal, encode_writes_the_documented_layout) {
  block_record r;
  r.height = 0x0102030405060708ull;
  r.changes.push_back({key_from_u64(0xAABB), "xy", ""});
  r.changes.push_back({key_from_u64(7), "", "q"});
  auto bytes = encode_journal_entry(r, 8);
  std::string payload;
  payload += key_from_u64(0xAABB);
  payload += std::string{"\x02\x00", 2} + "xy" + std::string{"\x00\x00", 2};
  payload += key_from_u64(7);
  payload += std::string{"\x00\x00", 2} + std::string{"\x01\x00", 2} + "q";
  ASSERT_EQ(bytes.size(), 40u + payload.size());
  ASSERT_EQ(payload.size(), 27u);
  EXPECT_EQ(bytes.substr(40), payload);
  EXPECT_EQ(bytes.substr(0, 4), "RBJL"); // 0x4C4A4252 little-endian
  EXPECT_EQ(bytes.substr(4, 2), std::string("\x02\x00", 2));
  EXPECT_EQ(bytes[6], '\x01');
  EXPECT_EQ(bytes[7], '\x08');
  EXPECT_EQ(bytes.substr(8, 8), std::string("\x08\x07\x06\x05\x04\x03\x02\x01"));
  EXPECT_EQ(bytes.substr(16, 4), std::string("\x02\x00\x00\x00", 4));
  EXPECT_EQ(bytes.substr(20, 4), std::string("\x1b\x00\x00\x00", 4));
  auto payload_sum = XXH3_64bits(payload.data(), payload.size());
  auto header_sum = XXH3_64bits(bytes.data(), 32);
  EXPECT_EQ(bytes.substr(24, 8), value_from_u64(payload_sum));
  EXPECT_EQ(bytes.substr(32, 8), value_from_u64(header_sum));
}

TEST(journal, encode_decode_round_trip) {
  for (std::size_t kw : {std::size_t{8}, std::size_t{17}, std::size_t{64}}) {
    std::vector<block_record> recs{block_record{0, {}},
                                   make_record(5, 1, kw),
                                   make_record(1000, 40, kw),
                                   make_mixed_record(~block_id{0}, kw)};
    for (auto& r : recs) {
      auto bytes = encode_journal_entry(r, kw);
      EXPECT_EQ(bytes.size(), entry_size_of(r, kw));
      auto back = decode_journal_entry(bytes, kw);
      ASSERT_TRUE(back) << describe(back.error());
      EXPECT_EQ(*back, r);
    }
  }
}

TEST(journal, encode_of_empty_block_is_a_bare_header) {
  auto bytes = encode_journal_entry(block_record{42, {}}, 8);
  ASSERT_EQ(bytes.size(), 40u);
  auto back = decode_journal_entry(bytes, 8);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->height, 42u);
  EXPECT_TRUE(back->changes.empty());
}

TEST(journal, decode_rejects_empty_short_and_garbage_input) {
  auto expect_corrupt = [](std::string_view bytes) {
    auto r = decode_journal_entry(bytes, 8);
    ASSERT_FALSE(r);
    EXPECT_EQ(code_of(r.error()), ec::journal_corrupt)
      << describe(r.error());
  };
  expect_corrupt({});
  expect_corrupt("R");
  expect_corrupt("RBJL");
  expect_corrupt(std::string(39, '\0'));
  expect_corrupt(std::string(40, '\0'));
  expect_corrupt(std::string(1000, '\xff'));
  std::mt19937_64 rng{12345};
  for (int i = 0; i < 200; ++i) {
    std::string junk(static_cast<std::size_t>(rng() % 300), '\0');
    for (auto& c : junk)
      c = static_cast<char>(rng());
    if (junk.size() >= 4)
      std::memcpy(junk.data(), "RBJL", 4); // Get past the magic check.
    expect_corrupt(junk);
  }
  // Every proper prefix of a valid entry, and one byte too many.
  auto good = encode_journal_entry(make_record(9, 5), 8);
  for (std::size_t n = 0; n < good.size(); ++n)
    expect_corrupt(std::string_view{good}.substr(0, n));
  expect_corrupt(good + "x");
}

TEST(journal, decode_detects_every_single_bit_flip) {
  auto good = encode_journal_entry(make_record(3, 3), 8);
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      auto r = decode_journal_entry(bad, 8);
      ASSERT_FALSE(r) << "byte " << i << " bit " << bit;
      EXPECT_EQ(code_of(r.error()), ec::journal_corrupt)
        << "byte " << i << " bit " << bit << ": " << describe(r.error());
    }
  }
}

namespace {

/// Rewrites the header checksum of an entry after editing its header.
void reseal_header(std::string& entry) {
  auto sum = XXH3_64bits(entry.data(), 32);
  std::memcpy(entry.data() + 32, value_from_u64(sum).data(), 8);
}

/// Replaces the payload of an entry, fixing lengths and both checksums.
std::string with_payload(std::string entry, std::uint32_t change_count,
                         const std::string& payload) {
  entry.resize(40);
  entry += payload;
  auto n = static_cast<std::uint32_t>(payload.size());
  std::memcpy(entry.data() + 16, &change_count, 4);
  std::memcpy(entry.data() + 20, &n, 4);
  auto sum = XXH3_64bits(payload.data(), payload.size());
  std::memcpy(entry.data() + 24, value_from_u64(sum).data(), 8);
  reseal_header(entry);
  return entry;
}

} // namespace

TEST(journal, decode_reports_version_and_key_width_mismatch) {
  auto good = encode_journal_entry(make_record(3, 2), 8);
  auto other_width = decode_journal_entry(good, 16);
  ASSERT_FALSE(other_width);
  EXPECT_EQ(code_of(other_width.error()), ec::config_mismatch);
  for (char version : {'\x01', '\x03'}) {
    auto other = good;
    other[4] = version;
    reseal_header(other);
    auto r = decode_journal_entry(other, 8);
    ASSERT_FALSE(r);
    EXPECT_EQ(code_of(r.error()), ec::format_version_mismatch);
    expect_contains(r.error(), "entry has format version "
                                 + std::to_string(version)
                                 + " but this build reads version 2");
  }
  auto kind = good;
  kind[6] = 9;
  reseal_header(kind);
  auto k = decode_journal_entry(kind, 8);
  ASSERT_FALSE(k);
  EXPECT_EQ(code_of(k.error()), ec::journal_corrupt);
}

TEST(journal, decode_rejects_payloads_that_do_not_match_their_layout) {
  auto base = encode_journal_entry(block_record{1, {}}, 8);
  auto expect_corrupt = [](const std::string& entry) {
    auto r = decode_journal_entry(entry, 8);
    ASSERT_FALSE(r);
    EXPECT_EQ(code_of(r.error()), ec::journal_corrupt) << describe(r.error());
  };
  auto one = key_from_u64(1) + std::string{"\x01\x00", 2} + "a"
             + std::string{"\x00\x00", 2};
  // Sanity: the hand-made payload itself is valid.
  auto ok = decode_journal_entry(with_payload(base, 1, one), 8);
  ASSERT_TRUE(ok) << describe(ok.error());
  ASSERT_EQ(ok->changes.size(), 1u);
  EXPECT_EQ(ok->changes[0].after, "a");
  expect_corrupt(with_payload(base, 2, one));          // Too few bytes.
  expect_corrupt(with_payload(base, 0, one));          // Bytes left over.
  expect_corrupt(with_payload(base, 0xFFFFFFFF, one)); // Absurd count.
  expect_corrupt(with_payload(base, 1, one + "z"));    // Trailing byte.
  auto long_after = key_from_u64(1) + std::string{"\xff\xff", 2} + "abc";
  expect_corrupt(with_payload(base, 1, long_after)); // after_len past end.
  auto long_before = key_from_u64(1) + std::string{"\x00\x00", 2}
                     + std::string{"\x10\x00", 2} + "abc";
  expect_corrupt(with_payload(base, 1, long_before)); // before_len past end.
  expect_corrupt(with_payload(base, 1, key_from_u64(1).substr(0, 5)));
  // A header claiming a huge payload that the bytes do not hold.
  auto huge = base;
  std::uint32_t big = 0xFFFFFFFF;
  std::memcpy(huge.data() + 20, &big, 4);
  reseal_header(huge);
  expect_corrupt(huge);
}

TEST(journal, trailer_encodes_the_documented_layout_and_round_trips) {
  journal_trailer t{0x0102030405060708ull, 7};
  auto bytes = encode_journal_trailer(t, 16);
  ASSERT_EQ(bytes.size(), trailer_size);
  EXPECT_EQ(bytes.substr(0, 4), "RBJL");
  EXPECT_EQ(bytes.substr(4, 2), std::string("\x02\x00", 2));
  EXPECT_EQ(bytes[6], '\x02'); // kind 2: segment trailer
  EXPECT_EQ(bytes[7], '\x10');
  EXPECT_EQ(bytes.substr(8, 8), std::string("\x08\x07\x06\x05\x04\x03\x02\x01"));
  EXPECT_EQ(bytes.substr(16, 4), std::string(4, '\0'));
  EXPECT_EQ(bytes.substr(20, 4), std::string("\x08\x00\x00\x00", 4));
  EXPECT_EQ(bytes.substr(24, 8),
            value_from_u64(XXH3_64bits(bytes.data() + 40, 8)));
  EXPECT_EQ(bytes.substr(32, 8), value_from_u64(XXH3_64bits(bytes.data(), 32)));
  EXPECT_EQ(bytes.substr(40), std::string("\x07\0\0\0\0\0\0\0", 8));
  auto back = decode_journal_trailer(bytes, 16);
  ASSERT_TRUE(back) << describe(back.error());
  EXPECT_EQ(*back, t);
  // A trailer is no block, and a block no trailer.
  auto as_block = decode_journal_entry(bytes, 16);
  ASSERT_FALSE(as_block);
  EXPECT_EQ(code_of(as_block.error()), ec::journal_corrupt);
  EXPECT_EQ(message_of(as_block.error()),
            "cannot decode journal entry: it is a segment trailer (kind 2), "
            "not a block (kind 1)");
  auto as_trailer
    = decode_journal_trailer(encode_journal_entry(make_record(3, 2, 16), 16), 16);
  ASSERT_FALSE(as_trailer);
  EXPECT_EQ(code_of(as_trailer.error()), ec::journal_corrupt);
  EXPECT_EQ(message_of(as_trailer.error()),
            "cannot decode journal trailer: it is a block (kind 1), not a "
            "segment trailer (kind 2)");
  auto other_width = decode_journal_trailer(bytes, 8);
  ASSERT_FALSE(other_width);
  EXPECT_EQ(code_of(other_width.error()), ec::config_mismatch);
  // Every single bit flip, every proper prefix, one byte too many.
  for (std::size_t i = 0; i < bytes.size(); ++i)
    for (int bit = 0; bit < 8; ++bit) {
      auto bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      auto r = decode_journal_trailer(bad, 16);
      ASSERT_FALSE(r) << "byte " << i << " bit " << bit;
      EXPECT_EQ(code_of(r.error()), ec::journal_corrupt)
        << "byte " << i << " bit " << bit << ": " << describe(r.error());
    }
  for (std::size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(decode_journal_trailer(bytes.substr(0, n), 16));
  EXPECT_FALSE(decode_journal_trailer(bytes + "x", 16));
  // A trailer has no changes and exactly 8 payload bytes.
  for (auto [count, payload] :
       {std::pair{1u, std::string(8, '\x02')},
        std::pair{0u, std::string(9, '\x02')},
        std::pair{0u, std::string{}}}) {
    auto r = decode_journal_trailer(with_payload(bytes, count, payload), 16);
    ASSERT_FALSE(r);
    EXPECT_EQ(code_of(r.error()), ec::journal_corrupt);
    expect_contains(r.error(),
                    "segment trailer with change count "
                      + std::to_string(count) + " and a payload of "
                      + std::to_string(payload.size()) + " bytes");
  }
}

// -- open, append, read -------------------------------------------------------

TEST(journal, open_creates_directory_and_first_segment) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path() / "a" / "b";
  journal_open_report rep;
  rep.entries = 99;
  auto j = open_ok(opts_for(dir), &rep);
  ASSERT_TRUE(j);
  EXPECT_TRUE(j->empty());
  EXPECT_EQ(j->size_bytes(), 0u);
  EXPECT_EQ(j->dir(), dir);
  EXPECT_TRUE(j->index().empty());
  EXPECT_EQ(rep.segments, 1u);
  EXPECT_EQ(rep.entries, 0u);
  EXPECT_EQ(rep.truncated_bytes, 0u);
  EXPECT_EQ(rep.truncated_file, "");
  EXPECT_EQ(files_in(dir), std::vector<std::string>{"000001.rbj"});
  EXPECT_EQ(fs::file_size(segment_path(dir, 1)), 0u);
  auto all = read_all_above(*j, 0);
  EXPECT_TRUE(all.empty());
}

TEST(journal, open_rejects_invalid_key_width) {
  rollblock::test::temp_dir tmp;
  for (std::size_t kw : {std::size_t{0}, std::size_t{7}, std::size_t{65}}) {
    auto j = journal::open(opts_for(tmp.path(), kw));
    ASSERT_FALSE(j);
    EXPECT_EQ(code_of(j.error()), ec::invalid_argument);
  }
}

TEST(journal, round_trip_with_sparse_heights_and_odd_values) {
  rollblock::test::temp_dir tmp;
  std::vector<block_record> recs{block_record{0, {}}, make_record(5, 3),
                                 make_mixed_record(1000, 8),
                                 block_record{1001, {}}, make_record(5000, 1)};
  std::vector<journal_position> positions;
  {
    auto j = open_ok(opts_for(tmp.path()));
    ASSERT_TRUE(j);
    for (auto& r : recs)
      append_ok(*j, r);
    EXPECT_FALSE(j->sync());
    EXPECT_EQ(j->first_height(), 0u);
    EXPECT_EQ(j->last_height(), 5000u);
    positions = j->index();
    ASSERT_EQ(positions.size(), recs.size());
    std::uint64_t off = 0;
    for (std::size_t i = 0; i < recs.size(); ++i) {
      EXPECT_EQ(positions[i].height, recs[i].height);
      EXPECT_EQ(positions[i].segment, 1u);
      EXPECT_EQ(positions[i].offset, off);
      EXPECT_EQ(positions[i].size, entry_size_of(recs[i], 8));
      off += positions[i].size;
    }
    EXPECT_EQ(j->size_bytes(), off);
    EXPECT_EQ(fs::file_size(segment_path(tmp.path(), 1)), off);
    auto all = read_all_above(*j, 0);
    EXPECT_EQ(all, std::vector<block_record>(recs.begin() + 1, recs.end()));
  }
  journal_open_report rep;
  auto j = open_ok(opts_for(tmp.path()), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.segments, 1u);
  EXPECT_EQ(rep.entries, 5u);
  EXPECT_EQ(rep.truncated_bytes, 0u);
  ASSERT_EQ(j->index().size(), positions.size());
  for (std::size_t i = 0; i < positions.size(); ++i) {
    EXPECT_EQ(j->index()[i].height, positions[i].height);
    EXPECT_EQ(j->index()[i].offset, positions[i].offset);
    EXPECT_EQ(j->index()[i].size, positions[i].size);
  }
  EXPECT_EQ(read_all_above(*j, 0),
            std::vector<block_record>(recs.begin() + 1, recs.end()));
  // The genesis entry (height 0) is not "above" anything; check its bytes.
  auto file = read_bytes(segment_path(tmp.path(), 1));
  auto genesis = decode_journal_entry(
    std::string_view{file}.substr(0, j->index()[0].size), 8);
  ASSERT_TRUE(genesis);
  EXPECT_EQ(*genesis, recs[0]);
}

TEST(journal, round_trip_with_key_width_64) {
  rollblock::test::temp_dir tmp;
  std::vector<block_record> recs{make_record(1, 10, 64),
                                 make_mixed_record(2, 64),
                                 block_record{3, {}}, make_record(9, 2, 64)};
  {
    auto j = open_ok(opts_for(tmp.path(), 64));
    ASSERT_TRUE(j);
    for (auto& r : recs)
      append_ok(*j, r);
  }
  journal_open_report rep;
  auto j = open_ok(opts_for(tmp.path(), 64), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.entries, 4u);
  EXPECT_EQ(read_all_above(*j, 0), recs);
  EXPECT_EQ(j->size_bytes(), entry_size_of(recs[0], 64)
                               + entry_size_of(recs[1], 64)
                               + entry_size_of(recs[2], 64)
                               + entry_size_of(recs[3], 64));
}

TEST(journal, read_from_returns_the_entries_from_each_height) {
  rollblock::test::temp_dir tmp;
  auto j = open_ok(opts_for(tmp.path()));
  ASSERT_TRUE(j);
  std::vector<block_record> recs;
  for (block_id h : {block_id{0}, block_id{5}, block_id{6}, block_id{10},
                     block_id{1000}}) {
    recs.push_back(make_record(h, 4));
    append_ok(*j, recs.back());
  }
  auto heights_above = [&](block_id h) {
    std::vector<block_id> out;
    for (auto& r : read_all_above(*j, h))
      out.push_back(r.height);
    return out;
  };
  using hs = std::vector<block_id>;
  auto from_genesis = j->read_from(0);
  ASSERT_TRUE(from_genesis);
  ASSERT_EQ(from_genesis->size(), 5u);
  EXPECT_EQ(*from_genesis->front(), recs[0]);
  EXPECT_EQ(heights_above(0), (hs{5, 6, 10, 1000}));
  EXPECT_EQ(heights_above(4), (hs{5, 6, 10, 1000}));
  EXPECT_EQ(heights_above(5), (hs{6, 10, 1000}));
  EXPECT_EQ(heights_above(7), (hs{10, 1000}));
  EXPECT_EQ(heights_above(999), (hs{1000}));
  EXPECT_EQ(heights_above(1000), hs{});
  EXPECT_EQ(heights_above(~block_id{0} - 1), hs{});
  auto above6 = read_all_above(*j, 6);
  ASSERT_EQ(above6.size(), 2u);
  EXPECT_EQ(above6[0], recs[3]);
  EXPECT_EQ(above6[1], recs[4]);
}

TEST(journal, append_refuses_bad_records_and_changes_nothing) {
  rollblock::test::temp_dir tmp;
  auto j = open_ok(opts_for(tmp.path()));
  ASSERT_TRUE(j);
  append_ok(*j, make_record(10, 2));
  auto size = j->size_bytes();
  EXPECT_EQ(code_of(j->append(make_record(10, 1))), ec::block_id_not_increasing);
  EXPECT_EQ(code_of(j->append(make_record(3, 1))), ec::block_id_not_increasing);
  EXPECT_EQ(code_of(j->append(make_record(11, 1, 16))), ec::key_width_mismatch);
  // A value above max_value_size cannot even be put into a record (the
  // change_list refuses it), so it cannot reach the journal.
  EXPECT_THROW(static_cast<void>(block_record{
                 12, {{key_from_u64(1), std::string(65536, 'v'), ""}}}),
               std::length_error);
  EXPECT_EQ(j->size_bytes(), size);
  EXPECT_EQ(j->index().size(), 1u);
  EXPECT_EQ(fs::file_size(segment_path(tmp.path(), 1)), size);
  append_ok(*j, make_record(11, 1));
  EXPECT_EQ(j->last_height(), 11u);
}

TEST(journal, open_ignores_files_that_are_not_segments) {
  rollblock::test::temp_dir tmp;
  auto recs = std::vector<block_record>{};
  {
    auto j = open_ok(opts_for(tmp.path()));
    ASSERT_TRUE(j);
    recs = fill(*j, 3, 2);
  }
  write_bytes(tmp.path() / "notes.txt", "hello");
  write_bytes(tmp.path() / "abc.rbj", "junk");
  write_bytes(tmp.path() / "1.rbj", "junk");
  write_bytes(tmp.path() / "000002.rbj.tmp", "junk");
  write_bytes(tmp.path() / ".rbj", "junk");
  write_bytes(tmp.path() / "00000x.rbj", "junk");
  fs::create_directory(tmp.path() / "000009.rbj");
  journal_open_report rep;
  auto j = open_ok(opts_for(tmp.path()), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.segments, 1u);
  EXPECT_EQ(rep.entries, 3u);
  EXPECT_EQ(rep.truncated_bytes, 0u);
  EXPECT_EQ(read_all_above(*j, 0), recs);
  EXPECT_EQ(files_in(tmp.path()),
            (std::vector<std::string>{".rbj", "000001.rbj", "000002.rbj.tmp",
                                      "00000x.rbj", "1.rbj", "abc.rbj",
                                      "notes.txt"}));
  append_ok(*j, make_record(4, 1));
  EXPECT_EQ(j->index().back().segment, 1u);
}

TEST(journal, zero_length_last_segment_after_a_trailer_is_fine) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path(), 8, 4096);
  std::vector<block_record> recs;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    while (j->empty() || j->index().back().segment < 2) {
      recs.push_back(make_record(recs.size() + 1, 10));
      append_ok(*j, recs.back());
    }
  }
  // As a crash after the roll but before the entry was written leaves it.
  write_bytes(segment_path(tmp.path(), 2), "");
  recs.pop_back();
  {
    journal_open_report rep;
    auto j = open_ok(o, &rep);
    ASSERT_TRUE(j);
    EXPECT_EQ(rep.segments, 2u);
    EXPECT_EQ(rep.entries, recs.size());
    EXPECT_EQ(rep.truncated_bytes, 0u);
    EXPECT_TRUE(rep.leftover_segments.empty());
    recs.push_back(make_record(recs.size() + 1, 2));
    append_ok(*j, recs.back());
    EXPECT_EQ(j->index().back().segment, 2u);
    EXPECT_EQ(j->index().back().offset, 0u);
  }
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, empty_segment_after_one_without_a_trailer_is_a_leftover) {
  rollblock::test::temp_dir tmp;
  std::vector<block_record> recs;
  {
    auto j = open_ok(opts_for(tmp.path()));
    ASSERT_TRUE(j);
    recs = fill(*j, 3, 2);
  }
  // As a roll leaves it when it stops before the trailer: segment 1 without
  // a trailer, segment 2 empty (and 3: a truncate_after leaves several).
  write_bytes(segment_path(tmp.path(), 2), "");
  write_bytes(segment_path(tmp.path(), 3), "");
  auto seg1 = read_bytes(segment_path(tmp.path(), 1));
  {
    auto o = opts_for(tmp.path());
    o.repair = false;
    journal_open_report rep;
    auto j = open_ok(o, &rep);
    ASSERT_TRUE(j);
    EXPECT_EQ(rep.segments, 1u);
    EXPECT_EQ(rep.entries, 3u);
    EXPECT_EQ(rep.leftover_segments,
              (std::vector<std::string>{
                segment_path(tmp.path(), 2).string(),
                segment_path(tmp.path(), 3).string()}));
    EXPECT_EQ(files_in(tmp.path()),
              (std::vector<std::string>{"000001.rbj", "000002.rbj",
                                        "000003.rbj"}));
  }
  {
    journal_open_report rep;
    auto j = open_ok(opts_for(tmp.path()), &rep);
    ASSERT_TRUE(j);
    EXPECT_EQ(rep.segments, 1u);
    EXPECT_EQ(rep.entries, 3u);
    EXPECT_EQ(rep.truncated_bytes, 0u);
    EXPECT_EQ(rep.leftover_segments.size(), 2u);
    EXPECT_EQ(files_in(tmp.path()), std::vector<std::string>{"000001.rbj"});
    EXPECT_EQ(read_bytes(segment_path(tmp.path(), 1)), seg1);
    recs.push_back(make_record(4, 2));
    append_ok(*j, recs.back());
    EXPECT_EQ(j->index().back().segment, 1u);
  }
  journal_open_report rep;
  auto j = open_ok(opts_for(tmp.path()), &rep);
  ASSERT_TRUE(j);
  EXPECT_TRUE(rep.leftover_segments.empty());
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, key_width_mismatch_on_reopen_is_config_mismatch) {
  rollblock::test::temp_dir tmp;
  {
    auto j = open_ok(opts_for(tmp.path(), 8));
    ASSERT_TRUE(j);
    fill(*j, 2, 2);
  }
  auto before = read_bytes(segment_path(tmp.path(), 1));
  auto j = journal::open(opts_for(tmp.path(), 16));
  ASSERT_FALSE(j);
  EXPECT_EQ(code_of(j.error()), ec::config_mismatch);
  auto msg = message_of(j.error());
  EXPECT_NE(msg.find("key width 8"), std::string::npos) << msg;
  EXPECT_NE(msg.find("key width 16"), std::string::npos) << msg;
  EXPECT_NE(msg.find("000001.rbj"), std::string::npos) << msg;
  EXPECT_EQ(read_bytes(segment_path(tmp.path(), 1)), before);
}

// -- torn tails and corruption ------------------------------------------------

TEST(journal, torn_tail_at_every_offset_of_last_entry) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path();
  auto seg = segment_path(dir, 1);
  std::vector<block_record> recs{make_record(1, 3), make_record(2, 2),
                                 make_record(3, 6)};
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  {
    auto j = open_ok(opts_for(dir));
    ASSERT_TRUE(j);
    for (auto& r : recs)
      append_ok(*j, r);
    start = j->index().back().offset;
    end = start + j->index().back().size;
  }
  auto pristine = read_bytes(seg);
  ASSERT_EQ(pristine.size(), end);
  ASSERT_GT(end - start, 100u);
  auto kept = std::vector<block_record>{recs[0], recs[1]};
  auto replacement = make_record(4, 2);
  for (auto cut = start; cut < end; ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    write_bytes(seg, std::string_view{pristine}.substr(0, cut));
    {
      journal_open_report rep;
      auto j = open_ok(opts_for(dir), &rep);
      ASSERT_TRUE(j);
      EXPECT_EQ(rep.segments, 1u);
      EXPECT_EQ(rep.entries, 2u);
      EXPECT_EQ(rep.truncated_bytes, cut - start);
      if (cut > start) {
        EXPECT_EQ(rep.truncated_file, seg.string());
        EXPECT_EQ(rep.truncated_offset, start);
      } else {
        EXPECT_EQ(rep.truncated_file, "");
        EXPECT_EQ(rep.truncated_offset, 0u);
      }
      EXPECT_EQ(fs::file_size(seg), start);
      EXPECT_EQ(j->size_bytes(), start);
      EXPECT_EQ(j->last_height(), 2u);
      EXPECT_EQ(read_all_above(*j, 0), kept);
      append_ok(*j, replacement);
      EXPECT_EQ(j->index().back().offset, start);
    }
    journal_open_report rep;
    auto j = open_ok(opts_for(dir), &rep);
    ASSERT_TRUE(j);
    EXPECT_EQ(rep.entries, 3u);
    EXPECT_EQ(rep.truncated_bytes, 0u);
    EXPECT_EQ(read_all_above(*j, 0),
              (std::vector<block_record>{recs[0], recs[1], replacement}));
  }
}

TEST(journal, torn_tail_at_start_of_a_new_segment) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path(), 8, 4096);
  std::vector<block_record> recs;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    block_id h = 1;
    while (j->empty() || j->index().back().segment < 2) {
      recs.push_back(make_record(h++, 10));
      append_ok(*j, recs.back());
    }
    ASSERT_EQ(j->index().back().offset, 0u);
  }
  auto seg2 = segment_path(tmp.path(), 2);
  fs::resize_file(seg2, 17);
  recs.pop_back();
  journal_open_report rep;
  auto j = open_ok(o, &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.segments, 2u);
  EXPECT_EQ(rep.entries, recs.size());
  EXPECT_EQ(rep.truncated_bytes, 17u);
  EXPECT_EQ(rep.truncated_file, seg2.string());
  EXPECT_EQ(rep.truncated_offset, 0u);
  EXPECT_EQ(fs::file_size(seg2), 0u);
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, torn_tail_before_empty_later_segment_removes_it) {
  rollblock::test::temp_dir tmp;
  std::vector<block_record> recs;
  std::uint64_t last_off = 0;
  std::uint64_t last_size = 0;
  {
    auto j = open_ok(opts_for(tmp.path()));
    ASSERT_TRUE(j);
    recs = fill(*j, 3, 4);
    last_off = j->index().back().offset;
    last_size = j->index().back().size;
  }
  fs::resize_file(segment_path(tmp.path(), 1), last_off + last_size - 1);
  write_bytes(segment_path(tmp.path(), 2), "");
  write_bytes(segment_path(tmp.path(), 3), "");
  journal_open_report rep;
  auto j = open_ok(opts_for(tmp.path()), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.segments, 1u);
  EXPECT_EQ(rep.entries, 2u);
  EXPECT_EQ(rep.truncated_bytes, last_size - 1);
  EXPECT_EQ(rep.truncated_offset, last_off);
  EXPECT_EQ(files_in(tmp.path()), std::vector<std::string>{"000001.rbj"});
  recs.pop_back();
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, checksum_mismatch_in_last_entry_is_cut_as_corrupt_tail) {
  rollblock::test::temp_dir tmp;
  auto seg = segment_path(tmp.path(), 1);
  std::vector<block_record> recs;
  journal_position last;
  {
    auto j = open_ok(opts_for(tmp.path()));
    ASSERT_TRUE(j);
    recs = fill(*j, 3, 5);
    last = j->index().back();
  }
  auto bytes = read_bytes(seg);
  bytes[last.offset + 40 + 3] ^= 0x10; // A payload byte of the last entry.
  write_bytes(seg, bytes);
  journal_open_report rep;
  auto j = open_ok(opts_for(tmp.path()), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.entries, 2u);
  EXPECT_EQ(rep.truncated_bytes, last.size);
  EXPECT_EQ(rep.truncated_offset, last.offset);
  EXPECT_EQ(rep.truncated_file, seg.string());
  EXPECT_EQ(fs::file_size(seg), last.offset);
  recs.pop_back();
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, checksum_mismatch_in_middle_entry_is_journal_corrupt) {
  rollblock::test::temp_dir tmp;
  auto seg = segment_path(tmp.path(), 1);
  journal_position middle;
  {
    auto j = open_ok(opts_for(tmp.path()));
    ASSERT_TRUE(j);
    fill(*j, 3, 5);
    middle = j->index()[1];
  }
  auto bytes = read_bytes(seg);
  bytes[middle.offset + 40 + 3] ^= 0x10;
  write_bytes(seg, bytes);
  journal_open_report rep;
  auto j = journal::open(opts_for(tmp.path()), &rep);
  ASSERT_FALSE(j);
  EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
  auto msg = message_of(j.error());
  EXPECT_NE(msg.find(seg.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("offset " + std::to_string(middle.offset)),
            std::string::npos)
    << msg;
  EXPECT_NE(msg.find("last good height 1"), std::string::npos) << msg;
  EXPECT_EQ(read_bytes(seg), bytes); // Left untouched.
  EXPECT_EQ(files_in(tmp.path()), std::vector<std::string>{"000001.rbj"});
}

TEST(journal, header_byte_flips_in_middle_and_last_entry) {
  rollblock::test::temp_dir tmp;
  auto seg = segment_path(tmp.path(), 1);
  std::vector<block_record> recs;
  std::vector<journal_position> idx;
  {
    auto j = open_ok(opts_for(tmp.path()));
    ASSERT_TRUE(j);
    recs = fill(*j, 3, 4);
    idx = j->index();
  }
  auto pristine = read_bytes(seg);
  for (std::size_t b = 0; b < header_size; ++b) {
    for (unsigned char mask : {0x01, 0x80}) {
      SCOPED_TRACE("header byte " + std::to_string(b) + " mask "
                   + std::to_string(mask));
      // The first entry: nothing good before it.
      auto bytes = pristine;
      bytes[idx[0].offset + b] = static_cast<char>(bytes[idx[0].offset + b]
                                                   ^ mask);
      write_bytes(seg, bytes);
      auto j0 = journal::open(opts_for(tmp.path()));
      ASSERT_FALSE(j0);
      EXPECT_EQ(code_of(j0.error()), ec::journal_corrupt);
      EXPECT_NE(message_of(j0.error()).find("offset 0"), std::string::npos);
      EXPECT_EQ(read_bytes(seg), bytes);
      // The middle entry.
      bytes = pristine;
      bytes[idx[1].offset + b] = static_cast<char>(bytes[idx[1].offset + b]
                                                   ^ mask);
      write_bytes(seg, bytes);
      auto j1 = journal::open(opts_for(tmp.path()));
      ASSERT_FALSE(j1);
      EXPECT_EQ(code_of(j1.error()), ec::journal_corrupt);
      auto msg = message_of(j1.error());
      EXPECT_NE(msg.find("000001.rbj"), std::string::npos) << msg;
      EXPECT_NE(msg.find("offset " + std::to_string(idx[1].offset)),
                std::string::npos)
        << msg;
      EXPECT_EQ(read_bytes(seg), bytes);
      // The last entry: a corrupt tail.
      bytes = pristine;
      bytes[idx[2].offset + b] = static_cast<char>(bytes[idx[2].offset + b]
                                                   ^ mask);
      write_bytes(seg, bytes);
      journal_open_report rep;
      auto j2 = open_ok(opts_for(tmp.path()), &rep);
      ASSERT_TRUE(j2);
      EXPECT_EQ(rep.entries, 2u);
      EXPECT_EQ(rep.truncated_bytes, idx[2].size);
      EXPECT_EQ(rep.truncated_offset, idx[2].offset);
      EXPECT_EQ(fs::file_size(seg), idx[2].offset);
      EXPECT_EQ(read_all_above(*j2, 0),
                (std::vector<block_record>{recs[0], recs[1]}));
    }
  }
}

TEST(journal, bad_entry_followed_by_valid_entry_in_later_segment_is_corrupt) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path(), 8, 4096);
  std::vector<journal_position> idx;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    fill(*j, 40, 10);
    idx = j->index();
  }
  ASSERT_GE(idx.back().segment, 2u);
  // Cut the last entry of segment 1 short: it looks torn, but segment 2
  // holds valid entries.
  auto it = std::find_if(idx.begin(), idx.end(),
                         [](auto& p) { return p.segment == 2; });
  auto last_of_1 = *(it - 1);
  auto seg1 = segment_path(tmp.path(), 1);
  fs::resize_file(seg1, last_of_1.offset + 5);
  auto seg1_bytes = read_bytes(seg1);
  auto seg2_bytes = read_bytes(segment_path(tmp.path(), 2));
  auto j = journal::open(o);
  ASSERT_FALSE(j);
  EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
  auto msg = message_of(j.error());
  EXPECT_NE(msg.find(seg1.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("offset " + std::to_string(last_of_1.offset)),
            std::string::npos)
    << msg;
  EXPECT_NE(msg.find("last good height " + std::to_string(last_of_1.height - 1)),
            std::string::npos)
    << msg;
  EXPECT_NE(msg.find("000002.rbj offset 0"), std::string::npos) << msg;
  EXPECT_EQ(read_bytes(seg1), seg1_bytes);
  EXPECT_EQ(read_bytes(segment_path(tmp.path(), 2)), seg2_bytes);
}

TEST(journal, garbage_tail_with_no_valid_entry_after_is_cut) {
  rollblock::test::temp_dir tmp;
  auto seg = segment_path(tmp.path(), 1);
  std::vector<block_record> recs;
  std::uint64_t end = 0;
  {
    auto j = open_ok(opts_for(tmp.path()));
    ASSERT_TRUE(j);
    recs = fill(*j, 2, 3);
    end = j->size_bytes();
  }
  // Zeros (as a file system may leave after a crash) plus a fake magic.
  auto bytes = read_bytes(seg) + std::string(300, '\0') + "RBJL"
               + std::string(50, '\x01');
  write_bytes(seg, bytes);
  journal_open_report rep;
  auto j = open_ok(opts_for(tmp.path()), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.entries, 2u);
  EXPECT_EQ(rep.truncated_bytes, 354u);
  EXPECT_EQ(rep.truncated_offset, end);
  EXPECT_EQ(fs::file_size(seg), end);
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, heights_that_do_not_increase_are_journal_corrupt) {
  rollblock::test::temp_dir tmp;
  auto seg = segment_path(tmp.path(), 1);
  for (block_id second : {block_id{5}, block_id{3}}) {
    auto bytes = encode_journal_entry(make_record(5, 2), 8)
                 + encode_journal_entry(make_record(second, 2), 8);
    write_bytes(seg, bytes);
    auto j = journal::open(opts_for(tmp.path()));
    ASSERT_FALSE(j);
    EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
    EXPECT_NE(message_of(j.error()).find("000001.rbj"), std::string::npos);
    EXPECT_EQ(read_bytes(seg), bytes);
  }
}

TEST(journal, other_format_version_on_open_is_refused_not_cut) {
  rollblock::test::temp_dir tmp;
  auto seg = segment_path(tmp.path(), 1);
  auto v3 = encode_journal_entry(make_record(2, 2), 8);
  v3[4] = 3;
  reseal_header(v3);
  auto bytes = encode_journal_entry(make_record(1, 2), 8) + v3;
  write_bytes(seg, bytes);
  auto j = journal::open(opts_for(tmp.path()));
  ASSERT_FALSE(j);
  EXPECT_EQ(code_of(j.error()), ec::format_version_mismatch);
  EXPECT_EQ(read_bytes(seg), bytes);
}

TEST(journal, version_1_journal_without_trailers_is_refused_naming_both) {
  rollblock::test::temp_dir tmp;
  auto seg = segment_path(tmp.path(), 1);
  std::string bytes;
  for (block_id h = 1; h <= 3; ++h) {
    auto v1 = encode_journal_entry(make_record(h, 2), 8);
    v1[4] = 1;
    reseal_header(v1);
    bytes += v1;
  }
  write_bytes(seg, bytes);
  for (bool repair : {true, false}) {
    auto o = opts_for(tmp.path());
    o.repair = repair;
    auto j = journal::open(o);
    ASSERT_FALSE(j);
    EXPECT_EQ(code_of(j.error()), ec::format_version_mismatch);
    EXPECT_EQ(message_of(j.error()),
              "journal " + seg.string()
                + " at offset 0: entry has format version 1 but this build "
                  "reads version 2; use a build that reads this format");
  }
  EXPECT_EQ(read_bytes(seg), bytes);
}

// -- segments -----------------------------------------------------------------

TEST(journal, segments_roll_at_segment_bytes_and_survive_reopen) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path(), 8, 4096);
  std::vector<block_record> recs;
  std::vector<std::uint64_t> sizes;
  std::size_t segments = 0;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    for (block_id h = 1; h <= 150; ++h) {
      recs.push_back(make_record(h, 1 + h % 17));
      sizes.push_back(entry_size_of(recs.back(), 8));
      append_ok(*j, recs.back());
    }
    segments = expected_segments(sizes, 4096);
    ASSERT_GE(segments, 5u);
    EXPECT_EQ(j->index().back().segment, segments);
    std::uint64_t total = 0;
    for (auto s : sizes)
      total += s;
    // Every segment but the newest ends with a 48-byte trailer.
    EXPECT_EQ(j->size_bytes(), total + (segments - 1) * trailer_size);
  }
  auto names = files_in(tmp.path());
  ASSERT_EQ(names.size(), segments);
  for (std::size_t i = 0; i < segments; ++i)
    EXPECT_EQ(names[i], segment_path(tmp.path(), i + 1).filename().string());
  // Every full segment crossed the limit with its last entry, not before,
  // and ends with a trailer naming the next segment and its last height.
  journal_open_report rep;
  auto j = open_ok(o, &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.segments, segments);
  EXPECT_EQ(rep.entries, 150u);
  EXPECT_EQ(rep.truncated_bytes, 0u);
  auto& idx = j->index();
  for (std::size_t s = 1; s < segments; ++s) {
    SCOPED_TRACE("segment " + std::to_string(s));
    auto bytes = read_bytes(segment_path(tmp.path(), s));
    auto last = std::find_if(idx.rbegin(), idx.rend(),
                             [&](auto& p) { return p.segment == s; });
    ASSERT_NE(last, idx.rend());
    EXPECT_GE(last->offset + last->size, 4096u);
    EXPECT_LT(last->offset, 4096u);
    ASSERT_EQ(last->offset + last->size + trailer_size, bytes.size());
    auto tail = bytes.substr(last->offset + last->size);
    EXPECT_EQ(tail, encode_journal_trailer({last->height, s + 1}, 8));
    auto trailer = decode_journal_trailer(tail, 8);
    ASSERT_TRUE(trailer) << describe(trailer.error());
    EXPECT_EQ(trailer->last_height, last->height);
    EXPECT_EQ(trailer->next_segment, s + 1);
  }
  // The newest segment has none.
  auto newest = read_bytes(segment_path(tmp.path(), segments));
  EXPECT_EQ(newest.size(), idx.back().offset + idx.back().size);
  EXPECT_EQ(read_all_above(*j, 0), recs);
  // Appending after reopen continues the last segment or rolls.
  recs.push_back(make_record(151, 3));
  append_ok(*j, recs.back());
  j.reset();
  j = open_ok(o);
  ASSERT_TRUE(j);
  EXPECT_EQ(read_all_above(*j, 100),
            std::vector<block_record>(recs.begin() + 100, recs.end()));
}

TEST(journal, entry_larger_than_a_segment_gets_its_own_segment) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path(), 8, 4096);
  std::vector<block_record> recs{make_record(1, 2), make_mixed_record(2, 8),
                                 make_record(3, 2)};
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    for (auto& r : recs)
      append_ok(*j, r);
    ASSERT_EQ(j->index().size(), 3u);
    EXPECT_EQ(j->index()[0].segment, 1u);
    EXPECT_EQ(j->index()[1].segment, 1u); // 1 was not full yet.
    EXPECT_EQ(j->index()[2].segment, 2u);
  }
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, truncate_after_middle_then_append_and_reopen) {
  rollblock::test::temp_dir tmp;
  std::vector<block_record> recs;
  {
    auto j = open_ok(opts_for(tmp.path()));
    ASSERT_TRUE(j);
    for (block_id h = 10; h <= 100; h += 10) {
      recs.push_back(make_record(h, 3));
      append_ok(*j, recs.back());
    }
    EXPECT_FALSE(j->truncate_after(200)); // Nothing above: no change.
    EXPECT_EQ(j->index().size(), 10u);
    EXPECT_FALSE(j->truncate_after(55));
    ASSERT_EQ(j->index().size(), 5u);
    EXPECT_EQ(j->last_height(), 50u);
    auto end = j->index().back().offset + j->index().back().size;
    EXPECT_EQ(j->size_bytes(), end);
    EXPECT_EQ(fs::file_size(segment_path(tmp.path(), 1)), end);
    recs.resize(5);
    EXPECT_EQ(read_all_above(*j, 0), recs);
    // Heights above the cut may be reused with other contents.
    recs.push_back(make_record(51, 7));
    append_ok(*j, recs.back());
    EXPECT_EQ(j->index().back().offset, end);
    EXPECT_FALSE(j->truncate_after(51)); // At the last entry: no change.
    EXPECT_EQ(j->last_height(), 51u);
  }
  journal_open_report rep;
  auto j = open_ok(opts_for(tmp.path()), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.entries, 6u);
  EXPECT_EQ(rep.truncated_bytes, 0u);
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, truncate_after_across_segments_then_append_and_reopen) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path(), 8, 4096);
  std::vector<block_record> recs;
  block_id cut = 0;
  std::uint64_t cut_seg = 0;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    recs = fill(*j, 120, 8);
    ASSERT_GE(j->index().back().segment, 5u);
    // Keep up to an entry in the middle of segment 3.
    std::vector<journal_position> in3;
    for (auto& p : j->index())
      if (p.segment == 3)
        in3.push_back(p);
    ASSERT_GE(in3.size(), 3u);
    auto keep = in3[in3.size() / 2];
    cut = keep.height;
    cut_seg = keep.segment;
    EXPECT_FALSE(j->truncate_after(cut));
    EXPECT_EQ(j->last_height(), cut);
    EXPECT_EQ(j->index().size(), cut);
    EXPECT_EQ(files_in(tmp.path()),
              (std::vector<std::string>{"000001.rbj", "000002.rbj",
                                        "000003.rbj"}));
    EXPECT_EQ(fs::file_size(segment_path(tmp.path(), 3)),
              keep.offset + keep.size);
    recs.resize(cut);
    EXPECT_EQ(read_all_above(*j, 0), recs);
    recs.push_back(make_record(cut + 1, 2));
    append_ok(*j, recs.back());
    EXPECT_EQ(j->index().back().segment, cut_seg);
    EXPECT_EQ(j->index().back().offset, keep.offset + keep.size);
  }
  journal_open_report rep;
  auto j = open_ok(o, &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.segments, 3u);
  EXPECT_EQ(rep.entries, recs.size());
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, truncate_after_at_end_of_a_full_segment_deletes_later_ones) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path(), 8, 4096);
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  auto recs = fill(*j, 60, 8);
  auto it = std::find_if(j->index().begin(), j->index().end(),
                         [](auto& p) { return p.segment == 2; });
  auto last_of_1 = *(it - 1);
  EXPECT_FALSE(j->truncate_after(last_of_1.height));
  EXPECT_EQ(files_in(tmp.path()), std::vector<std::string>{"000001.rbj"});
  EXPECT_EQ(j->size_bytes(), last_of_1.offset + last_of_1.size);
  // Segment 1 is full, so the next append starts segment 2 again.
  append_ok(*j, make_record(last_of_1.height + 1, 1));
  EXPECT_EQ(j->index().back().segment, 2u);
  EXPECT_EQ(j->index().back().offset, 0u);
  j.reset();
  journal_open_report rep;
  j = open_ok(o, &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.segments, 2u);
  EXPECT_EQ(rep.entries, last_of_1.height + 1);
}

TEST(journal, truncate_after_all_keeps_an_empty_active_segment) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path(), 8, 4096);
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    fill(*j, 50, 8);
    ASSERT_GE(j->index().back().segment, 3u);
    EXPECT_FALSE(j->truncate_after(0));
    EXPECT_TRUE(j->empty());
    EXPECT_EQ(j->size_bytes(), 0u);
    EXPECT_EQ(files_in(tmp.path()), std::vector<std::string>{"000001.rbj"});
    EXPECT_EQ(fs::file_size(segment_path(tmp.path(), 1)), 0u);
    EXPECT_TRUE(read_all_above(*j, 0).empty());
    append_ok(*j, make_record(1, 4));
    EXPECT_EQ(j->index().back().segment, 1u);
    EXPECT_EQ(j->index().back().offset, 0u);
  }
  journal_open_report rep;
  auto j = open_ok(o, &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.segments, 1u);
  EXPECT_EQ(rep.entries, 1u);
  EXPECT_EQ(read_all_above(*j, 0),
            std::vector<block_record>{make_record(1, 4)});
}

TEST(journal, prunable_through_and_drop_through_remove_whole_segments) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path(), 8, 4096);
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  auto recs = fill(*j, 100, 8);
  // The newest height of each segment.
  std::vector<block_id> newest;
  for (auto& p : j->index()) {
    if (newest.size() < p.segment)
      newest.push_back(p.height);
    else
      newest.back() = p.height;
  }
  auto segments = newest.size();
  ASSERT_GE(segments, 5u);
  EXPECT_EQ(j->prunable_through(0), std::nullopt);
  EXPECT_EQ(j->prunable_through(1), std::nullopt);
  EXPECT_EQ(j->prunable_through(newest[0]), std::nullopt);
  EXPECT_EQ(j->prunable_through(newest[0] + 1), newest[0]);
  EXPECT_EQ(j->prunable_through(newest[2]), newest[1]);
  EXPECT_EQ(j->prunable_through(newest[2] + 1), newest[2]);
  // The active segment is never prunable.
  EXPECT_EQ(j->prunable_through(1000), newest[segments - 2]);
  // Segment 2's newest entry is above 1..newest[1]-1: only segment 1 goes.
  EXPECT_FALSE(j->drop_through(newest[1] - 1));
  EXPECT_EQ(j->first_height(), newest[0] + 1);
  EXPECT_FALSE(j->drop_through(0)); // Nothing to drop.
  EXPECT_EQ(j->first_height(), newest[0] + 1);
  EXPECT_FALSE(j->drop_through(newest[2]));
  EXPECT_EQ(j->first_height(), newest[2] + 1);
  EXPECT_EQ(j->index().front().segment, 4u);
  EXPECT_EQ(j->index().front().offset, 0u);
  EXPECT_EQ(j->index().size(), 100 - newest[2]);
  auto names = files_in(tmp.path());
  ASSERT_EQ(names.size(), segments - 3);
  EXPECT_EQ(names.front(), "000004.rbj");
  std::uint64_t on_disk = 0;
  for (auto& n : names)
    on_disk += fs::file_size(tmp.path() / n);
  EXPECT_EQ(j->size_bytes(), on_disk);
  EXPECT_EQ(j->prunable_through(newest[2] + 1), std::nullopt);
  EXPECT_EQ(j->prunable_through(newest[3] + 1), newest[3]);
  EXPECT_EQ(read_all_above(*j, 0),
            std::vector<block_record>(recs.begin() + newest[2], recs.end()));
  // Dropping everything keeps the active segment.
  EXPECT_FALSE(j->drop_through(1000));
  EXPECT_EQ(files_in(tmp.path()),
            std::vector<std::string>{segment_path(tmp.path(), segments)
                                       .filename()
                                       .string()});
  EXPECT_EQ(j->first_height(), newest[segments - 2] + 1);
  EXPECT_EQ(j->last_height(), 100u);
  EXPECT_EQ(j->prunable_through(1000), std::nullopt);
  j.reset();
  journal_open_report rep;
  j = open_ok(o, &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.segments, 1u);
  EXPECT_EQ(rep.entries, 100 - newest[segments - 2]);
  EXPECT_EQ(read_all_above(*j, 0),
            std::vector<block_record>(recs.begin() + newest[segments - 2],
                                      recs.end()));
  recs.push_back(make_record(101, 1));
  append_ok(*j, recs.back());
  EXPECT_EQ(j->last_height(), 101u);
}

TEST(journal, sync_succeeds_and_data_is_readable_by_a_new_instance) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path());
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  EXPECT_FALSE(j->sync()); // On an empty journal too.
  auto recs = fill(*j, 5, 3);
  EXPECT_FALSE(j->sync());
  // A second instance sees everything that reached the page cache.
  auto other = open_ok(o);
  ASSERT_TRUE(other);
  EXPECT_EQ(read_all_above(*other, 0), recs);
}

TEST(journal, large_blocks_round_trip) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path(), 8, 1 << 20);
  std::vector<block_record> recs;
  std::vector<std::uint64_t> sizes;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    for (block_id h = 1; h <= 5; ++h) {
      recs.push_back(make_record(h, 19000));
      sizes.push_back(entry_size_of(recs.back(), 8));
      append_ok(*j, recs.back());
    }
    EXPECT_EQ(j->index().back().segment, expected_segments(sizes, 1 << 20));
    EXPECT_GE(expected_segments(sizes, 1 << 20), 2u);
  }
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  EXPECT_EQ(read_all_above(*j, 2),
            std::vector<block_record>(recs.begin() + 2, recs.end()));
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, read_from_reports_damage_found_after_open) {
  rollblock::test::temp_dir tmp;
  auto seg = segment_path(tmp.path(), 1);
  auto j = open_ok(opts_for(tmp.path()));
  ASSERT_TRUE(j);
  auto recs = fill(*j, 4, 3);
  auto third = j->index()[2];
  auto bytes = read_bytes(seg);
  bytes[third.offset + third.size - 1] ^= 0x01;
  write_bytes(seg, bytes);
  auto above3 = j->read_from(4);
  ASSERT_TRUE(above3) << describe(above3.error()); // Entry 3 is not read.
  ASSERT_EQ(above3->size(), 1u);
  EXPECT_EQ(*above3->front(), recs[3]);
  auto all = j->read_from(1);
  ASSERT_FALSE(all);
  EXPECT_EQ(code_of(all.error()), ec::journal_corrupt);
  auto msg = message_of(all.error());
  EXPECT_NE(msg.find(seg.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("offset " + std::to_string(third.offset)),
            std::string::npos)
    << msg;
  EXPECT_NE(msg.find("height 3"), std::string::npos) << msg;
  // A file cut short under the journal.
  fs::resize_file(seg, third.offset + 10);
  auto cut = j->read_from(1);
  ASSERT_FALSE(cut);
  EXPECT_EQ(code_of(cut.error()), ec::journal_corrupt);
}

TEST(journal, failed_write_is_cut_back_and_reported_as_io_error) {
  rollblock::test::temp_dir tmp;
  auto seg = segment_path(tmp.path(), 1);
  auto j = open_ok(opts_for(tmp.path()));
  ASSERT_TRUE(j);
  auto recs = fill(*j, 3, 3);
  auto size = j->size_bytes();
  auto big = make_record(4, 200);
  {
    // The write of `big` stops part way with EFBIG.
    rollblock::test::file_size_limit limit{static_cast<rlim_t>(size + 100)};
    ASSERT_TRUE(limit.ok());
    auto err = j->append(big);
    ASSERT_TRUE(err);
    EXPECT_EQ(code_of(err), ec::io_error);
    EXPECT_NE(message_of(err).find("000001.rbj"), std::string::npos)
      << message_of(err);
    EXPECT_NE(message_of(err).find("File too large"), std::string::npos)
      << message_of(err);
  }
  EXPECT_EQ(fs::file_size(seg), size);
  EXPECT_EQ(j->size_bytes(), size);
  EXPECT_EQ(j->index().size(), 3u);
  EXPECT_EQ(j->last_height(), 3u);
  // Not a sticky failure: the next append works.
  recs.push_back(big);
  append_ok(*j, big);
  EXPECT_FALSE(j->sync());
  j.reset();
  journal_open_report rep;
  j = open_ok(opts_for(tmp.path()), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.truncated_bytes, 0u);
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

// -- read-only open (options::repair = false) ----------------------------------

namespace {

journal::options read_only(journal::options o) {
  o.repair = false;
  return o;
}

} // namespace

TEST(journal, repair_false_reports_a_torn_tail_but_changes_no_file) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path() / "journal";
  auto seg1 = segment_path(dir, 1);
  auto seg2 = segment_path(dir, 2);
  std::vector<block_record> recs;
  journal_position last;
  {
    auto j = open_ok(opts_for(dir));
    ASSERT_TRUE(j);
    recs = fill(*j, 4, 5);
    last = j->index().back();
  }
  // Tear the last entry and leave a garbage later segment behind it.
  fs::resize_file(seg1, last.offset + last.size - 7);
  write_bytes(seg2, "not an entry at all, just some bytes");
  auto bytes1 = read_bytes(seg1);
  auto bytes2 = read_bytes(seg2);
  auto total = bytes1.size() + bytes2.size();
  journal_open_report rep;
  auto j = open_ok(read_only(opts_for(dir)), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.segments, 2u);
  EXPECT_EQ(rep.entries, 3u);
  EXPECT_EQ(rep.truncated_bytes, last.size - 7 + bytes2.size());
  EXPECT_EQ(rep.truncated_file, seg1.string());
  EXPECT_EQ(rep.truncated_offset, last.offset);
  // Nothing changed on disk; the index ends before the tail.
  EXPECT_EQ(read_bytes(seg1), bytes1);
  EXPECT_EQ(read_bytes(seg2), bytes2);
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"000001.rbj",
                                                     "000002.rbj"}));
  EXPECT_EQ(j->size_bytes(), total);
  ASSERT_EQ(j->index().size(), 3u);
  EXPECT_EQ(j->first_height(), 1u);
  EXPECT_EQ(j->last_height(), 3u);
  auto kept = recs;
  kept.pop_back();
  EXPECT_EQ(read_all_above(*j, 0), kept);
  // Every change is refused and leaves the files alone.
  auto err = j->append(make_record(9, 2));
  EXPECT_EQ(code_of(err), ec::invalid_argument);
  EXPECT_NE(message_of(err).find("read-only"), std::string::npos)
    << message_of(err);
  EXPECT_EQ(code_of(j->sync()), ec::invalid_argument);
  EXPECT_EQ(code_of(j->truncate_after(1)), ec::invalid_argument);
  EXPECT_EQ(code_of(j->drop_through(3)), ec::invalid_argument);
  EXPECT_EQ(j->index().size(), 3u);
  EXPECT_EQ(read_bytes(seg1), bytes1);
  EXPECT_EQ(read_bytes(seg2), bytes2);
  j.reset();
  // A repairing open reports the same tail, then cuts it.
  journal_open_report repaired;
  auto r = open_ok(opts_for(dir), &repaired);
  ASSERT_TRUE(r);
  EXPECT_EQ(repaired.truncated_bytes, rep.truncated_bytes);
  EXPECT_EQ(repaired.truncated_file, rep.truncated_file);
  EXPECT_EQ(repaired.truncated_offset, rep.truncated_offset);
  EXPECT_EQ(repaired.entries, rep.entries);
  EXPECT_EQ(fs::file_size(seg1), last.offset);
  EXPECT_EQ(files_in(dir), std::vector<std::string>{"000001.rbj"});
}

TEST(journal, repair_false_torn_tail_at_every_offset_of_last_entry) {
  rollblock::test::temp_dir tmp;
  auto seg = segment_path(tmp.path(), 1);
  std::vector<block_record> recs{make_record(1, 3), make_record(2, 4)};
  journal_position last;
  {
    auto j = open_ok(opts_for(tmp.path()));
    ASSERT_TRUE(j);
    for (auto& r : recs)
      append_ok(*j, r);
    last = j->index().back();
  }
  auto pristine = read_bytes(seg);
  for (auto cut = last.offset + 1; cut < last.offset + last.size; ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    auto torn = pristine.substr(0, cut);
    write_bytes(seg, torn);
    journal_open_report rep;
    auto j = open_ok(read_only(opts_for(tmp.path())), &rep);
    ASSERT_TRUE(j);
    EXPECT_EQ(rep.entries, 1u);
    EXPECT_EQ(rep.truncated_bytes, cut - last.offset);
    EXPECT_EQ(rep.truncated_offset, last.offset);
    EXPECT_EQ(read_bytes(seg), torn);
    EXPECT_EQ(read_all_above(*j, 0), std::vector<block_record>{recs[0]});
  }
}

TEST(journal, repair_false_on_a_clean_journal_reads_everything) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path(), 8, 4096);
  std::vector<block_record> recs;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    recs = fill(*j, 30, 10);
  }
  auto names = files_in(tmp.path());
  ASSERT_GT(names.size(), 1u);
  journal_open_report rep;
  auto j = open_ok(read_only(o), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.segments, names.size());
  EXPECT_EQ(rep.entries, recs.size());
  EXPECT_EQ(rep.truncated_bytes, 0u);
  EXPECT_EQ(rep.truncated_file, "");
  EXPECT_EQ(read_all_above(*j, 0), recs);
  EXPECT_EQ(files_in(tmp.path()), names);
}

TEST(journal, repair_false_creates_neither_directory_nor_segment) {
  rollblock::test::temp_dir tmp;
  auto missing = tmp.path() / "missing";
  auto j = journal::open(read_only(opts_for(missing)));
  ASSERT_FALSE(j);
  EXPECT_EQ(code_of(j.error()), ec::io_error);
  EXPECT_FALSE(fs::exists(missing));
  auto empty = tmp.path() / "empty";
  fs::create_directory(empty);
  journal_open_report rep;
  auto e = open_ok(read_only(opts_for(empty)), &rep);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->empty());
  EXPECT_EQ(rep.segments, 0u);
  EXPECT_EQ(e->size_bytes(), 0u);
  EXPECT_TRUE(files_in(empty).empty());
  EXPECT_EQ(code_of(e->append(make_record(1, 1))), ec::invalid_argument);
  EXPECT_TRUE(files_in(empty).empty());
}

TEST(journal, repair_false_middle_corruption_is_still_journal_corrupt) {
  rollblock::test::temp_dir tmp;
  auto seg = segment_path(tmp.path(), 1);
  journal_position middle;
  {
    auto j = open_ok(opts_for(tmp.path()));
    ASSERT_TRUE(j);
    fill(*j, 3, 5);
    middle = j->index()[1];
  }
  auto bytes = read_bytes(seg);
  bytes[middle.offset + 40 + 3] ^= 0x10;
  write_bytes(seg, bytes);
  auto j = journal::open(read_only(opts_for(tmp.path())));
  ASSERT_FALSE(j);
  EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
  auto msg = message_of(j.error());
  EXPECT_NE(msg.find(seg.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("offset " + std::to_string(middle.offset)),
            std::string::npos)
    << msg;
  EXPECT_EQ(read_bytes(seg), bytes);
}

// -- injected faults (a fault_file_system) ---------------------------------------

namespace {

using rollblock::test::fault_file_system;
using rollblock::test::fault_op;

/// opts_for with a fault-injecting file system.
journal::options faulty(const fs::path& dir,
                        std::shared_ptr<fault_file_system> ffs,
                        std::uint64_t segment_bytes = 64ull << 20) {
  auto o = opts_for(dir, 8, segment_bytes);
  o.fs = std::move(ffs);
  return o;
}

} // namespace

TEST(journal, every_file_operation_goes_through_the_file_system) {
  rollblock::test::temp_dir tmp;
  auto ffs = std::make_shared<fault_file_system>();
  auto& s = ffs->schedule();
  auto j = open_ok(faulty(tmp.path(), ffs, 4096));
  ASSERT_TRUE(j);
  EXPECT_EQ(s.calls(fault_op::create), 1u); // 000001.rbj
  EXPECT_EQ(s.calls(fault_op::sync_directory), 1u);
  auto recs = fill(*j, 40, 10);
  auto segments = j->index().back().segment;
  ASSERT_GE(segments, 3u);
  // Each roll: fdatasync of the full segment, create, directory fsync, the
  // trailer's write and its fdatasync.
  EXPECT_EQ(s.calls(fault_op::write), 40u + (segments - 1));
  EXPECT_EQ(s.calls(fault_op::sync), 2 * (segments - 1));
  EXPECT_EQ(s.calls(fault_op::create), segments);
  EXPECT_EQ(s.calls(fault_op::sync_directory), segments);
  ASSERT_FALSE(j->sync());
  EXPECT_EQ(s.calls(fault_op::sync), 2 * (segments - 1) + 1);
  ASSERT_FALSE(j->drop_through(j->prunable_through(30).value()));
  EXPECT_GE(s.calls(fault_op::remove), 1u);
  ASSERT_FALSE(j->truncate_after(35));
  EXPECT_GE(s.calls(fault_op::truncate), 1u);
}

TEST(journal, enospc_on_append_is_io_error_and_the_entry_is_cut_back) {
  rollblock::test::temp_dir tmp;
  auto ffs = std::make_shared<fault_file_system>();
  auto j = open_ok(faulty(tmp.path(), ffs));
  ASSERT_TRUE(j);
  auto recs = fill(*j, 3, 3);
  ASSERT_FALSE(j->sync());
  auto size = j->size_bytes();
  // The disk fills 25 bytes into the next entry: a short write, then ENOSPC.
  ffs->schedule().fail_writes_after(25);
  auto big = make_record(4, 20);
  auto err = j->append(big);
  ASSERT_TRUE(err);
  EXPECT_EQ(code_of(err), ec::io_error);
  expect_contains(err, "writing journal entry of height 4 to "
                         + segment_path(tmp.path(), 1).string());
  expect_contains(err, "No space left on device");
  EXPECT_EQ(fs::file_size(segment_path(tmp.path(), 1)), size);
  EXPECT_EQ(j->size_bytes(), size);
  EXPECT_EQ(j->last_height(), 3u);
  // Nothing half-written stays: once space is back the journal goes on.
  ffs->schedule().heal();
  append_ok(*j, big);
  ASSERT_FALSE(j->sync());
  recs.push_back(big);
  j.reset();
  journal_open_report rep;
  j = open_ok(opts_for(tmp.path()), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.truncated_bytes, 0u);
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, enospc_on_every_call_of_append_changes_nothing) {
  rollblock::test::temp_dir tmp;
  auto ffs = std::make_shared<fault_file_system>();
  auto j = open_ok(faulty(tmp.path(), ffs));
  ASSERT_TRUE(j);
  auto recs = fill(*j, 2, 3);
  auto size = j->size_bytes();
  ffs->schedule().fail_at(fault_op::write, 1, ENOSPC, true);
  for (block_id h = 3; h < 6; ++h) {
    auto err = j->append(make_record(h, 2));
    EXPECT_EQ(code_of(err), ec::io_error);
    expect_contains(err, "No space left on device");
  }
  EXPECT_EQ(j->size_bytes(), size);
  EXPECT_EQ(fs::file_size(segment_path(tmp.path(), 1)), size);
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, short_write_is_continued_until_the_entry_is_whole) {
  rollblock::test::temp_dir tmp;
  auto ffs = std::make_shared<fault_file_system>();
  auto j = open_ok(faulty(tmp.path(), ffs));
  ASSERT_TRUE(j);
  auto recs = fill(*j, 2, 3);
  ffs->schedule().short_write_at(1, 7);
  ffs->schedule().short_write_at(2, 1);
  auto before = ffs->schedule().calls(fault_op::write);
  recs.push_back(make_record(3, 9));
  append_ok(*j, recs.back());
  // 7 bytes, 1 byte, then the rest.
  EXPECT_EQ(ffs->schedule().calls(fault_op::write), before + 3);
  ASSERT_FALSE(j->sync());
  j.reset();
  journal_open_report rep;
  j = open_ok(opts_for(tmp.path()), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.truncated_bytes, 0u);
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, failed_cut_back_after_a_failed_write_fails_the_journal) {
  rollblock::test::temp_dir tmp;
  auto ffs = std::make_shared<fault_file_system>();
  auto j = open_ok(faulty(tmp.path(), ffs));
  ASSERT_TRUE(j);
  auto recs = fill(*j, 2, 3);
  ASSERT_FALSE(j->sync());
  ffs->schedule().fail_writes_after(10);
  ffs->schedule().fail_at(fault_op::truncate, 1, EIO);
  auto err = j->append(make_record(3, 5));
  EXPECT_EQ(code_of(err), ec::io_error);
  expect_contains(err, "No space left on device");
  expect_contains(err, "truncating it back to "
                         + std::to_string(j->size_bytes())
                         + " bytes also failed: Input/output error");
  // The segment holds 10 stray bytes we could not cut: failed from now on.
  ffs->schedule().heal();
  EXPECT_EQ(j->append(make_record(4, 1)), err);
  EXPECT_EQ(j->sync(), err);
  EXPECT_EQ(j->truncate_after(1), err);
  EXPECT_EQ(j->drop_through(1), err);
  // Reopening cuts the stray bytes as a torn tail.
  j.reset();
  journal_open_report rep;
  j = open_ok(opts_for(tmp.path()), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.truncated_bytes, 10u);
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, eio_on_fsync_is_sticky_no_retried_fsync_is_trusted) {
  rollblock::test::temp_dir tmp;
  auto ffs = std::make_shared<fault_file_system>();
  auto j = open_ok(faulty(tmp.path(), ffs));
  ASSERT_TRUE(j);
  auto recs = fill(*j, 2, 3);
  ASSERT_FALSE(j->sync());
  append_ok(*j, make_record(3, 3));
  ffs->schedule().fail_at(fault_op::sync, 1, EIO);
  auto err = j->sync();
  ASSERT_TRUE(err);
  EXPECT_EQ(code_of(err), ec::io_error);
  expect_contains(err, "fdatasync of journal segment "
                         + segment_path(tmp.path(), 1).string());
  expect_contains(err, "Input/output error");
  // The disk works again, but the kernel may have dropped block 3's pages:
  // a second fsync that succeeds proves nothing. Every change fails.
  ffs->schedule().heal();
  auto syncs = ffs->schedule().calls(fault_op::sync);
  EXPECT_EQ(j->sync(), err);
  EXPECT_EQ(ffs->schedule().calls(fault_op::sync), syncs); // Not retried.
  EXPECT_EQ(j->append(make_record(4, 1)), err);
  EXPECT_EQ(j->truncate_after(1), err);
  EXPECT_EQ(j->last_height(), 3u);
}

TEST(journal, eio_on_the_fsync_of_a_roll_fails_the_journal) {
  rollblock::test::temp_dir tmp;
  auto ffs = std::make_shared<fault_file_system>();
  auto j = open_ok(faulty(tmp.path(), ffs, 4096));
  ASSERT_TRUE(j);
  std::vector<block_record> recs;
  // Fill segment 1 past 4096 bytes; the next append rolls.
  block_id h = 0;
  while (j->size_bytes() < 4096) {
    recs.push_back(make_record(++h, 10));
    append_ok(*j, recs.back());
  }
  ffs->schedule().fail_at(fault_op::sync, 1, EIO);
  auto err = j->append(make_record(h + 1, 1));
  EXPECT_EQ(code_of(err), ec::io_error);
  expect_contains(err, "fdatasync of journal segment "
                         + segment_path(tmp.path(), 1).string());
  ffs->schedule().heal();
  EXPECT_EQ(j->append(make_record(h + 2, 1)), err);
  EXPECT_EQ(j->sync(), err);
  EXPECT_FALSE(fs::exists(segment_path(tmp.path(), 2)));
}

TEST(journal, failed_directory_fsync_when_pruning_fails_the_journal) {
  rollblock::test::temp_dir tmp;
  auto ffs = std::make_shared<fault_file_system>();
  auto j = open_ok(faulty(tmp.path(), ffs, 4096));
  ASSERT_TRUE(j);
  fill(*j, 60, 10);
  auto through = j->prunable_through(50);
  ASSERT_TRUE(through);
  ffs->schedule().fail_at(fault_op::sync_directory, 1, EIO);
  auto err = j->drop_through(*through);
  EXPECT_EQ(code_of(err), ec::io_error);
  expect_contains(err, "fsync of directory " + tmp.path().string());
  EXPECT_EQ(j->append(make_record(61, 1)), err);
}

TEST(journal, failed_unlink_when_pruning_keeps_the_rest_and_reports_it) {
  rollblock::test::temp_dir tmp;
  auto ffs = std::make_shared<fault_file_system>();
  auto j = open_ok(faulty(tmp.path(), ffs, 4096));
  ASSERT_TRUE(j);
  auto recs = fill(*j, 60, 10);
  auto through = j->prunable_through(50);
  ASSERT_TRUE(through);
  // The second unlink fails: segment 1 is gone, segment 2 stays.
  ffs->schedule().fail_at(fault_op::remove, 2, EACCES);
  auto err = j->drop_through(*through);
  EXPECT_EQ(code_of(err), ec::io_error);
  expect_contains(err, "removing journal segment "
                         + segment_path(tmp.path(), 2).string());
  expect_contains(err, "Permission denied");
  EXPECT_FALSE(fs::exists(segment_path(tmp.path(), 1)));
  EXPECT_TRUE(fs::exists(segment_path(tmp.path(), 2)));
  EXPECT_EQ(j->index().front().segment, 2u);
  // The journal is consistent (a prefix went): pruning again finishes.
  ffs->schedule().heal();
  ASSERT_FALSE(j->drop_through(*through));
  EXPECT_FALSE(fs::exists(segment_path(tmp.path(), 2)));
  append_ok(*j, make_record(61, 1));
  j.reset();
  j = open_ok(opts_for(tmp.path(), 8, 4096));
  ASSERT_TRUE(j);
  EXPECT_EQ(j->last_height(), 61u);
  EXPECT_GT(j->first_height(), *through);
}

namespace {

/// Runs `child` in a forked process, which must die of SIGKILL (a crash
/// injected by a fault_file_system); returns whether it did.
template <class F>
::testing::AssertionResult killed_in_child(F&& child) {
  auto pid = ::fork();
  if (pid < 0)
    return ::testing::AssertionFailure() << "fork failed";
  if (pid == 0) {
    child();
    ::_exit(3); // The crash point was never reached.
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid)
    return ::testing::AssertionFailure() << "waitpid failed";
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
    return ::testing::AssertionFailure()
           << "the child did not die of SIGKILL (status " << status << ")";
  return ::testing::AssertionSuccess();
}

} // namespace

TEST(journal, crash_in_the_middle_of_an_append_leaves_a_torn_tail) {
  for (std::size_t keep : {std::size_t{0}, std::size_t{20}, std::size_t{41},
                           std::size_t{100}}) {
    SCOPED_TRACE("bytes written before the crash: " + std::to_string(keep));
    rollblock::test::temp_dir tmp;
    std::vector<block_record> recs;
    for (block_id h = 1; h <= 5; ++h)
      recs.push_back(make_record(h, 8));
    ASSERT_TRUE(killed_in_child([&] {
      auto ffs = std::make_shared<fault_file_system>();
      ffs->schedule().crash_at(fault_op::write, 4, keep);
      auto j = journal::open(faulty(tmp.path(), ffs));
      if (!j)
        return;
      for (auto& r : recs)
        if ((*j)->append(r) || (*j)->sync())
          return;
    }));
    journal_open_report rep;
    auto j = open_ok(opts_for(tmp.path()), &rep);
    ASSERT_TRUE(j);
    EXPECT_EQ(rep.truncated_bytes, keep);
    EXPECT_EQ(read_all_above(*j, 0),
              std::vector<block_record>(recs.begin(), recs.begin() + 3));
  }
}

// -- missing segments, cut journals and the required height --------------------

TEST(journal, missing_middle_segment_is_journal_corrupt_naming_it) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path(), 8, 4096);
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    fill(*j, 60, 10);
    ASSERT_GE(j->index().back().segment, 4u);
  }
  auto last_in_1 = [&] {
    auto j = open_ok(o);
    block_id h = 0;
    for (auto& p : j->index())
      if (p.segment == 1)
        h = p.height;
    return h;
  }();
  fs::remove(segment_path(tmp.path(), 2));
  auto before = files_in(tmp.path());
  for (bool repair : {true, false}) {
    auto oo = o;
    oo.repair = repair;
    auto j = journal::open(oo);
    ASSERT_FALSE(j);
    EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
    expect_contains(j.error(), "journal segment "
                                 + segment_path(tmp.path(), 2).string()
                                 + " is missing");
    expect_contains(j.error(), "last good height "
                                 + std::to_string(last_in_1));
  }
  EXPECT_EQ(files_in(tmp.path()), before);
}

TEST(journal, required_height_refuses_a_journal_cut_short_below_it) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path());
  std::vector<journal_position> idx;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    fill(*j, 6, 4);
    idx = j->index();
  }
  auto seg = segment_path(tmp.path(), 1);
  auto bytes = read_bytes(seg);
  // Cut in the middle of entry 4: a torn tail for a journal whose
  // checkpoint is 3, corruption for one whose checkpoint is 5.
  auto cut = idx[3].offset + 17;
  write_bytes(seg, bytes.substr(0, cut));
  o.required_height = 5;
  auto j = journal::open(o);
  ASSERT_FALSE(j);
  EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
  expect_contains(j.error(), "it is damaged at " + seg.string() + " offset "
                               + std::to_string(idx[3].offset));
  expect_contains(j.error(), "holds no entry at height 5");
  expect_contains(j.error(), "ends with height 3");
  EXPECT_EQ(fs::file_size(seg), cut); // Nothing was repaired.
  o.required_height = 3;
  journal_open_report rep;
  auto ok = open_ok(o, &rep);
  ASSERT_TRUE(ok);
  EXPECT_EQ(rep.truncated_offset, idx[3].offset);
  EXPECT_EQ(ok->last_height(), 3u);
}

TEST(journal, missing_newest_segment_is_refused_before_the_required_height) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path(), 8, 4096);
  block_id last = 0;
  std::uint64_t segments = 0;
  journal_position last_kept;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    fill(*j, 60, 10);
    last = j->last_height();
    segments = j->index().back().segment;
    for (auto& p : j->index())
      if (p.segment == segments - 1)
        last_kept = p;
  }
  fs::remove(segment_path(tmp.path(), segments));
  o.required_height = last;
  auto j = journal::open(o);
  ASSERT_FALSE(j);
  EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
  expect_contains(j.error(), "journal segment "
                               + segment_path(tmp.path(), segments).string()
                               + " is missing: segment "
                               + segment_path(tmp.path(), segments - 1)
                                   .filename()
                                   .string()
                               + " ends with a trailer at offset "
                               + std::to_string(last_kept.offset
                                                + last_kept.size));
  expect_contains(j.error(),
                  "last good height " + std::to_string(last_kept.height));
  EXPECT_FALSE(fs::exists(segment_path(tmp.path(), segments)));
}

TEST(journal, required_height_refuses_an_emptied_journal_directory) {
  rollblock::test::temp_dir tmp;
  auto o = opts_for(tmp.path());
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    fill(*j, 3, 2);
  }
  fs::remove(segment_path(tmp.path(), 1));
  o.required_height = 2;
  auto j = journal::open(o);
  ASSERT_FALSE(j);
  EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
  expect_contains(j.error(), "holds no entry at height 2");
  expect_contains(j.error(), "the journal holds no entry");
  EXPECT_TRUE(files_in(tmp.path()).empty()); // No new segment was created.
}

// -- segment trailers: the newest segment named, crashes in rolls and cuts -----

namespace {

/// Appends records of 10 changes (heights 1, 2, ...) to a journal with 4 KiB
/// segments in `dir` until segment `segments` holds an entry; fsyncs.
std::vector<block_record> fill_segments(const fs::path& dir,
                                        std::uint64_t segments) {
  std::vector<block_record> recs;
  auto j = open_ok(opts_for(dir, 8, 4096));
  if (!j)
    return recs;
  while (j->empty() || j->index().back().segment < segments) {
    recs.push_back(make_record(recs.size() + 1, 10));
    append_ok(*j, recs.back());
  }
  EXPECT_FALSE(j->sync());
  return recs;
}

/// The index of the journal in `dir`, read without changing a file.
std::vector<journal_position> index_of(const fs::path& dir) {
  auto o = opts_for(dir, 8, 4096);
  o.repair = false;
  auto j = open_ok(o);
  return j ? j->index() : std::vector<journal_position>{};
}

/// The last entry of segment `seq` in `idx`.
journal_position last_in(const std::vector<journal_position>& idx,
                         std::uint64_t seq) {
  journal_position last;
  for (auto& p : idx)
    if (p.segment == seq)
      last = p;
  return last;
}

/// Every file of `dir` with its bytes.
std::map<std::string, std::string> dir_bytes(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (auto& e : fs::directory_iterator{dir})
    out[e.path().filename().string()] = read_bytes(e.path());
  return out;
}

} // namespace

TEST(journal, deleting_the_newest_segments_is_detected_naming_the_file) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path();
  fill_segments(dir, 4);
  auto idx = index_of(dir);
  for (std::uint64_t newest : {4u, 3u, 2u}) {
    SCOPED_TRACE("segments left: 1.." + std::to_string(newest - 1));
    fs::remove(segment_path(dir, newest));
    auto last = last_in(idx, newest - 1);
    auto before = dir_bytes(dir);
    for (bool repair : {true, false}) {
      auto o = opts_for(dir, 8, 4096);
      o.repair = repair;
      auto j = journal::open(o);
      ASSERT_FALSE(j);
      EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
      EXPECT_EQ(message_of(j.error()),
                "journal segment " + segment_path(dir, newest).string()
                  + " is missing: segment "
                  + segment_path(dir, newest - 1).filename().string()
                  + " ends with a trailer at offset "
                  + std::to_string(last.offset + last.size)
                  + " naming it as the next segment (last good height "
                  + std::to_string(last.height)
                  + "); the blocks it held are lost, so nothing was "
                    "repaired: restore the journal from a backup");
    }
    EXPECT_EQ(dir_bytes(dir), before);
  }
}

TEST(journal, deleting_an_empty_newest_segment_is_detected_too) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path();
  auto recs = fill_segments(dir, 2);
  // Segment 2 holds the last block only: empty it, as a crash right after
  // the roll leaves it, then delete it.
  write_bytes(segment_path(dir, 2), "");
  ASSERT_TRUE(open_ok(opts_for(dir, 8, 4096)));
  fs::remove(segment_path(dir, 2));
  auto j = journal::open(opts_for(dir, 8, 4096));
  ASSERT_FALSE(j);
  EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
  expect_contains(j.error(), "journal segment "
                               + segment_path(dir, 2).string()
                               + " is missing: segment 000001.rbj ends with "
                                 "a trailer");
  expect_contains(j.error(), "last good height "
                               + std::to_string(recs.size() - 1));
  EXPECT_EQ(files_in(dir), std::vector<std::string>{"000001.rbj"});
}

TEST(journal, torn_trailer_is_a_torn_tail) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path();
  auto recs = fill_segments(dir, 2);
  recs.pop_back(); // The block in segment 2: never written.
  write_bytes(segment_path(dir, 2), "");
  auto seg1 = read_bytes(segment_path(dir, 1));
  auto end = last_in(index_of(dir), 1);
  auto trailer_at = end.offset + end.size;
  ASSERT_EQ(seg1.size(), trailer_at + trailer_size);
  for (std::size_t keep = 1; keep < trailer_size; ++keep) {
    SCOPED_TRACE("trailer bytes written: " + std::to_string(keep));
    write_bytes(segment_path(dir, 1), seg1.substr(0, trailer_at + keep));
    write_bytes(segment_path(dir, 2), "");
    journal_open_report rep;
    auto j = open_ok(opts_for(dir, 8, 4096), &rep);
    ASSERT_TRUE(j);
    EXPECT_EQ(rep.truncated_file, segment_path(dir, 1).string());
    EXPECT_EQ(rep.truncated_offset, trailer_at);
    EXPECT_EQ(rep.truncated_bytes, keep);
    EXPECT_EQ(rep.segments, 1u);
    EXPECT_EQ(files_in(dir), std::vector<std::string>{"000001.rbj"});
    EXPECT_EQ(fs::file_size(segment_path(dir, 1)), trailer_at);
    EXPECT_EQ(read_all_above(*j, 0), recs);
  }
  // A damaged trailer before a segment holding blocks is no torn tail.
  fill_segments(tmp.sub("other"), 2);
  auto other = tmp.sub("other");
  auto bytes = read_bytes(segment_path(other, 1));
  bytes[trailer_at + 44] ^= 0x01; // The trailer's payload.
  write_bytes(segment_path(other, 1), bytes);
  auto j = journal::open(opts_for(other, 8, 4096));
  ASSERT_FALSE(j);
  EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
  expect_contains(j.error(), segment_path(other, 1).string()
                               + " is corrupt at offset "
                               + std::to_string(trailer_at)
                               + " (payload checksum mismatch");
  expect_contains(j.error(), "a valid entry follows at "
                               + segment_path(other, 2).string()
                               + " offset 0");
}

TEST(journal, trailer_that_is_not_last_or_names_another_segment_is_corrupt) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path();
  auto blocks = encode_journal_entry(make_record(1, 2), 8)
                + encode_journal_entry(make_record(3, 2), 8);
  auto cases = std::vector<std::pair<std::string, std::string>>{
    {blocks + encode_journal_trailer({3, 2}, 8)
       + encode_journal_entry(make_record(4, 2), 8),
     "holds a segment trailer followed by "
       + std::to_string(entry_size_of(make_record(4, 2), 8))
       + " more bytes, but a trailer ends its segment (last good height "
         "3)"},
    {blocks + encode_journal_trailer({3, 5}, 8),
     "holds a segment trailer naming segment 5 as the next one instead of "
     "000002.rbj (last good height 3)"},
    {blocks + encode_journal_trailer({2, 2}, 8),
     "holds a segment trailer naming height 2 as the segment's last block, "
     "but the last block before it is 3"},
  };
  for (auto& [bytes, text] : cases) {
    SCOPED_TRACE(text);
    write_bytes(segment_path(dir, 1), bytes);
    write_bytes(segment_path(dir, 2), "");
    auto before = dir_bytes(dir);
    auto j = journal::open(opts_for(dir));
    ASSERT_FALSE(j);
    EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
    expect_contains(j.error(), "journal " + segment_path(dir, 1).string()
                                 + " at offset "
                                 + std::to_string(blocks.size()) + " "
                                 + text);
    EXPECT_EQ(dir_bytes(dir), before);
  }
}

TEST(journal, segment_without_a_trailer_before_one_with_blocks_is_corrupt) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path();
  fill_segments(dir, 3);
  auto idx = index_of(dir);
  auto end1 = last_in(idx, 1);
  // Cut segment 1 at an entry boundary: its trailer goes, segment 2 stays.
  fs::resize_file(segment_path(dir, 1), end1.offset + end1.size);
  auto before = dir_bytes(dir);
  for (bool repair : {true, false}) {
    auto o = opts_for(dir, 8, 4096);
    o.repair = repair;
    auto j = journal::open(o);
    ASSERT_FALSE(j);
    EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
    EXPECT_EQ(message_of(j.error()),
              "journal segment " + segment_path(dir, 1).string()
                + " ends at offset " + std::to_string(end1.offset + end1.size)
                + " without a trailer (last good height "
                + std::to_string(end1.height) + "), but the later segment "
                + segment_path(dir, 2).string() + " holds "
                + std::to_string(before["000002.rbj"].size())
                + " bytes: a segment followed by another must end with a "
                  "trailer naming it, so blocks may be missing and nothing "
                  "was repaired: restore the journal from a backup");
  }
  EXPECT_EQ(dir_bytes(dir), before);
}

TEST(journal, crash_at_each_step_of_a_roll_reopens_with_every_block) {
  struct crash_case {
    const char* what;
    fault_op op;
    std::uint64_t nth;
    std::size_t keep;
    std::size_t segments;  ///< After the reopen.
    std::size_t leftovers; ///< Empty segments the reopen removed.
    std::uint64_t torn;    ///< Bytes of a torn tail it cut.
    std::uint64_t torn_seq;
  };
  const std::vector<crash_case> cases{
    {"fdatasync of the full segment", fault_op::sync, 1, 0, 1, 0, 0, 0},
    {"creating the next segment", fault_op::create, 1, 0, 1, 0, 0, 0},
    {"directory fsync after creating it", fault_op::sync_directory, 1, 0, 1,
     1, 0, 0},
    {"trailer not written", fault_op::write, 1, 0, 1, 1, 0, 0},
    {"trailer torn after 20 bytes", fault_op::write, 1, 20, 1, 0, 20, 1},
    {"trailer torn after 47 bytes", fault_op::write, 1, 47, 1, 0, 47, 1},
    {"fdatasync of the trailer", fault_op::sync, 2, 0, 2, 0, 0, 0},
    {"first block of the next segment not written", fault_op::write, 2, 0, 2,
     0, 0, 0},
    {"first block of the next segment torn", fault_op::write, 2, 30, 2, 0,
     30, 2},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.what);
    rollblock::test::temp_dir tmp;
    auto dir = tmp.path();
    std::vector<block_record> recs;
    {
      auto j = open_ok(opts_for(dir, 8, 4096));
      ASSERT_TRUE(j);
      while (j->size_bytes() < 4096) {
        recs.push_back(make_record(recs.size() + 1, 10));
        append_ok(*j, recs.back());
      }
      ASSERT_FALSE(j->sync());
    }
    auto rolling = make_record(recs.size() + 1, 3);
    ASSERT_TRUE(killed_in_child([&] {
      auto ffs = std::make_shared<fault_file_system>();
      auto j = journal::open(faulty(dir, ffs, 4096));
      if (!j)
        return;
      ffs->schedule().crash_at(c.op, c.nth, c.keep);
      (void) (*j)->append(rolling); // Rolls first.
    }));
    journal_open_report rep;
    auto j = open_ok(opts_for(dir, 8, 4096), &rep);
    ASSERT_TRUE(j);
    EXPECT_EQ(rep.segments, c.segments);
    EXPECT_EQ(rep.leftover_segments.size(), c.leftovers);
    EXPECT_EQ(rep.truncated_bytes, c.torn);
    if (c.torn > 0) {
      EXPECT_EQ(rep.truncated_file, segment_path(dir, c.torn_seq).string());
    }
    EXPECT_EQ(files_in(dir).size(), c.segments);
    EXPECT_EQ(read_all_above(*j, 0), recs);
    // The journal rolls again and keeps everything.
    recs.push_back(rolling);
    append_ok(*j, recs.back());
    EXPECT_EQ(j->index().back().segment, 2u);
    recs.push_back(make_record(recs.size() + 1, 3));
    append_ok(*j, recs.back());
    j.reset();
    journal_open_report again;
    j = open_ok(opts_for(dir, 8, 4096), &again);
    ASSERT_TRUE(j);
    EXPECT_EQ(again.segments, 2u);
    EXPECT_EQ(again.truncated_bytes, 0u);
    EXPECT_TRUE(again.leftover_segments.empty());
    EXPECT_EQ(read_all_above(*j, 0), recs);
  }
}

TEST(journal, truncate_after_across_segments_drops_the_trailer_then_rolls) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path();
  auto recs = fill_segments(dir, 4);
  auto idx = index_of(dir);
  auto end2 = last_in(idx, 2);
  {
    auto j = open_ok(opts_for(dir, 8, 4096));
    ASSERT_TRUE(j);
    ASSERT_FALSE(j->truncate_after(end2.height));
    EXPECT_EQ(files_in(dir),
              (std::vector<std::string>{"000001.rbj", "000002.rbj"}));
    // Segment 2 is the newest again: its trailer went with the cut.
    EXPECT_EQ(fs::file_size(segment_path(dir, 2)), end2.offset + end2.size);
    EXPECT_EQ(j->last_height(), end2.height);
  }
  recs.resize(end2.height);
  journal_open_report rep;
  auto j = open_ok(opts_for(dir, 8, 4096), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.segments, 2u);
  EXPECT_EQ(rep.truncated_bytes, 0u);
  EXPECT_TRUE(rep.leftover_segments.empty());
  EXPECT_EQ(read_all_above(*j, 0), recs);
  // Segment 2 is full: the next append rolls and writes a new trailer.
  recs.push_back(make_record(recs.size() + 1, 3));
  append_ok(*j, recs.back());
  EXPECT_EQ(j->index().back().segment, 3u);
  EXPECT_EQ(read_bytes(segment_path(dir, 2)).substr(end2.offset + end2.size),
            encode_journal_trailer({end2.height, 3}, 8));
  j.reset();
  j = open_ok(opts_for(dir, 8, 4096));
  ASSERT_TRUE(j);
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, crash_at_each_step_of_truncate_after_reopens_and_completes) {
  // Blocks over segments 1..5, cut to a block in the middle of segment 2.
  rollblock::test::temp_dir proto;
  auto recs = fill_segments(proto.path(), 5);
  auto idx = index_of(proto.path());
  std::vector<journal_position> in2;
  for (auto& p : idx)
    if (p.segment == 2)
      in2.push_back(p);
  ASSERT_GE(in2.size(), 3u);
  auto cut = in2[in2.size() / 2].height;
  // How often truncate_after calls each operation.
  std::map<fault_op, std::uint64_t> calls;
  {
    rollblock::test::temp_dir tmp;
    fs::copy(proto.path(), tmp.path(), fs::copy_options::recursive);
    auto ffs = std::make_shared<fault_file_system>();
    auto j = open_ok(faulty(tmp.path(), ffs, 4096));
    ASSERT_TRUE(j);
    std::map<fault_op, std::uint64_t> before;
    for (auto op : {fault_op::create, fault_op::write, fault_op::truncate,
                    fault_op::sync, fault_op::remove,
                    fault_op::sync_directory})
      before[op] = ffs->schedule().calls(op);
    ASSERT_FALSE(j->truncate_after(cut));
    for (auto& [op, n] : before)
      calls[op] = ffs->schedule().calls(op) - n;
  }
  // The truncation record: created, written, fdatasynced, directory fsync.
  EXPECT_EQ(calls[fault_op::create], 1u);
  EXPECT_EQ(calls[fault_op::write], 1u);
  EXPECT_EQ(calls[fault_op::truncate], 4u); // Segments 5, 4, 3, then 2.
  EXPECT_EQ(calls[fault_op::sync], 5u);     // The record, then 5, 4, 3, 2.
  EXPECT_EQ(calls[fault_op::remove], 4u);   // Segments 5, 4, 3, the record.
  EXPECT_EQ(calls[fault_op::sync_directory], 2u);
  std::vector<block_record> kept(recs.begin(),
                                 recs.begin() + static_cast<long>(cut));
  for (auto& [op, count] : calls) {
    for (std::uint64_t nth = 1; nth <= count; ++nth) {
      SCOPED_TRACE("crash at call " + std::to_string(nth) + " of op "
                   + std::to_string(static_cast<int>(op)));
      rollblock::test::temp_dir tmp;
      auto dir = tmp.path();
      fs::copy(proto.path(), dir, fs::copy_options::recursive);
      ASSERT_TRUE(killed_in_child([&, op = op] {
        auto ffs = std::make_shared<fault_file_system>();
        auto j = journal::open(faulty(dir, ffs, 4096));
        if (!j)
          return;
        ffs->schedule().crash_at(op, nth);
        (void) (*j)->truncate_after(cut);
      }));
      // All or nothing: before the record is whole the journal keeps every
      // block; from then on the open completes the truncation.
      bool before_record = op == fault_op::create || op == fault_op::write;
      // The last directory fsync follows the record's deletion.
      bool record_gone = op == fault_op::sync_directory && nth == 2;
      {
        journal_open_report rep;
        auto j = open_ok(opts_for(dir, 8, 4096), &rep);
        ASSERT_TRUE(j);
        EXPECT_EQ(rep.truncated_bytes, 0u);
        EXPECT_EQ(rep.torn_truncation_record, op == fault_op::write);
        EXPECT_EQ(rep.completed_truncation,
                  before_record || record_gone ? std::nullopt
                                               : std::optional<block_id>{cut});
        EXPECT_EQ(read_all_above(*j, 0), before_record ? recs : kept);
        ASSERT_FALSE(j->truncate_after(cut));
      }
      journal_open_report rep;
      auto j = open_ok(opts_for(dir, 8, 4096), &rep);
      ASSERT_TRUE(j);
      EXPECT_EQ(rep.segments, 2u);
      EXPECT_EQ(rep.completed_truncation, std::nullopt);
      EXPECT_EQ(files_in(dir),
                (std::vector<std::string>{"000001.rbj", "000002.rbj"}));
      EXPECT_EQ(read_all_above(*j, 0), kept);
      append_ok(*j, make_record(cut + 1, 2));
    }
  }
}

TEST(journal, truncate_after_within_the_newest_segment_writes_no_record) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path();
  auto recs = fill_segments(dir, 2);
  auto ffs = std::make_shared<fault_file_system>();
  auto j = open_ok(faulty(dir, ffs, 4096));
  ASSERT_TRUE(j);
  for (int i = 0; i < 3; ++i) {
    recs.push_back(make_record(recs.size() + 1, 2));
    append_ok(*j, recs.back());
  }
  ASSERT_EQ(j->index()[j->index().size() - 3].segment, 2u);
  auto creates = ffs->schedule().calls(fault_op::create);
  auto dir_syncs = ffs->schedule().calls(fault_op::sync_directory);
  ASSERT_FALSE(j->truncate_after(recs.back().height - 2));
  // One ftruncate is all or nothing by itself.
  EXPECT_EQ(ffs->schedule().calls(fault_op::create), creates);
  EXPECT_EQ(ffs->schedule().calls(fault_op::sync_directory), dir_syncs + 1);
  recs.resize(recs.size() - 2);
  EXPECT_EQ(read_all_above(*j, 0), recs);
}

TEST(journal, open_completes_a_recorded_truncation) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path();
  auto recs = fill_segments(dir, 3);
  auto idx = index_of(dir);
  auto cut = last_in(idx, 1).height + 1;
  auto& cut_pos = idx[cut - 1];
  ASSERT_EQ(cut_pos.height, cut);
  ASSERT_EQ(cut_pos.segment, 2u);
  // A crash after step 1 emptied segment 3: the journal ends in segment 2.
  write_bytes(dir / "truncation.rbt", truncation_record(cut));
  fs::resize_file(segment_path(dir, 3), 0);
  auto before = dir_bytes(dir);
  std::vector<block_record> kept(recs.begin(),
                                 recs.begin() + static_cast<long>(cut));
  {
    // Read-only: shown as done, nothing changed.
    auto o = opts_for(dir, 8, 4096);
    o.repair = false;
    journal_open_report rep;
    auto j = open_ok(o, &rep);
    ASSERT_TRUE(j);
    EXPECT_EQ(rep.completed_truncation, std::optional<block_id>{cut});
    EXPECT_EQ(read_all_above(*j, 0), kept);
    EXPECT_EQ(dir_bytes(dir), before);
  }
  journal_open_report rep;
  auto j = open_ok(opts_for(dir, 8, 4096), &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.completed_truncation, std::optional<block_id>{cut});
  EXPECT_FALSE(rep.torn_truncation_record);
  EXPECT_EQ(read_all_above(*j, 0), kept);
  EXPECT_EQ(files_in(dir),
            (std::vector<std::string>{"000001.rbj", "000002.rbj"}));
  EXPECT_EQ(fs::file_size(segment_path(dir, 2)),
            cut_pos.offset + cut_pos.size);
  // Blocks appended after the completed truncation stay.
  kept.push_back(make_record(cut + 1, 2));
  append_ok(*j, kept.back());
  ASSERT_FALSE(j->sync());
  j.reset();
  journal_open_report again;
  j = open_ok(opts_for(dir, 8, 4096), &again);
  ASSERT_TRUE(j);
  EXPECT_EQ(again.completed_truncation, std::nullopt);
  EXPECT_EQ(read_all_above(*j, 0), kept);
}

TEST(journal, open_deletes_a_torn_truncation_record_and_keeps_every_block) {
  for (std::size_t keep : {0u, 10u, 23u}) {
    SCOPED_TRACE(std::to_string(keep) + " bytes of the record");
    rollblock::test::temp_dir tmp;
    auto dir = tmp.path();
    auto recs = fill_segments(dir, 3);
    write_bytes(dir / "truncation.rbt", truncation_record(5).substr(0, keep));
    journal_open_report rep;
    auto j = open_ok(opts_for(dir, 8, 4096), &rep);
    ASSERT_TRUE(j);
    EXPECT_TRUE(rep.torn_truncation_record);
    EXPECT_EQ(rep.completed_truncation, std::nullopt);
    EXPECT_EQ(read_all_above(*j, 0), recs);
    EXPECT_EQ(files_in(dir).size(), 3u);
  }
  // A whole record whose checksum does not verify is torn too.
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path();
  auto recs = fill_segments(dir, 3);
  auto bad = truncation_record(5);
  bad[9] ^= 1;
  write_bytes(dir / "truncation.rbt", bad);
  journal_open_report rep;
  auto j = open_ok(opts_for(dir, 8, 4096), &rep);
  ASSERT_TRUE(j);
  EXPECT_TRUE(rep.torn_truncation_record);
  EXPECT_EQ(read_all_above(*j, 0), recs);
  EXPECT_FALSE(fs::exists(dir / "truncation.rbt"));
}

TEST(journal, truncation_record_of_another_version_is_refused) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path();
  fill_segments(dir, 2);
  write_bytes(dir / "truncation.rbt", truncation_record(5, 7));
  auto before = dir_bytes(dir);
  auto j = journal::open(opts_for(dir, 8, 4096));
  ASSERT_FALSE(j);
  EXPECT_EQ(code_of(j.error()), ec::format_version_mismatch);
  EXPECT_EQ(message_of(j.error()),
            "journal truncation record " + (dir / "truncation.rbt").string()
              + " has format version 7 but this build reads version 1; use "
                "a build that reads this format");
  EXPECT_EQ(dir_bytes(dir), before);
}

TEST(journal, truncation_record_below_the_required_height_is_refused) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path();
  fill_segments(dir, 2);
  write_bytes(dir / "truncation.rbt", truncation_record(5));
  auto before = dir_bytes(dir);
  auto o = opts_for(dir, 8, 4096);
  o.required_height = 6;
  auto j = journal::open(o);
  ASSERT_FALSE(j);
  EXPECT_EQ(code_of(j.error()), ec::journal_corrupt);
  EXPECT_EQ(message_of(j.error()),
            "journal truncation record " + (dir / "truncation.rbt").string()
              + " cuts after block 5, below block 6, which the journal must "
                "hold (it was checkpointed); nothing was repaired");
  EXPECT_EQ(dir_bytes(dir), before);
  // At the required height it is completed.
  o.required_height = 5;
  journal_open_report rep;
  auto ok = open_ok(o, &rep);
  ASSERT_TRUE(ok);
  EXPECT_EQ(rep.completed_truncation, std::optional<block_id>{5});
  EXPECT_EQ(ok->last_height(), 5u);
}
