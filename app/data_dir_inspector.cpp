#include "data_dir_inspector.hpp"

#include "rollblock/messages/error.hpp"
#include "rollblock/storage/key_order.hpp"
#include "rollblock/storage/logger.hpp"
#include "rollblock/storage/state_page.hpp"
#include "rollblock/storage/state_store.hpp"

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <map>
#include <set>
#include <system_error>
#include <unordered_map>
#include <utility>

namespace rollblock::admin {

namespace fs = std::filesystem;
using storage::journal_position;
using storage::store_metadata;

// -- progress -------------------------------------------------------------------

namespace {

using clock_type = std::chrono::steady_clock;

constexpr auto tty_delay = std::chrono::seconds{1};
constexpr auto tty_every = std::chrono::milliseconds{250};
constexpr auto log_every = std::chrono::seconds{5};

} // namespace

progress::progress(std::string what, std::uint64_t total)
  : what_(std::move(what)),
    total_(total),
    tty_(::isatty(STDERR_FILENO) == 1),
    start_(clock_type::now()),
    next_(start_ + (tty_ ? tty_delay : log_every)) {
  // nop
}

progress::~progress() {
  finish();
}

void progress::update(std::uint64_t done) {
  if ((++calls_ & 1023) != 0)
    return;
  auto now = clock_type::now();
  if (now < next_)
    return;
  next_ = now + (tty_ ? tty_every : log_every);
  show(done);
}

void progress::show(std::uint64_t done) {
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(
                clock_type::now() - start_)
                .count();
  std::string text = what_ + ": " + std::to_string(done);
  if (total_ > 0)
    text += " of " + std::to_string(total_) + " ("
            + std::to_string(done * 100 / total_) + "%)";
  text += ", " + std::to_string(secs) + " s";
  if (tty_) {
    std::fprintf(stderr, "\r\x1b[K%s", text.c_str());
    std::fflush(stderr);
    drawn_ = true;
  } else {
    logger().info("{}", text);
  }
}

void progress::finish() {
  if (drawn_) {
    std::fprintf(stderr, "\r\x1b[K");
    std::fflush(stderr);
    drawn_ = false;
  }
}

// -- helpers --------------------------------------------------------------------

std::size_t verify_result::count(severity level) const {
  return static_cast<std::size_t>(
    std::count_if(findings.begin(), findings.end(),
                  [level](const finding& f) { return f.level == level; }));
}

namespace {

constexpr char state_prefix = 's';
constexpr std::string_view meta_prefix = "m/";

/// A value for messages: hex, cut after 32 bytes.
std::string show_value(std::string_view v) {
  if (v.empty())
    return "nothing (absent)";
  if (v.size() <= 32)
    return to_hex(v);
  return to_hex(v.substr(0, 32)) + "... (" + std::to_string(v.size())
         + " bytes)";
}

/// Reports at most `limit` findings of one kind, then how many more.
class limited {
public:
  limited(std::vector<finding>& out, std::string more_text,
          std::size_t limit = 20)
    : out_(out), more_text_(std::move(more_text)), limit_(limit) {
  }

  void add(std::string text) {
    if (count_++ < limit_)
      out_.push_back({severity::problem, std::move(text)});
  }

  void done() {
    if (count_ > limit_)
      out_.push_back({severity::problem,
                      "... and " + std::to_string(count_ - limit_) + " more "
                        + more_text_});
  }

  std::size_t count() const {
    return count_;
  }

private:
  std::vector<finding>& out_;
  std::string more_text_;
  std::size_t limit_;
  std::size_t count_ = 0;
};

} // namespace

// -- impl -----------------------------------------------------------------------

struct data_dir_inspector::impl {
  fs::path dir;
  std::unique_ptr<storage::data_dir_lock> lock;
  std::unique_ptr<storage::state_store> state;
  std::optional<store_metadata> meta;
  std::unique_ptr<storage::journal> journal;
  storage::journal_open_report report;

  fs::path state_dir() const {
    return dir / "state";
  }

  fs::path journal_dir() const {
    return dir / "journal";
  }

  /// Opens LevelDB read-only (paranoid checks, nothing created or logged).
  caf::error open_db() {
    storage::state_store::options opts;
    opts.dir = state_dir();
    opts.cache_bytes = 8 << 20;
    opts.read_only = true;
    auto opened = storage::state_store::open(opts);
    if (!opened)
      return std::move(opened.error());
    state = std::move(*opened);
    return {};
  }

  /// Reads the metadata; nullopt when the database holds none.
  caf::expected<std::optional<store_metadata>> read_meta() const {
    return state->read_metadata();
  }

  caf::error open_journal(const store_metadata& m) {
    std::error_code ec_fs;
    if (!fs::is_directory(journal_dir(), ec_fs))
      return make_error(ec::journal_corrupt,
                        "the journal directory " + journal_dir().string()
                          + " is missing");
    storage::journal::options jo;
    jo.dir = journal_dir();
    jo.key_width = m.key_width;
    jo.repair = false;
    // As the store opens it: the checkpoint's entry must be there, and a
    // store with metadata has a journal (its segments cannot all be gone).
    if (!m.reverted_to)
      jo.required_height = m.checkpoint;
    jo.must_exist = true;
    auto j = storage::journal::open(jo, &report);
    if (!j)
      return std::move(j.error());
    journal = std::move(*j);
    return {};
  }

  /// Iterates the LevelDB records with checksums verified, calling `f` for
  /// each (metadata and state pages as stored).
  template <class F>
  caf::error scan_records(progress& prog, F&& f) const {
    std::uint64_t n = 0;
    return state->for_each_record([&](std::string_view k, std::string_view v) {
      f(k, v);
      prog.update(++n);
    });
  }

  /// Calls `f` for every key and value at the checkpoint, in key order; a
  /// malformed state page ends it with ec::state_corrupt.
  caf::error scan_state(progress& prog,
                        const std::function<void(const key&, const value&)>& f)
    const {
    std::uint64_t n = 0;
    return state->for_each([&](const key& k, const value& v) {
      f(k, v);
      prog.update(++n);
    });
  }
};

// -- data_dir_inspector ---------------------------------------------------------

data_dir_inspector::data_dir_inspector(std::unique_ptr<impl> p)
  : impl_(std::move(p)), dir_(impl_->dir) {
  // nop
}

data_dir_inspector::~data_dir_inspector() = default;

caf::expected<std::unique_ptr<data_dir_inspector>>
data_dir_inspector::lock(const fs::path& dir) {
  std::error_code ec_fs;
  if (!fs::is_directory(dir, ec_fs))
    return make_error(ec::invalid_argument,
                      "data directory " + dir.string() + " does not exist");
  auto lk = storage::data_dir_lock::acquire(dir);
  if (!lk)
    return std::move(lk.error());
  auto p = std::make_unique<impl>();
  p->dir = dir;
  p->lock = std::move(*lk);
  return std::unique_ptr<data_dir_inspector>{
    new data_dir_inspector(std::move(p))};
}

caf::error data_dir_inspector::open() {
  auto& d = *impl_;
  if (auto err = d.open_db())
    return err;
  auto meta = d.read_meta();
  if (!meta)
    return std::move(meta.error());
  if (!*meta)
    return make_error(ec::state_corrupt,
                      "the state database at " + d.state_dir().string()
                        + " holds no store metadata: rollblockd never "
                          "finished opening this data directory");
  d.meta = **meta;
  if (auto err = d.open_journal(*d.meta))
    return make_error(code_of(err), message_of(err)
                                      + "; run `rollblock verify` for details");
  return {};
}

const store_metadata& data_dir_inspector::meta() const {
  return *impl_->meta;
}

const storage::journal& data_dir_inspector::blocks() const {
  return *impl_->journal;
}

const storage::journal_open_report& data_dir_inspector::journal_report() const {
  return impl_->report;
}


std::optional<height_range> data_dir_inspector::recoverable() const {
  auto& m = *impl_->meta;
  auto& j = *impl_->journal;
  height_range r;
  r.oldest = m.pruned_through.value_or(0);
  if (m.revert_marker) {
    // Opening the store completes the revert: nothing above the marker stays.
    r.newest = *m.revert_marker;
  } else if (m.checkpoint || !j.empty()) {
    r.newest = std::max(m.checkpoint.value_or(0),
                        j.empty() ? block_id{0} : j.last_height());
  } else {
    return std::nullopt;
  }
  if (r.oldest > r.newest)
    return std::nullopt;
  return r;
}

std::uint64_t data_dir_inspector::state_bytes() const {
  return impl_->state ? impl_->state->size_bytes() : 0;
}

caf::expected<std::uint64_t> data_dir_inspector::count_state_keys() {
  std::uint64_t n = 0;
  progress prog{"counting keys"};
  if (auto err = impl_->scan_state(prog, [&](const key&, const value&) { ++n; }))
    return err;
  return n;
}

caf::expected<std::uint64_t> data_dir_inspector::count_keys_at(block_id height) {
  std::uint64_t n = 0;
  if (auto err = state_at(height, [&](const key&, const value&) { ++n; }))
    return err;
  return n;
}

caf::error data_dir_inspector::state_at(
  block_id height, const std::function<void(const key&, const value&)>& out) {
  auto& d = *impl_;
  auto range = recoverable();
  if (!range)
    return make_error(ec::invalid_argument,
                      "the store in " + dir_.string()
                        + " holds no block and no checkpoint, so there is no "
                          "state to dump");
  auto span = std::to_string(range->oldest) + ".."
              + std::to_string(range->newest);
  if (height > range->newest)
    return make_error(ec::rollback_target_ahead,
                      "height " + std::to_string(height)
                        + " is above the newest height "
                        + std::to_string(range->newest)
                        + " of the store; the recoverable heights are "
                        + span);
  if (height < range->oldest)
    return make_error(ec::rollback_beyond_history,
                      "height " + std::to_string(height)
                        + " is not reachable: the journal was pruned through "
                          "block "
                        + std::to_string(*d.meta->pruned_through)
                        + ", so the recoverable heights are " + span);
  // The journal entries between the checkpoint and `height`, as an overlay.
  auto& index = d.journal->index();
  auto checkpoint = d.meta->checkpoint;
  std::map<key, value, storage::key_order_less> overlay;
  block_id lo;
  block_id hi;
  bool down = checkpoint && height < *checkpoint;
  if (down) {
    lo = height + 1; // undo (height, checkpoint], newest first
    hi = *checkpoint;
  } else {
    lo = checkpoint ? *checkpoint + 1 : 0; // replay (checkpoint, height]
    hi = height;
  }
  if (lo <= hi) {
    auto first = std::lower_bound(index.begin(), index.end(), lo,
                                  [](const journal_position& p, block_id h) {
                                    return p.height < h;
                                  });
    auto last = std::upper_bound(first, index.end(), hi,
                                 [](block_id h, const journal_position& p) {
                                   return h < p.height;
                                 });
    progress prog{down ? "reading undo" : "reading journal",
                  static_cast<std::uint64_t>(last - first)};
    std::uint64_t n = 0;
    for (auto i = first; i != last; ++i) {
      auto rec = d.journal->read(*i);
      if (!rec)
        return std::move(rec.error());
      for (auto c : rec->changes) {
        if (down) // The oldest undo of (height, checkpoint] wins.
          overlay.try_emplace(key{c.k}, c.before);
        else
          overlay.insert_or_assign(key{c.k}, value{c.after});
      }
      prog.update(++n);
    }
  }
  // Merge the overlay into the LevelDB state, in key order.
  progress prog{"reading the state"};
  auto pos = overlay.begin();
  auto flush_below = [&](std::string_view bound, bool all) {
    for (; pos != overlay.end()
           && (all || storage::key_order_less{}(pos->first, bound));
         ++pos)
      if (!pos->second.empty())
        out(pos->first, pos->second);
  };
  auto err = d.scan_state(prog, [&](const key& k, const value& v) {
    flush_below(k, false);
    if (pos != overlay.end() && pos->first == k) {
      if (!pos->second.empty())
        out(pos->first, pos->second);
      ++pos;
      return;
    }
    out(k, v);
  });
  if (err)
    return err;
  flush_below({}, true);
  return {};
}

// -- verify ---------------------------------------------------------------------

verify_result data_dir_inspector::verify() {
  auto& d = *impl_;
  verify_result r;
  auto problem = [&](std::string text) {
    r.findings.push_back({severity::problem, std::move(text)});
  };
  // LevelDB and its metadata.
  if (auto err = d.open_db()) {
    problem(message_of(err));
    return r;
  }
  r.state_opened = true;
  bool consistent = true; // Metadata and journal agree well enough for heights.
  if (auto meta = d.read_meta(); !meta) {
    problem(message_of(meta.error()));
  } else if (!*meta) {
    problem("the state database at " + d.state_dir().string()
            + " holds no store metadata: rollblockd never finished opening "
              "this data directory");
  } else {
    r.meta = **meta;
    d.meta = **meta;
  }
  if (r.meta) {
    auto& m = *r.meta;
    auto h = [](block_id x) { return std::to_string(x); };
    if (m.pruned_through && !m.checkpoint) {
      problem("metadata: the journal was pruned through block "
              + h(*m.pruned_through) + " but there is no checkpoint");
      consistent = false;
    }
    if (m.pruned_through && m.checkpoint
        && *m.checkpoint < *m.pruned_through) {
      problem("metadata: the checkpoint " + h(*m.checkpoint)
              + " is below the pruned height " + h(*m.pruned_through)
              + ", so the journal cannot undo down to it");
      consistent = false;
    }
    if (m.revert_marker && !m.checkpoint) {
      problem("metadata: revert marker " + h(*m.revert_marker)
              + " is set but there is no checkpoint");
      consistent = false;
    }
    if (m.revert_marker && m.checkpoint && *m.revert_marker != *m.checkpoint) {
      problem("metadata: revert marker " + h(*m.revert_marker)
              + " differs from the checkpoint " + h(*m.checkpoint)
              + " (a revert writes both in one batch)");
      consistent = false;
    }
  }
  // The journal, every entry, and the undo chain along it.
  // The value each key touched by the journal must have at the checkpoint.
  std::unordered_map<key, value> at_checkpoint;
  bool journal_ok = false;
  if (r.meta) {
    auto& m = *r.meta;
    if (auto err = d.open_journal(m)) {
      problem(message_of(err));
    } else {
      r.journal_opened = true;
      journal_ok = true;
      r.journal_report = d.report;
      auto& j = *d.journal;
      r.journal_bytes = j.size_bytes();
      if (d.report.truncated_bytes > 0)
        r.findings.push_back(
          {severity::repairable,
           "journal " + d.report.truncated_file + ": a torn tail of "
             + std::to_string(d.report.truncated_bytes) + " bytes at offset "
             + std::to_string(d.report.truncated_offset)
             + " would be cut when the store is opened (last good height "
             + (j.empty() ? std::string{"none"}
                          : std::to_string(j.last_height()))
             + ")"});
      if (auto height = d.report.completed_truncation)
        r.findings.push_back(
          {severity::repairable,
           "journal " + j.dir().string()
             + ": a revert interrupted while it cut the journal after block "
             + std::to_string(*height)
             + " would be completed when the store is opened"});
      if (d.report.torn_truncation_record)
        r.findings.push_back(
          {severity::repairable,
           "journal " + j.dir().string()
             + ": a torn truncation record (a crash before a revert cut "
               "anything) would be removed when the store is opened"});
      for (auto& leftover : d.report.leftover_segments)
        r.findings.push_back(
          {severity::repairable,
           "journal segment " + leftover
             + " is empty and follows a segment that ends without a trailer "
               "(a crash interrupted a roll or a revert); it would be "
               "removed when the store is opened"});
      if (!j.empty()) {
        r.journal_first = j.first_height();
        r.journal_last = j.last_height();
      }
      // With no pruned height the journal holds every block ever applied.
      bool whole_history = !m.pruned_through;
      auto c = m.checkpoint;
      std::unordered_map<key, std::pair<value, block_id>> last;
      limited undo_problems{r.findings, "undo mismatches"};
      progress prog{"verify: journal entries", j.index().size()};
      for (auto& pos : j.index()) {
        auto rec = j.read(pos);
        prog.update(++r.journal_entries);
        if (!rec) {
          problem(message_of(rec.error()));
          journal_ok = false;
          continue;
        }
        r.journal_changes += rec->changes.size();
        auto where = [&] {
          return "journal " + j.segment_path(pos.segment).string()
                 + " at offset " + std::to_string(pos.offset) + " (height "
                 + std::to_string(pos.height) + ")";
        };
        for (auto ch : rec->changes) {
          key k{ch.k};
          auto it = last.find(k);
          if (it != last.end()) {
            if (it->second.first != ch.before)
              undo_problems.add(where() + ": the undo of key " + to_hex(ch.k)
                                + " is " + show_value(ch.before)
                                + " but the block at height "
                                + std::to_string(it->second.second)
                                + " left " + show_value(it->second.first));
          } else if (whole_history && !ch.before.empty()) {
            undo_problems.add(where() + ": the undo of key " + to_hex(ch.k)
                              + " is " + show_value(ch.before)
                              + " but no earlier block wrote the key (the "
                                "journal was never pruned)");
          }
          if (!c || pos.height > *c)
            at_checkpoint.try_emplace(k, ch.before);
          else
            at_checkpoint.insert_or_assign(k, value{ch.after});
          last.insert_or_assign(std::move(k),
                                std::pair{value{ch.after}, pos.height});
        }
      }
      undo_problems.done();
      if (undo_problems.count() > 0)
        journal_ok = false;
    }
  }
  // Every LevelDB record, checksums verified; state keys against the journal.
  {
    auto width = r.meta ? r.meta->key_width : 0;
    auto c = r.meta ? r.meta->checkpoint : std::nullopt;
    bool cross = r.meta && journal_ok;
    bool whole_history = r.meta && !r.meta->pruned_through;
    auto at_c = [&] {
      return c ? "at the checkpoint " + std::to_string(*c)
               : std::string{"in the state database (there is no checkpoint)"};
    };
    limited bad_records{r.findings, "bad state records"};
    limited disagreements{r.findings, "keys where the state database and the "
                                      "journal disagree"};
    progress prog{"verify: state records"};
    storage::page_image image;
    key sk;
    auto check_key = [&](std::string_view v) {
      ++r.state_keys;
      if (!cross)
        return;
      auto it = at_checkpoint.find(sk);
      if (it != at_checkpoint.end()) {
        if (it->second != v)
          disagreements.add("key " + to_hex(sk) + " holds " + show_value(v)
                            + " " + at_c() + " but the journal says "
                            + show_value(it->second));
        at_checkpoint.erase(it);
      } else if (whole_history) {
        disagreements.add("key " + to_hex(sk) + " holds " + show_value(v)
                          + " " + at_c()
                          + " but no journaled block wrote it (the journal "
                            "was never pruned)");
      }
    };
    auto err = d.scan_records(prog, [&](std::string_view k,
                                        std::string_view v) {
      if (k.starts_with(meta_prefix))
        return; // Metadata, read above.
      if (k.empty() || k[0] != state_prefix) {
        bad_records.add("the state database holds a record with key "
                        + to_hex(k) + " that is neither metadata nor state");
        return;
      }
      if (!r.meta)
        return; // Its page size is unknown: checksums verified only.
      auto page_key = k.substr(1);
      if (page_key.size() != width) {
        bad_records.add("state page " + to_hex(page_key) + " has "
                        + std::to_string(page_key.size())
                        + "-byte keys but the key width is "
                        + std::to_string(width));
        return;
      }
      if (auto why = image.decode(page_key, v, r.meta->page_keys);
          !why.empty()) {
        bad_records.add("state page " + to_hex(page_key)
                        + " is malformed: " + why);
        return;
      }
      image.for_each([&](std::size_t slot, std::string_view x) {
        storage::key_in_page(page_key, slot, sk);
        check_key(x);
      });
    });
    if (err) {
      problem(message_of(err));
    } else {
      r.state_checked = r.meta.has_value();
      if (cross) {
        std::vector<const std::pair<const key, value>*> missing;
        for (auto& kv : at_checkpoint)
          if (!kv.second.empty())
            missing.push_back(&kv);
        std::sort(missing.begin(), missing.end(),
                  [](auto* a, auto* b) { return a->first < b->first; });
        for (auto* kv : missing)
          disagreements.add("key " + to_hex(kv->first) + " is absent "
                            + at_c() + " but the journal says it holds "
                            + show_value(kv->second));
      }
    }
    bad_records.done();
    disagreements.done();
  }
  if (r.meta && r.journal_opened && journal_ok && consistent)
    r.range = recoverable();
  return r;
}

} // namespace rollblock::admin
