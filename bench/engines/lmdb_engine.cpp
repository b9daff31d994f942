// The original's baseline: plain LMDB, one write transaction per block, put
// and delete, no undo (so no revert), MDB_NOSYNC | MDB_WRITEMAP |
// MDB_MAPASYNC. Keys and values are the same bytes the other engines get.

#include "engines/engine.hpp"

#include <lmdb.h>

#include <filesystem>

namespace rollblock::bench {

namespace {

void check(int rc, const char* what) {
  if (rc != MDB_SUCCESS)
    throw engine_error(std::string{"lmdb "} + what + ": " + mdb_strerror(rc));
}

class lmdb_engine final : public engine {
public:
  explicit lmdb_engine(std::string dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    reopen();
  }

  ~lmdb_engine() override {
    if (env_ != nullptr)
      close();
  }

  void apply(block_id, operation_list ops) override {
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &txn), "txn_begin");
    for (auto& op : ops) {
      MDB_val k{op.k.size(), op.k.data()};
      int rc;
      if (op.v.empty()) {
        rc = mdb_del(txn, dbi_, &k, nullptr);
        if (rc == MDB_NOTFOUND)
          rc = MDB_SUCCESS;
      } else {
        MDB_val v{op.v.size(), op.v.data()};
        rc = mdb_put(txn, dbi_, &k, &v, 0);
      }
      if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        check(rc, "put/del");
      }
    }
    check(mdb_txn_commit(txn), "txn_commit");
  }

  void flush() override {
    check(mdb_env_sync(env_, 1), "env_sync");
  }

  bool can_revert() const override {
    return false;
  }

  void revert_to(block_id) override {
    throw engine_error("lmdb keeps no undo records: it cannot revert");
  }

  void close() override {
    flush();
    mdb_dbi_close(env_, dbi_);
    mdb_env_close(env_);
    env_ = nullptr;
  }

  void reopen() override {
    check(mdb_env_create(&env_), "env_create");
    check(mdb_env_set_mapsize(env_, std::size_t{64} << 30), "set_mapsize");
    check(mdb_env_open(env_, dir_.c_str(),
                       MDB_NOSYNC | MDB_WRITEMAP | MDB_MAPASYNC, 0644),
          "env_open");
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &txn), "txn_begin");
    check(mdb_dbi_open(txn, nullptr, 0, &dbi_), "dbi_open");
    check(mdb_txn_commit(txn), "txn_commit");
  }

  std::uint64_t live_keys() override {
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn), "txn_begin");
    MDB_stat st{};
    int rc = mdb_stat(txn, dbi_, &st);
    mdb_txn_abort(txn);
    check(rc, "stat");
    return st.ms_entries;
  }

  value get(const key& k) override {
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn), "txn_begin");
    MDB_val mk{k.size(), const_cast<char*>(k.data())};
    MDB_val mv{};
    int rc = mdb_get(txn, dbi_, &mk, &mv);
    value out;
    if (rc == MDB_SUCCESS)
      out.assign(static_cast<const char*>(mv.mv_data), mv.mv_size);
    mdb_txn_abort(txn);
    if (rc != MDB_NOTFOUND)
      check(rc, "get");
    return out;
  }

private:
  std::string dir_;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
};

} // namespace

std::unique_ptr<engine> make_lmdb_engine(const std::string& dir) {
  return std::make_unique<lmdb_engine>(dir);
}

} // namespace rollblock::bench
