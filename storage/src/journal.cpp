// The block journal: append-only segment files of checksummed entries.
//
// On-disk format (version 2; version 1 had no segment trailers). All
// integers are little-endian.
//
// Segment files
//   The journal directory holds segment files named "<seq>.rbj", where <seq>
//   is a decimal sequence number zero-padded to at least 6 digits
//   ("000001.rbj", "000002.rbj", ...). Segments are read in numeric order of
//   <seq>; gaps are allowed (old segments are deleted by drop_through). Files
//   whose names are not exactly that spelling of a number (e.g. "foo",
//   "1.rbj", "000001.rbj.tmp") are ignored. The newest segment is
//   the active one; appends go to its end. A segment is a plain
//   concatenation of entries, with no file header: block entries, and in
//   every segment but the newest a trailer entry as the last one.
//
// Rolling
//   Once the active segment <seq> holds at least segment_bytes bytes, the
//   next append (1) fdatasyncs it, (2) creates segment <seq + 1> and fsyncs
//   the directory, (3) appends to <seq> a trailer naming <seq + 1> and
//   fdatasyncs <seq>, and only then (4) writes the entry into <seq + 1>. So
//   a durable trailer implies that the segment it names exists, and a block
//   in <seq + 1> implies a durable trailer in <seq>. A crash after (2) leaves
//   an empty <seq + 1> after a <seq> without a trailer; a crash in (3) a
//   torn trailer before an empty <seq + 1>. Both open fine (below).
//
// Entry = 40-byte header + payload
//   offset size field
//        0    4 magic            0x4C4A4252 (bytes "RBJL")
//        4    2 format version   2
//        6    1 kind             1 = block, 2 = segment trailer
//        7    1 key width        bytes per key (8..64)
//        8    8 height           block height (trailer: see below)
//       16    4 change count     number of key changes in the payload
//       20    4 payload length   bytes of payload following the header
//       24    8 payload checksum XXH3_64bits(payload)
//       32    8 header checksum  XXH3_64bits(header bytes 0..31)
//
// Block payload: for each key change, in block order:
//   key        (key width bytes)
//   after_len  u16, after  (after_len bytes)   value after the block
//   before_len u16, before (before_len bytes)  value before the block (undo)
// The payload must be consumed exactly by `change count` changes. It is a
// block_record's change_list buffer as it is (rollblock/messages/
// block_record.hpp encodes and checks this layout).
//
// Segment trailer (kind 2): the last entry of a segment that is followed by
// another. Height = the height of the newest block entry before it (0 when
// there is none), change count 0, payload length 8, payload = u64 sequence
// number of the next segment, which must be <seq + 1>. A trailer that is not
// the last entry of its segment, names another segment or another height is
// journal_corrupt (nothing is repaired).
//
// Opening (torn-tail rules)
//   Segment numbers are contiguous: the journal creates <seq + 1> after <seq>,
//   deletes old segments oldest first (drop_through) and cut segments newest
//   first (truncate_after, a repaired tail), so a crash at any point leaves
//   a contiguous run. A gap (000001.rbj, 000003.rbj) is a missing segment:
//   open fails with journal_corrupt naming the missing file and the last good
//   height, changing nothing. A segment that ends with a trailer when no
//   later segment exists has lost its successor (the newest segments were
//   deleted): open fails with journal_corrupt naming the missing segment,
//   the trailer's file and offset and the last good height, changing
//   nothing. A missing OLDEST segment is not detected (pruning deletes
//   them; the store's pruned height and checkpoint say what must be there).
//   Every entry of every segment is verified in order: magic, header checksum,
//   version, kind, key width, payload length within the file, payload
//   checksum, payload layout, and heights strictly increasing along the whole
//   journal. An entry with a valid header checksum but another format version
//   fails with format_version_mismatch; one with another key width fails with
//   config_mismatch; a fully valid entry whose height does not increase fails
//   with journal_corrupt. At the first entry that fails any other check, at
//   offset X of segment S, the rest of S (from X + 1) and every later segment
//   is scanned byte by byte for a header whose magic and header checksum
//   verify and whose payload fits and verifies its checksum (a trailer
//   counts):
//   - if one is found, the damage is in the middle of the journal: open fails
//     with journal_corrupt naming S, X and the last good height, and no file
//     is changed;
//   - otherwise the damage is at the tail. Only an append that was never
//     fsynced can leave a torn tail, and the store's checkpoint height
//     (options::required_height) was fsynced before it was checkpointed: when
//     the entries before X do not include it, open fails with journal_corrupt
//     (naming S, X and where the good entries end) and changes nothing;
//   - otherwise it is a torn tail: S is truncated to X and fsynced, every
//     later segment (which then holds no valid entry) is deleted, the
//     directory is fsynced, and the cut is reported (the store logs it as a
//     warning with file, offset and last good height).
//   So a torn tail is a damaged LAST entry (header or payload, any byte; a
//   torn trailer included), or garbage after the last entry, above the
//   checkpoint. Refused as corruption: a bad entry with any valid entry after
//   it, a missing segment (in the middle, or the newest ones named by a
//   trailer), heights that do not increase, and any damage or truncation
//   that reaches the checkpoint's entry. A journal that holds no entry at the
//   required height at all (the directory emptied) is refused the same way.
//   Left over by a crash: when the first segment S without a trailer is not
//   the newest, every later segment must be empty (a roll that stopped
//   before its trailer, a truncate_after that emptied them but did not
//   delete them); they are deleted, newest first, and the directory fsynced
//   (journal_open_report::leftover_segments). A later segment holding any
//   byte is journal_corrupt naming S, where it ends and that segment.
//   Known limit: a segment cut at an entry boundary loses its trailer too,
//   so cutting whole entries above the checkpoint from the end of the newest
//   segment that holds blocks (an empty segment after it is then a
//   leftover) looks like a journal that never had them. Deleting every
//   segment is refused when options::must_exist says the store existed.
//   A zero-length segment is valid. When no segment exists, open creates
//   segment 000001.rbj.
//
// Truncating (truncate_after)
//   Keeping segment K up to its last kept block entry: (0) when a later
//   segment holds any byte, the truncation record (below) naming the height
//   is written, fdatasynced and the directory fsynced; (1) every later
//   segment is truncated to 0 bytes and fsynced, newest first; (2) K is cut
//   after its last kept entry (its trailer goes too) and fsynced; (3) the
//   emptied segments and the record are deleted and the directory fsynced.
//   A crash after any step leaves trailers that name existing segments, then
//   at most one segment with content and no trailer, then empty leftovers:
//   a journal that opens, but (after step 1) not at the height asked for.
//   The record makes the truncation all or nothing: open completes it. A
//   truncation within K alone is one ftruncate, so it needs no record.
//
// Truncation record: the file "truncation.rbt" in the journal directory,
// 24 bytes:
//   offset size field
//        0    4 magic            0x544A4252 (bytes "RBJT")
//        4    2 format version   1
//        6    2 zero
//        8    8 height           truncate_after(height) is in progress
//       16    8 checksum         XXH3_64bits(bytes 0..15)
//   A repairing open that finds a valid record completes the truncation
//   after verifying the journal (every state steps 1-3 leave opens), deletes
//   the record and fsyncs the directory (journal_open_report::
//   completed_truncation); a read-only open ends the index at the height
//   instead. A record cutting below options::required_height is
//   journal_corrupt (nothing changed). A record of another size, magic or
//   checksum was torn by a crash before step 1 (nothing was truncated yet):
//   it is deleted and reported (journal_open_report::torn_truncation_record).
//   A record of another version is format_version_mismatch.
//
// Read-only opening (options::repair = false)
//   The same checks run and the same errors are returned, but no file is
//   changed: the directory and segment 000001.rbj are not created, a torn
//   tail is reported (file, offset, bytes) without truncating S or deleting
//   later segments, and the index ends before the tail. Every change (append,
//   sync, truncate_after, drop_through) is then refused with invalid_argument.

#include "rollblock/storage/journal.hpp"

#include "rollblock/messages/error.hpp"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <system_error>
#include <utility>

namespace rollblock::storage {

namespace {

// -- format constants ---------------------------------------------------------

constexpr std::uint32_t entry_magic = 0x4C4A4252;
constexpr std::uint16_t format_version = 2;
constexpr std::uint8_t kind_block = 1;
constexpr std::uint8_t kind_trailer = 2;
constexpr std::size_t trailer_payload_size = 8;
constexpr std::size_t header_size = 40;
constexpr std::size_t header_checked_bytes = 32;
constexpr std::string_view segment_suffix = ".rbj";
constexpr std::string_view truncation_file = "truncation.rbt";
constexpr std::uint32_t truncation_magic = 0x544A4252;
constexpr std::uint16_t truncation_version = 1;
constexpr std::size_t truncation_size = 24;
constexpr int segment_digits = 6;
constexpr std::string_view bad_layout
  = "payload layout does not match its change count";

static_assert(std::endian::native == std::endian::little
                || std::endian::native == std::endian::big,
              "mixed-endian hosts are not supported");

// -- little-endian encoding ---------------------------------------------------

template <class T>
inline void store_le(char* dst, T x) {
  if constexpr (std::endian::native == std::endian::big) {
    for (std::size_t i = 0; i < sizeof(T); ++i)
      dst[i] = static_cast<char>((x >> (8 * i)) & 0xff);
  } else {
    std::memcpy(dst, &x, sizeof(T));
  }
}

template <class T>
inline T load_le(const char* src) {
  if constexpr (std::endian::native == std::endian::big) {
    T x = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
      x |= static_cast<T>(static_cast<unsigned char>(src[i])) << (8 * i);
    return x;
  } else {
    T x;
    std::memcpy(&x, src, sizeof(T));
    return x;
  }
}

inline std::uint64_t checksum(const char* data, std::size_t size) {
  return XXH3_64bits(data, size);
}

// -- entry header -------------------------------------------------------------

struct entry_header {
  std::uint16_t version = 0;
  std::uint8_t kind = 0;
  std::uint8_t key_width = 0;
  block_id height = 0;
  std::uint32_t change_count = 0;
  std::uint32_t payload_size = 0;
  std::uint64_t payload_checksum = 0;

  std::uint64_t entry_size() const {
    return header_size + payload_size;
  }
};

/// Returns whether `p` (at least header_size bytes) starts with the magic and
/// a header whose checksum verifies, and decodes it into `out`.
bool parse_header(const char* p, entry_header& out) {
  if (load_le<std::uint32_t>(p) != entry_magic)
    return false;
  if (load_le<std::uint64_t>(p + 32) != checksum(p, header_checked_bytes))
    return false;
  out.version = load_le<std::uint16_t>(p + 4);
  out.kind = static_cast<std::uint8_t>(p[6]);
  out.key_width = static_cast<std::uint8_t>(p[7]);
  out.height = load_le<std::uint64_t>(p + 8);
  out.change_count = load_le<std::uint32_t>(p + 16);
  out.payload_size = load_le<std::uint32_t>(p + 20);
  out.payload_checksum = load_le<std::uint64_t>(p + 24);
  return true;
}

enum class entry_status {
  ok,
  bad,              ///< Fails a check a torn or damaged write can explain.
  version_mismatch, ///< A whole header of another format version.
  width_mismatch,   ///< A whole header of another key width.
};

struct entry_check {
  entry_status status = entry_status::bad;
  entry_header header;
  std::string reason; ///< Why it is bad, for messages.
};

/// Verifies the entry starting at `p`, which has `avail` bytes up to the end
/// of its buffer. Does not decode into a block_record. With `exact`, the entry
/// must span all `avail` bytes. Without `check_layout`, the payload layout is
/// left to the caller (who decodes it anyway).
entry_check check_entry(const char* p, std::size_t avail, std::size_t key_width,
                        bool exact, bool check_layout = true) {
  entry_check res;
  auto& h = res.header;
  if (avail < header_size) {
    res.reason = "only " + std::to_string(avail)
                 + " bytes left, less than a 40-byte entry header";
    return res;
  }
  if (load_le<std::uint32_t>(p) != entry_magic) {
    res.reason = "bad magic";
    return res;
  }
  if (!parse_header(p, h)) {
    res.reason = "header checksum mismatch";
    return res;
  }
  if (h.version != format_version) {
    res.status = entry_status::version_mismatch;
    res.reason = "entry has format version " + std::to_string(h.version)
                 + " but this build reads version "
                 + std::to_string(format_version);
    return res;
  }
  if (h.kind != kind_block && h.kind != kind_trailer) {
    res.reason = "unknown entry kind " + std::to_string(h.kind);
    return res;
  }
  if (h.key_width != key_width) {
    res.status = entry_status::width_mismatch;
    res.reason = "entry has key width " + std::to_string(h.key_width)
                 + " but the store uses key width " + std::to_string(key_width);
    return res;
  }
  if (h.payload_size > UINT32_MAX - header_size) {
    res.reason = "payload length " + std::to_string(h.payload_size)
                 + " exceeds the largest entry";
    return res;
  }
  if (h.entry_size() > avail || (exact && h.entry_size() != avail)) {
    res.reason = "entry of " + std::to_string(h.entry_size()) + " bytes but "
                 + std::to_string(avail) + " bytes "
                 + (exact ? "given" : "left");
    return res;
  }
  const char* payload = p + header_size;
  if (checksum(payload, h.payload_size) != h.payload_checksum) {
    res.reason = "payload checksum mismatch";
    return res;
  }
  if (h.kind == kind_trailer) {
    // Always checked: a trailer has no payload layout to walk.
    if (h.change_count != 0 || h.payload_size != trailer_payload_size) {
      res.reason = "segment trailer with change count "
                   + std::to_string(h.change_count) + " and a payload of "
                   + std::to_string(h.payload_size)
                   + " bytes (a trailer has no changes and 8 bytes)";
      return res;
    }
    res.status = entry_status::ok;
    return res;
  }
  // Every change takes at least key_width + 4 bytes.
  if (static_cast<std::uint64_t>(h.change_count) * (key_width + 4)
      > h.payload_size) {
    res.reason = "change count " + std::to_string(h.change_count)
                 + " does not fit a payload of "
                 + std::to_string(h.payload_size) + " bytes";
    return res;
  }
  if (check_layout
      && !change_list::check_payload({payload, h.payload_size},
                                     h.change_count, key_width)) {
    res.reason = std::string{bad_layout};
    return res;
  }
  res.status = entry_status::ok;
  return res;
}

// -- file helpers -------------------------------------------------------------

caf::error io_error(std::string what, const std::filesystem::path& path,
                    std::error_code err) {
  return make_error(ec::io_error, what + " " + path.string()
                                    + " failed: " + err.message());
}

caf::error sync_dir(file_system& fs, const std::filesystem::path& dir) {
  if (auto err = fs.sync_directory(dir))
    return io_error("fsync of directory", dir, err);
  return {};
}

/// Writes all of `data` at `offset`, writing the rest again after a short
/// write. A write that makes no progress is EIO.
std::error_code write_all(file& f, const char* data, std::size_t size,
                          std::uint64_t offset) {
  while (size > 0) {
    auto res = f.write_at(offset, data, size);
    if (res.error)
      return res.error;
    if (res.bytes == 0)
      return std::make_error_code(std::errc::io_error);
    data += res.bytes;
    size -= res.bytes;
    offset += res.bytes;
  }
  return {};
}

/// Reads a whole file.
caf::error read_file(file_system& fs, const std::filesystem::path& path,
                     std::string& out) {
  std::unique_ptr<file> f;
  if (auto err = fs.open(path, open_mode::read_only, f))
    return io_error("opening", path, err);
  std::uint64_t size = 0;
  if (auto err = f->size(size))
    return io_error("stat of", path, err);
  out.resize(static_cast<std::size_t>(size));
  auto res = f->read_at(0, out.data(), out.size());
  if (res.error)
    return io_error("reading", path, res.error);
  out.resize(res.bytes);
  return {};
}

/// Returns the size of a file in `out`.
caf::error stat_size(file_system& fs, const std::filesystem::path& path,
                     std::uint64_t& out) {
  std::unique_ptr<file> f;
  if (auto err = fs.open(path, open_mode::read_only, f))
    return io_error("opening", path, err);
  if (auto err = f->size(out))
    return io_error("stat of", path, err);
  return {};
}

std::string segment_name(std::uint64_t seq) {
  auto digits = std::to_string(seq);
  if (digits.size() < segment_digits)
    digits.insert(0, segment_digits - digits.size(), '0');
  return digits + std::string{segment_suffix};
}

/// Parses "<digits>.rbj"; returns nullopt for any other name.
std::optional<std::uint64_t> parse_segment_name(std::string_view name) {
  if (name.size() <= segment_suffix.size() || !name.ends_with(segment_suffix))
    return std::nullopt;
  auto digits = name.substr(0, name.size() - segment_suffix.size());
  if (!std::all_of(digits.begin(), digits.end(),
                   [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  std::uint64_t seq = 0;
  auto [ptr, err] = std::from_chars(digits.data(),
                                    digits.data() + digits.size(), seq);
  if (err != std::errc{} || ptr != digits.data() + digits.size())
    return std::nullopt;
  return seq;
}

/// Returns the offset of the first valid entry (magic, header checksum and
/// payload checksum verify) at or after `from` in `buf`, if any.
std::optional<std::uint64_t> find_valid_entry(std::string_view buf,
                                              std::size_t from) {
  const char first = static_cast<char>(entry_magic & 0xff);
  while (from + header_size <= buf.size()) {
    auto hit = static_cast<const char*>(
      std::memchr(buf.data() + from, first, buf.size() - header_size + 1 - from));
    if (hit == nullptr)
      return std::nullopt;
    auto pos = static_cast<std::size_t>(hit - buf.data());
    entry_header h;
    if (parse_header(hit, h) && h.entry_size() <= buf.size() - pos
        && checksum(hit + header_size, h.payload_size) == h.payload_checksum)
      return pos;
    from = pos + 1;
  }
  return std::nullopt;
}

caf::error check_key_width(std::size_t key_width) {
  if (key_width < min_key_width || key_width > max_key_width)
    return make_error(ec::invalid_argument,
                      "journal key width " + std::to_string(key_width)
                        + " is outside " + std::to_string(min_key_width) + ".."
                        + std::to_string(max_key_width));
  return {};
}

} // namespace

// -- encoding -----------------------------------------------------------------

namespace {

/// Writes the header of the entry at `base`, whose payload of
/// `payload_size` bytes follows it, checksums included.
void seal_header(char* base, std::uint8_t kind, std::size_t key_width,
                 block_id height, std::uint32_t change_count,
                 std::uint32_t payload_size) {
  store_le(base, entry_magic);
  store_le(base + 4, format_version);
  base[6] = static_cast<char>(kind);
  base[7] = static_cast<char>(static_cast<std::uint8_t>(key_width));
  store_le(base + 8, static_cast<std::uint64_t>(height));
  store_le(base + 16, change_count);
  store_le(base + 20, payload_size);
  store_le(base + 24, checksum(base + header_size, payload_size));
  store_le(base + 32, checksum(base, header_checked_bytes));
}

/// Decodes a trailer whose header and checksums check_entry accepted.
journal_trailer decode_trailer(const char* p, const entry_header& h) {
  return journal_trailer{h.height, load_le<std::uint64_t>(p + header_size)};
}

/// Makes `out` the entry of `record` (reusing its capacity).
void encode_block_entry(const block_record& record, std::size_t key_width,
                        std::string& out) {
  auto payload = record.changes.payload();
  out.resize(header_size + payload.size());
  std::memcpy(out.data() + header_size, payload.data(), payload.size());
  seal_header(out.data(), kind_block, key_width, record.height,
              static_cast<std::uint32_t>(record.changes.size()),
              static_cast<std::uint32_t>(payload.size()));
}

} // namespace

std::string encode_journal_entry(const block_record& record,
                                 std::size_t key_width) {
  std::string out;
  encode_block_entry(record, key_width, out);
  return out;
}

std::string encode_journal_trailer(const journal_trailer& trailer,
                                   std::size_t key_width) {
  std::string out(header_size + trailer_payload_size, '\0');
  store_le(out.data() + header_size, trailer.next_segment);
  seal_header(out.data(), kind_trailer, key_width, trailer.last_height, 0,
              trailer_payload_size);
  return out;
}

namespace {

ec code_for(entry_status st) {
  switch (st) {
    case entry_status::ok:
      return ec::none;
    case entry_status::version_mismatch:
      return ec::format_version_mismatch;
    case entry_status::width_mismatch:
      return ec::config_mismatch;
    case entry_status::bad:
      break;
  }
  return ec::journal_corrupt;
}

/// Decodes an entry whose header and checksums check_entry accepted; returns
/// false when the payload layout is wrong.
bool decode_checked(const char* p, const entry_header& h,
                    std::size_t key_width, block_record& rec) {
  std::string_view payload{p + header_size, h.payload_size};
  std::vector<std::uint32_t> offsets;
  offsets.reserve(h.change_count);
  if (!change_list::check_payload(payload, h.change_count, key_width,
                                  &offsets))
    return false;
  rec.height = h.height;
  rec.changes =
    change_list{std::string{payload}, std::move(offsets), key_width};
  return true;
}

} // namespace

caf::expected<block_record> decode_journal_entry(std::string_view bytes,
                                                 std::size_t key_width) {
  auto chk = check_entry(bytes.data(), bytes.size(), key_width, true, false);
  if (chk.status != entry_status::ok)
    return make_error(code_for(chk.status),
                      "cannot decode journal entry: " + chk.reason);
  if (chk.header.kind != kind_block)
    return make_error(ec::journal_corrupt,
                      "cannot decode journal entry: it is a segment trailer "
                      "(kind 2), not a block (kind 1)");
  block_record rec;
  if (!decode_checked(bytes.data(), chk.header, key_width, rec))
    return make_error(ec::journal_corrupt, "cannot decode journal entry: "
                                             + std::string{bad_layout});
  return rec;
}

caf::expected<journal_trailer>
decode_journal_trailer(std::string_view bytes, std::size_t key_width) {
  auto chk = check_entry(bytes.data(), bytes.size(), key_width, true);
  if (chk.status != entry_status::ok)
    return make_error(code_for(chk.status),
                      "cannot decode journal trailer: " + chk.reason);
  if (chk.header.kind != kind_trailer)
    return make_error(ec::journal_corrupt,
                      "cannot decode journal trailer: it is a block (kind 1), "
                      "not a segment trailer (kind 2)");
  return decode_trailer(bytes.data(), chk.header);
}

// -- journal ------------------------------------------------------------------

struct journal::impl {
  struct segment {
    std::uint64_t seq = 0;
    std::uint64_t size = 0;
  };

  options opts;
  file_system* fs = nullptr; ///< opts.fs, or the POSIX file system.
  std::vector<segment> segments; ///< Oldest first; back() is active.
  std::vector<journal_position> index;
  std::unique_ptr<file> active; ///< Open read-write on segments.back().
  caf::error failed; ///< Sticky: set once the journal's state is uncertain.
  /// The entry append writes (kept to reuse its pages, up to
  /// max_kept_entry_bytes).
  std::string entry;
  static constexpr std::size_t max_kept_entry_bytes = 16ull << 20;
  /// The segment read() last opened, kept open for the next read.
  mutable std::unique_ptr<file> reader;
  mutable std::uint64_t reader_seq = 0;

  std::filesystem::path path_of(std::uint64_t seq) const {
    return opts.dir / segment_name(seq);
  }

  std::string last_good_text() const {
    return index.empty() ? std::string{"none (no valid entry before it)"}
                         : std::to_string(index.back().height);
  }

  caf::error fail(caf::error err) {
    failed = err;
    return err;
  }

  /// Returns the size of segment `seq`, 0 when it cannot be read.
  std::uint64_t size_of(std::uint64_t seq) const {
    std::unique_ptr<file> f;
    std::uint64_t size = 0;
    if (!fs->open(path_of(seq), open_mode::read_only, f))
      if (f->size(size))
        size = 0;
    return size;
  }

  /// Reports a torn tail at `offset` of segment `seg_idx` without changing
  /// any file (a read-only open).
  void report_tail(std::size_t seg_idx, std::uint64_t offset,
                   std::uint64_t file_size, journal_open_report& rep) {
    std::uint64_t cut = file_size - offset;
    for (auto j = seg_idx + 1; j < segments.size(); ++j) {
      segments[j].size = size_of(segments[j].seq);
      cut += segments[j].size;
    }
    rep.truncated_bytes = cut;
    rep.truncated_file = path_of(segments[seg_idx].seq).string();
    rep.truncated_offset = offset;
  }

  /// Creates segment `seq`, fsyncs the directory and makes it active.
  caf::error create_segment(std::uint64_t seq) {
    auto path = path_of(seq);
    std::unique_ptr<file> f;
    if (auto err = fs->open(path, open_mode::create_new, f))
      return io_error("creating journal segment", path, err);
    if (auto err = sync_dir(*fs, opts.dir))
      return err;
    active = std::move(f);
    segments.push_back(segment{seq, 0});
    return {};
  }

  caf::error open_active() {
    auto path = path_of(segments.back().seq);
    std::unique_ptr<file> f;
    if (auto err = fs->open(path, open_mode::read_write, f))
      return io_error("opening journal segment", path, err);
    active = std::move(f);
    return {};
  }

  /// Starts segment <seq + 1>: fsyncs the active segment (its blocks are
  /// durable before anything names the next one), creates the next one and
  /// fsyncs the directory, then appends the trailer naming it to the active
  /// segment and fsyncs that, and only then makes the next one active. A
  /// crash in between leaves an empty next segment after one without a
  /// trailer (open removes it) or a torn trailer (a torn tail).
  caf::error roll() {
    auto& cur = segments.back();
    auto cur_path = path_of(cur.seq);
    if (auto err = active->sync_data())
      return fail(io_error("fdatasync of journal segment", cur_path, err));
    auto next = cur.seq + 1;
    auto path = path_of(next);
    std::unique_ptr<file> f;
    if (auto err = fs->open(path, open_mode::create_new, f))
      return io_error("creating journal segment", path, err);
    // From here on the directory holds the next segment: a failure leaves
    // the journal in a state only reopening repairs.
    if (auto err = sync_dir(*fs, opts.dir))
      return fail(std::move(err));
    journal_trailer trailer{index.empty() ? block_id{0} : index.back().height,
                            next};
    auto bytes = encode_journal_trailer(trailer, opts.key_width);
    if (auto err = write_all(*active, bytes.data(), bytes.size(), cur.size))
      return fail(io_error("writing the trailer of journal segment",
                           cur_path, err));
    if (auto err = active->sync_data())
      return fail(io_error("fdatasync of journal segment", cur_path, err));
    cur.size += bytes.size();
    segments.push_back(segment{next, 0});
    active = std::move(f);
    return {};
  }

  /// Returns whether the index holds an entry at `height`.
  bool holds(block_id height) const {
    auto i = std::lower_bound(index.begin(), index.end(), height,
                              [](const journal_position& pos, block_id h) {
                                return pos.height < h;
                              });
    return i != index.end() && i->height == height;
  }

  /// Describes where the index ends, for messages.
  std::string end_text() const {
    if (index.empty())
      return "holds no entry";
    auto& last = index.back();
    return "ends with height " + std::to_string(last.height) + " at "
           + path_of(last.segment).string() + " offset "
           + std::to_string(last.offset);
  }

  std::filesystem::path truncation_path() const {
    return opts.dir / truncation_file;
  }

  caf::error scan(journal_open_report& rep);
  caf::error check_required(const std::string& why) const;
  caf::error write_truncation(block_id height);
  caf::error read_truncation(std::optional<block_id>& height, bool& torn);
  caf::error truncate(block_id height, bool recorded);
  caf::error remove_truncation();
  caf::error cut_tail(std::size_t seg_idx, std::uint64_t offset,
                      std::uint64_t file_size, journal_open_report& rep);
};

journal::journal(std::unique_ptr<impl> p) : impl_(std::move(p)) {
}

journal::~journal() = default;

caf::error journal::impl::check_required(const std::string& why) const {
  if (!opts.required_height || holds(*opts.required_height))
    return {};
  return make_error(
    ec::journal_corrupt,
    "journal " + opts.dir.string() + " holds no entry at height "
      + std::to_string(*opts.required_height)
      + ", which was fsynced before it was checkpointed (" + why
      + "); the journal " + end_text()
      + ": a segment is missing or was cut short, so nothing was repaired: "
        "restore the journal from a backup");
}

caf::error journal::impl::scan(journal_open_report& rep) {
  std::string buf;
  // The first segment that ends without a trailer, when it is not the
  // newest: every later one must be empty (a leftover).
  std::optional<std::size_t> open_end;
  std::size_t leftovers = 0;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    auto& seg = segments[i];
    auto path = path_of(seg.seq);
    if (i > 0 && seg.seq != segments[i - 1].seq + 1)
      return make_error(ec::journal_corrupt,
                        "journal segment " + path_of(seg.seq - 1).string()
                          + " is missing: segment "
                          + path_of(segments[i - 1].seq).filename().string()
                          + " is followed by " + path.filename().string()
                          + " (last good height " + last_good_text()
                          + "); the blocks it held are lost, so nothing was "
                            "repaired: restore the journal from a backup");
    if (open_end) {
      if (auto err = stat_size(*fs, path, seg.size))
        return err;
      auto& end = segments[*open_end];
      if (seg.size > 0)
        return make_error(
          ec::journal_corrupt,
          "journal segment " + path_of(end.seq).string() + " ends at offset "
            + std::to_string(end.size)
            + " without a trailer (last good height " + last_good_text()
            + "), but the later segment "
            + path.string() + " holds " + std::to_string(seg.size)
            + " bytes: a segment followed by another must end with a "
              "trailer naming it, so blocks may be missing and nothing was "
              "repaired: restore the journal from a backup");
      ++leftovers;
      continue;
    }
    if (auto err = read_file(*fs, path, buf))
      return err;
    seg.size = buf.size();
    std::optional<std::uint64_t> trailer_at;
    std::uint64_t off = 0;
    while (off < buf.size()) {
      auto chk = check_entry(buf.data() + off, buf.size() - off,
                             opts.key_width, false);
      if (chk.status == entry_status::width_mismatch)
        return make_error(ec::config_mismatch,
                          "journal " + path.string() + " at offset "
                            + std::to_string(off) + " has key width "
                            + std::to_string(chk.header.key_width)
                            + " but the store is opened with key width "
                            + std::to_string(opts.key_width)
                            + "; open it with the key width it was created "
                              "with");
      if (chk.status == entry_status::version_mismatch)
        return make_error(ec::format_version_mismatch,
                          "journal " + path.string() + " at offset "
                            + std::to_string(off) + ": " + chk.reason
                            + "; use a build that reads this format");
      if (chk.status == entry_status::ok
          && chk.header.kind == kind_trailer) {
        auto trailer = decode_trailer(buf.data() + off, chk.header);
        auto where = "journal " + path.string() + " at offset "
                     + std::to_string(off) + " holds a segment trailer";
        block_id last = index.empty() ? block_id{0} : index.back().height;
        if (trailer.next_segment != seg.seq + 1)
          return make_error(
            ec::journal_corrupt,
            where + " naming segment " + std::to_string(trailer.next_segment)
              + " as the next one instead of "
              + path_of(seg.seq + 1).filename().string() + " (last good height "
              + last_good_text() + "); nothing was repaired");
        if (trailer.last_height != last)
          return make_error(
            ec::journal_corrupt,
            where + " naming height " + std::to_string(trailer.last_height)
              + " as the segment's last block, but the last block before it "
                "is "
              + (index.empty() ? std::string{"none"} : std::to_string(last))
              + "; nothing was repaired");
        if (off + chk.header.entry_size() != buf.size())
          return make_error(
            ec::journal_corrupt,
            where + " followed by "
              + std::to_string(buf.size() - off - chk.header.entry_size())
              + " more bytes, but a trailer ends its segment (last good "
                "height "
              + last_good_text() + "); nothing was repaired");
        trailer_at = off;
        off += chk.header.entry_size();
        continue;
      }
      if (chk.status == entry_status::ok && !index.empty()
          && chk.header.height <= index.back().height)
        return make_error(ec::journal_corrupt,
                          "journal " + path.string() + " at offset "
                            + std::to_string(off) + " holds height "
                            + std::to_string(chk.header.height)
                            + " after height "
                            + std::to_string(index.back().height)
                            + "; heights must increase (last good height "
                            + std::to_string(index.back().height) + ")");
      if (chk.status != entry_status::ok) {
        // The first bad entry: a torn tail unless a valid entry follows.
        std::optional<std::pair<std::filesystem::path, std::uint64_t>> later;
        if (auto pos = find_valid_entry(buf, static_cast<std::size_t>(off) + 1))
          later.emplace(path, *pos);
        std::string other;
        for (auto j = i + 1; !later && j < segments.size(); ++j) {
          auto other_path = path_of(segments[j].seq);
          if (auto err = read_file(*fs, other_path, other))
            return err;
          if (auto pos = find_valid_entry(other, 0))
            later.emplace(other_path, *pos);
        }
        if (later)
          return make_error(
            ec::journal_corrupt,
            "journal " + path.string() + " is corrupt at offset "
              + std::to_string(off) + " (" + chk.reason
              + "; last good height " + last_good_text()
              + ") but a valid entry follows at " + later->first.string()
              + " offset " + std::to_string(later->second)
              + "; this is not a torn tail, so nothing was repaired: restore "
                "the journal from a backup or move the damaged segment away");
        if (auto err = check_required("it is damaged at " + path.string()
                                      + " offset " + std::to_string(off)
                                      + ": " + chk.reason))
          return err;
        if (!opts.repair) {
          report_tail(i, off, buf.size(), rep);
          return {};
        }
        return cut_tail(i, off, buf.size(), rep);
      }
      index.push_back(journal_position{chk.header.height, seg.seq, off,
                                       static_cast<std::uint32_t>(
                                         chk.header.entry_size())});
      off += chk.header.entry_size();
    }
    if (trailer_at && i + 1 == segments.size())
      return make_error(
        ec::journal_corrupt,
        "journal segment " + path_of(seg.seq + 1).string()
          + " is missing: segment " + path.filename().string()
          + " ends with a trailer at offset " + std::to_string(*trailer_at)
          + " naming it as the next segment (last good height "
          + last_good_text()
          + "); the blocks it held are lost, so nothing was repaired: "
            "restore the journal from a backup");
    if (!trailer_at && i + 1 < segments.size())
      open_end = i;
  }
  if (auto err = check_required(std::to_string(segments.size())
                                + " segment files"))
    return err;
  if (leftovers == 0)
    return {};
  // Empty segments after one without a trailer: a roll that created the
  // next segment but did not write the trailer, or a truncate_after that
  // emptied them but did not delete them. They hold nothing: remove them,
  // newest first.
  auto first = segments.size() - leftovers;
  for (auto j = first; j < segments.size(); ++j)
    rep.leftover_segments.push_back(path_of(segments[j].seq).string());
  if (opts.repair) {
    while (segments.size() > first) {
      auto path = path_of(segments.back().seq);
      if (auto err = fs->remove(path))
        return io_error("removing empty journal segment", path, err);
      segments.pop_back();
    }
    if (auto err = sync_dir(*fs, opts.dir))
      return err;
  } else {
    segments.resize(first);
  }
  return {};
}

caf::error journal::impl::cut_tail(std::size_t seg_idx, std::uint64_t offset,
                                   std::uint64_t file_size,
                                   journal_open_report& rep) {
  auto path = path_of(segments[seg_idx].seq);
  std::uint64_t cut = file_size - offset;
  // Later segments hold no valid entry: delete them, newest first.
  bool removed = false;
  while (segments.size() > seg_idx + 1) {
    auto later = path_of(segments.back().seq);
    cut += size_of(segments.back().seq);
    if (auto err = fs->remove(later))
      return io_error("removing journal segment", later, err);
    segments.pop_back();
    removed = true;
  }
  {
    std::unique_ptr<file> f;
    if (auto err = fs->open(path, open_mode::read_write, f))
      return io_error("opening journal segment", path, err);
    if (auto err = f->truncate(offset))
      return io_error("truncating journal segment", path, err);
    if (auto err = f->sync())
      return io_error("fsync of journal segment", path, err);
  }
  if (removed)
    if (auto err = sync_dir(*fs, opts.dir))
      return err;
  segments[seg_idx].size = offset;
  rep.truncated_bytes = cut;
  rep.truncated_file = path.string();
  rep.truncated_offset = offset;
  return {};
}

caf::expected<std::unique_ptr<journal>>
journal::open(const options& opts, journal_open_report* report) {
  if (auto err = check_key_width(opts.key_width))
    return err;
  if (opts.dir.empty())
    return make_error(ec::invalid_argument, "journal directory is empty");
  auto p = std::make_unique<impl>();
  p->opts = opts;
  p->fs = opts.fs ? opts.fs.get() : posix_file_system().get();
  auto& fs = *p->fs;
  if (opts.repair)
    if (auto err = fs.create_directories(opts.dir))
      return io_error("creating journal directory", opts.dir, err);
  // List the segment files.
  std::vector<std::string> names;
  if (auto err = fs.list(opts.dir, names))
    return io_error("listing journal directory", opts.dir, err);
  for (auto& name : names) {
    auto seq = parse_segment_name(name);
    // Only the canonical spelling counts: "1.rbj" is not segment 000001.rbj.
    if (seq && segment_name(*seq) == name)
      p->segments.push_back(impl::segment{*seq, 0});
  }
  std::sort(p->segments.begin(), p->segments.end(),
            [](auto& a, auto& b) { return a.seq < b.seq; });
  journal_open_report rep;
  std::optional<block_id> truncation;
  bool recorded = std::find(names.begin(), names.end(), truncation_file)
                  != names.end();
  if (recorded)
    if (auto err = p->read_truncation(truncation,
                                      rep.torn_truncation_record))
      return err;
  if (truncation && opts.required_height
      && *truncation < *opts.required_height)
    return make_error(ec::journal_corrupt,
                      "journal truncation record "
                        + p->truncation_path().string() + " cuts after block "
                        + std::to_string(*truncation)
                        + ", below block "
                        + std::to_string(*opts.required_height)
                        + ", which the journal must hold (it was "
                          "checkpointed); nothing was repaired");
  if (auto err = p->scan(rep))
    return err;
  if (p->segments.empty() && opts.must_exist)
    return make_error(ec::journal_corrupt,
                      "journal directory " + opts.dir.string()
                        + " holds no segment file, but its store was "
                          "created before: the journal was deleted (its "
                          "blocks would be lost); refusing to start a new "
                          "one");
  rep.completed_truncation = truncation;
  if (!opts.repair) {
    // Read-only: no active segment; every change is refused. An interrupted
    // truncation is shown as done.
    if (truncation)
      std::erase_if(p->index,
                    [&](auto& pos) { return pos.height > *truncation; });
    p->failed = make_error(ec::invalid_argument, "journal opened read-only");
  } else {
    if (p->segments.empty()) {
      if (auto err = p->create_segment(1))
        return err;
    } else if (auto err = p->open_active()) {
      return err;
    }
    // An interrupted truncation is completed; a torn record, written before
    // any segment changed, is deleted.
    if (truncation) {
      if (auto err = p->truncate(*truncation, true))
        return err;
    } else if (recorded) {
      if (auto err = p->remove_truncation())
        return err;
    }
  }
  rep.segments = p->segments.size();
  rep.entries = p->index.size();
  if (report != nullptr)
    *report = std::move(rep);
  return std::unique_ptr<journal>{new journal(std::move(p))};
}

caf::error journal::append(const block_record& record) {
  auto& d = *impl_;
  if (d.failed)
    return d.failed;
  if (!d.index.empty() && record.height <= d.index.back().height)
    return make_error(ec::block_id_not_increasing,
                      "journal append of height "
                        + std::to_string(record.height)
                        + " is not above the last journaled height "
                        + std::to_string(d.index.back().height));
  // The record's change_list holds only encodable changes (values of at
  // most max_value_size bytes, at most 4 GiB in all): only its key width
  // can be wrong here.
  if (!record.changes.empty()
      && record.changes.key_width() != d.opts.key_width)
    return make_error(ec::key_width_mismatch,
                      "journal append of height "
                        + std::to_string(record.height) + " has keys of "
                        + std::to_string(record.changes.key_width())
                        + " bytes but the key width is "
                        + std::to_string(d.opts.key_width));
  if (record.changes.payload().size() > UINT32_MAX - header_size)
    return make_error(ec::invalid_argument,
                      "journal append of height "
                        + std::to_string(record.height)
                        + " is too large for one entry (4 GiB at most)");
  auto& cur = d.segments.back();
  if (cur.size > 0 && cur.size >= d.opts.segment_bytes)
    if (auto err = d.roll())
      return err;
  auto& bytes = d.entry;
  encode_block_entry(record, d.opts.key_width, bytes);
  auto& seg = d.segments.back();
  auto start = seg.size;
  if (auto err = write_all(*d.active, bytes.data(), bytes.size(), start)) {
    auto path = d.path_of(seg.seq);
    auto res = io_error("writing journal entry of height "
                          + std::to_string(record.height) + " to",
                        path, err);
    if (auto cut_err = d.active->truncate(start))
      return d.fail(make_error(ec::io_error,
                               message_of(res) + "; truncating it back to "
                                 + std::to_string(start) + " bytes also failed: "
                                 + cut_err.message()));
    return res;
  }
  seg.size += bytes.size();
  d.index.push_back(journal_position{record.height, seg.seq, start,
                                     static_cast<std::uint32_t>(bytes.size())});
  if (bytes.capacity() > impl::max_kept_entry_bytes)
    std::string{}.swap(bytes); // an outsized block's buffer is not kept
  return {};
}

caf::error journal::sync() {
  auto& d = *impl_;
  if (d.failed)
    return d.failed;
  // After a failed fsync the kernel may have dropped the dirty pages and
  // marked them clean: a later fsync would succeed without writing them.
  // So the failure is sticky (no retried fsync is trusted).
  if (auto err = d.active->sync_data())
    return d.fail(io_error("fdatasync of journal segment",
                           d.path_of(d.segments.back().seq), err));
  return {};
}

bool journal::empty() const {
  return impl_->index.empty();
}

block_id journal::last_height() const {
  return impl_->index.back().height;
}

block_id journal::first_height() const {
  return impl_->index.front().height;
}

const std::vector<journal_position>& journal::index() const {
  return impl_->index;
}

caf::expected<block_record> journal::read(const journal_position& pos) const {
  auto& d = *impl_;
  auto path = d.path_of(pos.segment);
  if (!d.reader || d.reader_seq != pos.segment) {
    d.reader.reset();
    if (auto err = d.fs->open(path, open_mode::read_only, d.reader))
      return io_error("opening journal segment", path, err);
    d.reader_seq = pos.segment;
  }
  std::string buf(pos.size, '\0');
  auto res = d.reader->read_at(pos.offset, buf.data(), buf.size());
  if (res.error)
    return io_error("reading journal segment", path, res.error);
  auto where = "journal " + path.string() + " at offset "
               + std::to_string(pos.offset) + " (height "
               + std::to_string(pos.height) + ")";
  if (res.bytes != buf.size())
    return make_error(ec::journal_corrupt,
                      where + " ends after " + std::to_string(res.bytes)
                        + " of " + std::to_string(buf.size()) + " bytes");
  auto chk = check_entry(buf.data(), buf.size(), d.opts.key_width, true,
                         false);
  if (chk.status != entry_status::ok)
    return make_error(ec::journal_corrupt,
                      where + " fails its checks: " + chk.reason);
  if (chk.header.kind != kind_block)
    return make_error(ec::journal_corrupt,
                      where + " holds a segment trailer, not a block");
  if (chk.header.height != pos.height)
    return make_error(ec::journal_corrupt,
                      where + " holds height "
                        + std::to_string(chk.header.height));
  block_record rec;
  if (!decode_checked(buf.data(), chk.header, d.opts.key_width, rec))
    return make_error(ec::journal_corrupt,
                      where + " fails its checks: " + std::string{bad_layout});
  return rec;
}

caf::expected<block_record_list> journal::read_from(block_id height) const {
  auto& d = *impl_;
  auto first = std::lower_bound(d.index.begin(), d.index.end(), height,
                                [](const journal_position& pos, block_id h) {
                                  return pos.height < h;
                                });
  block_record_list result;
  result.reserve(static_cast<std::size_t>(d.index.end() - first));
  for (auto i = first; i != d.index.end(); ++i) {
    auto rec = read(*i);
    if (!rec)
      return std::move(rec.error());
    result.push_back(std::make_shared<block_record>(std::move(*rec)));
  }
  return result;
}

/// Step 0 of a truncation that reaches beyond the newest segment: writes
/// the truncation record naming `height` and makes it durable. A failure
/// after creating the file fails the journal (the record may be whole).
caf::error journal::impl::write_truncation(block_id height) {
  auto path = truncation_path();
  std::string bytes(truncation_size, '\0');
  store_le(bytes.data(), truncation_magic);
  store_le(bytes.data() + 4, truncation_version);
  store_le(bytes.data() + 8, static_cast<std::uint64_t>(height));
  store_le(bytes.data() + 16, checksum(bytes.data(), 16));
  std::unique_ptr<file> f;
  if (auto err = fs->open(path, open_mode::create_new, f))
    return io_error("creating journal truncation record", path, err);
  if (auto err = write_all(*f, bytes.data(), bytes.size(), 0))
    return fail(io_error("writing journal truncation record", path, err));
  if (auto err = f->sync_data())
    return fail(io_error("fdatasync of journal truncation record", path, err));
  if (auto err = sync_dir(*fs, opts.dir))
    return fail(std::move(err));
  return {};
}

/// Reads the truncation record: `height` holds its height when it verifies;
/// `torn` is set when it does not (a crash while writing it).
caf::error journal::impl::read_truncation(std::optional<block_id>& height,
                                          bool& torn) {
  auto path = truncation_path();
  std::string bytes;
  if (auto err = read_file(*fs, path, bytes))
    return err;
  if (bytes.size() != truncation_size
      || load_le<std::uint32_t>(bytes.data()) != truncation_magic
      || load_le<std::uint64_t>(bytes.data() + 16)
           != checksum(bytes.data(), 16)) {
    torn = true;
    return {};
  }
  if (auto version = load_le<std::uint16_t>(bytes.data() + 4);
      version != truncation_version)
    return make_error(ec::format_version_mismatch,
                      "journal truncation record " + path.string()
                        + " has format version " + std::to_string(version)
                        + " but this build reads version "
                        + std::to_string(truncation_version)
                        + "; use a build that reads this format");
  height = load_le<std::uint64_t>(bytes.data() + 8);
  return {};
}

/// Deletes the truncation record and fsyncs the directory, so that a
/// completed truncation is never done again after later appends.
caf::error journal::impl::remove_truncation() {
  auto path = truncation_path();
  if (auto err = fs->remove(path);
      err && err != std::errc::no_such_file_or_directory)
    return fail(io_error("removing journal truncation record", path, err));
  if (auto err = sync_dir(*fs, opts.dir))
    return fail(std::move(err));
  return {};
}

caf::error journal::truncate_after(block_id height) {
  auto& d = *impl_;
  if (d.failed)
    return d.failed;
  return d.truncate(height, false);
}

/// truncate_after's steps; `recorded`: the truncation record exists (open
/// completes an interrupted truncation), so step 0 is skipped and the record
/// is deleted even when nothing is left to cut.
caf::error journal::impl::truncate(block_id height, bool recorded) {
  auto first_dropped = std::upper_bound(
    index.begin(), index.end(), height,
    [](block_id h, const journal_position& pos) { return h < pos.height; });
  if (first_dropped == index.end() && !recorded)
    return {};
  // 3. (also alone, when nothing is left to cut): the record goes.
  auto finish = [&]() -> caf::error {
    if (recorded)
      return remove_truncation();
    if (auto err = sync_dir(*fs, opts.dir))
      return fail(std::move(err));
    return {};
  };
  if (first_dropped == index.end())
    return finish();
  // The segment that stays active and the size it keeps.
  std::uint64_t keep_seq;
  std::uint64_t keep_size;
  if (first_dropped != index.begin()) {
    auto& last_kept = *(first_dropped - 1);
    keep_seq = last_kept.segment;
    keep_size = last_kept.offset + last_kept.size;
  } else {
    keep_seq = first_dropped->segment;
    keep_size = first_dropped->offset;
  }
  auto keep = std::find_if(segments.begin(), segments.end(),
                           [&](auto& s) { return s.seq == keep_seq; });
  auto keep_idx = static_cast<std::size_t>(keep - segments.begin());
  // Open the kept segment before changing anything.
  std::unique_ptr<file> f;
  if (keep_idx + 1 == segments.size()) {
    f = std::move(active);
  } else {
    auto path = path_of(keep_seq);
    if (auto err = fs->open(path, open_mode::read_write, f))
      return io_error("opening journal segment", path, err);
  }
  reader.reset(); // It may read a segment that is about to change.
  // 0. Emptying a later segment is not atomic with the cut of K: the
  // record makes the whole truncation happen at open if a crash stops it.
  if (!recorded
      && std::any_of(segments.begin() + static_cast<std::ptrdiff_t>(keep_idx)
                       + 1,
                     segments.end(), [](auto& s) { return s.size > 0; })) {
    // (K is not the newest segment here, so `active` is still open.)
    if (auto err = write_truncation(height))
      return err;
    recorded = true;
  }
  // From here on a failure leaves the journal in a state we no longer track.
  // 1. Empty the later segments, newest first, each fsynced. Deleting them
  // right away would leave a trailer naming a missing segment after a
  // crash; emptied, the trailers before them still name files that exist,
  // and the empty segments after the first one without a trailer are
  // leftovers that open removes.
  for (auto i = segments.size(); i-- > keep_idx + 1;) {
    auto& seg = segments[i];
    if (seg.size == 0)
      continue;
    auto path = path_of(seg.seq);
    std::unique_ptr<file> later;
    if (i + 1 == segments.size() && active) {
      later = std::move(active);
    } else if (auto err = fs->open(path, open_mode::read_write, later)) {
      return fail(io_error("opening journal segment", path, err));
    }
    if (auto err = later->truncate(0))
      return fail(io_error("truncating journal segment", path, err));
    if (auto err = later->sync())
      return fail(io_error("fsync of journal segment", path, err));
    seg.size = 0;
  }
  // 2. Cut the kept segment after its last kept entry (a trailer goes too):
  // it is the newest segment with content from now on.
  active = std::move(f);
  auto path = path_of(keep_seq);
  if (auto err = active->truncate(keep_size))
    return fail(io_error("truncating journal segment", path, err));
  segments[keep_idx].size = keep_size;
  index.erase(first_dropped, index.end());
  if (auto err = active->sync())
    return fail(io_error("fsync of journal segment", path, err));
  // 3. Delete the emptied segments, newest first, then the record.
  while (segments.size() > keep_idx + 1) {
    auto later = path_of(segments.back().seq);
    if (auto err = fs->remove(later);
        err && err != std::errc::no_such_file_or_directory)
      return fail(io_error("removing journal segment", later, err));
    segments.pop_back();
  }
  return finish();
}

std::optional<block_id> journal::prunable_through(block_id keep_from) const {
  auto& d = *impl_;
  std::optional<block_id> result;
  auto pos = d.index.begin();
  // Every segment but the active one, oldest first, while all its entries
  // are below keep_from.
  for (std::size_t i = 0; i + 1 < d.segments.size(); ++i) {
    auto seq = d.segments[i].seq;
    std::optional<block_id> newest;
    while (pos != d.index.end() && pos->segment == seq)
      newest = (pos++)->height;
    if (!newest)
      continue; // An empty segment holds nothing to keep.
    if (*newest >= keep_from)
      break;
    result = newest;
  }
  return result;
}

caf::error journal::drop_through(block_id height) {
  auto& d = *impl_;
  if (d.failed)
    return d.failed;
  std::size_t dropped_entries = 0;
  std::size_t dropped_segments = 0;
  caf::error err;
  d.reader.reset(); // It may read a segment that is about to go.
  for (std::size_t i = 0; i + 1 < d.segments.size(); ++i) {
    auto seq = d.segments[i].seq;
    auto n = dropped_entries;
    while (n < d.index.size() && d.index[n].segment == seq)
      ++n;
    if (n > dropped_entries && d.index[n - 1].height > height)
      break;
    auto path = d.path_of(seq);
    if (auto rm_err = d.fs->remove(path);
        rm_err && rm_err != std::errc::no_such_file_or_directory) {
      err = io_error("removing journal segment", path, rm_err);
      break;
    }
    dropped_entries = n;
    dropped_segments = i + 1;
  }
  if (dropped_segments == 0)
    return err;
  d.index.erase(d.index.begin(),
                d.index.begin() + static_cast<std::ptrdiff_t>(dropped_entries));
  d.segments.erase(d.segments.begin(),
                   d.segments.begin()
                     + static_cast<std::ptrdiff_t>(dropped_segments));
  if (auto sync_err = sync_dir(*d.fs, d.opts.dir))
    return d.fail(std::move(sync_err));
  return err;
}

std::uint64_t journal::size_bytes() const {
  std::uint64_t total = 0;
  for (auto& s : impl_->segments)
    total += s.size;
  return total;
}

const std::filesystem::path& journal::dir() const {
  return impl_->opts.dir;
}

std::filesystem::path journal::segment_path(std::uint64_t seq) const {
  return impl_->path_of(seq);
}

} // namespace rollblock::storage
