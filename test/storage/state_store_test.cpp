#include "rollblock/storage/state_store.hpp"

#include "rollblock/messages/error.hpp"
#include "rollblock/storage/key_order.hpp"
#include "rollblock/storage/state_page.hpp"
#include "support/fault_env.hpp"
#include "support/spawn_self.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <leveldb/db.h>
#include <leveldb/iterator.h>
#include <leveldb/write_batch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace rollblock;
using namespace rollblock::storage;

namespace {

/// Selects the helper mode of this binary: write checkpoints into this
/// directory until killed (see run_crash_writer at the end).
constexpr const char* writer_env = "ROLLBLOCK_TEST_STATE_WRITER_DIR";

constexpr std::uint64_t crash_keys = 200;

/// The page size of sample_config() (store_metadata's default).
constexpr std::size_t page_keys = 64;

using contents = std::vector<std::pair<key, value>>;

/// Adds copies of `writes` to `batch`.
void put_all(checkpoint_batch& batch, const contents& writes) {
  for (auto& [k, v] : writes)
    batch.put(k, v);
}

state_store::options options_for(const std::filesystem::path& dir) {
  state_store::options opts;
  opts.dir = dir;
  opts.cache_bytes = 1 << 20;
  opts.write_buffer_bytes = 1 << 20;
  return opts;
}

std::unique_ptr<state_store> open_store(const std::filesystem::path& dir) {
  auto store = state_store::open(options_for(dir));
  if (!store) {
    ADD_FAILURE() << describe(store.error());
    return nullptr;
  }
  return std::move(*store);
}

contents all_of(const state_store& store) {
  contents result;
  auto err = store.for_each([&](const key& k, const value& v) {
    result.emplace_back(k, v);
  });
  EXPECT_FALSE(err) << describe(err);
  return result;
}

key bin(std::string_view bytes) {
  return key{bytes};
}

store_metadata sample_config() {
  store_metadata meta;
  meta.key_width = 8;
  meta.durability = durability_mode::async_relaxed(64, 10);
  meta.min_rollback_window = 500;
  return meta;
}

/// Opens the store in `dir` and writes sample_config(); null on failure.
std::unique_ptr<state_store> open_configured(const std::filesystem::path& dir) {
  auto store = open_store(dir);
  if (store) {
    auto err = store->write_config(sample_config());
    if (err) {
      ADD_FAILURE() << describe(err);
      return nullptr;
    }
  }
  return store;
}

/// Writes one raw record into the LevelDB database at `dir`, bypassing the
/// store (which must be closed).
void put_raw(const std::filesystem::path& dir, const std::string& k,
             const std::string& v) {
  leveldb::Options opts;
  opts.create_if_missing = true;
  opts.comparator = &state_key_comparator();
  leveldb::DB* raw = nullptr;
  auto st = leveldb::DB::Open(opts, dir.string(), &raw);
  ASSERT_TRUE(st.ok()) << st.ToString();
  std::unique_ptr<leveldb::DB> db{raw};
  leveldb::WriteOptions wo;
  wo.sync = true;
  st = db->Put(wo, k, v);
  ASSERT_TRUE(st.ok()) << st.ToString();
}

/// The value every key gets in batch `i` of the crash writer: the height and
/// some filler so that a batch spans several LevelDB log blocks.
value crash_value(block_id i) {
  return value_from_u64(i) + std::string(120, static_cast<char>('a' + i % 26));
}


} // namespace

TEST(state_store, fresh_store_has_no_metadata) {
  test::temp_dir tmp;
  auto store = open_store(tmp.path() / "state");
  ASSERT_TRUE(store);
  auto meta = store->read_metadata();
  ASSERT_TRUE(meta) << describe(meta.error());
  EXPECT_EQ(*meta, std::nullopt);
  EXPECT_TRUE(all_of(*store).empty());
  auto v = store->get(key_from_u64(1));
  ASSERT_TRUE(v) << describe(v.error());
  EXPECT_EQ(*v, value{});
}

TEST(state_store, write_config_round_trip) {
  test::temp_dir tmp;
  auto store = open_store(tmp.path() / "state");
  ASSERT_TRUE(store);
  for (auto mode : {durability_mode::synchronous(),
                    durability_mode::synchronous_relaxed(7),
                    durability_mode::async(3),
                    durability_mode::async_relaxed(64, 10)}) {
    auto meta = sample_config();
    meta.key_width = 32;
    meta.durability = mode;
    ASSERT_FALSE(store->write_config(meta));
    auto got = store->read_metadata();
    ASSERT_TRUE(got) << describe(got.error());
    ASSERT_TRUE(got->has_value());
    EXPECT_EQ(**got, meta) << to_string(mode);
  }
}

TEST(state_store, checkpoint_batch_put_copies_and_a_moved_batch_keeps_them) {
  checkpoint_batch batch;
  {
    std::string k = key_from_u64(7);
    std::string v = "seven";
    batch.put(k, v);
    batch.put(key_from_u64(8), {});
    k.assign(8, 'x'); // the batch holds its own copies
    v.clear();
  }
  for (int i = 0; i < 100; ++i) // more puts do not move the earlier copies
    batch.put(key_from_u64(100 + i), "v");
  auto moved = std::move(batch);
  ASSERT_EQ(moved.writes.size(), 102u);
  EXPECT_EQ(moved.writes[0], (checkpoint_write{key_from_u64(7), "seven"}));
  EXPECT_EQ(moved.writes[1], (checkpoint_write{key_from_u64(8), ""}));
  EXPECT_EQ(moved.writes[101], (checkpoint_write{key_from_u64(199), "v"}));
}

TEST(state_store, checkpoint_batch_round_trip) {
  test::temp_dir tmp;
  auto store = open_configured(tmp.path() / "state");
  ASSERT_TRUE(store);
  // Binary keys of width 8, with zero bytes and bytes >= 0x80.
  auto k_zero = bin(std::string_view{"\0\0\0\0\0\0\0\0", 8});
  auto k_one = bin(std::string_view{"\0\0\0\0\0\0\0\1", 8});
  auto k_mid = bin(std::string_view{"a\0b\0c\0d\0", 8});
  auto k_high = bin(std::string_view{"\x80\0\0\0\0\0\0\0", 8});
  auto k_max = bin(std::string_view{"\xff\xff\xff\xff\xff\xff\xff\xff", 8});
  auto k_absent = bin(std::string_view{"\x10\0\0\0\0\0\0\x10", 8});
  auto big = value(max_value_size, '\0');
  for (std::size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<char>(i * 7 + 3);
  checkpoint_batch first;
  first.height = 10;
  put_all(first, {{k_zero, value{"zero"}},
                  {k_one, value{std::string_view{"\0\1\0", 3}}},
                  {k_mid, value{"mid"}},
                  {k_high, big},
                  {k_max, value{"max"}},
                  {k_absent, value{}}}); // deleting an absent key
  ASSERT_FALSE(store->write_checkpoint(first));
  // for_each: exact contents in key order (the first 8 bytes as a
  // little-endian number).
  EXPECT_EQ(all_of(*store), (contents{{k_zero, "zero"},
                                      {k_high, big},
                                      {k_mid, "mid"},
                                      {k_one, value{"\0\1\0", 3}},
                                      {k_max, "max"}}));
  checkpoint_batch second;
  second.height = 11;
  put_all(second, {{k_one, value{}},          // delete of a present key
                   {k_mid, value{"mid-2"}},   // overwrite
                   {k_max, value{}},          // delete of a present key
                   {k_absent, value{}},       // delete of an absent key
                   {key_from_u64(99), "new"}}); // insert
  ASSERT_FALSE(store->write_checkpoint(second));
  contents expected{{k_zero, "zero"},
                    {key_from_u64(99), "new"},
                    {k_high, big},
                    {k_mid, "mid-2"}};
  EXPECT_EQ(all_of(*store), expected);
  // get: every key, present or not.
  std::map<key, value> want{expected.begin(), expected.end()};
  for (auto& k : {k_zero, k_one, k_mid, k_high, k_max, k_absent,
                  key_from_u64(99), key_from_u64(100)}) {
    auto got = store->get(k);
    ASSERT_TRUE(got) << describe(got.error());
    auto i = want.find(k);
    EXPECT_EQ(*got, i == want.end() ? value{} : i->second);
  }
  auto got_big = store->get(k_high);
  ASSERT_TRUE(got_big);
  EXPECT_EQ(got_big->size(), max_value_size);
  auto meta = store->read_metadata();
  ASSERT_TRUE(meta && meta->has_value());
  EXPECT_EQ((*meta)->checkpoint, block_id{11});
  EXPECT_GT(store->size_bytes(), max_value_size);
}

TEST(state_store, state_pages_are_in_key_order_in_leveldb) {
  // The store's LevelDB holds the metadata keys first, then the state pages
  // in key order, each holding the keys that differ from its key only in
  // the low 6 bits of their last byte (16-byte keys); pages another writer
  // adds through state_key_comparator are found in that order too. A few
  // 8-byte prefixes shared by many keys (ties on the first 8 bytes), last
  // bytes drawn from 4 values so that pages hold several keys, bytes above
  // 0x7f; 40,000 writes in hand-built (unsorted) batches, enough to flush
  // the 1 MiB memtable into tables.
  test::temp_dir tmp;
  auto dir = tmp.path() / "state";
  std::mt19937_64 rng{16};
  auto random_key = [&] {
    auto k = key_from_u64(rng() % 7 * 0x8081828384858687ull, 8)
             + key_from_u64(rng() % 1000, 8);
    k[15] = static_cast<char>(0x80 | (rng() % 4));
    return k;
  };
  std::map<key, value, key_order_less> model;
  {
    auto store = open_configured(dir);
    ASSERT_TRUE(store);
    for (block_id h = 1; h <= 4; ++h) {
      checkpoint_batch batch;
      batch.height = h;
      for (int i = 0; i < 10000; ++i) {
        auto k = random_key();
        auto v = value_from_u64(h * 100000 + static_cast<unsigned>(i));
        model[k] = v;
        batch.put(k, v);
      }
      ASSERT_FALSE(store->write_checkpoint(batch));
    }
  }
  {
    leveldb::Options opts;
    opts.comparator = &state_key_comparator();
    leveldb::DB* raw = nullptr;
    auto st = leveldb::DB::Open(opts, dir.string(), &raw);
    ASSERT_TRUE(st.ok()) << st.ToString();
    std::unique_ptr<leveldb::DB> db{raw};
    std::unique_ptr<leveldb::Iterator> it{db->NewIterator({})};
    it->SeekToFirst();
    std::size_t metadata = 0;
    for (; it->Valid() && it->key().starts_with("m/"); it->Next())
      ++metadata;
    EXPECT_EQ(metadata, 6u); // write_config's five and m/checkpoint
    auto expected = model.begin();
    std::size_t pages = 0;
    std::size_t seen = 0;
    page_image image;
    key k;
    std::string page_key;
    for (; it->Valid(); it->Next()) {
      ASSERT_TRUE(it->key().starts_with("s"));
      ++pages;
      auto pk = it->key().ToString().substr(1);
      auto bytes = it->value().ToString(); // the image views it
      auto why = image.decode(pk, bytes, page_keys);
      ASSERT_EQ(why, "");
      image.for_each([&](std::size_t slot, std::string_view v) {
        key_in_page(pk, slot, k);
        ASSERT_NE(expected, model.end());
        EXPECT_EQ(k, expected->first);
        EXPECT_EQ(v, expected->second);
        page_key_of(k, page_keys, page_key);
        EXPECT_EQ(page_key, pk);
        ++expected;
        ++seen;
      });
    }
    ASSERT_TRUE(it->status().ok()) << it->status().ToString();
    EXPECT_EQ(seen, model.size());
    // One page per distinct page key, and most hold several keys.
    std::set<key> distinct_pages;
    for (auto& kv : model) {
      page_key_of(kv.first, page_keys, page_key);
      distinct_pages.insert(page_key);
    }
    EXPECT_EQ(pages, distinct_pages.size());
    EXPECT_LT(pages * 2, model.size());
    // Another writer's pages: a key of its own (last byte 0x40: a slot no
    // page above uses, in pages none of them has).
    leveldb::WriteBatch more;
    for (int i = 0; i < 500; ++i) {
      auto nk = key_from_u64(rng() % 7 * 0x8081828384858687ull, 8)
                + key_from_u64(rng(), 8);
      nk[15] = static_cast<char>(0x41);
      page_key_of(nk, page_keys, page_key);
      if (distinct_pages.count(page_key) > 0)
        continue;
      distinct_pages.insert(page_key);
      model[nk] = "raw";
      page_image one;
      one.set(slot_of(nk, page_keys), "raw");
      std::string bytes;
      one.encode(bytes);
      more.Put("s" + page_key, bytes);
    }
    ASSERT_TRUE(db->Write({}, &more).ok());
  }
  auto store = open_store(dir);
  ASSERT_TRUE(store);
  EXPECT_EQ(all_of(*store), (contents{model.begin(), model.end()}));
  for (auto i = model.begin(); i != model.end(); std::advance(i, 97)) {
    auto got = store->get(i->first);
    ASSERT_TRUE(got) << describe(got.error());
    EXPECT_EQ(*got, i->second);
    if (std::distance(i, model.end()) <= 97)
      break;
  }
}

TEST(state_store, sequential_keys_share_pages_and_an_emptied_page_is_deleted) {
  test::temp_dir tmp;
  auto store = open_configured(tmp.path() / "state");
  ASSERT_TRUE(store);
  auto state_records = [&] {
    std::vector<std::pair<std::string, std::string>> result;
    EXPECT_FALSE(store->for_each_record(
      [&](std::string_view k, std::string_view v) {
        if (k.starts_with("s"))
          result.emplace_back(k.substr(1), v);
      }));
    return result;
  };
  auto keys_of_page = [&](const std::string& page_key,
                          const std::string& bytes) {
    page_image image;
    EXPECT_EQ(image.decode(page_key, bytes, page_keys), "");
    std::vector<std::uint64_t> result;
    image.for_each([&](std::size_t slot, std::string_view v) {
      key k;
      key_in_page(page_key, slot, k);
      EXPECT_EQ(v, value_from_u64(u64_from_bytes(k) * 3));
      result.push_back(u64_from_bytes(k));
    });
    return result;
  };
  auto range = [](std::uint64_t from, std::uint64_t to) {
    std::vector<std::uint64_t> result;
    for (auto i = from; i <= to; ++i)
      result.push_back(i);
    return result;
  };
  checkpoint_batch inserts;
  inserts.height = 1;
  for (std::uint64_t i = 1; i <= 200; ++i)
    inserts.put(key_from_u64(i), value_from_u64(i * 3));
  ASSERT_FALSE(store->write_checkpoint(inserts));
  // Keys 1..200: four pages, keyed by their first key's page key.
  auto records = state_records();
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[0].first, key_from_u64(0));
  EXPECT_EQ(keys_of_page(records[0].first, records[0].second), range(1, 63));
  EXPECT_EQ(records[1].first, key_from_u64(64));
  EXPECT_EQ(keys_of_page(records[1].first, records[1].second), range(64, 127));
  EXPECT_EQ(records[2].first, key_from_u64(128));
  EXPECT_EQ(keys_of_page(records[2].first, records[2].second),
            range(128, 191));
  EXPECT_EQ(records[3].first, key_from_u64(192));
  EXPECT_EQ(keys_of_page(records[3].first, records[3].second),
            range(192, 200));
  // Deleting all of page 64 removes its record; deleting key 1 and adding
  // key 201 rewrites pages 0 and 192.
  checkpoint_batch deletes;
  deletes.height = 2;
  for (std::uint64_t i = 64; i <= 127; ++i)
    deletes.put(key_from_u64(i), "");
  deletes.put(key_from_u64(1), "");
  deletes.put(key_from_u64(201), value_from_u64(603));
  ASSERT_FALSE(store->write_checkpoint(deletes));
  records = state_records();
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(keys_of_page(records[0].first, records[0].second), range(2, 63));
  EXPECT_EQ(records[1].first, key_from_u64(128));
  EXPECT_EQ(records[2].first, key_from_u64(192));
  EXPECT_EQ(keys_of_page(records[2].first, records[2].second),
            range(192, 201));
  auto got = store->get(key_from_u64(100));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, "");
  got = store->get(key_from_u64(201));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, value_from_u64(603));
  EXPECT_EQ(all_of(*store).size(), 62u + 64u + 10u);
}

TEST(state_store, get_many_reads_keys_in_any_order_as_get_does) {
  test::temp_dir tmp;
  auto store = open_configured(tmp.path() / "state");
  ASSERT_TRUE(store);
  checkpoint_batch batch;
  batch.height = 1;
  std::vector<std::uint64_t> stored_keys;
  for (std::uint64_t i = 1; i <= 100; ++i)
    stored_keys.push_back(i);
  for (std::uint64_t i : std::initializer_list<std::uint64_t>{
         1000, 5000, 5005, std::uint64_t{1} << 40, ~std::uint64_t{0}})
    stored_keys.push_back(i);
  for (auto i : stored_keys)
    batch.put(key_from_u64(i), value_from_u64(i * 3 + 1));
  ASSERT_FALSE(store->write_checkpoint(batch));
  std::vector<key> wanted;
  for (std::uint64_t i = 0; i <= 200; ++i)
    wanted.push_back(key_from_u64(i));
  for (std::uint64_t i = 990; i <= 1010; ++i)
    wanted.push_back(key_from_u64(i));
  for (std::uint64_t i = 4990; i <= 5020; ++i)
    wanted.push_back(key_from_u64(i));
  for (std::uint64_t i : std::initializer_list<std::uint64_t>{
         std::uint64_t{1} << 40, (std::uint64_t{1} << 40) + 1,
         ~std::uint64_t{0}, ~std::uint64_t{0} - 1, 7})
    wanted.push_back(key_from_u64(i));
  std::mt19937_64 rng{5};
  std::shuffle(wanted.begin(), wanted.end(), rng);
  std::vector<std::string_view> views{wanted.begin(), wanted.end()};
  auto got = store->get_many(views);
  ASSERT_TRUE(got) << describe(got.error());
  ASSERT_EQ(got->size(), wanted.size());
  std::size_t present = 0;
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    auto one = store->get(wanted[i]);
    ASSERT_TRUE(one);
    EXPECT_EQ((*got)[i], *one) << "key " << u64_from_bytes(wanted[i]);
    present += !one->empty();
  }
  // 1..100, 1000, 5000, 5005, 2^40, 2^64-1, and 7 twice.
  EXPECT_EQ(present, 100u + 5u + 1u);
  auto none = store->get_many({});
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
}

TEST(state_store, a_malformed_page_is_state_corrupt_and_changes_nothing) {
  test::temp_dir tmp;
  auto dir = tmp.path() / "state";
  {
    auto store = open_configured(dir);
    ASSERT_TRUE(store);
    checkpoint_batch batch;
    batch.height = 4;
    batch.put(key_from_u64(1), "one");
    batch.put(key_from_u64(65), "sixty-five");
    ASSERT_FALSE(store->write_checkpoint(batch));
  }
  // Page 64 (key 65's) damaged: a slot number above 63.
  put_raw(dir, "s" + key_from_u64(64), std::string{"\x41\x01x", 3});
  auto store = open_store(dir);
  ASSERT_TRUE(store);
  auto expected = "the state page 4000000000000000 in the state database at "
                  + dir.string()
                  + " is malformed: entry at byte 0: slot 65 is outside "
                    "0..63; restore the data directory from a backup or "
                    "rebuild it";
  auto got = store->get(key_from_u64(65));
  ASSERT_FALSE(got);
  EXPECT_EQ(code_of(got.error()), ec::state_corrupt);
  EXPECT_EQ(message_of(got.error()), expected);
  auto err = store->for_each([](const key&, const value&) {});
  EXPECT_EQ(code_of(err), ec::state_corrupt);
  EXPECT_EQ(message_of(err), expected);
  auto k1 = key_from_u64(1);
  auto k65 = key_from_u64(65);
  auto many = store->get_many({k65, k1});
  ASSERT_FALSE(many);
  EXPECT_EQ(code_of(many.error()), ec::state_corrupt);
  EXPECT_EQ(message_of(many.error()), expected);
  // A checkpoint that would rewrite the page is refused whole.
  checkpoint_batch batch;
  batch.height = 5;
  batch.put(key_from_u64(1), "changed");
  batch.put(key_from_u64(66), "x");
  err = store->write_checkpoint(batch);
  EXPECT_EQ(code_of(err), ec::state_corrupt);
  EXPECT_EQ(message_of(err), expected);
  auto meta = store->read_metadata();
  ASSERT_TRUE(meta && *meta);
  EXPECT_EQ((*meta)->checkpoint, std::optional<block_id>{4});
  // Other pages read as before.
  got = store->get(key_from_u64(1));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, "one");
}

TEST(state_store, a_checkpoint_writing_every_slot_of_a_page_does_not_read_it) {
  // A page all of whose slots a checkpoint writes is written without being
  // read: a malformed page there is replaced, not reported. With one key
  // per page that is every write.
  for (std::size_t keys : {std::size_t{64}, std::size_t{1}}) {
    SCOPED_TRACE("page_keys " + std::to_string(keys));
    test::temp_dir tmp;
    auto dir = tmp.path() / "state";
    {
      auto store = open_store(dir);
      ASSERT_TRUE(store);
      auto meta = sample_config();
      meta.page_keys = keys;
      ASSERT_FALSE(store->write_config(meta));
    }
    put_raw(dir, "s" + key_from_u64(128), std::string{"\x41\x01x", 3});
    auto store = open_store(dir);
    ASSERT_TRUE(store);
    checkpoint_batch batch;
    batch.height = 1;
    for (std::uint64_t i = 128; i < 128 + keys; ++i)
      batch.put(key_from_u64(i), value_from_u64(i));
    ASSERT_FALSE(store->write_checkpoint(batch));
    contents want;
    for (std::uint64_t i = 128; i < 128 + keys; ++i)
      want.emplace_back(key_from_u64(i), value_from_u64(i));
    EXPECT_EQ(all_of(*store), want);
  }
}

TEST(state_store, the_stored_page_size_wins_over_the_option) {
  test::temp_dir tmp;
  auto dir = tmp.path() / "state";
  {
    auto store = open_store(dir);
    ASSERT_TRUE(store);
    auto meta = sample_config();
    meta.page_keys = 4;
    ASSERT_FALSE(store->write_config(meta));
    checkpoint_batch batch;
    batch.height = 1;
    for (std::uint64_t i = 0; i < 10; ++i)
      batch.put(key_from_u64(i), value_from_u64(i));
    ASSERT_FALSE(store->write_checkpoint(batch));
  }
  auto opts = options_for(dir);
  opts.page_keys = 64;
  auto store = state_store::open(opts);
  ASSERT_TRUE(store) << describe(store.error());
  auto meta = (*store)->read_metadata();
  ASSERT_TRUE(meta && *meta);
  EXPECT_EQ((*meta)->page_keys, 4u);
  // Keys 0..9 in pages 0, 4 and 8.
  std::vector<std::string> pages;
  ASSERT_FALSE((*store)->for_each_record(
    [&](std::string_view k, std::string_view) {
      if (k.starts_with("s"))
        pages.emplace_back(k.substr(1));
    }));
  EXPECT_EQ(pages, (std::vector<std::string>{key_from_u64(0), key_from_u64(4),
                                             key_from_u64(8)}));
  EXPECT_EQ(all_of(**store).size(), 10u);
  auto got = (*store)->get(key_from_u64(6));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, value_from_u64(6));
  // Not a page size: refused before anything is written.
  auto bad = sample_config();
  bad.page_keys = 3;
  auto err = (*store)->write_config(bad);
  EXPECT_EQ(code_of(err), ec::invalid_argument);
  EXPECT_EQ(message_of(err),
            "page size 3 is not a power of two from 1 to 64");
}

TEST(state_store, a_malformed_page_size_record_fails_the_open) {
  test::temp_dir tmp;
  auto dir = tmp.path() / "state";
  put_raw(dir, "m/page_keys", value_from_u64(48));
  auto store = state_store::open(options_for(dir));
  ASSERT_FALSE(store);
  EXPECT_EQ(code_of(store.error()), ec::state_corrupt);
  EXPECT_EQ(message_of(store.error()),
            "metadata record 'm/page_keys' in the state database at "
              + dir.string()
              + " is malformed: page size 48 is not a power of two from 1 to "
                "64; restore the data directory from a backup or rebuild it");
}

TEST(state_store, a_bytewise_ordered_directory_is_refused_unchanged) {
  // Format version 1 kept its keys in LevelDB's bytewise order (LevelDB
  // records the comparator's name): the store refuses such a directory
  // with format_version_mismatch and leaves it as it was.
  test::temp_dir tmp;
  auto dir = tmp.path() / "state";
  auto write_or_read = [&](bool write) {
    leveldb::Options opts; // leveldb::BytewiseComparator()
    opts.create_if_missing = write;
    leveldb::DB* raw = nullptr;
    auto st = leveldb::DB::Open(opts, dir.string(), &raw);
    ASSERT_TRUE(st.ok()) << st.ToString();
    std::unique_ptr<leveldb::DB> db{raw};
    if (write) {
      leveldb::WriteBatch batch;
      batch.Put("m/format_version", value_from_u64(1));
      batch.Put("s" + key_from_u64(256), "a");
      batch.Put("s" + key_from_u64(1), "b");
      leveldb::WriteOptions wo;
      wo.sync = true;
      ASSERT_TRUE(db->Write(wo, &batch).ok());
      return;
    }
    std::string got;
    ASSERT_TRUE(db->Get({}, "s" + key_from_u64(256), &got).ok());
    EXPECT_EQ(got, "a");
    std::unique_ptr<leveldb::Iterator> it{db->NewIterator({})};
    std::vector<std::string> keys;
    for (it->SeekToFirst(); it->Valid(); it->Next())
      keys.push_back(it->key().ToString());
    // Bytewise: 256 (00 01 ...) before 1 (01 00 ...).
    EXPECT_EQ(keys, (std::vector<std::string>{"m/format_version",
                                              "s" + key_from_u64(256),
                                              "s" + key_from_u64(1)}));
  };
  write_or_read(true);
  auto store = state_store::open(options_for(dir));
  ASSERT_FALSE(store);
  EXPECT_EQ(code_of(store.error()), ec::format_version_mismatch);
  auto msg = describe(store.error());
  EXPECT_NE(msg.find("leveldb.BytewiseComparator"), std::string::npos) << msg;
  EXPECT_NE(msg.find("reads version " + std::to_string(format_version)),
            std::string::npos)
    << msg;
  EXPECT_EQ(format_version, 3u);
  write_or_read(false);
}

TEST(state_store, a_checkpoint_taken_by_rvalue_releases_its_writes) {
  // Persistence hands over its batches: their writes (32 bytes each) are
  // released once LevelDB's WriteBatch holds them; what was written stays.
  test::temp_dir tmp;
  auto store = open_configured(tmp.path() / "state");
  ASSERT_TRUE(store);
  checkpoint_batch batch;
  batch.height = 3;
  contents expected;
  for (std::uint64_t i = 1; i <= 1000; ++i) {
    batch.put(key_from_u64(i), value_from_u64(i * 3));
    expected.emplace_back(key_from_u64(i), value_from_u64(i * 3));
  }
  ASSERT_FALSE(store->write_checkpoint(std::move(batch)));
  EXPECT_EQ(batch.writes.size(), 0u); // released, as documented
  EXPECT_EQ(batch.writes.capacity(), 0u);
  EXPECT_EQ(all_of(*store), expected);
  auto meta = store->read_metadata();
  ASSERT_TRUE(meta && meta->has_value());
  EXPECT_EQ((*meta)->checkpoint, block_id{3});
}

TEST(state_store, checkpoint_height_revert_marker_and_pruned_through) {
  test::temp_dir tmp;
  auto store = open_store(tmp.path() / "state");
  ASSERT_TRUE(store);
  auto expected = sample_config();
  ASSERT_FALSE(store->write_config(expected));
  auto check = [&](int line) {
    auto got = store->read_metadata();
    ASSERT_TRUE(got) << describe(got.error());
    ASSERT_TRUE(got->has_value());
    EXPECT_EQ(**got, expected) << "checked at line " << line;
  };
  check(__LINE__);
  checkpoint_batch batch;
  batch.height = 7;
  ASSERT_FALSE(store->write_checkpoint(batch));
  expected.checkpoint = 7;
  check(__LINE__);
  batch.height = 5;
  batch.revert_marker = 5;
  ASSERT_FALSE(store->write_checkpoint(batch));
  expected.checkpoint = 5;
  expected.revert_marker = 5;
  expected.reverted_to = 5;
  check(__LINE__);
  ASSERT_FALSE(store->write_pruned_through(3));
  expected.pruned_through = 3;
  check(__LINE__);
  ASSERT_FALSE(store->clear_revert_marker());
  expected.revert_marker = std::nullopt;
  check(__LINE__); // The checkpoint still came from the revert.
  // Clearing an absent marker is fine too.
  ASSERT_FALSE(store->clear_revert_marker());
  check(__LINE__);
  // Height 0 (genesis) is a height like any other.
  batch.height = 0;
  batch.revert_marker = 0;
  ASSERT_FALSE(store->write_checkpoint(batch));
  expected.checkpoint = 0;
  expected.revert_marker = 0;
  expected.reverted_to = 0;
  check(__LINE__);
  // Rewriting the configuration keeps the heights.
  expected.min_rollback_window = 42;
  expected.durability = durability_mode::synchronous();
  ASSERT_FALSE(store->write_config(expected));
  check(__LINE__);
  // A regular checkpoint is a journaled block again: reverted_to goes.
  ASSERT_FALSE(store->clear_revert_marker());
  checkpoint_batch regular;
  regular.height = 9;
  ASSERT_FALSE(store->write_checkpoint(regular));
  expected.checkpoint = 9;
  expected.revert_marker = std::nullopt;
  expected.reverted_to = std::nullopt;
  check(__LINE__);
}

TEST(state_store, reopen_persists_everything) {
  test::temp_dir tmp;
  auto dir = tmp.path() / "state";
  auto expected_meta = sample_config();
  expected_meta.key_width = 16;
  expected_meta.checkpoint = 1234;
  expected_meta.revert_marker = 1200;
  expected_meta.reverted_to = 1200;
  expected_meta.pruned_through = 1000;
  contents expected;
  for (std::uint64_t i = 0; i < 1000; ++i)
    expected.emplace_back(key_from_u64(i, 16), value_from_u64(i * i));
  // Already in key order: the numbers are little endian.
  {
    auto store = open_store(dir);
    ASSERT_TRUE(store);
    ASSERT_FALSE(store->write_config(expected_meta));
    checkpoint_batch batch;
    batch.height = 1234;
    batch.revert_marker = 1200;
    put_all(batch, expected);
    batch.put(key_from_u64(5000, 16), {});
    ASSERT_FALSE(store->write_checkpoint(batch));
    ASSERT_FALSE(store->write_pruned_through(1000));
  }
  auto store = open_store(dir);
  ASSERT_TRUE(store);
  auto meta = store->read_metadata();
  ASSERT_TRUE(meta) << describe(meta.error());
  ASSERT_TRUE(meta->has_value());
  EXPECT_EQ(**meta, expected_meta);
  EXPECT_EQ(all_of(*store), expected);
  auto v = store->get(key_from_u64(999, 16));
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, value_from_u64(999 * 999));
  EXPECT_GT(store->size_bytes(), 0u);
}

TEST(state_store, format_version_mismatch) {
  test::temp_dir tmp;
  auto dir = tmp.path() / "state";
  {
    auto store = open_configured(dir);
    ASSERT_TRUE(store);
  }
  put_raw(dir, "m/format_version", value_from_u64(999));
  auto store = open_store(dir);
  ASSERT_TRUE(store);
  auto meta = store->read_metadata();
  ASSERT_FALSE(meta);
  EXPECT_EQ(code_of(meta.error()), ec::format_version_mismatch);
  auto msg = message_of(meta.error());
  EXPECT_NE(msg.find("format version 999"), std::string::npos) << msg;
  EXPECT_NE(msg.find("reads version " + std::to_string(format_version)),
            std::string::npos)
    << msg;
}

TEST(state_store, format_version_mismatch_without_other_records) {
  test::temp_dir tmp;
  auto dir = tmp.path() / "state";
  put_raw(dir, "m/format_version", value_from_u64(999));
  auto store = open_store(dir);
  ASSERT_TRUE(store);
  auto meta = store->read_metadata();
  ASSERT_FALSE(meta);
  EXPECT_EQ(code_of(meta.error()), ec::format_version_mismatch);
  EXPECT_NE(message_of(meta.error()).find("999"), std::string::npos);
}

TEST(state_store, malformed_metadata_record_is_state_corrupt) {
  struct damage {
    std::string record;
    std::string bytes;
  };
  std::vector<damage> cases{
    {"m/format_version", std::string("\1\0\0", 3)},
    {"m/key_width", "abc"},
    {"m/key_width", value_from_u64(0)},
    {"m/key_width", value_from_u64(65)},
    {"m/durability", "sometimes"},
    {"m/durability", "sync-relaxed:0"},
    {"m/min_rollback_window", std::string(9, '\1')},
    {"m/checkpoint", "abc"},
    {"m/pruned_through", ""},
    {"m/revert_marker", std::string(16, '\0')},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.record + " = '" + c.bytes + "'");
    test::temp_dir tmp;
    auto dir = tmp.path() / "state";
    {
      auto store = open_configured(dir);
      ASSERT_TRUE(store);
      checkpoint_batch batch;
      batch.height = 3;
      ASSERT_FALSE(store->write_checkpoint(batch));
    }
    put_raw(dir, c.record, c.bytes);
    auto store = open_store(dir);
    ASSERT_TRUE(store);
    auto meta = store->read_metadata();
    ASSERT_FALSE(meta);
    EXPECT_EQ(code_of(meta.error()), ec::state_corrupt);
    auto msg = message_of(meta.error());
    EXPECT_NE(msg.find("'" + c.record + "'"), std::string::npos) << msg;
  }
}

TEST(state_store, missing_config_record_is_state_corrupt) {
  test::temp_dir tmp;
  auto dir = tmp.path() / "state";
  put_raw(dir, "m/format_version", value_from_u64(format_version));
  auto store = open_store(dir);
  ASSERT_TRUE(store);
  auto meta = store->read_metadata();
  ASSERT_FALSE(meta);
  EXPECT_EQ(code_of(meta.error()), ec::state_corrupt);
  EXPECT_NE(message_of(meta.error()).find("m/key_width"), std::string::npos);
}

TEST(state_store, open_on_a_file_is_io_error) {
  test::temp_dir tmp;
  auto file = tmp.path() / "state";
  { std::ofstream out{file}; }
  auto store = state_store::open(options_for(file));
  ASSERT_FALSE(store);
  EXPECT_EQ(code_of(store.error()), ec::io_error);
  EXPECT_NE(message_of(store.error()).find(file.string()), std::string::npos);
}

TEST(state_store, open_with_a_damaged_current_file_is_state_corrupt) {
  test::temp_dir tmp;
  auto dir = tmp.path() / "state";
  {
    auto store = open_configured(dir);
    ASSERT_TRUE(store);
  }
  {
    std::ofstream out{dir / "CURRENT", std::ios::trunc};
    out << "MANIFEST-garbage"; // no newline: LevelDB reports corruption
  }
  auto store = state_store::open(options_for(dir));
  ASSERT_FALSE(store);
  EXPECT_EQ(code_of(store.error()), ec::state_corrupt);
  EXPECT_NE(message_of(store.error()).find(dir.string()), std::string::npos);
}

TEST(state_store, second_open_of_the_same_database_fails) {
  test::temp_dir tmp;
  auto dir = tmp.path() / "state";
  auto first = open_store(dir);
  ASSERT_TRUE(first);
  auto second = state_store::open(options_for(dir));
  ASSERT_FALSE(second);
  EXPECT_EQ(code_of(second.error()), ec::io_error);
  EXPECT_NE(message_of(second.error()).find(dir.string()), std::string::npos);
}

// A checkpoint is all or nothing across a real crash: a child process writes
// checkpoints in a loop (batch i sets every key to crash_value(i) and the
// checkpoint to i) and is SIGKILLed after a random few milliseconds.
TEST(state_store, checkpoint_is_atomic_across_sigkill) {
  std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<int> delay_ms{1, 40};
  constexpr int rounds = 12;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    test::temp_dir tmp;
    auto dir = tmp.path() / "state";
    auto ready = std::filesystem::path{dir.string() + ".ready"};
    auto pid = test::spawn_self(writer_env, dir.string());
    ASSERT_GT(pid, 0) << "posix_spawn failed";
    // Wait until the child has written its first checkpoint.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{60};
    bool child_died = false;
    while (!std::filesystem::exists(ready)) {
      if (::waitpid(pid, nullptr, WNOHANG) == pid) {
        child_died = true;
        break;
      }
      if (std::chrono::steady_clock::now() > deadline)
        break;
      std::this_thread::sleep_for(std::chrono::microseconds{200});
    }
    if (!child_died && !std::filesystem::exists(ready)) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      FAIL() << "the writer never wrote its first checkpoint";
    }
    ASSERT_FALSE(child_died) << "the writer exited on its own";
    auto delay = delay_ms(rng);
    std::this_thread::sleep_for(std::chrono::milliseconds{delay});
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the writer failed before the kill (status " << status << ")";
    // Reopen: the state is exactly that of the checkpoint height.
    auto store = open_store(dir);
    ASSERT_TRUE(store);
    auto meta = store->read_metadata();
    ASSERT_TRUE(meta) << describe(meta.error());
    ASSERT_TRUE(meta->has_value());
    ASSERT_TRUE((*meta)->checkpoint.has_value());
    auto height = *(*meta)->checkpoint;
    ASSERT_GE(height, block_id{1});
    auto want = crash_value(height);
    std::uint64_t count = 0;
    std::uint64_t wrong = 0;
    auto err = store->for_each([&](const key&, const value& v) {
      ++count;
      if (v != want)
        ++wrong;
    });
    ASSERT_FALSE(err) << describe(err);
    EXPECT_EQ(count, crash_keys);
    EXPECT_EQ(wrong, 0u) << "keys not at checkpoint " << height;
    for (std::uint64_t k = 0; k < crash_keys; ++k) {
      auto v = store->get(key_from_u64(k));
      ASSERT_TRUE(v) << describe(v.error());
      ASSERT_EQ(*v, want) << "key " << k << " at checkpoint " << height;
    }
    std::cout << "[          ] round " << round << ": killed after " << delay
              << " ms at checkpoint " << height << "\n";
  }
}

// Helper mode, started by CheckpointIsAtomicAcrossSigkill: when the
// environment names a directory, this binary writes checkpoints 1, 2, 3, ...
// into it until killed, before main() (and gtest) ever run. It is selected
// during static initialization so that it is no test case of its own.
namespace {

[[noreturn]] void run_crash_writer(const std::string& dir) {
  auto opts = options_for(dir);
  // A small write buffer, so that kills also hit memtable flushes and
  // compactions.
  opts.write_buffer_bytes = 128 << 10;
  auto store = state_store::open(opts);
  if (!store)
    std::_Exit(2);
  if ((*store)->write_config(sample_config()))
    std::_Exit(3);
  for (block_id i = 1;; ++i) {
    checkpoint_batch batch;
    batch.height = i;
    batch.writes.reserve(crash_keys);
    for (std::uint64_t k = 0; k < crash_keys; ++k)
      batch.put(key_from_u64(k), crash_value(i));
    if ((*store)->write_checkpoint(batch))
      std::_Exit(4);
    if (i == 1) {
      auto fd = ::open((dir + ".ready").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC,
                       0644);
      if (fd < 0)
        std::_Exit(5);
      ::close(fd);
    }
  }
}

const bool crash_writer_mode = [] {
  if (auto dir = std::getenv(writer_env))
    run_crash_writer(dir);
  return false;
}();

} // namespace

TEST(state_store, read_only_opening_creates_nothing_and_refuses_writes) {
  test::temp_dir tmp;
  state_store::options ro;
  ro.dir = tmp.path() / "missing";
  ro.read_only = true;
  auto missing = state_store::open(ro);
  ASSERT_FALSE(missing);
  EXPECT_FALSE(std::filesystem::exists(ro.dir));
  {
    auto store = open_configured(tmp.path() / "state");
    ASSERT_TRUE(store);
    checkpoint_batch batch;
    batch.height = 3;
    batch.put(key_from_u64(1), "one");
    ASSERT_FALSE(store->write_checkpoint(batch));
  }
  ro.dir = tmp.path() / "state";
  auto log = tmp.path() / "state" / "LOG";
  auto log_size = std::filesystem::file_size(log);
  auto store = state_store::open(ro);
  ASSERT_TRUE(store) << describe(store.error());
  auto meta = (*store)->read_metadata();
  ASSERT_TRUE(meta);
  ASSERT_TRUE(*meta);
  EXPECT_EQ((*meta)->checkpoint, std::optional<block_id>{3});
  auto err = (*store)->write_config(sample_config());
  EXPECT_EQ(code_of(err), ec::invalid_argument);
  EXPECT_NE(message_of(err).find("opened read-only"), std::string::npos);
  EXPECT_EQ(code_of((*store)->clear_revert_marker()), ec::invalid_argument);
  std::vector<std::pair<std::string, std::string>> records;
  ASSERT_FALSE((*store)->for_each_record(
    [&](std::string_view k, std::string_view v) {
      records.emplace_back(k, v);
    }));
  // Metadata records ("m/...") and the one state page: "s" + the page key
  // (key 1 with its slot bits zero), holding slot 1, size 3, "one".
  using record = std::pair<std::string, std::string>;
  EXPECT_EQ(records.back(), (record{"s" + key_from_u64(0), "\x01\x03one"}));
  EXPECT_EQ(records.front().first, "m/checkpoint");
  // LevelDB's own log is left alone.
  EXPECT_EQ(std::filesystem::file_size(log), log_size);
}

// -- injected LevelDB faults (a fault_env) ---------------------------------------

namespace {

std::unique_ptr<state_store> open_with(const std::filesystem::path& dir,
                                       leveldb::Env* env) {
  state_store::options o;
  o.dir = dir;
  o.cache_bytes = 1 << 20;
  o.write_buffer_bytes = 1 << 20;
  o.env = env;
  auto store = state_store::open(o);
  EXPECT_TRUE(store) << describe(store.error());
  return store ? std::move(*store) : nullptr;
}

checkpoint_batch batch_at(block_id h) {
  checkpoint_batch b;
  b.height = h;
  for (std::uint64_t i = 0; i < 50; ++i)
    b.put(key_from_u64(i), value_from_u64(h * 100 + i));
  return b;
}

} // namespace

TEST(state_store, enospc_on_a_checkpoint_is_io_error_and_keeps_the_old_one) {
  test::temp_dir tmp;
  auto dir = tmp.path() / "state";
  rollblock::test::fault_env env;
  {
    auto store = open_with(dir, &env);
    ASSERT_TRUE(store);
    ASSERT_FALSE(store->write_config(sample_config()));
    ASSERT_FALSE(store->write_checkpoint(batch_at(1)));
    // The disk fills 30 bytes into the next log record.
    env.schedule().fail_writes_after(30);
    auto err = store->write_checkpoint(batch_at(2));
    EXPECT_EQ(code_of(err), ec::io_error) << describe(err);
    EXPECT_NE(message_of(err).find("writing checkpoint 2 failed for the state "
                                   "database at "
                                   + dir.string()),
              std::string::npos)
      << message_of(err);
    EXPECT_NE(message_of(err).find("No space left on device"),
              std::string::npos)
      << message_of(err);
  }
  // The torn log record is dropped at open (paranoid checks pass: it is the
  // log's tail); checkpoint 1 is intact.
  auto store = open_with(dir, nullptr);
  ASSERT_TRUE(store);
  auto meta = store->read_metadata();
  ASSERT_TRUE(meta && *meta) << describe(meta.error());
  EXPECT_EQ((*meta)->checkpoint, block_id{1});
  EXPECT_EQ(*store->get(key_from_u64(7)), value_from_u64(107));
}

TEST(state_store, eio_on_the_log_sync_is_io_error_and_leveldb_refuses_more) {
  test::temp_dir tmp;
  auto dir = tmp.path() / "state";
  rollblock::test::fault_env env;
  auto store = open_with(dir, &env);
  ASSERT_TRUE(store);
  ASSERT_FALSE(store->write_config(sample_config()));
  env.schedule().fail_at(rollblock::test::fault_op::sync, 1, EIO);
  auto err = store->write_checkpoint(batch_at(1));
  EXPECT_EQ(code_of(err), ec::io_error) << describe(err);
  EXPECT_NE(message_of(err).find("Input/output error"), std::string::npos)
    << message_of(err);
  // LevelDB itself fails every later write after a failed log sync.
  env.schedule().heal();
  EXPECT_EQ(code_of(store->write_checkpoint(batch_at(2))), ec::io_error);
}
