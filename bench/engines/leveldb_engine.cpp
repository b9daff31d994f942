// The naive design: LevelDB as the only store, one WriteBatch per block that
// writes the block's changes AND its undo record (the previous value of every
// key it touches, read with a Get before the write) beside the state. Reverts
// read the undo records back. Writes use sync=false (as LMDB's NOSYNC); flush,
// close and revert end with a synced write.
//
// Layout: 's' + key -> value; 'u' + height (8 bytes big-endian) -> undo
// record ([u8 key length][key][u32 value length][value] per key, length 0 =
// absent); 'm' -> applied height. Undo records older than the window are
// deleted in the batch of the block that makes them too old.

#include "engines/engine.hpp"

#include <leveldb/cache.h>
#include <leveldb/db.h>
#include <leveldb/filter_policy.h>
#include <leveldb/write_batch.h>

#include <cstring>
#include <unordered_set>

namespace rollblock::bench {

namespace {

std::string be64(std::uint64_t x) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, x >>= 8)
    out[static_cast<std::size_t>(i)] = static_cast<char>(x & 0xff);
  return out;
}

/// 'u' + height big-endian (built by hand: GCC 12 warns falsely on
/// "u" + std::string under -O3).
std::string undo_key(std::uint64_t h) {
  std::string out(9, 'u');
  for (int i = 8; i >= 1; --i, h >>= 8)
    out[static_cast<std::size_t>(i)] = static_cast<char>(h & 0xff);
  return out;
}

std::string state_key(std::string_view k) {
  std::string out;
  out.reserve(1 + k.size());
  out.push_back('s');
  out.append(k);
  return out;
}

std::uint64_t from_be64(std::string_view s) {
  std::uint64_t x = 0;
  for (unsigned char c : s.substr(0, 8))
    x = (x << 8) | c;
  return x;
}

void check(const leveldb::Status& st, const char* what) {
  if (!st.ok())
    throw engine_error(std::string{"leveldb "} + what + ": " + st.ToString());
}

class leveldb_engine final : public engine {
public:
  leveldb_engine(std::string dir, std::uint64_t window)
    : dir_(std::move(dir)), window_(window) {
    reopen();
  }

  ~leveldb_engine() override {
    if (db_ != nullptr)
      close();
  }

  void apply(block_id height, operation_list ops) override {
    leveldb::WriteBatch batch;
    std::string undo;
    std::unordered_set<std::string_view> seen;
    seen.reserve(ops.size());
    std::string skey(1 + key_width_max, 's');
    std::string before;
    for (auto& op : ops) {
      skey.resize(1);
      skey += op.k;
      if (seen.insert(op.k).second) {
        auto st = db_->Get(leveldb::ReadOptions{}, skey, &before);
        if (st.IsNotFound())
          before.clear();
        else
          check(st, "get");
        undo.push_back(static_cast<char>(op.k.size()));
        undo += op.k;
        auto n = static_cast<std::uint32_t>(before.size());
        char len[4];
        std::memcpy(len, &n, 4);
        undo.append(len, 4);
        undo += before;
      }
      if (op.v.empty())
        batch.Delete(skey);
      else
        batch.Put(skey, op.v);
    }
    batch.Put(undo_key(height), undo);
    if (height > window_)
      batch.Delete(undo_key(height - window_ - 1));
    batch.Put("m", be64(height));
    check(db_->Write(leveldb::WriteOptions{}, &batch), "write");
    height_ = height;
  }

  void flush() override {
    leveldb::WriteOptions wo;
    wo.sync = true;
    check(db_->Put(wo, "m", be64(height_)), "sync write");
  }

  bool can_revert() const override {
    return true;
  }

  void revert_to(block_id target) override {
    std::string undo;
    std::string skey;
    for (auto h = height_; h > target; --h) {
      auto st = db_->Get(leveldb::ReadOptions{}, undo_key(h), &undo);
      if (st.IsNotFound())
        throw engine_error("leveldb revert: no undo record for block " +
                           std::to_string(h) + " (beyond the window)");
      check(st, "get undo");
      leveldb::WriteBatch batch;
      std::string_view rest = undo;
      while (!rest.empty()) {
        auto klen = static_cast<unsigned char>(rest[0]);
        skey.assign(1, 's');
        skey.append(rest.substr(1, klen));
        std::uint32_t vlen = 0;
        std::memcpy(&vlen, rest.data() + 1 + klen, 4);
        auto v = rest.substr(1 + klen + 4, vlen);
        if (v.empty())
          batch.Delete(skey);
        else
          batch.Put(skey, leveldb::Slice{v.data(), v.size()});
        rest.remove_prefix(1 + klen + 4 + vlen);
      }
      batch.Delete(undo_key(h));
      batch.Put("m", be64(h - 1));
      check(db_->Write(leveldb::WriteOptions{}, &batch), "revert write");
    }
    height_ = target;
    flush();
  }

  void close() override {
    flush();
    delete db_;
    db_ = nullptr;
    delete cache_;
    cache_ = nullptr;
    delete filter_;
    filter_ = nullptr;
  }

  void reopen() override {
    cache_ = leveldb::NewLRUCache(64 << 20);
    filter_ = leveldb::NewBloomFilterPolicy(10);
    leveldb::Options opts;
    opts.create_if_missing = true;
    opts.write_buffer_size = 64 << 20;
    opts.block_cache = cache_;
    opts.filter_policy = filter_;
    check(leveldb::DB::Open(opts, dir_, &db_), "open");
    std::string h;
    auto st = db_->Get(leveldb::ReadOptions{}, "m", &h);
    if (st.IsNotFound())
      height_ = 0;
    else {
      check(st, "get height");
      height_ = from_be64(h);
    }
  }

  std::uint64_t live_keys() override {
    leveldb::ReadOptions ro;
    ro.fill_cache = false;
    std::unique_ptr<leveldb::Iterator> it{db_->NewIterator(ro)};
    std::uint64_t n = 0;
    for (it->Seek("s"); it->Valid() && it->key().starts_with("s"); it->Next())
      ++n;
    check(it->status(), "iterate");
    return n;
  }

  value get(const key& k) override {
    std::string out;
    auto st = db_->Get(leveldb::ReadOptions{}, state_key(k), &out);
    if (st.IsNotFound())
      return {};
    check(st, "get");
    return out;
  }

private:
  static constexpr std::size_t key_width_max = max_key_width;

  std::string dir_;
  std::uint64_t window_;
  block_id height_ = 0;
  leveldb::DB* db_ = nullptr;
  leveldb::Cache* cache_ = nullptr;
  const leveldb::FilterPolicy* filter_ = nullptr;
};

} // namespace

std::unique_ptr<engine> make_leveldb_engine(const std::string& dir,
                                            std::uint64_t undo_window) {
  return std::make_unique<leveldb_engine>(dir, undo_window);
}

} // namespace rollblock::bench
