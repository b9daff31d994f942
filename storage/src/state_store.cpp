// The LevelDB state store.
//
// Record layout (one LevelDB database, its keys compared by
// state_key_comparator below, named "rollblock.KeyOrder": metadata keys
// bytewise, state pages after them in key order, see key_order.hpp):
//
//   key                      value
//   -----------------------  ---------------------------------------------
//   "s" + <page key>         a page: the values of up to 64 keys at the
//                            checkpoint (encoding in state_page.hpp)
//   "m/format_version"       fixed64 (little endian) format of the records
//   "m/key_width"            fixed64                 key width in bytes
//   "m/page_keys"            fixed64                 keys per page: 1..64,
//                                                    a power of two
//   "m/durability"           to_string(durability_mode), e.g. "sync",
//                            "async-relaxed:1024:100"; read with
//                            parse_durability
//   "m/min_rollback_window"  fixed64                 blocks kept for reverts
//   "m/checkpoint"           fixed64                 height of the "s" state
//   "m/pruned_through"       fixed64                 newest pruned height
//   "m/revert_marker"        fixed64                 revert in progress
//   "m/reverted_to"          fixed64                 the checkpoint came from
//                                                    a revert to this height
//
// fixed64 is 8 bytes, least significant first (value_from_u64). A page key
// has the store's key width: a key with its slot bits zero (state_page.hpp);
// a page with no entry is never stored. All metadata keys sort before all
// state pages ('m' < 's'), so iterating the state is a scan of the "s"
// prefix.
//
// A checkpoint reads every page its writes touch, changes it and writes it
// back whole (or deletes it when it is left empty): pages are read only by
// their one writer (the persistence actor) and by readers, who see a page
// as of one checkpoint or the next, never between.
//
// A store without "m/format_version" is new: read_metadata returns nullopt.
// write_config writes the five configuration records in one synced batch;
// write_checkpoint writes the changed pages, "m/checkpoint" and, when set,
// "m/revert_marker" and "m/reverted_to" (or deletes "m/reverted_to") in one
// synced batch, so a checkpoint is all or nothing across crashes. The
// optional records (checkpoint, pruned_through, revert_marker, reverted_to)
// are absent until first written. A record of another format version
// (another "m/format_version") is refused with format_version_mismatch
// naming the version found and the one expected; a malformed page with
// state_corrupt naming it.

#include "rollblock/storage/state_store.hpp"

#include "rollblock/messages/error.hpp"
#include "rollblock/storage/key_order.hpp"
#include "rollblock/storage/state_page.hpp"

#include <leveldb/cache.h>
#include <leveldb/comparator.h>
#include <leveldb/db.h>
#include <leveldb/filter_policy.h>
#include <leveldb/env.h>
#include <leveldb/iterator.h>
#include <leveldb/options.h>
#include <leveldb/status.h>
#include <leveldb/table.h>
#include <leveldb/write_batch.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <algorithm>
#include <memory>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace rollblock::storage {

namespace {

constexpr char state_prefix = 's';

constexpr std::string_view format_version_key = "m/format_version";
constexpr std::string_view key_width_key = "m/key_width";
constexpr std::string_view page_keys_key = "m/page_keys";
constexpr std::string_view durability_key = "m/durability";
constexpr std::string_view min_rollback_window_key = "m/min_rollback_window";
constexpr std::string_view checkpoint_key = "m/checkpoint";
constexpr std::string_view pruned_through_key = "m/pruned_through";
constexpr std::string_view revert_marker_key = "m/revert_marker";
constexpr std::string_view reverted_to_key = "m/reverted_to";
constexpr std::string_view comparator_name = "rollblock.KeyOrder";

/// Orders the state database: metadata keys ("m/...") bytewise and before
/// the state keys ("s" + key), which follow in key order (compare_keys:
/// the first 8 bytes as one number, no memcmp call; LevelDB compares keys
/// millions of times per checkpoint and in every compaction). Keys are not
/// shortened in LevelDB's index blocks: a state key is at most 65 bytes.
class key_order_comparator final : public leveldb::Comparator {
public:
  int Compare(const leveldb::Slice& a, const leveldb::Slice& b) const override {
    if (a.size() > 8 && b.size() > 8 && a[0] == state_prefix
        && b[0] == state_prefix)
      return compare_keys({a.data() + 1, a.size() - 1},
                          {b.data() + 1, b.size() - 1});
    return a.compare(b);
  }

  const char* Name() const override {
    return comparator_name.data();
  }

  void FindShortestSeparator(std::string*,
                             const leveldb::Slice&) const override {
    // nop
  }

  void FindShortSuccessor(std::string*) const override {
    // nop
  }
};

const key_order_comparator state_key_order;

leveldb::Slice slice(std::string_view x) {
  return {x.data(), x.size()};
}

/// Writes the LevelDB key of the page holding `k` ("s" + page key) to `out`.
void page_record_key(std::string_view k, std::size_t page_keys,
                     std::string& out) {
  page_key_of(k, page_keys, out);
  out.insert(out.begin(), state_prefix);
}

std::string page_size_problem(std::uint64_t page_keys) {
  return "page size " + std::to_string(page_keys)
         + " is not a power of two from 1 to "
         + std::to_string(max_page_keys);
}

/// Every read verifies the checksums of the blocks it loads: a block cached
/// by an unchecked read would later be served to checked ones unverified.
leveldb::ReadOptions checked_reads() {
  leveldb::ReadOptions ro;
  ro.verify_checksums = true;
  return ro;
}

/// Checks every table file in `dir` on its own, every block's checksum
/// verified. Returns "table file F: <LevelDB's message>" for the first that
/// fails, or an empty string when all pass.
std::string find_damaged_table(leveldb::Env* env,
                               const std::filesystem::path& dir) {
  std::vector<std::string> names;
  if (!env->GetChildren(dir.string(), &names).ok())
    return {};
  std::sort(names.begin(), names.end());
  for (auto& name : names) {
    if (!name.ends_with(".ldb") && !name.ends_with(".sst"))
      continue;
    auto path = (dir / name).string();
    auto damaged = [&](const leveldb::Status& st) {
      return "table file " + path + ": " + st.ToString();
    };
    std::uint64_t size = 0;
    leveldb::RandomAccessFile* raw = nullptr;
    if (auto st = env->GetFileSize(path, &size); !st.ok())
      return damaged(st);
    if (auto st = env->NewRandomAccessFile(path, &raw); !st.ok())
      return damaged(st);
    std::unique_ptr<leveldb::RandomAccessFile> file{raw};
    leveldb::Options lo;
    lo.env = env;
    lo.paranoid_checks = true;
    leveldb::Table* table_raw = nullptr;
    if (auto st = leveldb::Table::Open(lo, file.get(), size, &table_raw);
        !st.ok())
      return damaged(st);
    std::unique_ptr<leveldb::Table> table{table_raw};
    auto ro = checked_reads();
    ro.fill_cache = false;
    std::unique_ptr<leveldb::Iterator> it{table->NewIterator(ro)};
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      // Every block is read and verified on the way.
    }
    if (!it->status().ok())
      return damaged(it->status());
  }
  return {};
}

/// Turns a failed LevelDB status into a rollblock error; a corruption names
/// the damaged table file when one is found.
caf::error status_error(const leveldb::Status& st, const std::string& what,
                        const std::filesystem::path& dir, leveldb::Env* env) {
  if (st.IsCorruption()) {
    auto where = find_damaged_table(env, dir);
    return make_error(ec::state_corrupt,
                      what + " failed: the state database at " + dir.string()
                        + " is corrupt (" + st.ToString()
                        + (where.empty() ? std::string{} : "; " + where)
                        + "); restore the data directory from a backup or "
                          "rebuild it");
  }
  return make_error(ec::io_error, what + " failed for the state database at "
                                    + dir.string() + ": " + st.ToString()
                                    + "; check the disk and its free space");
}

} // namespace

const leveldb::Comparator& state_key_comparator() noexcept {
  return state_key_order;
}

/// A table file read with pread: its pages stay in the page cache instead of
/// the process's mapped (resident) memory.
class pread_table_file final : public leveldb::RandomAccessFile {
public:
  pread_table_file(std::string name, int fd)
    : name_(std::move(name)), fd_(fd) {
    // nop
  }

  ~pread_table_file() override {
    ::close(fd_);
  }

  leveldb::Status Read(std::uint64_t offset, std::size_t n,
                       leveldb::Slice* result, char* scratch) const override {
    auto got = ::pread(fd_, scratch, n, static_cast<off_t>(offset));
    auto size = got < 0 ? std::size_t{0} : static_cast<std::size_t>(got);
    *result = leveldb::Slice{scratch, size};
    if (got < 0)
      return leveldb::Status::IOError(name_, std::strerror(errno));
    return leveldb::Status::OK();
  }

private:
  std::string name_;
  int fd_;
};

/// Another environment, except that table files are read with pread.
class pread_env final : public leveldb::EnvWrapper {
public:
  explicit pread_env(leveldb::Env* base) : leveldb::EnvWrapper(base) {
    // nop
  }

  leveldb::Status
  NewRandomAccessFile(const std::string& name,
                      leveldb::RandomAccessFile** result) override {
    *result = nullptr;
    auto fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT)
        return leveldb::Status::NotFound(name, std::strerror(errno));
      return leveldb::Status::IOError(name, std::strerror(errno));
    }
    *result = new pread_table_file(name, fd);
    return leveldb::Status::OK();
  }
};

/// Keeps LevelDB from writing its LOG file (read-only opening).
class null_logger : public leveldb::Logger {
public:
  void Logv(const char*, std::va_list) override {
    // nop
  }
};

struct state_store::impl {
  std::filesystem::path dir;
  leveldb::Env* env = leveldb::Env::Default();
  bool read_only = false;
  null_logger quiet;
  leveldb::Cache* cache = nullptr;
  const leveldb::FilterPolicy* filter = nullptr;
  /// Keys per page: the stored size, else options::page_keys; write_config
  /// sets it.
  std::atomic<std::size_t> page_keys{0};
  /// The pread environment over `env` unless table files are mapped.
  std::unique_ptr<leveldb::Env> owned_env;
  leveldb::DB* db = nullptr;

  ~impl() {
    // LevelDB uses the cache, the filter policy and the environment until
    // the DB is gone.
    delete db;
    delete cache;
    delete filter;
  }

  /// Returns ec::state_corrupt for the page stored under `record_key`.
  caf::error malformed_page(std::string_view record_key,
                            const std::string& why) const;

  /// Reads and decodes the page stored under `record_key` ("s" + page key)
  /// into `image`, its bytes into `bytes` (empty: no such page).
  caf::error read_page(std::string_view record_key, std::size_t keys,
                       std::string& bytes, page_image& image) const;

  /// The WriteBatch of a checkpoint: the pages its writes change, then the
  /// checkpoint height and the revert records.
  caf::expected<leveldb::WriteBatch>
  checkpoint_write_batch(const checkpoint_batch& batch) const;

  caf::error write(leveldb::WriteBatch& batch, const std::string& what) {
    if (read_only)
      return make_error(ec::invalid_argument,
                        what + " refused: the state database at "
                          + dir.string() + " was opened read-only");
    leveldb::WriteOptions wo;
    wo.sync = true;
    auto st = db->Write(wo, &batch);
    if (!st.ok())
      return make_error(ec::io_error,
                        what + " failed for the state database at "
                          + dir.string() + ": " + st.ToString()
                          + "; the store cannot make data durable, check the "
                            "disk and reopen the store");
    return {};
  }

  /// Reads one metadata record: nullopt when absent.
  caf::expected<std::optional<std::string>>
  read_raw(const leveldb::ReadOptions& ro, std::string_view name) const {
    std::string result;
    auto st = db->Get(ro, slice(name), &result);
    if (st.IsNotFound())
      return std::optional<std::string>{};
    if (!st.ok())
      return status_error(st, "reading metadata record '" + std::string{name}
                                + "'", dir, env);
    return std::optional<std::string>{std::move(result)};
  }

  caf::error malformed(std::string_view name, const std::string& why) const {
    return make_error(ec::state_corrupt,
                      "metadata record '" + std::string{name}
                        + "' in the state database at " + dir.string()
                        + " is malformed: " + why
                        + "; restore the data directory from a backup or "
                          "rebuild it");
  }

  /// Reads a fixed64 metadata record: nullopt when absent.
  caf::expected<std::optional<std::uint64_t>>
  read_u64(const leveldb::ReadOptions& ro, std::string_view name) const {
    auto raw = read_raw(ro, name);
    if (!raw)
      return std::move(raw.error());
    if (!*raw)
      return std::optional<std::uint64_t>{};
    if ((*raw)->size() != 8)
      return malformed(name, "expected 8 bytes, found "
                               + std::to_string((*raw)->size()));
    return std::optional<std::uint64_t>{u64_from_bytes(**raw)};
  }

  /// Reads a fixed64 record that must exist once the store has a config.
  caf::expected<std::uint64_t> read_required_u64(const leveldb::ReadOptions& ro,
                                                 std::string_view name) const {
    auto x = read_u64(ro, name);
    if (!x)
      return std::move(x.error());
    if (!*x)
      return malformed(name, "the record is missing");
    return **x;
  }
};

state_store::state_store(std::unique_ptr<impl> p) : impl_(std::move(p)) {
  // nop
}

state_store::~state_store() = default;

caf::expected<std::unique_ptr<state_store>>
state_store::open(const options& opts) {
  auto p = std::make_unique<impl>();
  p->dir = opts.dir;
  p->read_only = opts.read_only;
  if (opts.read_only) {
    // LevelDB would create the directory before finding no database in it.
    std::error_code err;
    if (!std::filesystem::exists(opts.dir / "CURRENT", err))
      return make_error(ec::state_corrupt,
                        "there is no state database at " + opts.dir.string()
                          + " (no CURRENT file): this is not a rollblock data "
                            "directory, or its state was removed");
  } else {
    std::error_code err;
    std::filesystem::create_directories(opts.dir, err);
    if (err)
      return make_error(ec::io_error, "cannot create the state directory "
                                        + opts.dir.string() + ": "
                                        + err.message());
  }
  p->cache = leveldb::NewLRUCache(opts.cache_bytes);
  p->filter = leveldb::NewBloomFilterPolicy(10);
  leveldb::Options lo;
  lo.create_if_missing = !opts.read_only;
  lo.paranoid_checks = true;
  if (opts.env != nullptr)
    p->env = opts.env;
  if (!opts.map_table_files) {
    p->owned_env = std::make_unique<pread_env>(p->env);
    p->env = p->owned_env.get();
    // Every open table holds a descriptor now; stay well below the limit.
    lo.max_open_files = 500;
  }
  lo.env = p->env;
  if (opts.read_only)
    lo.info_log = &p->quiet;
  lo.write_buffer_size = opts.write_buffer_bytes;
  lo.block_cache = p->cache;
  lo.filter_policy = p->filter;
  lo.comparator = &state_key_order;
  auto st = leveldb::DB::Open(lo, opts.dir.string(), &p->db);
  if (!st.ok()) {
    p->db = nullptr;
    // LevelDB keeps the comparator's name in its manifest and refuses
    // another; version 1 directories were ordered bytewise.
    if (st.IsInvalidArgument()
        && st.ToString().find("does not match existing comparator")
             != std::string::npos)
      return make_error(ec::format_version_mismatch,
                        "the state database at " + opts.dir.string()
                          + " orders its keys otherwise (" + st.ToString()
                          + "): it was written by another format version; "
                            "this build reads version "
                          + std::to_string(storage::format_version)
                          + "; use a build that matches the data directory "
                            "or start from an empty one");
    return status_error(st, "opening", opts.dir, p->env);
  }
  // The page size: the stored one wins over the option.
  auto stored_page_keys = p->read_u64(checked_reads(), page_keys_key);
  if (!stored_page_keys)
    return std::move(stored_page_keys.error());
  auto page_keys = stored_page_keys->value_or(opts.page_keys);
  if (!valid_page_keys(page_keys))
    return *stored_page_keys
             ? p->malformed(page_keys_key, page_size_problem(page_keys))
             : make_error(ec::invalid_argument, page_size_problem(page_keys));
  p->page_keys.store(page_keys, std::memory_order_relaxed);
  return std::unique_ptr<state_store>{new state_store(std::move(p))};
}

caf::expected<std::optional<store_metadata>>
state_store::read_metadata() const {
  auto& d = *impl_;
  // One snapshot, so that all records come from the same write.
  auto ro = checked_reads();
  ro.snapshot = d.db->GetSnapshot();
  struct release {
    leveldb::DB* db;
    const leveldb::Snapshot* snap;
    ~release() {
      db->ReleaseSnapshot(snap);
    }
  } guard{d.db, ro.snapshot};
  auto version = d.read_u64(ro, format_version_key);
  if (!version)
    return std::move(version.error());
  if (!*version)
    return std::optional<store_metadata>{};
  if (**version != storage::format_version)
    return make_error(ec::format_version_mismatch,
                      "data directory was written by format version "
                        + std::to_string(**version)
                        + "; this build reads version "
                        + std::to_string(storage::format_version)
                        + " (state database at " + d.dir.string()
                        + "); use a build that matches the data directory "
                          "or start from an empty one");
  store_metadata result;
  result.format_version = storage::format_version;
  // Key width.
  auto width = d.read_required_u64(ro, key_width_key);
  if (!width)
    return std::move(width.error());
  if (*width < min_key_width || *width > max_key_width)
    return d.malformed(key_width_key,
                       "key width " + std::to_string(*width)
                         + " is outside " + std::to_string(min_key_width)
                         + ".." + std::to_string(max_key_width));
  result.key_width = static_cast<std::size_t>(*width);
  // Keys per page.
  auto page_keys = d.read_required_u64(ro, page_keys_key);
  if (!page_keys)
    return std::move(page_keys.error());
  if (!valid_page_keys(*page_keys))
    return d.malformed(page_keys_key, page_size_problem(*page_keys));
  result.page_keys = static_cast<std::size_t>(*page_keys);
  // Durability.
  auto dur = d.read_raw(ro, durability_key);
  if (!dur)
    return std::move(dur.error());
  if (!*dur)
    return d.malformed(durability_key, "the record is missing");
  auto mode = parse_durability(**dur);
  if (!mode)
    return d.malformed(durability_key, message_of(mode.error()));
  result.durability = *mode;
  // Rollback window.
  auto window = d.read_required_u64(ro, min_rollback_window_key);
  if (!window)
    return std::move(window.error());
  result.min_rollback_window = *window;
  // Optional heights.
  auto checkpoint = d.read_u64(ro, checkpoint_key);
  if (!checkpoint)
    return std::move(checkpoint.error());
  result.checkpoint = *checkpoint;
  auto pruned = d.read_u64(ro, pruned_through_key);
  if (!pruned)
    return std::move(pruned.error());
  result.pruned_through = *pruned;
  auto marker = d.read_u64(ro, revert_marker_key);
  if (!marker)
    return std::move(marker.error());
  result.revert_marker = *marker;
  auto reverted = d.read_u64(ro, reverted_to_key);
  if (!reverted)
    return std::move(reverted.error());
  result.reverted_to = *reverted;
  return std::optional<store_metadata>{std::move(result)};
}

caf::error state_store::write_config(const store_metadata& meta) {
  if (!valid_page_keys(meta.page_keys))
    return make_error(ec::invalid_argument,
                      page_size_problem(meta.page_keys));
  leveldb::WriteBatch batch;
  batch.Put(slice(format_version_key),
            value_from_u64(static_cast<std::uint64_t>(meta.format_version)));
  batch.Put(slice(key_width_key),
            value_from_u64(static_cast<std::uint64_t>(meta.key_width)));
  batch.Put(slice(page_keys_key),
            value_from_u64(static_cast<std::uint64_t>(meta.page_keys)));
  batch.Put(slice(durability_key), to_string(meta.durability));
  batch.Put(slice(min_rollback_window_key),
            value_from_u64(meta.min_rollback_window));
  if (auto err = impl_->write(batch, "writing the configuration"))
    return err;
  impl_->page_keys.store(meta.page_keys, std::memory_order_release);
  return {};
}

namespace {

/// The writes of `batch` in key order (pages are runs in it).
std::vector<const checkpoint_write*> writes_in_key_order(
  const checkpoint_batch& batch) {
  std::vector<const checkpoint_write*> result;
  result.reserve(batch.writes.size());
  auto by_key = [](const checkpoint_write& a, const checkpoint_write& b) {
    return key_order_less{}(a.k, b.k);
  };
  if (std::is_sorted(batch.writes.begin(), batch.writes.end(), by_key)) {
    // checkpoint_builder's batches come sorted.
    for (auto& write : batch.writes)
      result.push_back(&write);
    return result;
  }
  // Others (tools, tests) are sorted here, stably: of two writes of one
  // key, the later wins.
  struct sort_entry {
    std::uint64_t prefix;
    const checkpoint_write* write;
  };
  std::vector<sort_entry> sorted;
  sorted.reserve(batch.writes.size());
  for (auto& write : batch.writes)
    sorted.push_back({key_prefix(write.k), &write});
  sort_in_key_order(sorted, [](const sort_entry& e) { return e.write->k; });
  for (auto& entry : sorted)
    result.push_back(entry.write);
  return result;
}

} // namespace

caf::error state_store::impl::malformed_page(std::string_view record_key,
                                             const std::string& why) const {
  return make_error(ec::state_corrupt,
                    "the state page " + to_hex(record_key.substr(1))
                      + " in the state database at " + dir.string()
                      + " is malformed: " + why
                      + "; restore the data directory from a backup or "
                        "rebuild it");
}

caf::error state_store::impl::read_page(std::string_view record_key,
                                        std::size_t keys, std::string& bytes,
                                        page_image& image) const {
  bytes.clear();
  auto st = db->Get(checked_reads(), slice(record_key), &bytes);
  if (!st.ok() && !st.IsNotFound())
    return status_error(st, "reading a state page", dir, env);
  if (auto why = image.decode(record_key.substr(1), bytes, keys);
      !why.empty())
    return malformed_page(record_key, why);
  return {};
}

caf::expected<leveldb::WriteBatch>
state_store::impl::checkpoint_write_batch(const checkpoint_batch& batch) const {
  auto keys = page_keys.load(std::memory_order_acquire);
  auto writes = writes_in_key_order(batch);
  // Each page the writes touch is written whole: read first unless the
  // writes cover every slot (always with one key per page), changed, and
  // written back, or deleted when no entry is left.
  auto all_slots = keys == 64 ? ~std::uint64_t{0}
                               : (std::uint64_t{1} << keys) - 1;
  leveldb::WriteBatch wb;
  std::string record_key;
  std::string stored;
  std::string encoded;
  page_image image;
  for (std::size_t i = 0; i < writes.size();) {
    auto first = writes[i]->k;
    auto end = i;
    std::uint64_t written = 0;
    for (; end < writes.size() && writes[end]->k.size() == first.size()
           && same_page(writes[end]->k, first, keys);
         ++end)
      written |= std::uint64_t{1} << slot_of(writes[end]->k, keys);
    page_record_key(first, keys, record_key);
    if (written == all_slots) {
      image = page_image{};
    } else if (auto err = read_page(record_key, keys, stored, image)) {
      return err;
    }
    for (; i < end; ++i)
      image.set(slot_of(writes[i]->k, keys), writes[i]->v);
    if (image.empty()) {
      // Deleting a page that is not there writes a tombstone: harmless.
      wb.Delete(slice(record_key));
      continue;
    }
    encoded.clear();
    image.encode(encoded);
    wb.Put(slice(record_key), slice(encoded));
  }
  wb.Put(slice(checkpoint_key), value_from_u64(batch.height));
  if (batch.revert_marker) {
    wb.Put(slice(revert_marker_key), value_from_u64(*batch.revert_marker));
    wb.Put(slice(reverted_to_key), value_from_u64(*batch.revert_marker));
  } else {
    wb.Delete(slice(reverted_to_key));
  }
  return wb;
}

caf::error state_store::write_checkpoint(const checkpoint_batch& batch) {
  auto wb = impl_->checkpoint_write_batch(batch);
  if (!wb)
    return std::move(wb.error());
  return impl_->write(*wb, "writing checkpoint "
                             + std::to_string(batch.height));
}

caf::error state_store::write_checkpoint(checkpoint_batch&& batch) {
  auto wb = impl_->checkpoint_write_batch(batch);
  if (!wb)
    return std::move(wb.error());
  // The WriteBatch holds a copy: release the writes (32 bytes each, ~40 MB
  // for a typical checkpoint) before LevelDB's memtable grows.
  std::vector<checkpoint_write>{}.swap(batch.writes);
  return impl_->write(*wb, "writing checkpoint "
                             + std::to_string(batch.height));
}

caf::error state_store::write_pruned_through(block_id height) {
  leveldb::WriteBatch batch;
  batch.Put(slice(pruned_through_key), value_from_u64(height));
  return impl_->write(batch, "recording pruned height "
                               + std::to_string(height));
}

caf::error state_store::clear_revert_marker() {
  leveldb::WriteBatch batch;
  batch.Delete(slice(revert_marker_key));
  return impl_->write(batch, "clearing the revert marker");
}

caf::expected<value> state_store::get(std::string_view k) const {
  auto keys = impl_->page_keys.load(std::memory_order_acquire);
  std::string record_key;
  page_record_key(k, keys, record_key);
  std::string stored;
  page_image image;
  if (auto err = impl_->read_page(record_key, keys, stored, image))
    return err;
  return value{image.get(slot_of(k, keys))};
}

caf::expected<std::vector<value>>
state_store::get_many(const std::vector<std::string_view>& keys) const {
  auto n = impl_->page_keys.load(std::memory_order_acquire);
  std::vector<std::uint32_t> order(keys.size());
  for (std::uint32_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    return key_order_less{}(keys[a], keys[b]);
  });
  std::vector<value> result(keys.size());
  std::unique_ptr<leveldb::Iterator> it{impl_->db->NewIterator(checked_reads())};
  bool sought = false;
  std::string record_key;
  std::string decoded; // the record key of the page in `image`
  page_image image;
  for (auto i : order) {
    page_record_key(keys[i], n, record_key);
    // Seek unless the iterator already stands at or above this page: the
    // pages between are absent.
    if (!sought
        || (it->Valid()
            && state_key_order.Compare(it->key(), slice(record_key)) < 0)) {
      it->Seek(slice(record_key));
      sought = true;
      decoded.clear(); // the image viewed the old position's value
    }
    if (!it->Valid() || it->key() != slice(record_key))
      continue; // absent
    if (decoded != record_key) {
      auto why = image.decode(std::string_view{record_key}.substr(1),
                              {it->value().data(), it->value().size()}, n);
      if (!why.empty())
        return impl_->malformed_page(record_key, why);
      decoded = record_key;
    }
    result[i].assign(image.get(slot_of(keys[i], n)));
  }
  if (auto st = it->status(); !st.ok())
    return status_error(st, "reading keys", impl_->dir, impl_->env);
  return result;
}

caf::error
state_store::for_each(const std::function<void(const key&, const value&)>& f)
  const {
  auto keys = impl_->page_keys.load(std::memory_order_acquire);
  auto ro = checked_reads();
  ro.fill_cache = false; // A full scan would only evict the hot blocks.
  std::unique_ptr<leveldb::Iterator> it{impl_->db->NewIterator(ro)};
  page_image image;
  key k;
  value v;
  for (it->Seek(leveldb::Slice{&state_prefix, 1}); it->Valid(); it->Next()) {
    auto raw = it->key();
    if (raw.empty() || raw[0] != state_prefix)
      break;
    auto record_key = std::string_view{raw.data(), raw.size()};
    auto page_key = record_key.substr(1);
    auto why = image.decode(page_key, {it->value().data(), it->value().size()},
                            keys);
    if (!why.empty())
      return impl_->malformed_page(record_key, why);
    image.for_each([&](std::size_t slot, std::string_view x) {
      key_in_page(page_key, slot, k);
      v.assign(x);
      f(k, v);
    });
  }
  if (auto st = it->status(); !st.ok())
    return status_error(st, "iterating the state", impl_->dir, impl_->env);
  return {};
}

caf::error state_store::for_each_record(
  const std::function<void(std::string_view, std::string_view)>& f) const {
  auto ro = checked_reads();
  ro.fill_cache = false;
  std::unique_ptr<leveldb::Iterator> it{impl_->db->NewIterator(ro)};
  for (it->SeekToFirst(); it->Valid(); it->Next())
    f(std::string_view{it->key().data(), it->key().size()},
      std::string_view{it->value().data(), it->value().size()});
  if (auto st = it->status(); !st.ok())
    return status_error(st, "reading the records", impl_->dir, impl_->env);
  return {};
}

std::uint64_t state_store::size_bytes() const {
  // The sum of the database's files: tables, the write-ahead log and the
  // manifest (GetApproximateSizes would miss data still in the log).
  std::uint64_t total = 0;
  std::error_code err;
  std::filesystem::directory_iterator it{impl_->dir, err};
  if (err)
    return 0;
  for (; it != std::filesystem::directory_iterator{}; it.increment(err)) {
    if (err)
      break;
    std::error_code ignored;
    if (it->is_regular_file(ignored)) {
      auto n = it->file_size(ignored);
      if (!ignored)
        total += n;
    }
  }
  return total;
}

} // namespace rollblock::storage
